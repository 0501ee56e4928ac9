"""A static HTTP server on 127.0.0.1 for VM boots: serves one directory, remembers requests."""

from __future__ import annotations

import functools
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.vmkit.closing import ClosedOnExit


class _QuietHandler(SimpleHTTPRequestHandler):
    server: _RecordingServer

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = int(code) if isinstance(code, int) else code
        self.server.requests.append(f"{self.command} {self.path} {status}")

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet: the test or demo reports what matters."""


class _RecordingServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, directory: Path, port: int) -> None:
        handler = functools.partial(_QuietHandler, directory=str(directory))
        super().__init__(("127.0.0.1", port), handler)
        self.requests: list[str] = []


class StaticServer(ClosedOnExit):
    """Serve `directory` on 127.0.0.1 at `port` (default a free one) until closed (use as a
    context manager)."""

    def __init__(self, directory: Path, port: int = 0) -> None:
        self._server = _RecordingServer(directory, port)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ovl-http", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def requests(self) -> list[str]:
        """Requests served so far, as `GET /path STATUS` lines."""
        return list(self._server.requests)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()
