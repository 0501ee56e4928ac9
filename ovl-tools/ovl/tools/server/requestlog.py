"""WSGI middleware: one log line per request, for `ovl server serve`'s stderr (a journal).

    2026-12-03T08:03:11Z 10.0.2.15 GET /profiles/lab/current/bundle.ovl 200 machine=- bytes=48213
    2026-12-03T08:04:40Z 10.0.2.15 PUT /deltas/alpha/9f86...tar.zst 201 machine=alpha bytes=1024

`machine` is the machine a delta upload names (a download names none: `-`); `bytes` is the
response body as sent (the declared Content-Length; 0 for HEAD and 304) or, for an upload, the
body received. The line is written when the response starts, so that streamed bundles are not
wrapped (waitress sends them with its file wrapper).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, TextIO

from ovl.delta.protocol import DELTA_PATH

StartResponse = Callable[..., Any]
App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class RequestLog:
    """Wraps `app`; every request it answers is one line on `out`."""

    def __init__(self, app: App, out: TextIO | None = None) -> None:
        self._app = app
        self._out = out if out is not None else sys.stderr
        self._lock = threading.Lock()  # whole lines from many worker threads

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        def logged_start(status: str, headers: list[tuple[str, str]], *exc: Any) -> Any:
            self._log(environ, status, headers)
            return start_response(status, headers, *exc)

        return self._app(environ, logged_start)

    def _log(self, environ: dict[str, Any], status: str, headers: list[tuple[str, str]]) -> None:
        method = _printable(environ.get("REQUEST_METHOD", "-"))
        path = environ.get("PATH_INFO", "") or "/"
        code = status.split(" ", 1)[0]
        delta = DELTA_PATH.match(path)
        machine = _printable(delta["machine"]) if delta else "-"
        if method == "PUT":
            size = environ.get("CONTENT_LENGTH") or "0"
        elif method == "HEAD" or code == "304":
            size = "0"
        else:
            size = next((v for k, v in headers if k.lower() == "content-length"), "-")
        when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        client = environ.get("REMOTE_ADDR", "-")
        line = f"{when} {client} {method} {_printable(path)} {code} machine={machine}"
        line += f" bytes={size}\n"
        with self._lock:
            self._out.write(line)
            self._out.flush()


def _printable(text: str) -> str:
    """`text` with spaces and control characters percent-encoded: a client's path (decoded,
    so it may hold a newline) cannot forge or split a log line."""
    return "".join(c if c.isprintable() and c != " " else f"%{ord(c):02X}" for c in text)
