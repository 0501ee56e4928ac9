"""`ovl pack` output read back by the independent peers: GNU tar, the zstd/xz/gzip CLIs."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import zlib
from pathlib import Path

import pytest

from ovl.core.errors import BadInput, OvlError
from ovl.format.codec import Compression, Encoding, open_decoded
from ovl.format.encode import ARMOR_BEGIN, ARMOR_END
from ovl.tools.pack import PackOptions, pack_directory
from tests.conftest import Mounts

# A file capability (cap_net_raw+ep, VFS v2): binary xattr bytes that must survive unchanged.
CAP_NET_RAW = bytes.fromhex("0100000200200000000000000000000000000000")


def make_tree(root: Path) -> Path:
    (root / "etc/ssh").mkdir(parents=True)
    (root / "usr/bin").mkdir(parents=True)
    (root / "layers/10-x86_64").mkdir(parents=True)
    (root / "etc/hostname").write_text("node\n")
    (root / "etc/ssh/sshd_config").write_text("PermitRootLogin no\n")
    os.chmod(root / "etc/ssh/sshd_config", 0o600)
    os.chown(root / "etc/ssh/sshd_config", 1234, 5678)
    os.link(root / "etc/hostname", root / "etc/hostname.hardlink")
    os.symlink("../etc/hostname", root / "usr/bin/link")
    (root / "usr/bin/ping").write_bytes(os.urandom(300_000))
    os.setxattr(root / "usr/bin/ping", "security.capability", CAP_NET_RAW)
    os.setxattr(root / "etc/hostname", "user.note", b"kept")
    (root / "layers/10-x86_64/motd").write_text("x86 only\n")
    os.utime(root / "etc/hostname", (1_600_000_000, 1_600_000_000))
    return root


def gnu_extract(bundle: Path, dest: Path, decompress: list[str] | None) -> Path:
    dest.mkdir()
    data = bundle.read_bytes()
    if decompress:
        data = subprocess.run(decompress, input=data, capture_output=True, check=True).stdout
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-", "-C", dest],
        input=data,
        check=True,
    )
    return dest


def assert_same_tree(src: Path, out: Path) -> None:
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        copy = out / rel
        a, b = path.lstat(), copy.lstat()
        assert (a.st_mode, a.st_uid, a.st_gid) == (b.st_mode, b.st_uid, b.st_gid), rel
        if path.is_symlink():
            assert os.readlink(copy) == os.readlink(path)
        elif path.is_file():
            assert copy.read_bytes() == path.read_bytes(), rel
            assert int(a.st_mtime) == int(b.st_mtime), rel
            for name in os.listxattr(path):
                assert os.getxattr(copy, name) == os.getxattr(path, name), (rel, name)
    assert (out / "etc/hostname").stat().st_ino == (out / "etc/hostname.hardlink").stat().st_ino


@pytest.mark.subprocess
@pytest.mark.parametrize(
    ("compression", "decompress"),
    [
        (Compression.ZSTD, ["zstd", "-dc"]),
        (Compression.GZIP, ["gzip", "-dc"]),
        (Compression.XZ, ["xz", "-dc"]),
        (Compression.NONE, None),
    ],
)
def test_gnu_tar_extracts_the_bundle_with_owners_xattrs_and_links(
    tmp_path: Path, compression: Compression, decompress: list[str] | None
) -> None:
    src = make_tree(tmp_path / "src")
    bundle = tmp_path / "out.ovl"
    result = pack_directory(src, bundle, PackOptions(compression=compression))
    assert result.entries == len(list(src.rglob("*")))
    out = gnu_extract(bundle, tmp_path / "out", decompress)
    assert_same_tree(src, out)


@pytest.mark.subprocess
def test_gnu_tar_lists_entries_in_deterministic_order(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    pack_directory(src, tmp_path / "b.tar", PackOptions(compression=Compression.NONE))
    listing = subprocess.run(
        ["tar", "-tf", tmp_path / "b.tar"], capture_output=True, text=True, check=True
    ).stdout.split()
    assert listing[:2] == ["etc/", "etc/hostname"]
    assert listing.index("etc/ssh/sshd_config") < listing.index("layers/")
    assert listing.index("etc/ssh/") < listing.index("etc/ssh/sshd_config")


def test_zlib_output_is_a_raw_zlib_stream(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    pack_directory(src, tmp_path / "b.ovl", PackOptions(compression=Compression.ZLIB, level=9))
    tar_bytes = zlib.decompress((tmp_path / "b.ovl").read_bytes())
    assert tar_bytes[257:263] == b"ustar\x00"


def test_same_tree_packs_to_identical_bytes(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    for compression in Compression:
        first, second = tmp_path / "1.ovl", tmp_path / "2.ovl"
        pack_directory(src, first, PackOptions(compression=compression))
        pack_directory(src, second, PackOptions(compression=compression))
        assert first.read_bytes() == second.read_bytes(), compression


def test_armour_is_76_column_base64_between_marker_lines(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    plain, armoured = tmp_path / "plain.ovl", tmp_path / "armoured.ovl"
    pack_directory(src, plain, PackOptions(compression=Compression.GZIP))
    pack_directory(src, armoured, PackOptions(compression=Compression.GZIP, armor=True))
    lines = armoured.read_bytes().splitlines(keepends=True)
    assert lines[0] == ARMOR_BEGIN and lines[-1] == ARMOR_END
    body = lines[1:-1]
    assert all(len(line) == 77 for line in body[:-1]) and len(body[-1]) <= 77
    assert base64.b64decode(b"".join(body)) == plain.read_bytes()


@pytest.mark.subprocess
def test_clamped_mtimes_never_exceed_source_date_epoch(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    bundle = tmp_path / "b.tar"
    pack_directory(
        src, bundle, PackOptions(compression=Compression.NONE, clamp_mtime=1_500_000_000)
    )
    out = gnu_extract(bundle, tmp_path / "out", None)
    assert {int(p.lstat().st_mtime) for p in out.rglob("*")} == {1_500_000_000}


def test_failed_pack_leaves_no_output_and_no_temp_file(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    os.mknod(src / "sock", 0o600 | 0o140000)
    dest = tmp_path / "out" / "b.ovl"
    with pytest.raises(BadInput, match="socket cannot be packed"):
        pack_directory(src, dest, PackOptions())
    assert list(dest.parent.iterdir()) == []


@pytest.mark.subprocess
@pytest.mark.parametrize("size", [10, 1 << 20], ids=["small", "over-the-buffer"])
def test_file_that_reads_shorter_than_its_size_fails_the_pack_naming_it(
    tmp_path: Path, mounts: Mounts, size: int
) -> None:
    """A sysfs attribute says 4096 bytes and reads a few: the same as a file truncated while it
    is packed. Bind-mounted over a file of `size` bytes, so both read paths (a small file read
    with its header, a big one copied on its own) meet it."""
    src = make_tree(tmp_path / "src")
    (src / "etc/padding").write_bytes(os.urandom(size))  # fills the buffer before it, or not
    shrinking = src / "etc/shrinking"
    shrinking.write_bytes(b"")
    subprocess.run(["mount", "--bind", "/sys/kernel/uevent_seqnum", str(shrinking)], check=True)
    mounts.track(shrinking)
    assert shrinking.stat().st_size > len(shrinking.read_bytes())
    dest = tmp_path / "out" / "b.ovl"
    with pytest.raises(OvlError, match=rf"^{shrinking}: changed while packing \(unexpected end"):
        pack_directory(src, dest, PackOptions())
    assert list(dest.parent.iterdir()) == []


@pytest.mark.subprocess
def test_full_disk_fails_the_pack_with_one_line_and_leaves_nothing(
    tmp_path: Path, mounts: Mounts
) -> None:
    """Layers of 1.5 MiB of noise each: their frames are ended on a second thread
    (ovl.format.encode), where the write that finds the disk full may happen."""
    src = tmp_path / "src"
    for n in range(4):
        (src / f"layers/1{n}-x86_64").mkdir(parents=True)
        (src / f"layers/1{n}-x86_64/blob").write_bytes(os.urandom(3 << 19))
    small = mounts.mount("tmpfs", tmp_path / "small", "-t", "tmpfs", "-o", "size=2M")
    with pytest.raises(OvlError, match=r"No space left on device$") as raised:
        pack_directory(src, small / "b.ovl", PackOptions())
    assert "\n" not in str(raised.value)
    assert list(small.iterdir()) == []


def test_output_inside_the_packed_tree_is_refused(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    with pytest.raises(BadInput, match="inside the directory"):
        pack_directory(src, src / "b.ovl", PackOptions())


def test_level_outside_the_compressor_range_is_bad_input(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    with pytest.raises(BadInput, match=r"--level 23: zstd takes 1\.\.22"):
        pack_directory(src, tmp_path / "b.ovl", PackOptions(level=23))


def test_malformed_layer_folder_is_refused_and_nothing_is_left(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / "layers/web-1").mkdir()
    dest = tmp_path / "out" / "b.ovl"
    with pytest.raises(BadInput, match="malformed layer name 'web-1'"):
        pack_directory(src, dest, PackOptions())
    assert list(dest.parent.iterdir()) == []


def test_invalid_manifest_is_refused_before_writing(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / "ovl.json").write_text('{"name": "fleet", "serial": -1}')
    with pytest.raises(BadInput, match=r"ovl.json: \$.serial: expected a non-negative integer"):
        pack_directory(src, tmp_path / "b.ovl", PackOptions())
    assert not (tmp_path / "b.ovl").exists()


def test_every_encoding_reads_back_through_the_agent_decoder(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    pack_directory(src, tmp_path / "plain.tar", PackOptions(compression=Compression.NONE))
    plain = (tmp_path / "plain.tar").read_bytes()
    for compression in Compression:
        for armor in (False, True):
            bundle = tmp_path / f"{compression.value}-{armor}.ovl"
            pack_directory(src, bundle, PackOptions(compression=compression, armor=armor))
            with bundle.open("rb") as raw:
                decoded = open_decoded(raw)
                assert decoded.encoding == Encoding(compression, armoured=armor)
                assert decoded.read() == plain, (compression, armor)


@pytest.mark.subprocess
def test_hardlinks_never_cross_layers(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    os.link(src / "etc/hostname", src / "layers/10-x86_64/hostname")
    os.link(src / "etc/hostname", src / "layers/10-x86_64/hostname2")
    bundle = tmp_path / "b.tar"
    pack_directory(src, bundle, PackOptions(compression=Compression.NONE))
    listing = subprocess.run(
        ["tar", "-tvf", bundle], capture_output=True, text=True, check=True
    ).stdout
    assert "layers/10-x86_64/hostname2 link to layers/10-x86_64/hostname\n" in listing
    assert "layers/10-x86_64/hostname link to" not in listing


@pytest.mark.subprocess
def test_armoured_bundle_unwraps_with_coreutils_base64_then_zstd_and_tar(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    bundle = tmp_path / "b.txt"
    pack_directory(src, bundle, PackOptions(armor=True))
    body = b"".join(bundle.read_bytes().splitlines(keepends=True)[1:-1])
    compressed = subprocess.run(["base64", "-d"], input=body, capture_output=True, check=True)
    (tmp_path / "b.zst").write_bytes(compressed.stdout)
    out = gnu_extract(tmp_path / "b.zst", tmp_path / "out", ["zstd", "-dc"])
    assert_same_tree(src, out)


@pytest.mark.subprocess
def test_long_and_non_utf8_names_survive_gnu_tar(tmp_path: Path) -> None:
    src = tmp_path / "src"
    deep = src / ("d" * 120) / ("e" * 150)
    deep.mkdir(parents=True)
    (deep / ("f" * 200)).write_text("long\n")
    os.symlink("x" * 300, deep / "far-link")
    odd = os.fsencode(src) + b"/caf\xe9 menu.conf"  # Latin-1 name, not valid UTF-8
    with open(odd, "wb") as f:
        f.write(b"odd\n")
    bundle = tmp_path / "b.tar"
    pack_directory(src, bundle, PackOptions(compression=Compression.NONE))
    out = gnu_extract(bundle, tmp_path / "out", None)
    copy = out / ("d" * 120) / ("e" * 150)
    assert (copy / ("f" * 200)).read_text() == "long\n"
    assert os.readlink(copy / "far-link") == "x" * 300
    with open(os.fsencode(out) + b"/caf\xe9 menu.conf", "rb") as f:
        assert f.read() == b"odd\n"


def make_fixed_tree(root: Path) -> Path:
    """Every kind of entry pack writes, with fixed contents, owners, modes and mtimes."""
    long_dir = root / ("d" * 60) / ("e" * 60)
    long_dir.mkdir(parents=True)
    (long_dir / "long-name").write_bytes(b"long\n" * 100)
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("node\n")
    os.link(root / "etc/hostname", root / "etc/hostname.hardlink")
    os.setxattr(root / "etc/hostname", "user.note", b"kept")
    os.setxattr(root / "etc/hostname", "user.binary", b"\xff\xfe\x00")
    (root / "etc/big-owner").write_bytes(bytes(range(256)) * 9)
    os.chown(root / "etc/big-owner", 3_000_000, 4_000_000)
    (root / "etc/before-1970").write_text("old\n")
    os.symlink("t" * 150, root / "etc/long-link")
    os.symlink("hostname", root / "etc/short-link")
    os.mknod(root / "etc/null", 0o20666, os.makedev(1, 3))
    os.mkfifo(root / "etc/fifo", 0o640)
    (root / "etc/caf\u00e9").write_text("utf-8 name\n")
    (Path(os.fsdecode(os.fsencode(root) + b"/etc/raw\xff"))).write_text("not utf-8\n")
    os.chown(root / "etc/hostname", 1234, 5678)
    os.chmod(root / "etc/hostname", 0o4755)
    for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
        os.utime(path, ns=(1_700_000_000_123_456_789,) * 2, follow_symlinks=False)
    os.utime(root / "etc/before-1970", (-86_400, -86_400))
    return root


# sha256 of the uncompressed bundle of make_fixed_tree, written by pack before its header
# builder moved to agent/tarwrite.py: the move must not change a byte.
FIXED_TREE_SHA256 = "c3c5a6b62a61bcc5760a1d8c8b5b02b1359a4b1ca24de1cdbabc9ecba6e69aa3"


@pytest.mark.root
def test_fixed_tree_packs_to_the_recorded_bytes(tmp_path: Path) -> None:
    tree = make_fixed_tree(tmp_path / "tree")
    out = tmp_path / "out.tar"
    # force: the tree holds a device node and a fifo, which machines refuse.
    result = pack_directory(tree, out, PackOptions(compression=Compression.NONE), force=True)
    assert hashlib.sha256(out.read_bytes()).hexdigest() == FIXED_TREE_SHA256
    assert [(f.code, f.where) for f in result.findings] == [("refused", "etc/fifo")]
