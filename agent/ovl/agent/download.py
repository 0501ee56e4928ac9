"""Downloads over http(s), for bundles and root images alike: a file and its `.minisig`, with
timeouts, bounded retries, a proxy and a size cap."""

from __future__ import annotations

import hashlib
import ipaddress
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ovl.agent.context import BootContext
from ovl.agent.fetched import Copied, Fetched, partial_path, signature_path
from ovl.core.errors import OvlError

if TYPE_CHECKING:
    import requests

ATTEMPTS = 3
BACKOFF_SECONDS = 0.25
CONNECT_TIMEOUT = 5.0
CHUNK = 256 * 1024


class _Final(OvlError):
    """A failure that another attempt cannot fix (404, over the size cap)."""


def fetch_url(url: str, dest: Path, ctx: BootContext) -> Fetched:
    """`url` into `dest` and, when the server has it, `url.minisig` into `dest.minisig`."""
    return _Download(url).fetch(dest, ctx)


@dataclass(frozen=True)
class _Download:
    url: str

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        deadline = time.monotonic() + ctx.timeout
        if not _is_loopback(self.url):
            wait_for_network(ctx.sysfs_root, deadline)
        import requests  # costly; only boots that use the network pay for it

        with requests.Session() as session:
            session.trust_env = False  # the command line, not the environment, names a proxy
            # The initramfs may carry the distribution's CA bundle (the /init shim exports it);
            # otherwise requests' own (certifi) is used.
            session.verify = os.environ.get("SSL_CERT_FILE") or True
            if ctx.proxy:
                session.proxies = {"http": ctx.proxy, "https": ctx.proxy}
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return self._attempt(session, dest, ctx, deadline)
                except _Final:
                    raise
                except OvlError as exc:
                    pause = BACKOFF_SECONDS * 2 ** (attempt - 1)
                    if attempt == ATTEMPTS or time.monotonic() + pause >= deadline:
                        raise
                    ctx.console.line(
                        "fetch", f"{self.url} attempt {attempt} failed: {exc}; retry in {pause} s"
                    )
                    time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(
        self, session: requests.Session, dest: Path, ctx: BootContext, deadline: float
    ) -> Fetched:
        body = download(session, self.url, partial_path(dest), ctx, deadline, optional=False)
        assert body is not None
        signature = signature_path(dest)
        sig = download(
            session, self.url + ".minisig", partial_path(signature), ctx, deadline, optional=True
        )
        os.replace(partial_path(dest), dest)
        if sig is None:
            signature.unlink(missing_ok=True)
            return Fetched(dest, None, body.size, body.sha256)
        os.replace(partial_path(signature), signature)
        return Fetched(dest, signature, body.size, body.sha256)


def download(
    session: requests.Session,
    url: str,
    dest: Path,
    ctx: BootContext,
    deadline: float,
    *,
    optional: bool,
) -> Copied | None:
    """GET `url` into `dest`; None when `optional` and the server says 404."""
    import requests

    remaining = max(0.1, deadline - time.monotonic())
    try:
        with session.get(
            url, stream=True, timeout=(min(CONNECT_TIMEOUT, remaining), remaining)
        ) as response:
            if response.status_code == 404 and optional:
                return None
            if 400 <= response.status_code < 500:
                raise _Final(f"HTTP {response.status_code}")
            if response.status_code != 200:
                raise OvlError(f"HTTP {response.status_code}")
            expected = response.headers.get("Content-Length")
            total = int(expected) if expected and expected.isdigit() else None
            if total is not None and total > ctx.size_cap:
                raise _Final(f"{total} bytes is over the {ctx.size_cap} byte cap")
            got = _stream(response, dest, ctx, url, total, deadline)
    except requests.RequestException as exc:
        dest.unlink(missing_ok=True)
        # An untrusted certificate stays untrusted: no point in trying again.
        final = isinstance(exc, requests.exceptions.SSLError)
        raise (_Final if final else OvlError)(_reason(exc)) from None
    except OvlError:
        dest.unlink(missing_ok=True)
        raise
    except OSError as exc:  # the local side: a full /run, say
        dest.unlink(missing_ok=True)
        raise _Final(f"writing {dest.name}: {exc.strerror or exc}") from None
    if total is not None and got.size != total:
        dest.unlink(missing_ok=True)
        raise OvlError(f"truncated: got {got.size} of {total} bytes")
    return got


def _stream(
    response: requests.Response,
    dest: Path,
    ctx: BootContext,
    url: str,
    total: int | None,
    deadline: float,
) -> Copied:
    got, digest = 0, hashlib.sha256()
    shown = time.monotonic()
    with open(dest, "wb") as out:
        for chunk in response.iter_content(CHUNK):
            got += len(chunk)
            if got > ctx.size_cap:
                raise _Final(f"over the {ctx.size_cap} byte cap")
            digest.update(chunk)
            out.write(chunk)
            now = time.monotonic()
            if now > deadline:
                raise OvlError(f"not finished within {ctx.timeout:g} s")
            if now - shown >= 1.0:
                shown = now
                of = f" of {total / 1e6:.1f}" if total else ""
                ctx.console.line("fetch", f"{url} {got / 1e6:.1f}{of} MB")
    return Copied(got, digest.hexdigest())


def _reason(exc: Exception) -> str:
    import requests

    if isinstance(exc, requests.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "read timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "truncated: connection closed mid-transfer"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate not trusted?)"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy refused or unreachable"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def _is_loopback(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def wait_for_network(sysfs_root: Path, deadline: float) -> None:
    """Wait until some interface other than lo is up (the /init shim brings it up)."""
    net = sysfs_root / "class" / "net"
    while True:
        for nic in net.glob("*"):
            if nic.name == "lo":
                continue
            try:
                if (nic / "operstate").read_text().strip() in ("up", "unknown"):
                    return
            except OSError:
                continue
        if time.monotonic() >= deadline:
            raise OvlError("no network interface came up")
        time.sleep(0.1)
