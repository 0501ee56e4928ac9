"""Moving staged layers into the target: renames only, every step journaled so that any
failure puts the target back exactly as it was (contents, modes, owners, xattrs, mtimes)."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.format.paths import Parts, show
from ovl.format.stage import LayerDir, set_metadata


@dataclass(frozen=True)
class DirState:
    """What a directory's own metadata was before the commit touched it."""

    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int
    xattrs: dict[str, bytes]

    @classmethod
    def capture(cls, path: str) -> DirState:
        st = os.lstat(path)
        names = os.listxattr(path, follow_symlinks=False)
        xattrs = {name: os.getxattr(path, name, follow_symlinks=False) for name in names}
        return cls(st.st_mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns, xattrs)

    def restore(self, path: str) -> None:
        os.chown(path, self.uid, self.gid, follow_symlinks=False)
        os.chmod(path, stat.S_IMODE(self.mode))
        for name in os.listxattr(path, follow_symlinks=False):
            if name not in self.xattrs:
                os.removexattr(path, name, follow_symlinks=False)
        for name, value in self.xattrs.items():
            os.setxattr(path, name, value, follow_symlinks=False)
        os.utime(path, ns=(self.atime_ns, self.mtime_ns), follow_symlinks=False)


class Journal:
    """Undo steps for the target, newest last, and the prior state of every directory touched."""

    def __init__(self, trash: Path) -> None:
        self._trash = trash
        self._undo: list[Callable[[], None]] = []
        self._dirs: dict[str, DirState] = {}

    def remember(self, directory: str, state: DirState) -> None:
        self._dirs[directory] = state

    def touch(self, directory: str) -> None:
        """Remember `directory`'s metadata before the first change to it or its entries."""
        if directory not in self._dirs and os.path.isdir(directory):
            self._dirs[directory] = DirState.capture(directory)

    def move_in(self, source: str, destination: str) -> None:
        self.touch(os.path.dirname(destination))
        os.rename(source, destination)
        self._undo.append(lambda: _remove(destination))

    def discard(self, path: str) -> None:
        """Move `path` out of the way into the trash (deleted only once the commit succeeds)."""
        self.touch(os.path.dirname(path))
        if not self._trash.exists():
            os.mkdir(self._trash, 0o700)
        kept = os.path.join(self._trash, str(len(self._undo)))
        os.rename(path, kept)
        self._undo.append(lambda: os.rename(kept, path))

    def undo(self) -> None:
        """Reverse every rename, newest first (the trash must still exist)."""
        for step in reversed(self._undo):
            step()

    def restore_dirs(self) -> None:
        """Put back directory metadata; last, since removing scratch space changes mtimes."""
        for directory in sorted(self._dirs, key=len, reverse=True):
            if os.path.isdir(directory):
                self._dirs[directory].restore(directory)


def _remove(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        os.unlink(path)


def _real_dir(dest: str, parts: Parts, layer: LayerDir, *, strict: bool = True) -> str | None:
    """`dest/parts` when it is a directory reached without symlinks; None when absent.

    A symlink on the way is an error when `strict`, else it too gives None."""
    path = dest
    for depth, part in enumerate(parts, 1):
        path = os.path.join(path, part)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return None
        if stat.S_ISLNK(mode) and strict:
            raise BadInput(
                f"bundle layer {layer.name}: {show(parts)} passes through symlink "
                f"{show(parts[:depth])} in the target"
            )
        if not stat.S_ISDIR(mode):
            return None
    return path


def merge_layer(layer: LayerDir, dest: str, journal: Journal, keep: str | None) -> None:
    """Apply one staged layer onto `dest`: its whiteouts first (they hide what is below), then
    its entries. `keep` names an entry of `dest` itself that opaque markers must spare."""
    for parts in layer.whiteouts:
        parent = _real_dir(dest, parts[:-1], layer)
        if parent is not None and os.path.lexists(os.path.join(parent, parts[-1])):
            journal.discard(os.path.join(parent, parts[-1]))
    for parts in layer.opaque:
        directory = _real_dir(dest, parts, layer)
        if directory is None:
            continue
        for name in os.listdir(directory):
            if not (parts == () and name == keep):
                journal.discard(os.path.join(directory, name))
    _merge_tree(layer, str(layer.root), dest, (), journal)


def _merge_tree(layer: LayerDir, source: str, dest: str, parts: Parts, journal: Journal) -> None:
    for name in os.listdir(source):
        staged, there = os.path.join(source, name), os.path.join(dest, name)
        staged_is_dir = stat.S_ISDIR(os.lstat(staged).st_mode)
        try:
            existing: int | None = os.lstat(there).st_mode
        except FileNotFoundError:
            existing = None
        if existing is not None and staged_is_dir and stat.S_ISDIR(existing):
            _merge_tree(layer, staged, there, (*parts, name), journal)
            continue
        if existing is not None and staged_is_dir and stat.S_ISLNK(existing):
            raise BadInput(
                f"bundle layer {layer.name}: {show((*parts, name))} passes through a symlink "
                "in the target"
            )
        if existing is not None:
            journal.discard(there)  # as in overlayfs, the upper entry replaces the lower one
        journal.move_in(staged, there)


def set_dir_metadata(layers: list[LayerDir], dest: str, journal: Journal) -> None:
    """Re-apply declared directory metadata: moving entries in changed directory mtimes."""
    for layer in layers:
        for parts, entry in layer.dirs.items():
            path = _real_dir(dest, parts, layer, strict=False)
            if path is not None:  # a later layer may have hidden or replaced it
                journal.touch(path)
                set_metadata(path, entry)


def commit_merged(layers: list[LayerDir], dest: str, journal: Journal, keep: str | None) -> None:
    try:
        for layer in layers:
            merge_layer(layer, dest, journal, keep)
        set_dir_metadata(layers, dest, journal)
    except OSError as exc:
        raise OvlError(f"cannot merge the bundle into {dest}: {exc.strerror or exc}") from None


def commit_split(layers: list[LayerDir], dest: str, journal: Journal) -> None:
    for layer in layers:
        if os.path.lexists(os.path.join(dest, layer.name)):
            raise OvlError(f"{os.path.join(dest, layer.name)} already exists")
    try:
        for layer in layers:
            journal.move_in(str(layer.root), os.path.join(dest, layer.name))
    except OSError as exc:
        raise OvlError(f"cannot move layers into {dest}: {exc.strerror or exc}") from None
