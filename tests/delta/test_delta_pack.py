"""The delta's own pax writer, read back by Python's tarfile: every field survives."""

from __future__ import annotations

import errno
import hashlib
import io
import os
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard
from hypothesis import given, settings
from hypothesis import strategies as st

from ovl.core.errors import OvlError
from ovl.delta.pack import write_delta
from ovl.delta.upper import Entry, Kind

names = st.lists(
    st.text(
        alphabet=st.characters(codec="utf-8", exclude_characters="/\0"),
        min_size=1,
        max_size=80,
    ).filter(lambda s: s not in (".", "..")),
    min_size=1,
    max_size=4,
).map("/".join)
xattr_values = st.binary(max_size=40)


def read_back(entries: list[Entry]) -> list[tarfile.TarInfo]:
    out = io.BytesIO()
    write_delta(entries, out)
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.getvalue())).read()
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        return tar.getmembers()


@settings(max_examples=150, deadline=None)
@given(
    path=names,
    link=names,
    uid=st.integers(0, 2**32 - 1),
    gid=st.integers(0, 2**32 - 1),
    mtime_ns=st.integers(0, 2**34 * 10**9),
    mode=st.integers(0, 0o7777),
    xattrs=st.dictionaries(st.sampled_from(["user.a", "security.capability"]), xattr_values),
)
def test_symlink_headers_round_trip_through_tarfile(
    path: str, link: str, uid: int, gid: int, mtime_ns: int, mode: int, xattrs: dict[str, bytes]
) -> None:
    entry = Entry(path, Kind.SYMLINK, mode, uid, gid, mtime_ns, link=link, xattrs=xattrs)
    (info,) = read_back([entry])
    assert (info.name, info.linkname, info.uid, info.gid, info.mode) == (path, link, uid, gid, mode)
    assert info.issym()
    seconds, nanos = divmod(mtime_ns, 10**9)
    assert info.pax_headers.get("mtime", str(seconds)) == (
        f"{seconds}.{nanos:09d}" if nanos else str(seconds)
    )
    got = {
        k.removeprefix("SCHILY.xattr."): v.encode("utf-8", "surrogateescape")
        for k, v in info.pax_headers.items()
        if k.startswith("SCHILY.xattr.")
    }
    assert got == xattrs


def test_file_data_links_and_whiteouts_are_written_as_tar_members(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(b"x" * 1000)
    entries = [
        Entry("d", Kind.DIR, 0o755, 0, 0, 10**18),
        Entry("d/file", Kind.FILE, 0o640, 1, 2, 10**18, 1000, str(data)),
        Entry("d/grown", Kind.FILE, 0o640, 1, 2, 10**18, 1500, str(data)),
        Entry("d/hard", Kind.HARDLINK, 0o640, 1, 2, 10**18, link="d/file"),
        Entry("d/.wh.gone", Kind.WHITEOUT, 0o600, 0, 0, 10**18),
        Entry("d/.wh..wh..opq", Kind.OPAQUE, 0o755, 0, 0, 10**18),
    ]
    members = {m.name: m for m in read_back(entries)}
    assert members["d"].isdir() and members["d/file"].size == 1000
    assert members["d/grown"].size == 1500  # the file shrank while packing: zero-padded
    assert members["d/hard"].islnk() and members["d/hard"].linkname == "d/file"
    assert members["d/.wh.gone"].isfile() and members["d/.wh.gone"].size == 0


def fixed_entries(tmp_path: Path) -> list[Entry]:
    """Every kind of delta entry, with names, links, ids, times and xattrs that need pax."""
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(b"config line\n" * 50)
    big.write_bytes(bytes(range(256)) * 9000)
    ns = 1_700_000_000_123_456_789
    return [
        Entry("etc", Kind.DIR, 0o755, 0, 0, ns, xattrs={"user.a": b"text"}),
        Entry("etc/small", Kind.FILE, 0o644, 0, 0, 1_700_000_000 * 10**9, 600, str(small)),
        Entry("etc/big", Kind.FILE, 0o600, 3_000_000, 5, ns, 256 * 9000, str(big)),
        Entry("etc/" + "n" * 120, Kind.FILE, 0o644, 1, 2, ns, 600, str(small)),
        Entry("etc/caf\u00e9", Kind.SYMLINK, 0o777, 0, 0, ns, link="l" * 130),
        Entry("etc/raw\udcff", Kind.SYMLINK, 0o777, 0, 0, ns, link="small"),
        Entry("etc/hard", Kind.HARDLINK, 0o644, 0, 0, ns, link="etc/small"),
        Entry(
            "etc/cap",
            Kind.FILE,
            0o755,
            0,
            0,
            ns,
            600,
            str(small),
            xattrs={
                "security.capability": bytes.fromhex("0100000200200000000000000000000000000000")
            },
        ),
        Entry("etc/.wh.gone", Kind.WHITEOUT, 0o600, 0, 0, ns),
        Entry("etc/.wh..wh..opq", Kind.OPAQUE, 0o755, 0, 0, ns),
    ]


# sha256 of the uncompressed tar write_delta made of fixed_entries before its header builder
# moved to agent/tarwrite.py: the move must not change a byte.
FIXED_ENTRIES_TAR_SHA256 = "28f530383eb21f1683efb8f51f9ad4c24a2d440648a174d752bbf3086a08a6bf"


def test_fixed_entries_pack_to_the_recorded_tar_bytes(tmp_path: Path) -> None:
    out = io.BytesIO()
    write_delta(fixed_entries(tmp_path), out)
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.getvalue())).read()
    assert hashlib.sha256(plain).hexdigest() == FIXED_ENTRIES_TAR_SHA256


def test_file_larger_than_the_copy_buffer_is_written_whole(tmp_path: Path) -> None:
    data = tmp_path / "big"
    content = bytes(range(256)) * (36 * 1024 + 3)  # 9 MiB and a bit: crosses buffer flushes
    data.write_bytes(content)
    entries = [
        Entry("small", Kind.FILE, 0o644, 0, 0, 0, 5, str(data)),
        Entry("big", Kind.FILE, 0o644, 0, 0, 0, len(content), str(data)),
        Entry("after", Kind.FILE, 0o644, 0, 0, 0, 700, str(data)),
    ]
    out = io.BytesIO()
    write_delta(entries, out)
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(out.getvalue())).read()
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        got = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}  # type: ignore[union-attr]
    assert got == {"small": content[:5], "big": content, "after": content[:700]}


def test_full_disk_stops_the_pack_with_the_write_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.write_bytes(os.urandom(1 << 20))
    entries = [Entry(f"f{i}", Kind.FILE, 0o644, 0, 0, 0, 1 << 20, str(data)) for i in range(20)]
    with open("/dev/full", "wb", buffering=0) as full, pytest.raises(OSError) as caught:
        write_delta(entries, full)
    assert caught.value.errno == errno.ENOSPC
    assert threading.active_count() == 1  # the compressing thread has ended


def test_unreadable_file_stops_the_pack_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    entries = [Entry("gone", Kind.FILE, 0o644, 0, 0, 0, 10, str(missing))]
    with pytest.raises(OvlError, match="gone: cannot read"):
        write_delta(entries, io.BytesIO())
    assert threading.active_count() == 1
