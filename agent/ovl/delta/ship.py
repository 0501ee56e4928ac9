"""Upload spooled deltas to the server with HTTP PUT (ovl.delta.protocol), retrying with
backoff. 201 stored, 200 the server had it already (uploads are idempotent by content hash).
Any other 4xx is a refusal that retrying cannot fix; 5xx and network errors are retried with
exponential backoff.
"""

from __future__ import annotations

import base64
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO
from urllib.parse import urlsplit

from ovl.core.errors import OvlError
from ovl.delta.protocol import SIGNATURE_HEADER, delta_path, trusted_comment
from ovl.delta.spool import Spool, SpooledDelta

if TYPE_CHECKING:
    import requests

_PROGRESS_FROM = 8 << 20
Signer = Callable[[Path, str], str]  # (file, trusted comment) -> minisign signature text


def node_signer(secret_key: Path) -> Signer:
    """Sign with the node's minisign secret key (read once, here, so a bad key fails early)."""
    from ovl.trust.signing import load_secret_key, sign_file

    key = load_secret_key(secret_key)
    untrusted = f"ovl delta signed by node key {key.public_key.id_hex}"

    def sign(path: Path, comment: str) -> str:
        return sign_file(key, path, comment, untrusted).to_text()

    return sign


@dataclass(frozen=True)
class Backoff:
    first: float = 1.0
    factor: float = 2.0
    cap: float = 300.0
    tries: int = 8

    def delay(self, attempt: int) -> float:
        """Full jitter, so a fleet rebooted together does not retry in lockstep."""
        return random.uniform(0, min(self.cap, self.first * self.factor**attempt))


class Refused(OvlError):
    """The server said no for a reason retrying cannot fix (unknown machine, bad signature)."""


class _Retryable(Exception):
    pass


@dataclass(frozen=True)
class Shipper:
    server: str
    machine_id: str
    sign: Signer
    timeout: float = 60.0
    backoff: Backoff = Backoff()
    sleep: Callable[[float], None] = time.sleep

    def url(self, delta: SpooledDelta) -> str:
        return self.server.rstrip("/") + delta_path(self.machine_id, delta.sha256)

    def ship_all(self, spool: Spool) -> int:
        """Ship every pending delta, oldest first; returns how many the server acknowledged."""
        import requests

        done = 0
        with requests.Session() as session:
            for delta in spool.pending():
                self._ship_with_retries(session, delta)
                spool.shipped(delta)
                done += 1
        return done

    def _ship_with_retries(self, session: requests.Session, delta: SpooledDelta) -> None:
        comment = trusted_comment(self.machine_id, delta.sha256, delta.created_ns)
        signature = base64.b64encode(self.sign(delta.path, comment).encode()).decode()
        for attempt in range(self.backoff.tries):
            try:
                self._put(session, delta, signature)
                return
            except _Retryable as exc:
                if attempt + 1 == self.backoff.tries:
                    raise OvlError(
                        f"delta {delta.sha256[:12]}: not shipped after "
                        f"{self.backoff.tries} tries ({exc}); it stays spooled"
                    ) from None
                wait = self.backoff.delay(attempt)
                print(
                    f"ovl-agent: delta upload failed ({exc}); retry in {wait:.1f} s",
                    file=sys.stderr,
                )
                self.sleep(wait)

    def _put(self, session: requests.Session, delta: SpooledDelta, signature: str) -> None:
        import requests

        headers = {
            SIGNATURE_HEADER: signature,
            "Content-Type": "application/zstd",
        }
        try:
            with delta.path.open("rb") as body:
                data = _Progress(body, delta.size, delta.sha256[:12])
                response = session.put(
                    self.url(delta), data=data, headers=headers, timeout=self.timeout
                )
        except requests.RequestException as exc:
            raise _Retryable(_network_problem(exc, self.server)) from exc
        if response.status_code in (200, 201, 204):
            return
        reason = response.text.strip().splitlines()[0] if response.text.strip() else ""
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise _Retryable(f"HTTP {response.status_code} {reason}".strip())
        raise Refused(
            f"delta {delta.sha256[:12]}: server refused: HTTP {response.status_code} {reason}"
        )


class _Progress:
    """The upload body; on a terminal, large uploads show a percentage on stderr."""

    def __init__(self, body: BinaryIO, size: int, label: str) -> None:
        self.body, self.len, self.label = body, size, label
        self.sent = 0
        self.shown = -1
        self.visible = size >= _PROGRESS_FROM and sys.stderr.isatty()

    def read(self, n: int = -1) -> bytes:
        data = self.body.read(n)
        self.sent += len(data)
        percent = self.sent * 100 // max(self.len, 1)
        if self.visible and percent != self.shown:
            self.shown = percent
            end = "\n" if self.sent >= self.len else ""
            print(
                f"\rovl-agent: uploading delta {self.label}: {percent}%", end=end, file=sys.stderr
            )
        return data


_ERRNO_TEXT = re.compile(r"\[Errno -?\d+\] ([^'\")\]]+)")


def _network_problem(exc: Exception, server: str) -> str:
    """One line for a failed request that names the server: `cannot connect to HOST:PORT
    (connection refused)`, `HOST:PORT: timed out`."""
    import requests

    where = urlsplit(server).netloc or server
    if isinstance(exc, requests.Timeout):
        return f"{where}: timed out"
    if isinstance(exc, requests.ConnectionError):
        found = _ERRNO_TEXT.search(str(exc))
        reason = found[1].strip().lower() if found else type(exc).__name__
        return f"cannot connect to {where} ({reason})"
    return f"{where}: {type(exc).__name__}"
