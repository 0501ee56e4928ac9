"""Test-side bundle building (the real writer is ovl.tools/pack.py) and tree snapshots."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import lzma
import os
import stat
import tarfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zstandard
from hypothesis import strategies as st

MTIME = 1_700_000_000


@dataclass
class Item:
    """One tar entry: kind is file, dir, symlink, hardlink, char, block or fifo."""

    name: str
    kind: str = "file"
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0
    mtime: float = MTIME
    link: str = ""
    xattrs: dict[str, bytes] = field(default_factory=dict)
    pax: dict[str, str] = field(default_factory=dict)


_TYPES = {
    "file": tarfile.REGTYPE,
    "dir": tarfile.DIRTYPE,
    "symlink": tarfile.SYMTYPE,
    "hardlink": tarfile.LNKTYPE,
    "char": tarfile.CHRTYPE,
    "block": tarfile.BLKTYPE,
    "fifo": tarfile.FIFOTYPE,
}


def tar_bytes(items: Iterable[Item]) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for item in items:
            info = tarfile.TarInfo(item.name)
            info.type = _TYPES[item.kind]
            info.mode = item.mode if item.kind != "dir" or item.mode != 0o644 else 0o755
            info.uid, info.gid, info.mtime = item.uid, item.gid, item.mtime
            info.linkname = item.link
            info.pax_headers = {
                **{
                    f"SCHILY.xattr.{k}": v.decode("utf-8", "surrogateescape")
                    for k, v in item.xattrs.items()
                },
                **item.pax,
            }
            if item.kind in ("char", "block"):
                info.devmajor, info.devminor = 1, 3
            if item.kind == "file":
                info.size = len(item.data)
                tar.addfile(info, io.BytesIO(item.data))
            else:
                tar.addfile(info)
    return out.getvalue()


def tree(files: dict[str, bytes | str]) -> list[Item]:
    """Items for a simple tree: a str value is a symlink target, bytes are file contents;
    parent directories get their own entries."""
    items: dict[str, Item] = {}
    for name, value in files.items():
        parts = name.split("/")
        for depth in range(1, len(parts)):
            parent = "/".join(parts[:depth])
            items.setdefault(parent, Item(parent, "dir", mode=0o755))
        if isinstance(value, str):
            items[name] = Item(name, "symlink", link=value, mode=0o777)
        else:
            items[name] = Item(name, data=value)
    return list(items.values())


def compress(data: bytes, compression: str) -> bytes:
    if compression == "zstd":
        return zstandard.ZstdCompressor(write_checksum=True).compress(data)
    if compression == "gzip":
        return gzip.compress(data)
    if compression == "zlib":
        return zlib.compress(data)
    if compression == "xz":
        return lzma.compress(data)
    assert compression == "none"
    return data


def armour(data: bytes, *, framed: bool) -> bytes:
    text = base64.encodebytes(data)  # 76-character lines
    if framed:
        return b"-----BEGIN OVL BUNDLE-----\n" + text + b"-----END OVL BUNDLE-----\n"
    return text


def bundle(items: Iterable[Item], compression: str = "zstd") -> bytes:
    return compress(tar_bytes(items), compression)


def snapshot(root: Path, *, root_mtime: bool = True) -> dict[str, tuple[Any, ...]]:
    """Everything apply must keep, per path below `root`: type, mode, owner, mtime (ns),
    content digest, link target, xattrs, and which paths share an inode."""
    result: dict[str, tuple[Any, ...]] = {}
    inodes: dict[int, str] = {}
    paths = [root, *sorted(root.rglob("*"))]
    for path in paths:
        st = os.lstat(path)
        rel = str(path.relative_to(root))
        kind = stat.S_IFMT(st.st_mode)
        content: Any = None
        if stat.S_ISREG(st.st_mode):
            content = hashlib.sha256(path.read_bytes()).hexdigest()
            first = inodes.setdefault(st.st_ino, rel)
            content = (content, first)
        elif stat.S_ISLNK(st.st_mode):
            content = os.readlink(path)
        elif stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode):
            content = (os.major(st.st_rdev), os.minor(st.st_rdev))
        xattrs = {
            name: os.getxattr(path, name, follow_symlinks=False)
            for name in sorted(os.listxattr(path, follow_symlinks=False))
        }
        mtime = st.st_mtime_ns if rel != "." or root_mtime else None
        result[rel] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, mtime, content, xattrs)
    return result


def damage(draw: st.DrawFn, data: bytes, edits: int) -> bytes:
    """`data` with `edits` random flips, cuts or splices (a hypothesis draw)."""
    out = bytearray(data)
    for _ in range(edits):
        action = draw(st.sampled_from(["flip", "cut", "splice"]))
        at = draw(st.integers(0, max(len(out) - 1, 0)))
        if action == "flip" and out:
            out[at] ^= draw(st.integers(1, 255))
        elif action == "cut":
            del out[at:]
        else:
            out[at:at] = draw(st.binary(min_size=1, max_size=600))
    return bytes(out)


class CountingFile(io.FileIO):
    """A file that counts the bytes read from it: what a frame index let a reader skip."""

    read_bytes = 0

    def read(self, size: int | None = -1, /) -> bytes:
        data = super().read(size)
        self.read_bytes += len(data)
        return data


class PipeLike(io.RawIOBase):
    """`data`, not seekable: what a bundle streamed from a pipe looks like (a full read)."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        chunk = self._data.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)


class ShortReads(io.RawIOBase):
    """A source that hands out at most `step` bytes a read, as decompressors may."""

    def __init__(self, data: bytes, step: int) -> None:
        self._data, self._step, self._at = data, step, 0

    def read(self, size: int = -1, /) -> bytes:
        size = self._step if size < 0 else min(size, self._step)
        piece = self._data[self._at : self._at + size]
        self._at += len(piece)
        return piece
