"""Debian's nginx serving one directory on 127.0.0.1, as a real peer for downloads: strong ETags,
Range and If-Range as nginx does them, every request in an access log the test can read."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.core.run import start
from tests.vmkit.closing import ClosedOnExit

LOG_FORMAT = '$request "$http_range" "$http_if_range" $status $body_bytes_sent'


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class NginxStatic(ClosedOnExit):
    """nginx (foreground, its own prefix in `workdir`) serving `directory`; stopped on exit."""

    def __init__(self, directory: Path, workdir: Path) -> None:
        self.port = _free_port()
        self.prefix = workdir
        self.prefix.mkdir(parents=True, exist_ok=True)
        self.access_log = self.prefix / "access.log"
        temps = "".join(
            f"    {kind}_temp_path {self.prefix}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (self.prefix / "nginx.conf").write_text(
            f"user root;\nworker_processes 1;\npid {self.prefix}/nginx.pid;\n"
            f"error_log {self.prefix}/error.log;\nevents {{ worker_connections 64; }}\n"
            f"http {{\n{temps}    log_format ovl '{LOG_FORMAT}';\n"
            f"    access_log {self.access_log} ovl;\n"
            f"    server {{ listen 127.0.0.1:{self.port}; root {directory}; }}\n}}\n"
        )
        self._process = start(
            ["nginx", "-p", self.prefix, "-c", self.prefix / "nginx.conf", "-g", "daemon off;"],
            output=self.prefix / "stderr.log",
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                break
            except OSError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise OvlError(f"nginx did not start: {self.prefix / 'error.log'}") from None
                time.sleep(0.05)

    def requests(self) -> list[str]:
        """Access log lines: `GET /path HTTP/1.1 "<Range>" "<If-Range>" status bytes`."""
        try:
            return self.access_log.read_text().splitlines()
        except FileNotFoundError:
            return []

    def close(self) -> None:
        if self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
