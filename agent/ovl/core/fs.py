"""Writing files so that a reader, a crash or a full disk never leaves half of one in place.

The rule: write a temporary file on the destination's filesystem, make it durable, rename it
over the destination, make the rename durable (fsync of the directory). Until the rename the
destination keeps its old content; a failure on the way removes the temporary file.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def fsync_dir(directory: Path) -> None:
    """Make renames and removals in `directory` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Make a file's content durable, whoever wrote it."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass
class Staged:
    """A file being written: `path` is the temporary file to fill; at the end of the block it
    is renamed onto `dest` (which the block may change, e.g. to a name made of the content's
    hash), or removed when the block sets `keep` to False or fails."""

    path: Path
    dest: Path
    keep: bool = True


@contextmanager
def atomic_write(
    dest: Path, *, mode: int | None = 0o644, durable: bool = True, scratch: Path | None = None
) -> Iterator[Staged]:
    """Stage a file for `dest`: created empty beside it (or in `scratch`, which must be on the
    same filesystem) as `.<name>.<random>.tmp`, renamed into place when the block succeeds.

    `mode` None keeps mkstemp's 0600; `durable` False skips the fsyncs (RAM-backed /run)."""
    directory = scratch or dest.parent
    directory.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=directory)
    os.close(fd)
    staged = Staged(Path(name), dest)
    try:
        yield staged
        if staged.keep:
            if durable:
                fsync_file(staged.path)
            if mode is not None:
                staged.path.chmod(mode)
            staged.dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(staged.path, staged.dest)
            if durable:
                fsync_dir(staged.dest.parent)
    finally:
        staged.path.unlink(missing_ok=True)


def write_atomic(
    dest: Path,
    data: bytes | str,
    *,
    mode: int | None = 0o644,
    durable: bool = True,
    scratch: Path | None = None,
) -> None:
    """Replace `dest` with `data` (text as UTF-8) through `atomic_write`."""
    with atomic_write(dest, mode=mode, durable=durable, scratch=scratch) as staged:
        staged.path.write_bytes(data.encode() if isinstance(data, str) else data)
