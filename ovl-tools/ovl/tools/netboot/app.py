"""`GET|HEAD /boot.ipxe`: the WSGI side of netboot, mounted by the server's app."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ovl.tools.netboot.answer import answer

PATH = "/boot.ipxe"
_HOST = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
log = logging.getLogger("ovl.netboot")


def host_url(environ: dict[str, Any]) -> str:
    """How the request reached the server: `http://<Host header>`, or its socket address."""
    host = environ.get("HTTP_HOST", "")
    if not _HOST.match(host):
        host = f"{environ.get('SERVER_NAME', 'localhost')}:{environ.get('SERVER_PORT', '80')}"
    return f"http://{host}"


def serve_script(
    root: Path, environ: dict[str, Any], start_response: Callable[..., Any]
) -> Iterable[bytes]:
    """The iPXE script for the requesting machine; a fallback is logged with its reason."""
    if environ["REQUEST_METHOD"] not in ("GET", "HEAD"):
        body = b"boot scripts are GET only\n"
        start_response("405 Method Not Allowed", [("Content-Type", "text/plain"),
                                                  ("Content-Length", str(len(body)))])  # fmt: skip
        return [body]
    result = answer(root, environ.get("QUERY_STRING", ""), host_url(environ))
    if result.note:
        log.warning("netboot: %s", result.note)
    body = result.script.encode()
    start_response("200 OK", [
        ("Content-Type", "text/plain; charset=utf-8"),
        ("Content-Length", str(len(body))),
        ("Cache-Control", "no-store"),
    ])  # fmt: skip
    return [] if environ["REQUEST_METHOD"] == "HEAD" else [body]
