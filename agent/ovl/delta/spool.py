"""A durable spool of packed deltas waiting to be shipped.

A delta becomes visible in the spool only complete: it is written to a temp file, fsynced,
renamed to `<created_ns>-<sha256>.tar.zst` and the directory fsynced. A crash at any point
leaves either nothing or the whole delta (stale temp files are swept under the lock).
Ship removes a delta only after the server acknowledged it, so none is ever lost.
"""

from __future__ import annotations

import fcntl
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ovl.core.errors import OvlError

if TYPE_CHECKING:
    from ovl.delta.pack import Packed

_NAME = re.compile(r"^(?P<created>\d{19})-(?P<sha>[0-9a-f]{64})\.tar\.zst$")
_TEMP_PREFIX = ".tmp-"
_LAST_SHIPPED = "last-shipped"


@dataclass(frozen=True)
class SpooledDelta:
    path: Path
    sha256: str
    created_ns: int

    @property
    def size(self) -> int:
        return self.path.stat().st_size


def fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    def __init__(self, root: Path) -> None:
        self.root = root

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Exclusive use of the spool (pack and ship from timer and shutdown hook may overlap)."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OvlError(f"spool {self.root}: cannot open ({exc.strerror})") from exc
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self._sweep_temps()
            yield
        finally:
            os.close(lock)

    def _sweep_temps(self) -> None:
        for path in self.root.glob(_TEMP_PREFIX + "*"):
            path.unlink(missing_ok=True)

    def pending(self) -> list[SpooledDelta]:
        """Complete deltas, oldest first."""
        found = []
        for path in self.root.iterdir() if self.root.is_dir() else ():
            match = _NAME.match(path.name)
            if match:
                found.append(SpooledDelta(path, match["sha"], int(match["created"])))
        return sorted(found, key=lambda d: (d.created_ns, d.sha256))

    def last_shipped(self) -> str:
        try:
            return (self.root / _LAST_SHIPPED).read_text().strip()
        except FileNotFoundError:
            return ""

    def add(self, write: Callable[[BinaryIO], Packed]) -> SpooledDelta | None:
        """Spool what `write` produces; None when it equals a delta already spooled or shipped."""
        created = time.time_ns()
        temp = self.root / f"{_TEMP_PREFIX}{os.getpid()}-{created}"
        try:
            with temp.open("wb") as out:
                packed = write(out)
                out.flush()
                os.fsync(out.fileno())
            known = {d.sha256 for d in self.pending()} | {self.last_shipped()}
            if packed.sha256 in known:
                temp.unlink()
                return None
            final = self.root / f"{created:019d}-{packed.sha256}.tar.zst"
            os.rename(temp, final)
            fsync_dir(self.root)
        except OSError as exc:
            temp.unlink(missing_ok=True)
            raise OvlError(f"spool {self.root}: cannot write delta ({exc.strerror})") from exc
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return SpooledDelta(final, packed.sha256, created)

    def shipped(self, delta: SpooledDelta) -> None:
        """Record `delta` as acknowledged by the server, then drop it from the spool."""
        marker = self.root / (_TEMP_PREFIX + _LAST_SHIPPED)
        marker.write_text(delta.sha256 + "\n")
        os.rename(marker, self.root / _LAST_SHIPPED)
        delta.path.unlink(missing_ok=True)
        fsync_dir(self.root)
