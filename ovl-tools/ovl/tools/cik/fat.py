"""FAT filesystems inside an image file or on a device, without mounting: mkfs.vfat and mtools.

A volume is addressed as `image@@offset` (mtools' syntax), so a partition of a disk image or of
a real stick is written in place. With a fixed volume id, `--invariant` and SOURCE_DATE_EPOCH
for every time stamp, the same files give the same bytes.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess

from ovl.core.errors import BadInput, OvlError
from ovl.core.run import run

SECTOR = 512
_MIN_CLUSTERS = 66000  # FAT32's minimum is 65525; a margin for the FATs and reserved sectors
_LISTING = re.compile(r"^::(/.*?)(/)?$")
_FREE = re.compile(r"([\d ]+) bytes free")


@dataclass(frozen=True)
class FatVolume:
    """A FAT filesystem `offset` bytes into `image`; what is written is dated `epoch`."""

    image: Path
    offset: int
    epoch: int = 0

    @property
    def drive(self) -> str:
        return f"{self.image}@@{self.offset}"

    def _mtools(self, *argv: str | Path, check: bool = True) -> CompletedProcess[bytes]:
        env = {
            **os.environ,
            "MTOOLS_SKIP_CHECK": "1",  # images made elsewhere may have odd geometry
            "SOURCE_DATE_EPOCH": str(self.epoch),
        }
        # stdin empty: mtools never waits for an answer (and `-D o` below never asks).
        return run(argv, env=env, input=b"", check=check)

    def mkdir(self, path: str) -> None:
        """Create directory `path` (and its parents) unless it exists."""
        existing = self.paths()
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts) + 1):
            directory = "/" + "/".join(parts[:depth])
            if directory + "/" not in existing:
                self._mtools("mmd", "-i", self.drive, f"::{directory}")
                existing.add(directory + "/")

    def put(self, source: Path, dest: str) -> None:
        """Copy the host file `source` to `dest` (an absolute path), replacing what is there."""
        self._mtools("mcopy", "-D", "o", "-i", self.drive, source, f"::{dest}")

    def rename(self, old: str, new: str) -> None:
        """Rename file `old` to `new`, replacing `new` (one directory entry written; a name
        that fits 8.3 is stored upper-case, which FAT lookups do not tell apart)."""
        self._mtools("mmove", "-D", "o", "-i", self.drive, f"::{old}", f"::{new}")

    def remove(self, path: str) -> None:
        """Delete a file, or (given with a trailing `/`) a directory and everything below it."""
        if path.endswith("/"):
            self._mtools("mdeltree", "-i", self.drive, f"::{path.rstrip('/')}")
        else:
            self._mtools("mdel", "-i", self.drive, f"::{path}")

    def read(self, path: str) -> bytes:
        """The content of file `path`."""
        return self._mtools("mtype", "-i", self.drive, f"::{path}").stdout

    def paths(self) -> set[str]:
        """Every file and directory (directories with a trailing `/`), as absolute paths."""
        listed = self._mtools("mdir", "-i", self.drive, "-/", "-b", "::/", check=False)
        out = listed.stdout.decode(errors="replace")
        if listed.returncode != 0 and (out or b"not found" not in listed.stderr):
            raise OvlError(f"{self.drive}: cannot list: {listed.stderr.decode().strip()}")
        found = set()  # an empty root is "not found" to mdir
        for line in out.splitlines():
            match = _LISTING.match(line.strip())
            if match:
                found.add(match[1] + (match[2] or ""))
        return found

    def free(self) -> int:
        """Bytes free on the filesystem."""
        out = self._mtools("mdir", "-i", self.drive, "::/", check=False).stdout.decode()
        match = _FREE.search(out)
        return int(match[1].replace(" ", "")) if match else 0


def cluster_size(size: int) -> int:
    """Bytes per cluster for a FAT32 volume of `size` bytes: 4 KiB up to 8 GiB (the usual
    choice), doubling above; smaller when needed for the 65525 clusters FAT32 must have."""
    cluster = 4096
    for limit in (8 << 30, 16 << 30, 32 << 30):
        if size > limit:
            cluster *= 2
    while cluster > SECTOR and size // cluster < _MIN_CLUSTERS:
        cluster //= 2
    return cluster


def format_fat(
    image: Path, *, offset: int, size: int, label: str, volume_id: str, epoch: int = 0
) -> FatVolume:
    """Make a FAT32 filesystem of `size` bytes at `offset` in `image` (which must be that big).

    The cluster size is given, not left to mkfs.fat, which picks it from the whole image's
    size, not the partition's."""
    if size // SECTOR < _MIN_CLUSTERS + 1024:
        raise BadInput(f"{image}: {size >> 20} MiB is too small for FAT32 (at least 34 MiB)")
    run([
        "mkfs.vfat", "-F", "32", "-s", str(cluster_size(size) // SECTOR), "--invariant",
        "-i", volume_id, "-n", label, "--offset", str(offset // SECTOR), image, str(size // 1024),
    ])  # fmt: skip
    return FatVolume(image, offset, epoch)
