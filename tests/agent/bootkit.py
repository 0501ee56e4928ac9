"""Real things the boot tests need: bundles made by GNU tar + zstd, squashfs and filesystem
images, a fake sysfs, and an HTTP server (plus a forwarding proxy) on 127.0.0.1 in a thread."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

MAC = "52:54:00:12:34:56"


def write_tree(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def make_bundle(
    out: Path, base: dict[str, str], layers: dict[str, dict[str, str]], serial: int = 1
) -> Path:
    """A zstd bundle written by stock GNU tar: base files, then layers/<name>/ trees."""
    tree = out.parent / (out.name + ".tree")
    write_tree(tree, base)
    for layer, files in layers.items():
        write_tree(tree / "layers" / layer, files)
    (tree / "ovl.json").write_text(json.dumps({"name": "fleet", "serial": serial}))
    tops = sorted(p.name for p in tree.iterdir())
    tar = out.with_suffix(".tar")
    subprocess.run(
        [
            "tar",
            "-C",
            tree,
            "--format=pax",
            "--sort=name",
            "--numeric-owner",
            "--owner=0",
            "--group=0",
            "-cf",
            tar,
            *tops,
        ],
        check=True,
    )
    subprocess.run(["zstd", "-q", "-f", "--rm", tar, "-o", out], check=True)
    return out


def make_squashfs(out: Path, files: dict[str, str]) -> Path:
    tree = write_tree(out.parent / (out.name + ".tree"), files)
    subprocess.run(
        ["mksquashfs", tree, out, "-quiet", "-noappend", "-no-progress"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return out


def make_fs_image(path: Path, fstype: str, label: str, size_mb: int = 128) -> Path:
    """An empty ext4 or btrfs filesystem image (btrfs needs about 110 MB)."""
    with open(path, "wb") as image:
        image.truncate(size_mb * 1024 * 1024)
    if fstype == "btrfs":
        subprocess.run(["mkfs.btrfs", "-q", "-f", "-L", label, path], check=True)
    else:
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", label, path], check=True)
    return path


def fake_sysfs(root: Path, macs: tuple[str, ...] = (MAC,), product_uuid: str | None = None) -> Path:
    net = root / "class" / "net"
    write_tree(net / "lo", {"address": "00:00:00:00:00:00\n", "operstate": "unknown\n"})
    for index, mac in enumerate(macs):
        write_tree(net / f"eth{index}", {"address": mac + "\n", "operstate": "up\n"})
    if product_uuid:
        write_tree(root / "class" / "dmi" / "id", {"product_uuid": product_uuid + "\n"})
    return root


@dataclass
class Route:
    """What the server does for one path: a file, served as a real server would (ETag, Range,
    If-Range), and the ways it can misbehave."""

    body: bytes = b""
    status: int = 200
    delay: float = 0.0  # seconds before the headers
    truncate_to: int | None = None  # every response: only this many body bytes, then close
    length: int | None = None  # Content-Length to announce (default: the body's)
    fail_first: int = 0  # answer 500 to this many requests first
    retry_after: int | None = None  # with fail_first: a Retry-After header
    etag: str | None = '"v1"'
    ranges: bool = True  # honour Range
    if_range: bool = True  # ...and If-Range against the ETag (a broken server does not)
    drops: int = 0  # this many responses are cut after drop_after body bytes
    drop_after: int = 0
    stall_after: int | None = None  # once: pause `stall` seconds after this many body bytes
    stall: float = 0.0
    replaced_by: bytes | None = None  # after the first response the file is this, ETag "v2"
    wrong_content_range: bool = False  # a 206 starts one byte later than asked

    def current(self) -> tuple[bytes, str | None]:
        return self.body, self.etag

    def after_response(self) -> None:
        if self.replaced_by is not None:
            self.body, self.etag, self.replaced_by = self.replaced_by, '"v2"', None


@dataclass
class RequestLog:
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, headers)
    body_bytes: int = 0  # response body bytes written, all requests together


def _byte_range(header: str | None, size: int) -> tuple[int, int] | None:
    """`bytes=a-`, `bytes=a-b` or `bytes=-n` as (first, last) of a file of `size` bytes."""
    first, sep, last = (header or "").removeprefix("bytes=").partition("-")
    if not header or not header.startswith("bytes=") or not sep:
        return None
    if not first and last.isdigit():  # the last n bytes
        return max(0, size - int(last)), size - 1
    if not first.isdigit():
        return None
    return int(first), min(int(last), size - 1) if last.isdigit() else size - 1


class LoopbackServer:
    """Serves `routes` (path → Route) on 127.0.0.1 (on `port`, default any free one); unknown
    paths are 404."""

    def __init__(self, port: int = 0) -> None:
        self.routes: dict[str, Route] = {}
        self.log = RequestLog()
        # Called with the path after each response's headers: a test changes files here.
        self.on_response: Callable[[str], None] = lambda path: None
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.log.seen.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self._empty(404)
                    return
                time.sleep(route.delay)
                if route.fail_first > 0:
                    route.fail_first -= 1
                    extra = {"Retry-After": str(route.retry_after)} if route.retry_after else {}
                    self._empty(500, extra)
                    return
                if route.status != 200:
                    self._empty(route.status)
                    return
                self._serve(route)

            def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def _serve(self, route: Route) -> None:
                body, etag = route.current()
                asked = _byte_range(self.headers.get("Range"), len(body)) if route.ranges else None
                if_range = self.headers.get("If-Range") if route.if_range else None
                if asked is not None and if_range is not None and if_range != etag:
                    asked = None  # another version: the whole file (RFC 9110 13.1.5)
                if asked is not None and asked[0] >= len(body):
                    self._empty(416, {"Content-Range": f"bytes */{len(body)}"})
                    return
                start, last = asked or (0, len(body) - 1)
                payload = body[start : last + 1]
                self.send_response(206 if asked is not None else 200)
                length = route.length if route.length is not None else len(payload)
                self.send_header("Content-Length", str(length))
                if etag:
                    self.send_header("ETag", etag)
                if asked is not None:
                    first = start + 1 if route.wrong_content_range else start
                    self.send_header("Content-Range", f"bytes {first}-{last}/{len(body)}")
                cut = route.truncate_to
                if route.drops > 0:
                    route.drops -= 1
                    cut = route.drop_after
                if cut is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                route.after_response()
                server.on_response(self.path)
                if cut is not None:
                    payload = payload[:cut]
                short = cut is not None or length != len(payload)
                try:
                    if route.stall_after is not None:
                        stall_at, route.stall_after = route.stall_after, None  # once
                        self.wfile.write(payload[:stall_at])
                        self.wfile.flush()
                        server.log.body_bytes += len(payload[:stall_at])
                        time.sleep(route.stall)
                        payload = payload[stall_at:]
                    self.wfile.write(payload)
                    server.log.body_bytes += len(payload)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if short:
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def serve(self, path: str, body: bytes, **kw: Any) -> str:
        self.routes[path] = Route(body, **kw)
        return self.base + path

    def __enter__(self) -> LoopbackServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class ForwardingProxy:
    """A plain HTTP proxy on 127.0.0.1 that forwards absolute-URI GETs to 127.0.0.1 only."""

    def __init__(self) -> None:
        self.forwarded: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                url = urlsplit(self.path)
                if url.hostname != "127.0.0.1":
                    self.send_error(403)
                    return
                proxy.forwarded.append(self.path)
                conn = http.client.HTTPConnection("127.0.0.1", url.port, timeout=5)
                conn.request("GET", url.path)
                upstream = conn.getresponse()
                body = upstream.read()
                self.send_response(upstream.status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                conn.close()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> ForwardingProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def free_port() -> int:
    """A port on 127.0.0.1 with nothing listening (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
