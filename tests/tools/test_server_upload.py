"""Deltas shipped by the agent to a real `ovl server serve`: accepted, idempotent, refused."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

import pytest
import requests

from ovl.core.errors import OvlError
from ovl.delta.ship import Backoff, Refused, Shipper
from ovl.delta.spool import Spool
from ovl.tools.server.store import Store
from tests.tools.server_fixtures import (
    keypair,
    make_bundle,
    ovl,
    running_server,
    spool_tree,
    stock_signer,
)

pytestmark = pytest.mark.subprocess

MAC = "52:54:00:12:34:56"


@pytest.fixture
def server_root(tmp_path: Path) -> Path:
    root = tmp_path / "srv"
    pub, _ = keypair(tmp_path / "keys", "node1")
    bundle = make_bundle(tmp_path / "fleet.ovl", {"etc/motd": b"base\n"})
    done = ovl("server", "--root", str(root), "import", "lab", str(bundle))
    assert done.returncode == 0, done.stderr
    done = ovl("server", "--root", str(root), "add-machine", "node1", "--profile", "lab",
               "--mac", MAC, "--key", str(pub))  # fmt: skip
    assert done.returncode == 0, done.stderr
    return root


def shipper(url: str, tmp_path: Path, machine: str = "node1", **kw: object) -> Shipper:
    _, sec = tmp_path / "keys/node1.pub", tmp_path / "keys/node1.key"
    return Shipper(url, machine, stock_signer(sec), timeout=10, **kw)  # type: ignore[arg-type]


def stored_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in (root / "deltas").rglob("*") if p.is_file())


def test_shipped_delta_is_stored_once_and_reshipping_is_idempotent(
    tmp_path: Path, server_root: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    spool_tree(spool, {"etc/hostname": b"node1\n"}, tmp_path / "upper")
    (delta,) = spool.pending()
    with running_server(server_root) as url:
        assert shipper(url, tmp_path).ship_all(spool) == 1
        assert spool.pending() == []
        stored = server_root / "deltas/node1" / f"{delta.sha256}.tar.zst"
        first = stored_files(server_root)
        assert stored.is_file() and len(first) == 3
        again = requests.put(
            url + f"/deltas/node1/{delta.sha256}.tar.zst",
            data=stored.read_bytes(),
            headers={"X-Ovl-Signature": _header_for(stored, tmp_path, delta)},
            timeout=10,
        )
        assert again.status_code == 200 and again.text.strip() == "already stored"
        assert stored_files(server_root) == first
    assert Store(server_root).deltas("node1")[0].created_ns == delta.created_ns


def _header_for(stored: Path, tmp_path: Path, delta: object) -> str:
    import base64

    from ovl.delta.protocol import trusted_comment

    comment = trusted_comment("node1", delta.sha256, delta.created_ns)  # type: ignore[attr-defined]
    text = stock_signer(tmp_path / "keys/node1.key")(stored, comment)
    return base64.b64encode(text.encode()).decode()


def test_unknown_machine_is_refused_and_the_delta_stays_spooled(
    tmp_path: Path, server_root: Path
) -> None:
    spool = Spool(tmp_path / "spool")
    spool_tree(spool, {"etc/motd": b"hi\n"}, tmp_path / "upper")
    with (
        running_server(server_root) as url,
        pytest.raises(Refused, match="403 unknown machine 'stranger'"),
    ):
        shipper(url, tmp_path, machine="stranger").ship_all(spool)
    assert len(spool.pending()) == 1 and not (server_root / "deltas").exists()


def test_signature_by_another_key_is_refused_with_the_reason(
    tmp_path: Path, server_root: Path
) -> None:
    _, other = keypair(tmp_path / "keys", "intruder")
    spool = Spool(tmp_path / "spool")
    spool_tree(spool, {"etc/motd": b"hi\n"}, tmp_path / "upper")
    with running_server(server_root) as url:
        evil = Shipper(url, "node1", stock_signer(other), timeout=10)
        with pytest.raises(
            Refused, match=r"403 bad signature: .* signed by key [0-9A-F]+, expected"
        ):
            evil.ship_all(spool)
    assert len(spool.pending()) == 1 and not (server_root / "deltas").exists()


def test_tampered_body_is_refused(tmp_path: Path, server_root: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool_tree(spool, {"etc/motd": b"hi\n"}, tmp_path / "upper")
    (delta,) = spool.pending()
    header = _header_for(delta.path, tmp_path, delta)
    body = bytearray(delta.path.read_bytes())
    body[-1] ^= 1
    with running_server(server_root) as url:
        reply = requests.put(
            url + f"/deltas/node1/{delta.sha256}.tar.zst",
            data=bytes(body),
            headers={"X-Ovl-Signature": header},
            timeout=10,
        )
    assert reply.status_code == 400 and "does not match the name" in reply.text
    assert not (server_root / "deltas").exists()


def test_upload_cut_mid_stream_leaves_nothing_behind(tmp_path: Path, server_root: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool_tree(spool, {"big": os.urandom(600_000)}, tmp_path / "upper")
    (delta,) = spool.pending()
    header = _header_for(delta.path, tmp_path, delta)
    body = delta.path.read_bytes()
    with running_server(server_root) as url:
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port)) as conn:
            conn.sendall(
                f"PUT /deltas/node1/{delta.sha256}.tar.zst HTTP/1.1\r\nHost: x\r\n"
                f"X-Ovl-Signature: {header}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                + body[: len(body) // 2]
            )
        # The server is still healthy, and a complete upload afterwards succeeds.
        assert shipper(url, tmp_path).ship_all(spool) == 1
    assert len(stored_files(server_root)) == 3
    assert list((server_root / "tmp").iterdir()) == []


def test_unreachable_server_is_retried_with_backoff_then_left_spooled(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    spool_tree(spool, {"etc/motd": b"hi\n"}, tmp_path / "upper")
    keypair(tmp_path / "keys", "node1")
    waits: list[float] = []
    lonely = shipper(
        "http://127.0.0.1:9", tmp_path, backoff=Backoff(first=1, tries=4), sleep=waits.append
    )
    with pytest.raises(OvlError, match=r"not shipped after 4 tries.*stays spooled"):
        lonely.ship_all(spool)
    assert len(waits) == 3 and all(0 <= w <= 2**i for i, w in enumerate(waits))
    assert len(spool.pending()) == 1


def test_full_store_answers_507_and_keeps_no_partial_delta(
    tmp_path: Path, server_root: Path, mounts: object
) -> None:
    small = tmp_path / "small"
    mounts.mount("tmpfs", small, "-t", "tmpfs", "-o", "size=1M")  # type: ignore[attr-defined]
    subprocess.run(["cp", "-a", f"{server_root}/.", str(small)], check=True)
    spool = Spool(tmp_path / "spool")
    spool_tree(spool, {"big": os.urandom(1_500_000)}, tmp_path / "upper")
    with running_server(small) as url:
        fails = shipper(url, tmp_path, backoff=Backoff(first=0, tries=2), sleep=lambda s: None)
        with pytest.raises(OvlError, match=r"507 .*full"):
            fails.ship_all(spool)
    assert not (small / "deltas").exists() or stored_files(small) == []
    assert list((small / "tmp").iterdir()) == []
    assert len(spool.pending()) == 1


def test_signed_but_hostile_delta_is_rejected_before_it_can_break_a_bake(
    tmp_path: Path, server_root: Path
) -> None:
    import hashlib
    import io
    import tarfile

    import zstandard

    from ovl.delta.spool import SpooledDelta

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("../../etc/passwd")
        info.size = 5
        tar.addfile(info, io.BytesIO(b"evil\n"))
    data = zstandard.ZstdCompressor().compress(raw.getvalue())
    sha = hashlib.sha256(data).hexdigest()
    spool = Spool(tmp_path / "spool")
    spool.root.mkdir()
    path = spool.root / f"{1:019d}-{sha}.tar.zst"
    path.write_bytes(data)
    assert spool.pending() == [SpooledDelta(path, sha, 1)]
    with running_server(server_root) as url, pytest.raises(Refused, match="400 delta rejected: "):
        shipper(url, tmp_path).ship_all(spool)
    assert not (server_root / "deltas").exists() or stored_files(server_root) == []
