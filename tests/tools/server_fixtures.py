"""Helpers for the server tests: stock-minisign keys, tiny bundles, a real `ovl server serve`."""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import requests
import zstandard

from ovl.delta.pack import write_delta
from ovl.delta.rules import Rules
from ovl.delta.ship import Signer
from ovl.delta.spool import Spool
from ovl.delta.upper import walk_upper
from ovl.tools.server.store import Store

OVL = [sys.executable, "-c", "import sys; from ovl.tools.cli import main; sys.exit(main())"]


def keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """A minisign key pair made by the stock tool (no password)."""
    directory.mkdir(parents=True, exist_ok=True)
    pub, sec = directory / f"{name}.pub", directory / f"{name}.key"
    subprocess.run(
        ["minisign", "-G", "-W", "-f", "-p", pub, "-s", sec], check=True, capture_output=True
    )
    return pub, sec


def stock_signer(secret: Path) -> Signer:
    """A Signer backed by the stock minisign CLI (an independent producer of signatures)."""

    def sign(path: Path, comment: str) -> str:
        sig = path.with_name(path.name + ".sig-tmp")
        subprocess.run(
            ["minisign", "-S", "-s", secret, "-m", path, "-t", comment, "-x", sig],
            check=True,
            capture_output=True,
        )
        text = sig.read_text()
        sig.unlink()
        return text

    return sign


def make_bundle(path: Path, files: dict[str, bytes], serial: int = 1, name: str = "fleet") -> Path:
    """A zstd-compressed pax tar bundle holding ovl.json and `files` (in the base)."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        entries = {"ovl.json": json.dumps({"name": name, "serial": serial}).encode(), **files}
        for member, data in entries.items():
            info = tarfile.TarInfo(member)
            info.size, info.mode, info.mtime = len(data), 0o644, 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor().compress(raw.getvalue()))
    return path


def read_bundle_files(path: Path) -> dict[str, bytes | str]:
    """Member name -> content (regular files) or a type tag, from a published bundle."""
    plain = (
        zstandard.ZstdDecompressor()
        .stream_reader(io.BytesIO(path.read_bytes()), read_across_frames=True)
        .read()
    )
    found: dict[str, bytes | str] = {}
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        for member in tar.getmembers():
            if member.isfile():
                handle = tar.extractfile(member)
                found[member.name] = handle.read() if handle else b""
            else:
                found[member.name] = "dir" if member.isdir() else "link:" + member.linkname
    return found


def spool_tree(spool: Spool, tree: dict[str, bytes], upper: Path) -> None:
    """Spool a delta of an upper dir holding `tree`."""
    for rel, data in tree.items():
        (upper / rel).parent.mkdir(parents=True, exist_ok=True)
        (upper / rel).write_bytes(data)
    with spool.locked():
        spool.add(lambda out: write_delta(walk_upper(upper, Rules().wanted), out))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def running_server(root: Path, *extra: str) -> Iterator[str]:
    """`ovl server serve` on an ephemeral loopback port; stopped at exit. Its stderr (a line
    per request) goes to a file, which a pipe nobody reads would fill."""
    port = free_port()
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(
            [*OVL, "server", "--root", str(root), "serve", "--listen", f"127.0.0.1:{port}", *extra],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    requests.get(url + "/", timeout=1)
                    break
                except requests.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        log.seek(0)
                        err = log.read().decode()
                        raise RuntimeError(f"server did not start: {err}") from None
                    time.sleep(0.05)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def ovl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*OVL, *args], capture_output=True, text=True, check=False)


def delta_file(
    tmp_path: Path, name: str, files: dict[str, bytes], gone: tuple[str, ...] = ()
) -> Path:
    """A delta as the agent would pack it from an upper dir (whiteouts as char 0/0)."""
    upper = tmp_path / f"upper-{name}"
    for rel, data in files.items():
        (upper / rel).parent.mkdir(parents=True, exist_ok=True)
        (upper / rel).write_bytes(data)
    for rel in gone:
        (upper / rel).parent.mkdir(parents=True, exist_ok=True)
        os.mknod(upper / rel, 0o600 | 0o020000, 0)
    out = tmp_path / f"{name}.tar.zst"
    with out.open("wb") as handle:
        write_delta(walk_upper(upper, Rules().wanted), handle)
    return out


def accept(store: Store, machine: str, delta: Path, created: int) -> str:
    sha = hashlib.sha256(delta.read_bytes()).hexdigest()
    copy = store.temp_file()
    shutil.copyfile(delta, copy)
    store.accept_delta(machine, sha, copy, "signature", created)
    return sha


def server_with_machine(root: Path, pub: Path, machine: str = "node1", mac: str = "") -> None:
    """A server root whose profile `lab` has a first version, and `machine` registered to it
    with the node key `pub`."""
    bundle = make_bundle(root.with_name(f"{root.name}-v1.ovl"), {"etc/motd": b"base\n"})
    for argv in (
        ["import", "lab", str(bundle)],
        ["add-machine", machine, "--profile", "lab", "--mac", mac or "52:54:00:00:00:01",
         "--key", str(pub)],
    ):  # fmt: skip
        done = ovl("server", "--root", str(root), *argv)
        assert done.returncode == 0, done.stderr
