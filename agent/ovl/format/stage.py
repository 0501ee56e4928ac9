"""Writing validated entries into one layer's directory, with owners, modes, xattrs and
mtimes, as they stream past (os-level calls only: boot time counts)."""

from __future__ import annotations

import functools
import os
import stat
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.format.paths import Parts, show
from ovl.format.reader import BundleReader, Entry, Kind
from ovl.format.whiteouts import OPAQUE_XATTR

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_DEVICE_TYPES = {Kind.CHAR: stat.S_IFCHR, Kind.BLOCK: stat.S_IFBLK, Kind.FIFO: stat.S_IFIFO}


@functools.cache
def _as_root() -> bool:
    return os.geteuid() == 0


def set_metadata(path: str, entry: Entry) -> None:
    """Give `path` the owner (when root), mode, xattrs and mtime recorded in `entry`."""
    member = entry.member
    is_link = entry.kind is Kind.SYMLINK
    if _as_root():
        os.chown(path, member.uid, member.gid, follow_symlinks=False)
    if not is_link:  # Linux has no lchmod; a symlink's mode means nothing
        os.chmod(path, member.mode & 0o7777)
    for name, value in member.xattrs.items():
        os.setxattr(path, name, value, follow_symlinks=False)
    mtime = member.mtime_ns
    os.utime(path, ns=(mtime, mtime), follow_symlinks=False)


def _set_file_metadata(fd: int, entry: Entry) -> None:
    member = entry.member
    if _as_root():
        os.fchown(fd, member.uid, member.gid)  # before chmod: chown clears set-id bits
    os.fchmod(fd, member.mode & 0o7777)
    for name, value in member.xattrs.items():
        os.setxattr(fd, name, value)  # after chown, which drops security.capability
    mtime = member.mtime_ns
    os.utime(fd, ns=(mtime, mtime))


class LayerDir:
    """One layer being staged under `root`.

    With `overlay_whiteouts` whiteouts are written in overlayfs form (char device 0/0, opaque
    xattr); otherwise they are only recorded, for the merge to apply as deletions.
    """

    def __init__(self, root: Path, name: str, *, overlay_whiteouts: bool) -> None:
        self.root = root
        self.name = name
        self.overlay_whiteouts = overlay_whiteouts
        self.whiteouts: list[Parts] = []
        self.opaque: list[Parts] = []
        self.dirs: dict[Parts, Entry] = {}  # declared directories; metadata set by finish()
        self.files = 0
        self.bytes = 0
        self._made: set[Parts] = {()}  # directories known to exist
        self._written: set[Parts] = set()  # everything else written so far
        os.mkdir(root, 0o755)
        os.chmod(root, 0o755)

    def path(self, parts: Parts) -> str:
        return os.path.join(self.root, *parts)

    def write(self, entry: Entry, reader: BundleReader) -> None:
        try:
            self._write(entry, reader)
        except OSError as exc:
            raise OvlError(
                f"cannot write {self.name}/{show(entry.path)}: {exc.strerror or exc}"
            ) from None

    def finish(self) -> None:
        """Set directory metadata, deepest first, now that nothing more is written below."""
        for parts in sorted(self.dirs, key=len, reverse=True):
            try:
                set_metadata(self.path(parts), self.dirs[parts])
            except OSError as exc:
                raise OvlError(
                    f"cannot set metadata of {self.name}/{show(parts)}: {exc.strerror or exc}"
                ) from None

    def _write(self, entry: Entry, reader: BundleReader) -> None:
        parts, kind = entry.path, entry.kind
        if kind is Kind.DIR or kind is Kind.OPAQUE:
            self._mkdirs(parts)
            if kind is Kind.DIR and parts:
                self.dirs[parts] = entry
            elif kind is Kind.OPAQUE and self.overlay_whiteouts:
                os.setxattr(self.path(parts), OPAQUE_XATTR, b"y", follow_symlinks=False)
            elif kind is Kind.OPAQUE:
                self.opaque.append(parts)
            return
        self._mkdirs(parts[:-1])
        path = self.path(parts)
        if kind is Kind.WHITEOUT and not self.overlay_whiteouts:
            self.whiteouts.append(parts)
            return
        if parts in self._written:  # the same path again later in the stream: the last wins
            os.unlink(path)
        self._written.add(parts)
        if kind is Kind.WHITEOUT:
            os.mknod(path, stat.S_IFCHR, os.makedev(0, 0))
            return
        self.files += 1
        if kind is Kind.FILE:
            fd = os.open(path, _CREATE, 0o600)
            try:
                self.bytes += reader.copy_data(entry, fd)
                _set_file_metadata(fd, entry)
            finally:
                os.close(fd)
        elif kind is Kind.HARDLINK:
            os.link(self.path(entry.link), path, follow_symlinks=False)
        elif kind is Kind.SYMLINK:
            os.symlink(entry.member.linkname, path)
            set_metadata(path, entry)
        else:
            device = os.makedev(entry.member.devmajor, entry.member.devminor)
            os.mknod(path, _DEVICE_TYPES[kind] | 0o600, device)
            set_metadata(path, entry)

    def _mkdirs(self, parts: Parts) -> None:
        """Create missing directories (mode 0755 until an entry says otherwise)."""
        if parts in self._made:
            return
        self._mkdirs(parts[:-1])
        path = self.path(parts)
        if not os.path.isdir(path):
            os.mkdir(path, 0o755)
            os.chmod(path, 0o755)
        self._made.add(parts)
