"""Reproducible cpio "newc" archives, the format the kernel unpacks as an initramfs.

Entries are written sorted by path with inode numbers in that order, owner 0:0 and one mtime,
so the same entries always give the same bytes.
"""

from __future__ import annotations

import shutil
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


@dataclass(frozen=True)
class Entry:
    """One archive member. `path` is relative ("usr/bin/sh"); `mode` includes the file type.

    `content` is the file's bytes or the host file to read them from; for a symlink, the target.
    """

    path: str
    mode: int
    content: bytes | Path = b""
    rdev: tuple[int, int] = (0, 0)

    def size(self) -> int:
        if isinstance(self.content, Path):
            return self.content.stat().st_size
        return len(self.content)


def directory(path: str, mode: int = 0o755) -> Entry:
    return Entry(path, stat.S_IFDIR | mode)


def regular(path: str, content: bytes | Path, mode: int = 0o644) -> Entry:
    return Entry(path, stat.S_IFREG | mode, content)


def symlink(path: str, target: str) -> Entry:
    return Entry(path, stat.S_IFLNK | 0o777, target.encode())


def char_device(path: str, major: int, minor: int, mode: int = 0o600) -> Entry:
    return Entry(path, stat.S_IFCHR | mode, rdev=(major, minor))


def write_newc(entries: Iterable[Entry], out: BinaryIO, *, mtime: int) -> None:
    """Write `entries` (paths unique) as a newc archive, sorted so parents precede children."""
    ordered = sorted(entries, key=lambda e: e.path.split("/"))
    for inode, entry in enumerate(ordered, start=1):
        _write_member(out, entry, inode, mtime)
    _write_member(out, Entry(_TRAILER, 0), 0, 0)


def _write_member(out: BinaryIO, entry: Entry, inode: int, mtime: int) -> None:
    name = entry.path.encode() + b"\0"
    size = entry.size()
    nlink = 2 if stat.S_ISDIR(entry.mode) else 1
    if entry.path == _TRAILER:
        nlink = 1
    fields = (inode, entry.mode, 0, 0, nlink, mtime, size, 0, 0, *entry.rdev, len(name), 0)
    header = _MAGIC + b"".join(b"%08X" % value for value in fields)
    out.write(header + name + _padding(len(header) + len(name)))
    if isinstance(entry.content, Path):
        with entry.content.open("rb") as source:
            shutil.copyfileobj(source, out, 1 << 20)
    else:
        out.write(entry.content)
    out.write(_padding(size))


def _padding(length: int) -> bytes:
    return b"\0" * (-length % 4)
