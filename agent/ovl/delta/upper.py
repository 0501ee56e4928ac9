"""Walk an overlayfs upper dir and describe it as portable tar entries.

overlayfs marks a deleted name with a character device 0/0 and a directory that hides
everything below it with the xattr `trusted.overlay.opaque=y` (`user.overlay.opaque` when
mounted with `userxattr`). A tar cannot carry either faithfully, so they become the OCI forms:
an empty `.wh.<name>` file and a `.wh..wh..opq` file inside the directory.
"""

from __future__ import annotations

import enum
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

from ovl.core.errors import OvlError
from ovl.format.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX

_OVERLAY_XATTR_PREFIXES = ("trusted.overlay.", "user.overlay.")
# Upper dirs written with these features keep data in the lower layers; a tar of the upper
# alone would silently miss it, so we refuse instead (mount with redirect_dir=off,metacopy=off).
_UNPORTABLE_XATTRS = ("overlay.redirect", "overlay.metacopy")


class Kind(enum.Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    WHITEOUT = "whiteout"
    OPAQUE = "opaque"


class Entry(NamedTuple):
    """One tar member to write: `path` is relative with '/' separators, never absolute.

    A NamedTuple rather than a dataclass: an upper dir can hold many thousands of files and
    pack time is measured against GNU tar (bench/delta.py).
    """

    path: str
    kind: Kind
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0
    source: str = ""  # file to read the data from (FILE only)
    link: str = ""
    xattrs: dict[str, bytes] = {}  # noqa: RUF012 - never mutated; NamedTuple defaults are shared


def is_whiteout(st: os.stat_result) -> bool:
    """True for overlayfs's deletion marker: a character device with device number 0/0."""
    return stat.S_ISCHR(st.st_mode) and st.st_rdev == 0


def portable_xattrs(path: str) -> tuple[dict[str, bytes], bool]:
    """The xattrs worth shipping (overlay's own dropped) and whether the dir is opaque."""
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}, False
    kept: dict[str, bytes] = {}
    opaque = False
    for name in names:
        value = os.getxattr(path, name, follow_symlinks=False)
        if name.startswith(_OVERLAY_XATTR_PREFIXES):
            if name.endswith(".opaque") and value == b"y":
                opaque = True
            elif name.endswith(_UNPORTABLE_XATTRS):
                raise OvlError(
                    f"{path}: upper dir uses overlayfs {name.split('.', 1)[1]}; "
                    "mount the overlay with redirect_dir=off,metacopy=off to ship deltas"
                )
            continue
        kept[name] = value
    return kept, opaque


def walk_upper(root: Path, wanted: Callable[[str, bool], bool]) -> Iterator[Entry]:
    """Entries of `root` in a stable order (parents first, names sorted).

    `wanted(relpath, is_dir)` decides what is shipped; for an unwanted directory it is asked
    again about every name below only when it answers True for `relpath + "/"` (a probe meaning
    "could anything below be wanted?").
    """
    seen_inodes: dict[tuple[int, int], str] = {}
    # One loop over a stack of directory listings rather than recursive generators: every
    # entry would otherwise be passed up through one generator frame per directory level.
    stack = [(iter(_listing(str(root))), str(root), "")]
    while stack:
        names, directory, prefix = stack[-1]
        name = next(names, None)
        if name is None:
            stack.pop()
            continue
        path = f"{directory}/{name}"
        rel = prefix + name
        st = os.lstat(path)
        is_dir = stat.S_ISDIR(st.st_mode)
        if wanted(rel, is_dir):
            yield from _entries_for(path, rel, st, seen_inodes)
        elif not (is_dir and wanted(rel + "/", True)):
            continue
        if is_dir:
            stack.append((iter(_listing(path)), path, rel + "/"))


def _listing(directory: str) -> list[str]:
    try:
        return sorted(os.listdir(directory))
    except OSError as exc:
        raise OvlError(f"{directory}: cannot list upper dir ({exc.strerror})") from exc


def _entries_for(
    path: str, rel: str, st: os.stat_result, seen_inodes: dict[tuple[int, int], str]
) -> tuple[Entry, ...]:
    mode = st.st_mode
    perms, uid, gid, mtime = stat.S_IMODE(mode), st.st_uid, st.st_gid, st.st_mtime_ns
    if is_whiteout(st):
        head, _, name = rel.rpartition("/")
        marker = f"{head}/{WHITEOUT_PREFIX}{name}" if head else WHITEOUT_PREFIX + name
        return (Entry(marker, Kind.WHITEOUT, perms, uid, gid, mtime),)
    if stat.S_ISSOCK(mode) or stat.S_ISFIFO(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        # Runtime objects; the bundle engine refuses devices and fifos in a layer, so shipping
        # one would only get every later delta of this machine refused by the server.
        return ()
    xattrs, opaque = portable_xattrs(path)
    if stat.S_ISDIR(mode):
        itself = Entry(rel, Kind.DIR, perms, uid, gid, mtime, xattrs=xattrs)
        if opaque:
            return (itself, Entry(f"{rel}/{OPAQUE_MARKER}", Kind.OPAQUE, perms, uid, gid, mtime))
        return (itself,)
    if st.st_nlink > 1:
        first = seen_inodes.setdefault((st.st_dev, st.st_ino), rel)
        if first != rel:
            return (Entry(rel, Kind.HARDLINK, perms, uid, gid, mtime, link=first, xattrs=xattrs),)
    if stat.S_ISREG(mode):
        return (Entry(rel, Kind.FILE, perms, uid, gid, mtime, st.st_size, path, xattrs=xattrs),)
    link = os.readlink(path)  # what is left is a symlink
    return (Entry(rel, Kind.SYMLINK, perms, uid, gid, mtime, link=link, xattrs=xattrs),)
