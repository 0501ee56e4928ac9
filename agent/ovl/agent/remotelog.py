"""`ovl.log=udp://HOST[:PORT]`: every console line of the boot, and the final report, as RFC 5424
syslog messages over UDP (RFC 5426), so a central log shows how each machine booted.

Lines are held until the network is up, then sent in order: the /init shim's lines first (from
/run/ovl/init.log), then the agent's. Datagrams stay within MAX_DATAGRAM bytes (a message is
cut on a UTF-8 boundary; the report drops whole parts, named in its "omitted" list).
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ovl.agent.console import Console, Level
from ovl.agent.deadline import Deadline
from ovl.core.errors import BadInput, OvlError

if TYPE_CHECKING:
    import socket

    from ovl.agent.context import Network

DEFAULT_PORT = 514
FACILITY = 3  # daemon
# RFC 5426 3.2: receivers must take 480 octets and should take 2048; 1180 fits any IPv6 path.
MAX_DATAGRAM = 1180
HELD_LINES = 1000  # lines kept while the network is down; the oldest go first
SANE_CLOCK = 1_704_067_200  # 2024-01-01T00:00:00Z: before this the RTC is not set
# Parts of report.json a datagram leaves out first when the whole report does not fit.
REPORT_DROP_ORDER = ("facts", "timings_ms", "channels", "root", "recoverable_errors", "layers")


class Severity(enum.IntEnum):
    ERR = 3
    WARNING = 4
    INFO = 6


@dataclass(frozen=True)
class LogTarget:
    host: str
    port: int = DEFAULT_PORT

    @classmethod
    def parse(cls, value: str) -> LogTarget:
        """`udp://HOST[:PORT]`, HOST an address ([v6] in brackets) or a name."""
        if not value.startswith("udp://"):
            raise BadInput("expected udp://HOST[:PORT]")
        parts = urlsplit(value)
        try:
            port = parts.port
        except ValueError:
            raise BadInput("port: expected 1 to 65535") from None
        if not parts.hostname or parts.path not in ("", "/") or parts.query or parts.username:
            raise BadInput("expected udp://HOST[:PORT]")
        return cls(parts.hostname, port or DEFAULT_PORT)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"udp://{host}:{self.port}"


def _header_field(value: str | None, limit: int) -> str:
    """A header field: printable US-ASCII without spaces, at most `limit` octets; '-' if none."""
    if not value:
        return "-"
    clean = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)
    return clean[:limit]


def timestamp(epoch: float) -> str:
    """RFC 5424 TIMESTAMP in UTC with microseconds, or '-' while the clock is clearly unset."""
    from datetime import UTC, datetime  # only boots with ovl.log= pay for it

    if epoch < SANE_CLOCK:
        return "-"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_message(
    text: str,
    *,
    severity: Severity,
    app: str,
    procid: str | None,
    msgid: str | None,
    hostname: str | None,
    epoch: float,
    limit: int = MAX_DATAGRAM,
) -> bytes:
    """One RFC 5424 message (no structured data), cut to `limit` octets on a UTF-8 boundary."""
    header = (
        f"<{FACILITY * 8 + severity}>1 {timestamp(epoch)} {_header_field(hostname, 255)}"
        f" {_header_field(app, 48)} {_header_field(procid, 128)} {_header_field(msgid, 32)} - "
    ).encode("ascii")
    body = text.encode("utf-8", errors="replace")[: max(0, limit - len(header))]
    return header + body.decode("utf-8", errors="ignore").encode("utf-8")


def fit_report(report: dict[str, Any], room: int) -> str:
    """`report` as compact JSON of at most `room` bytes: whole parts are left out (listed in
    "omitted") in REPORT_DROP_ORDER until it fits; the errors are kept to the last."""
    doc = dict(report)
    omitted: list[str] = []
    for key in ("", *REPORT_DROP_ORDER):
        if key and key in doc:
            del doc[key]
            omitted.append(key)
            doc["omitted"] = omitted
        text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
        if len(text.encode()) <= room:
            return text
    errors = [str(e)[:200] for e in report.get("errors", [])][:2]
    return json.dumps({"version": report.get("version"), "errors": errors, "omitted": "most"})


@dataclass(frozen=True)
class _Held:
    text: str
    app: str
    procid: str
    msgid: str | None
    severity: Severity
    epoch: float


def start_remote_log(
    target: LogTarget, network: Network, console: Console, init_log: Path
) -> RemoteLog:
    """A RemoteLog holding the shim's lines so far and the console's, and receiving every
    later console line."""
    remote = RemoteLog(target, network, lambda text: console.line("log", text, Level.WARNING))
    remote.replay_init_log(init_log)
    for text in console.lines:  # the agent's lines before this (the network's first)
        remote.line(text, text.split(": ", 2)[1], Severity.INFO)
    console.forward(remote.forward)
    remote.flush()
    return remote


_SEVERITY = {Level.INFO: Severity.INFO, Level.WARNING: Severity.WARNING, Level.ERROR: Severity.ERR}


class RemoteLog:
    """Sends console lines to `target` once the network is up; holds them until then.

    Never raises: a log host that cannot be reached costs the boot one console line (`warn`).
    """

    def __init__(self, target: LogTarget, network: Network, warn: Callable[[str], None]) -> None:
        self.target = target
        self._network = network
        self._warn = warn
        self._held: deque[_Held] = deque(maxlen=HELD_LINES)
        self._socket: socket.socket | None = None
        self._hostname: str | None = None
        self._failed = False
        self.sent = 0

    def replay_init_log(self, path: Path) -> None:
        """Hold the /init shim's lines written so far (`EPOCH ovl-init: ...` per line)."""
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return
        for line in lines:
            epoch, _, text = line.partition(" ")
            when = float(epoch) if epoch.isdigit() else 0.0
            severity = Severity.ERR if "emergency" in text else Severity.INFO
            self._held.append(_Held(text, "ovl-init", "1", None, severity, when))

    def forward(self, text: str, phase: str, level: Level) -> None:
        """A console.Forwarder: the agent's `ovl: <phase>: ...` line."""
        self.line(text, phase, _SEVERITY[level])

    def line(self, text: str, msgid: str, severity: Severity) -> None:
        """A console line of the agent's: sent now if the network is up, else held."""
        self._held.append(_Held(text, "ovl", str(os.getpid()), msgid, severity, time.time()))
        self.flush()

    def flush(self) -> None:
        if self._failed or not self._held or not self._network.up():
            return
        sock = self._open()
        while sock is not None and self._held:
            held = self._held.popleft()
            self._send(sock, held)

    def send_report(self, report: dict[str, Any], severity: Severity) -> None:
        """The final report as one JSON message (MSGID `report`), after every held line."""
        self.flush()
        sock = self._open() if self._network.up() and not self._failed else None
        if sock is None:
            if self._held and not self._failed:
                self._warn(f"{self.target}: network not up; {len(self._held)} lines not sent")
            return
        probe = format_message(
            "",
            severity=severity,
            app="ovl",
            procid=str(os.getpid()),
            msgid="report",
            hostname=self._hostname,
            epoch=time.time(),
        )
        text = fit_report(report, MAX_DATAGRAM - len(probe))
        self._send(sock, _Held(text, "ovl", str(os.getpid()), "report", severity, time.time()))

    def finish(self, report: dict[str, Any], *, failed: bool, window: float) -> None:
        """The end of the boot: wait (within `window`, and the bring-up's own) for a network to
        send what is held, then the report; close the socket."""
        if self._held and not self._failed and not self._network.up():
            with contextlib.suppress(OvlError):  # send_report says what was not sent
                self._network.wait(Deadline(window))
        self.send_report(report, Severity.ERR if failed else Severity.INFO)
        self.close()

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def _open(self) -> socket.socket | None:
        import socket

        if self._socket is not None or self._failed:
            return self._socket
        try:
            family, kind, proto, _, address = socket.getaddrinfo(
                self.target.host, self.target.port, type=socket.SOCK_DGRAM
            )[0]
            sock = socket.socket(family, kind, proto)
            sock.connect(address)  # picks the route and source address; nothing is sent
        except OSError as exc:
            self._failed = True
            self._warn(f"{self.target}: {exc.strerror or exc}; boot lines are not sent")
            return None
        self._socket = sock
        self._hostname = _hostname(sock)
        return sock

    def _send(self, sock: socket.socket, held: _Held) -> None:
        datagram = format_message(
            held.text,
            severity=held.severity,
            app=held.app,
            procid=held.procid,
            msgid=held.msgid,
            hostname=self._hostname,
            epoch=held.epoch,
        )
        try:
            sock.send(datagram)
            self.sent += 1
        except OSError:
            pass  # UDP: a lost datagram is lost; the console still has the line


def _hostname(sock: socket.socket) -> str | None:
    """The machine's name if it has one (ip= hostname), else the address it sends from."""
    import socket

    name = socket.gethostname()
    if name and name not in ("(none)", "localhost", "localhost.localdomain"):
        return name
    address: str = sock.getsockname()[0]
    return address
