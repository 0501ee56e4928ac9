"""What a server holds, as `ovl server machines` lists it and as the read-only status page
at `/` of `ovl server serve` shows it: profiles and their versions (serial, signer), machines
(profile, MAC, node key, deltas received and pending, the last one's time). Plain HTML, no
script, no form: nothing on the page changes anything."""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ovl.core.errors import OvlError
from ovl.tools.server.bake import pending_deltas
from ovl.tools.server.signing import signed_by
from ovl.tools.server.store import Store
from ovl.trust.minisign import parse_public_key

_VERSIONS_SHOWN = 20


@dataclass(frozen=True)
class MachineStatus:
    id: str
    profile: str
    mac: str
    key_id: str  # the node's minisign key, which signs its deltas
    deltas: int  # accepted
    pending: int  # accepted, not yet baked into a version
    last_delta: str | None  # when the newest accepted delta was received (UTC)

    def to_json(self) -> dict[str, object]:
        return {
            "machine": self.id,
            "profile": self.profile,
            "mac": self.mac,
            "key_id": self.key_id,
            "deltas": self.deltas,
            "pending": self.pending,
            "last_delta": self.last_delta,
        }


def _utc(ns: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


def machine_statuses(store: Store, profile: str | None = None) -> list[MachineStatus]:
    """Every registered machine (of `profile`), by id."""
    machines = [m for m in store.machines() if profile is None or m.profile == profile]
    pending: dict[str, int] = {}
    for name in {m.profile for m in machines}:
        for machine, deltas in pending_deltas(store, name).items():
            pending[machine.id] = len(deltas)
    found = []
    for machine in machines:
        deltas = store.deltas(machine.id)
        key = parse_public_key(machine.public_key, f"machine {machine.id} key")
        newest = max((d.received_ns for d in deltas), default=None)
        found.append(
            MachineStatus(
                machine.id,
                machine.profile,
                machine.mac,
                key.id_hex,
                len(deltas),
                pending.get(machine.id, 0),
                None if newest is None else _utc(newest),
            )
        )
    return found


def _table(headings: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headings)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell)}</td>" for cell in row) + "</tr>" for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_page(store: Store) -> str:
    """The status page's HTML."""
    parts = [f"<h1>ovl server {html.escape(str(store.root))}</h1>"]
    for profile in store.profiles():
        versions = store.versions(profile)
        if not versions:
            continue
        current = store.current(profile)
        rows = []
        for version in reversed(versions[-_VERSIONS_SHOWN:]):
            signer = signed_by(version)
            marker = "current" if current is not None and version.number == current.number else ""
            rows.append(
                [
                    str(version.number),
                    marker,
                    str(version.meta.get("serial", "")),
                    str(version.meta.get("published", "")),
                    str(version.meta.get("action", "")),
                    "unsigned" if signer is None else str(signer),
                ]
            )
        heading = ["version", "", "serial", "published", "action", "signed by"]
        parts.append(f"<h2>profile {html.escape(profile)}</h2>{_table(heading, rows)}")
    machines = [
        [m.id, m.profile, m.mac, m.key_id, str(m.deltas), str(m.pending), m.last_delta or "never"]
        for m in machine_statuses(store)
    ]
    heading = ["machine", "profile", "mac", "node key", "deltas", "pending", "last delta"]
    parts.append(f"<h2>machines</h2>{_table(heading, machines)}")
    style = "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 6px}"
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>ovl server</title>'
        f"<style>{style}</style></head><body>{''.join(parts)}</body></html>\n"
    )


def respond(
    store: Store, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    """The status page for GET and HEAD (405 for anything else)."""
    method = environ["REQUEST_METHOD"]
    if method not in ("GET", "HEAD"):
        body = b"the status page is read-only\n"
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain")])
        return [body]
    try:
        body = render_page(store).encode()
        status = "200 OK"
        kind = "text/html; charset=utf-8"
    except OvlError as exc:  # a damaged record: say which, keep serving bundles
        body, status, kind = (exc.line + "\n").encode(), "500 Internal Server Error", "text/plain"
    headers = [
        ("Content-Type", kind),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-cache"),
    ]
    start_response(status, headers)
    return [] if method == "HEAD" else [body]
