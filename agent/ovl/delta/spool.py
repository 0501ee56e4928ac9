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
from ovl.core.fs import atomic_write, fsync_dir, write_atomic

if TYPE_CHECKING:
    from ovl.delta.pack import Packed

_NAME = re.compile(r"^(?P<created>\d{19})-(?P<sha>[0-9a-f]{64})\.tar\.zst$")
_TEMPS = ".*.tmp"  # atomic_write's temporary files
_LAST_SHIPPED = "last-shipped"


@dataclass(frozen=True)
class SpooledDelta:
    path: Path
    sha256: str
    created_ns: int

    @property
    def size(self) -> int:
        return self.path.stat().st_size


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
        for path in self.root.glob(_TEMPS):
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
        try:
            # Named by its content once written: the sha256 is known only at the end.
            with atomic_write(self.root / "incoming") as staged:
                with staged.path.open("wb") as out:
                    packed = write(out)
                known = {d.sha256 for d in self.pending()} | {self.last_shipped()}
                staged.keep = packed.sha256 not in known
                staged.dest = self.root / f"{created:019d}-{packed.sha256}.tar.zst"
        except OSError as exc:
            raise OvlError(f"spool {self.root}: cannot write delta ({exc.strerror})") from exc
        return SpooledDelta(staged.dest, packed.sha256, created) if staged.keep else None

    def shipped(self, delta: SpooledDelta) -> None:
        """Record `delta` as acknowledged by the server, then drop it from the spool."""
        write_atomic(self.root / _LAST_SHIPPED, delta.sha256 + "\n")
        delta.path.unlink(missing_ok=True)
        fsync_dir(self.root)
