"""Bundles made by stock GNU tar and the zstd/gzip/xz/base64 command-line tools read exactly as
GNU tar itself extracts them: modes, owners, mtimes, xattrs, hardlinks, symlinks."""

from __future__ import annotations

import io
import os
import stat
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle
from ovl.format.codec import Compression
from ovl.format.scan import scan_bundle
from tests.format.bundle_build import snapshot

pytestmark = [pytest.mark.subprocess, pytest.mark.root]

FACTS = Facts(kernel="Linux", kernel_release="6.1.0-56-cloud-amd64", arch="x86_64")
NS = 1_700_000_000_123_456_789
# vfs_cap_data revision 2, effective bit, CAP_NET_RAW (13) permitted
CAPABILITY = struct.pack("<IIIII", 0x02000001, 1 << 13, 0, 0, 0)
TAR_EXTRACT = ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf"]
TAR_CREATE = ["tar", "--format=pax", "--xattrs", "--xattrs-include=*", "--numeric-owner"]


def _file(path: Path, data: bytes, mode: int = 0o644, owner: tuple[int, int] = (0, 0)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.chown(path, *owner)
    os.chmod(path, mode)


def make_source(src: Path) -> None:
    """A small root filesystem overlay using every kind of entry and metadata ovl keeps."""
    _file(src / "etc/hostname", b"base\n")
    os.setxattr(src / "etc/hostname", "user.comment", b"binary \x00\xff value")
    _file(src / "etc/secret", b"s3cret\n", 0o600, (1234, 5678))
    _file(src / "usr/bin/ping", b"\x7fELF ping", 0o4755)
    os.setxattr(src / "usr/bin/ping", "security.capability", CAPABILITY)
    _file(src / "usr/bin/tool", os.urandom(300_000), 0o755, (0, 50))
    os.link(src / "usr/bin/tool", src / "usr/bin/tool-hardlink")
    _file(src / "usr/lib/libx.so.1", b"lib")
    os.symlink("libx.so.1", src / "usr/lib/libx.so")
    os.symlink("/usr/share/zoneinfo/UTC", src / "etc/localtime")
    _file(src / "data/empty", b"")
    _file(src / "data/sp ace ü.txt", b"unicode name")
    (src / "tmp").mkdir()
    os.chmod(src / "tmp", 0o1777)
    layer = src / "layers/10-x86_64"
    _file(layer / "etc/hostname", b"x86 machine\n")
    _file(layer / "etc/.wh.secret", b"")
    _file(layer / "usr/lib/.wh..wh..opq", b"")
    _file(layer / "usr/lib/new.so", b"new")
    _file(src / "layers/20-aarch64/etc/hostname", b"arm\n")
    _file(src / "layers/30-release=6.1.0-56-cloud-amd64/etc/release", b"6.1\n")
    for path in sorted(src.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        os.utime(path, ns=(NS, NS), follow_symlinks=False)


@pytest.fixture(scope="module")
def gnu(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source tree, its GNU tar archive, and GNU tar's own extraction of it (`ref`)."""
    work = tmp_path_factory.mktemp("gnu")
    make_source(work / "src")
    subprocess.run([*TAR_CREATE, "-C", work / "src", "-cf", work / "bundle.tar", "."], check=True)
    (work / "ref").mkdir()
    subprocess.run(
        [*TAR_EXTRACT, work / "bundle.tar", "-C", work / "ref"],
        check=True,
    )
    return work


def _encode(gnu: Path, producer: str) -> bytes:
    tar = gnu / "bundle.tar"
    commands: dict[str, list[str | Path]] = {
        "tar": ["cat", tar],
        "zstd": ["zstd", "-q", "-c", "-19", tar],
        "gzip": ["gzip", "-c", "-9", tar],
        "xz": ["xz", "-c", tar],
        "zstd+base64": ["sh", "-c", f"zstd -q -c '{tar}' | base64"],
        "zstd+base64 -w0": ["sh", "-c", f"zstd -q -c '{tar}' | base64 -w0"],
        "gzip+armour": [
            "sh",
            "-c",
            f"echo '-----BEGIN OVL BUNDLE-----'; gzip -c '{tar}' | base64;"
            " echo '-----END OVL BUNDLE-----'",
        ],
    }
    return subprocess.run(commands[producer], check=True, capture_output=True).stdout


def _below(snap: dict[str, tuple[Any, ...]], prefix: str) -> dict[str, tuple[Any, ...]]:
    """The part of a snapshot under `prefix`, re-rooted there."""
    out: dict[str, tuple[Any, ...]] = {}
    for path, value in snap.items():
        if path.startswith(prefix + "/"):
            rel = path[len(prefix) + 1 :]
            kind, mode, uid, gid, mtime, content, xattrs = value
            if isinstance(content, tuple) and content[1].startswith(prefix + "/"):
                content = (content[0], content[1][len(prefix) + 1 :])
            out[rel] = (kind, mode, uid, gid, mtime, content, xattrs)
    return out


def _without(snap: dict[str, tuple[Any, ...]], *names: str) -> dict[str, tuple[Any, ...]]:
    return {
        path: value
        for path, value in snap.items()
        if not any(path == n or path.startswith(n + "/") for n in names)
    }


PRODUCERS = ["tar", "zstd", "gzip", "xz", "zstd+base64", "zstd+base64 -w0", "gzip+armour"]


@pytest.mark.parametrize("producer", PRODUCERS)
def test_split_apply_equals_gnu_tar_extraction(gnu: Path, producer: str, tmp_path: Path) -> None:
    data = _encode(gnu, producer)
    target = tmp_path / "layers"
    result = apply_bundle(io.BytesIO(data), FACTS, target, split=True)
    assert [layer.name for layer in result.layers] == [
        "base",
        "10-x86_64",
        "30-release=6.1.0-56-cloud-amd64",
    ]
    ref = snapshot(gnu / "ref", root_mtime=False)
    assert snapshot(target / "base", root_mtime=False) == _without(ref, "layers")
    ours = snapshot(target / "10-x86_64", root_mtime=False)
    theirs = _below(ref, "layers/10-x86_64")
    # Whiteouts differ by design: overlayfs form on our side, OCI marker files on GNU tar's.
    assert _without(ours, ".", "etc/secret", "usr/lib") == _without(
        theirs, "etc/.wh.secret", "usr/lib"
    )
    secret = os.lstat(target / "10-x86_64/etc/secret")
    assert stat.S_ISCHR(secret.st_mode) and secret.st_rdev == os.makedev(0, 0)
    assert os.getxattr(target / "10-x86_64/usr/lib", "trusted.overlay.opaque") == b"y"
    assert sorted(os.listdir(target / "10-x86_64/usr/lib")) == ["new.so"]
    assert ours["usr/lib/new.so"] == theirs["usr/lib/new.so"]


def test_bundles_from_every_producer_scan_alike(gnu: Path) -> None:
    infos = {producer: scan_bundle(io.BytesIO(_encode(gnu, producer))) for producer in PRODUCERS}
    layers = {p: [(layer.name, layer.entries) for layer in i.layers] for p, i in infos.items()}
    assert all(value == layers["tar"] for value in layers.values())
    assert infos["gzip+armour"].encoding.compression is Compression.GZIP
    assert infos["gzip+armour"].armoured and infos["zstd+base64"].armoured
    assert not infos["xz"].armoured
    assert [layer.name for layer in infos["tar"].layers] == [
        "base",
        "10-x86_64",
        "20-aarch64",
        "30-release=6.1.0-56-cloud-amd64",
    ]


def test_merged_apply_keeps_metadata_and_applies_whiteouts(gnu: Path, tmp_path: Path) -> None:
    target = tmp_path / "root"
    apply_bundle(io.BytesIO(_encode(gnu, "zstd")), FACTS, target, split=False)
    ours = snapshot(target, root_mtime=False)
    ref = _without(snapshot(gnu / "ref", root_mtime=False), "layers", "etc/secret", "usr/lib")
    layer = _below(snapshot(gnu / "ref", root_mtime=False), "layers/10-x86_64")
    expected = {**ref, "etc/hostname": layer["etc/hostname"], "usr/lib": layer["usr/lib"]}
    expected["usr/lib/new.so"] = layer["usr/lib/new.so"]
    expected["etc/release"] = _below(
        snapshot(gnu / "ref", root_mtime=False), "layers/30-release=6.1.0-56-cloud-amd64"
    )["etc/release"]
    assert ours == expected
    assert os.getxattr(target / "usr/bin/ping", "security.capability") == CAPABILITY
    assert os.stat(target / "usr/bin/ping").st_mode & stat.S_ISUID
    assert (
        os.stat(target / "usr/bin/tool").st_ino == os.stat(target / "usr/bin/tool-hardlink").st_ino
    )


def _long_name_tree(src: Path) -> Path:
    # Longer than the 100-byte name field, within what ustar's 155-byte prefix can hold.
    deep = src / ("d" * 60) / ("e" * 60)
    _file(deep / ("f" * 90), b"long names")
    os.symlink("f" * 90, deep / "link")
    return deep


@pytest.mark.parametrize("header_format", ["gnu", "ustar", "pax"])
def test_long_names_in_every_header_format_read_as_gnu_tar_writes_them(
    tmp_path: Path, header_format: str
) -> None:
    _long_name_tree(tmp_path / "src")
    archive = tmp_path / "bundle.tar"
    subprocess.run(
        ["tar", f"--format={header_format}", "-C", tmp_path / "src", "-cf", archive, "."],
        check=True,
        capture_output=True,
    )
    (tmp_path / "ref").mkdir()
    subprocess.run(["tar", "-xpf", archive, "-C", tmp_path / "ref"], check=True)
    with archive.open("rb") as source:
        apply_bundle(source, FACTS, tmp_path / "ours", split=False)
    assert snapshot(tmp_path / "ours", root_mtime=False) == snapshot(
        tmp_path / "ref", root_mtime=False
    )


def test_gnu_tar_sparse_files_are_refused(tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    with (tmp_path / "src/sparse").open("wb") as sparse:
        sparse.truncate(4 << 20)
        sparse.seek(1 << 20)
        sparse.write(b"x")
    tar = subprocess.run(
        ["tar", "--format=pax", "-S", "-C", tmp_path / "src", "-cf", "-", "."],
        check=True,
        capture_output=True,
    ).stdout
    with pytest.raises(BadInput, match=r"'\./sparse': sparse files are not supported"):
        apply_bundle(io.BytesIO(tar), FACTS, tmp_path / "out", split=False)
    assert not (tmp_path / "out").exists()
