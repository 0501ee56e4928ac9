"""The image being assembled: cpio entries by path, each tagged with the part it belongs to.

Parent directories appear on their own; a path can be claimed once, so two parts of the build
never silently overwrite each other. The top-level bin, sbin, lib and lib64 are symlinks into
/usr (merged /usr), and `usr_path` maps a host path onto that layout.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.tools.initramfs.cpio import Entry, char_device, directory, regular, symlink

MERGED = ("bin", "sbin", "lib", "lib64")


def usr_path(host_path: str) -> str:
    """Where a host path lives in the image: relative, with /bin, /lib, ... under usr/."""
    rel = host_path.lstrip("/")
    return f"usr/{rel}" if rel.split("/", 1)[0] in MERGED else rel


class ImageTree:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Entry, str]] = {}
        for name in MERGED:
            self._put(symlink(name, f"usr/{name}"), "other")
            self.add_dir(f"usr/{name}")

    def add_dir(self, path: str, mode: int = 0o755) -> None:
        existing = self._entries.get(path)
        if existing is not None and stat.S_ISDIR(existing[0].mode):
            return
        self._parents(path)
        self._put(directory(path, mode), "other")

    def add_file(self, path: str, content: bytes | Path, part: str, mode: int = 0o644) -> None:
        self._parents(path)
        self._put(regular(path, content, mode), part)

    def add_symlink(self, path: str, target: str, part: str = "other") -> None:
        self._parents(path)
        self._put(symlink(path, target), part)

    def add_char_device(self, path: str, major: int, minor: int) -> None:
        self._parents(path)
        self._put(char_device(path, major, minor), "other")

    def __contains__(self, path: str) -> bool:
        return path in self._entries

    def entries(self, part: str | None = None) -> Iterator[Entry]:
        for entry, owner in self._entries.values():
            if part is None or owner == part:
                yield entry

    def parts(self) -> dict[str, tuple[int, int]]:
        """{part: (files and symlinks, bytes of content)}; directories count for nothing."""
        totals: dict[str, tuple[int, int]] = {}
        for entry, part in self._entries.values():
            files, size = totals.get(part, (0, 0))
            counted = 0 if stat.S_ISDIR(entry.mode) else 1
            totals[part] = (files + counted, size + entry.size())
        return totals

    def _parents(self, path: str) -> None:
        parent = path.rpartition("/")[0]
        if parent and parent not in self._entries:
            self.add_dir(parent)

    def _put(self, entry: Entry, part: str) -> None:
        if entry.path in self._entries:
            raise OvlError(f"image path /{entry.path} is claimed twice ({part} and before)")
        self._entries[entry.path] = (entry, part)
