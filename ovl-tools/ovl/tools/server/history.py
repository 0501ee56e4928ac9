"""Every published version is kept: list them, roll back to one, cherry-pick a delta.

A rollback republishes an old version's content under a new version number and serial, so
machines that refuse replayed (lower) serials still take it. A cherry-pick merges one
accepted delta into the base layer of another profile's current version.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.tools.server.bake import Signer, current_or_fail, publish_bundle, scratch
from ovl.tools.server.layers import BASE, merge_layers, read_bundle, read_layer
from ovl.tools.server.store import Store, Version


def import_bundle(store: Store, profile: str, bundle: Path, signature: Path | None) -> Version:
    """Start (or replace) a profile's content with an admin-made bundle, kept byte for byte."""
    with store.profile_lock(profile):
        with scratch(store) as work:
            serial = int(read_bundle(work.open(bundle), str(bundle)).manifest.get("serial", 0))
        current = store.current(profile)
        if current is not None and serial <= int(current.meta.get("serial", 0)):
            raise BadInput(
                f"{bundle}: serial {serial} is not above the current {current.meta['serial']}; "
                "machines would refuse it as a replay"
            )
        number = store.next_version(profile)
        staged = store.temp_dir()
        try:
            shutil.copyfile(bundle, staged / "bundle.ovl")
            if signature is not None:
                shutil.copyfile(signature, staged / "bundle.ovl.minisig")
            meta = {"action": "import", "source": str(bundle), "serial": serial, "deltas": []}
            return store.publish(profile, number, staged, meta)
        except OSError as exc:
            raise store.os_error(exc, f"profile {profile}: importing {bundle}") from exc
        finally:
            shutil.rmtree(staged, ignore_errors=True)


def rollback(store: Store, profile: str, number: int, sign: Signer | None) -> Version:
    with store.profile_lock(profile):
        current = current_or_fail(store, profile)
        old = store.version(profile, number)
        if old.number == current.number:
            raise BadInput(f"profile {profile}: version {number} is already current")
        with scratch(store) as work:
            bundle = read_bundle(work.open(old.bundle), str(old.bundle))
            bundle.manifest["serial"] = max(
                int(bundle.manifest.get("serial", 0)), int(current.meta.get("serial", 0))
            )
            meta = {"action": "rollback", "parent": current.number, "of": old.number, "deltas": []}
            return publish_bundle(store, profile, bundle, meta, sign)


def cherry_pick(store: Store, ref: str, profile: str, sign: Signer | None) -> Version:
    delta = store.find_delta(ref)
    with store.profile_lock(profile):
        current = current_or_fail(store, profile)
        with scratch(store) as work:
            try:
                bundle = read_bundle(work.open(current.bundle), str(current.bundle))
                bundle.layers[BASE] = merge_layers(
                    bundle.layers.get(BASE, {}), read_layer(work.open(delta.path))
                )
            except OSError as exc:
                raise OvlError(f"cherry-pick {ref}: {exc.strerror or exc}") from exc
            meta = {
                "action": "cherry-pick",
                "parent": current.number,
                "cherry_picked": delta.ref,
                "deltas": [],
            }
            return publish_bundle(store, profile, bundle, meta, sign)


def describe(version: Version, current: Version | None) -> str:
    """One history line: number, serial, when, what."""
    meta = version.meta
    marker = "*" if current is not None and current.number == version.number else " "
    action = str(meta.get("action", "?"))
    detail = {
        "bake": f"{len(meta.get('deltas', []))} delta(s)",
        "rollback": f"content of version {meta.get('of')}",
        "cherry-pick": str(meta.get("cherry_picked", "")),
        "import": str(meta.get("source", "")),
    }.get(action, "")
    return (
        f"{marker} {version.number:>4}  serial {meta.get('serial', '-')!s:>4}  "
        f"{meta.get('published', '')}  {action} {detail}"
    )
