"""The HTTP client side shared by every download: a session (proxy from the command line, CA
bundle from the shim), per-request timeouts, and requests' errors as one-line reasons."""

from __future__ import annotations

import contextlib
import ipaddress
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ovl.agent.deadline import Deadline
from ovl.agent.download.retry import Final, Transient

if TYPE_CHECKING:
    import requests

CONNECT_TIMEOUT = 5.0  # seconds to establish a connection
READ_TIMEOUT = 10.0  # seconds for the response headers, and then for each chunk of the body


def open_session(proxy: str | None) -> requests.Session:
    """A session that reads nothing from the environment but the CA bundle the shim names."""
    import requests  # costly; only boots that use the network pay for it

    session = requests.Session()
    session.trust_env = False  # the command line, not the environment, names a proxy
    # The initramfs may carry the distribution's CA bundle (the /init shim exports it);
    # otherwise requests' own (certifi) is used.
    session.verify = os.environ.get("SSL_CERT_FILE") or True
    if proxy:
        session.proxies = {"http": proxy, "https": proxy}
    return session


def request_timeouts(deadline: Deadline) -> tuple[float, float]:
    """(connect, read) for one request: the fixed limits, at most a third of the window, so a
    stall is noticed with time left to resume. Not cut to what the window has left: the
    deadline decides whether an attempt starts, and one that starts gets a fair hearing (the
    last one, on the deadline, would otherwise time out at once and hide the real reason)."""
    limit = max(0.1, deadline.window / 3)
    return min(CONNECT_TIMEOUT, limit), min(READ_TIMEOUT, limit)


@contextlib.contextmanager
def http_errors() -> Iterator[None]:
    """requests' exceptions inside the block become Transient or Final with one-line reasons."""
    import requests

    try:
        yield
    except requests.RequestException as exc:
        # An untrusted certificate stays untrusted: no point in trying again.
        if isinstance(exc, requests.exceptions.SSLError):
            raise Final(_reason(exc)) from None
        raise Transient(_reason(exc)) from None


def _reason(exc: Exception) -> str:
    import requests
    from urllib3.exceptions import ReadTimeoutError

    if isinstance(exc, requests.ConnectTimeout):
        return "connect timed out"
    if isinstance(exc, requests.ReadTimeout):
        return "read timed out"
    if (
        isinstance(exc, requests.ConnectionError)
        and exc.args
        and isinstance(exc.args[0], ReadTimeoutError)
    ):  # a stall in the body: requests reports it as a connection error
        return "read timed out"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "truncated: connection closed"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate not trusted?)"
    if isinstance(exc, requests.exceptions.ProxyError):
        return "proxy refused or unreachable"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    return type(exc).__name__


def is_loopback(url: str) -> bool:
    """Whether `url` names this machine (no network needed to reach it)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
