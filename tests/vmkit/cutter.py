"""A TCP relay on 127.0.0.1 in front of a server that cuts the first responses to one path after
a number of bytes: the connection that drops half way through a download, on demand."""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.vmkit.closing import ClosedOnExit


class CuttingRelay(ClosedOnExit):
    """Relays 127.0.0.1:`port` to 127.0.0.1:`upstream`; the first `times` responses to a GET
    of `path` are cut (both sides closed) after `after` bytes of the response."""

    def __init__(self, upstream: int, *, path: str, after: int, times: int = 1) -> None:
        self.upstream = upstream
        self.request_line = f"GET {path} ".encode()
        self.after = after
        self.left = times
        self.cut = 0  # responses cut so far
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept, name="cutter", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        with client, socket.create_connection(("127.0.0.1", self.upstream)) as server:
            first = client.recv(65536)
            limit = None
            if first.startswith(self.request_line):
                with self._lock:
                    if self.left > 0:
                        self.left -= 1
                        limit = self.after
            server.sendall(first)
            upstream = threading.Thread(target=_pipe, args=(client, server, None), daemon=True)
            upstream.start()
            if _pipe(server, client, limit):
                with self._lock:
                    self.cut += 1
            for sock in (client, server):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            upstream.join(timeout=5)

    def close(self) -> None:
        self._listener.close()


def _pipe(source: socket.socket, sink: socket.socket, limit: int | None) -> bool:
    """Copy until EOF; with `limit`, stop after that many bytes. Whether it cut."""
    sent = 0
    try:
        while True:
            data = source.recv(65536)
            if not data:
                return False
            if limit is not None and sent + len(data) >= limit:
                sink.sendall(data[: limit - sent])
                return True
            sink.sendall(data)
            sent += len(data)
    except OSError:
        return False
