"""Write upper-dir entries as a pax tar compressed with zstd, in one streaming pass."""

from __future__ import annotations

import hashlib
import os
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO, cast

from agent.delta.upper import Entry, Kind
from agent.errors import OvlError

ZSTD_LEVEL = 3
_COPY_CHUNK = 1 << 20

_TAR_TYPES = {
    Kind.FILE: tarfile.REGTYPE,
    Kind.DIR: tarfile.DIRTYPE,
    Kind.SYMLINK: tarfile.SYMTYPE,
    Kind.HARDLINK: tarfile.LNKTYPE,
    Kind.FIFO: tarfile.FIFOTYPE,
    Kind.WHITEOUT: tarfile.REGTYPE,
    Kind.OPAQUE: tarfile.REGTYPE,
}


@dataclass(frozen=True)
class Packed:
    sha256: str
    size: int
    entries: int


class _HashingWriter:
    """File-like sink that hashes and counts what passes through to `out`."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out
        self.digest = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.digest.update(data)
        self.size += len(data)
        return self.out.write(data)

    def flush(self) -> None:
        self.out.flush()


def tar_info(entry: Entry) -> tarfile.TarInfo:
    """The tar header for one entry: numeric owners, sub-second mtime, xattrs as SCHILY.xattr."""
    info = tarfile.TarInfo(entry.path)
    info.mode = entry.mode
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    seconds, nanos = divmod(entry.mtime_ns, 1_000_000_000)
    info.mtime = seconds
    if entry.kind is Kind.DEVICE:
        info.type = tarfile.CHRTYPE if entry.char_device else tarfile.BLKTYPE
        info.devmajor, info.devminor = os.major(entry.rdev), os.minor(entry.rdev)
    else:
        info.type = _TAR_TYPES[entry.kind]
    info.linkname = entry.link
    info.size = entry.size if entry.kind is Kind.FILE else 0
    # tarfile keeps pax values as str; surrogateescape round-trips arbitrary bytes as utf-8.
    headers = {
        "SCHILY.xattr." + name: value.decode("utf-8", "surrogateescape")
        for name, value in entry.xattrs.items()
    }
    if nanos:
        # A float would lose the last digits; pax allows a decimal string of any precision.
        headers["mtime"] = f"{seconds}.{nanos:09d}"
    info.pax_headers = headers
    return info


def write_delta(entries: Iterable[Entry], out: BinaryIO, *, threads: int = -1) -> Packed:
    """Stream `entries` into `out` as tar.zst; returns the sha256 of the bytes written."""
    import zstandard

    sink = _HashingWriter(out)
    compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=threads)
    count = 0
    with (
        compressor.stream_writer(cast(BinaryIO, sink), closefd=False) as zstream,
        tarfile.open(fileobj=zstream, mode="w|", format=tarfile.PAX_FORMAT) as tar,
    ):
        for entry in entries:
            info = tar_info(entry)
            if entry.kind is Kind.FILE and entry.source is not None:
                try:
                    with open(entry.source, "rb") as data:
                        tar.addfile(info, _exactly(data, info.size, entry.path))
                except OSError as exc:
                    raise OvlError(f"{entry.source}: cannot read ({exc.strerror})") from exc
            else:
                tar.addfile(info)
            count += 1
    return Packed(sha256=sink.digest.hexdigest(), size=sink.size, entries=count)


class _exactly:
    """A reader that yields exactly `size` bytes: a file that changes while packing must not
    corrupt the tar (shorter: zero-padded; longer: cut), matching GNU tar's behaviour."""

    def __init__(self, data: BinaryIO, size: int, name: str) -> None:
        self.data, self.left, self.name = data, size, name

    def read(self, n: int = _COPY_CHUNK) -> bytes:
        if self.left <= 0:
            return b""
        chunk = self.data.read(min(n, self.left))
        if not chunk:
            chunk = bytes(min(n, self.left))
        self.left -= len(chunk)
        return chunk
