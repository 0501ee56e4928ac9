"""Real things the boot tests need: bundles made by GNU tar + zstd, squashfs and filesystem
images, a fake sysfs, and an HTTP server (plus a forwarding proxy) on 127.0.0.1 in a thread."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import threading
import time
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
    body: bytes = b""
    status: int = 200
    delay: float = 0.0  # seconds before the body
    truncate_to: int | None = None  # send only this many bytes, then close
    length: int | None = None  # Content-Length to announce (default: the body's)
    fail_first: int = 0  # answer 500 to this many requests first


@dataclass
class RequestLog:
    seen: list[tuple[str, dict[str, str]]] = field(default_factory=list)  # (path, headers)


class LoopbackServer:
    """Serves `routes` (path → Route) on 127.0.0.1; unknown paths are 404."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.log = RequestLog()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                server.log.seen.append((self.path, dict(self.headers)))
                route = server.routes.get(self.path)
                if route is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                time.sleep(route.delay)
                if route.fail_first > 0:
                    route.fail_first -= 1
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(route.status)
                length = route.length if route.length is not None else len(route.body)
                self.send_header("Content-Length", str(length))
                if route.truncate_to is not None:
                    self.send_header("Connection", "close")
                self.end_headers()
                body = (
                    route.body[: route.truncate_to] if route.truncate_to is not None else route.body
                )
                try:
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    return
                if route.truncate_to is not None or length != len(route.body):
                    self.close_connection = True

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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
