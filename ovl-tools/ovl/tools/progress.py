"""A one-line progress counter on stderr for long work, drawn only on a terminal."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ovl.core.errors import BadInput
from ovl.core.units import human_duration, human_size

_REDRAW_SECONDS = 0.2
_ETA_AFTER = 1.0  # seconds of work before the rate is trusted for an estimate


class Progress:
    """Counts bytes done out of an optional total; silent unless `stream` is a terminal.

    The line reads `LABEL: 120 MiB of 512 MiB (23%), 85.1 MiB/s, 0:05 left`; without a total,
    `LABEL: 120 MiB, 85.1 MiB/s`.
    """

    def __init__(
        self,
        label: str,
        total: int | None = None,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self.enabled = self._stream.isatty()
        self._label = label
        self.total = total
        self._done = 0
        self._clock = clock
        self._started = clock()
        self._drawn_at = 0.0

    def advance(self, amount: int) -> None:
        self._done += amount
        now = self._clock()
        if self.enabled and now - self._drawn_at >= _REDRAW_SECONDS:
            self._drawn_at = now
            self._draw(now)

    def close(self) -> None:
        if self.enabled:
            self._draw(self._clock())
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, now: float) -> None:
        elapsed = max(now - self._started, 1e-6)
        rate = self._done / elapsed
        line = f"{self._label}: {human_size(self._done)}"
        if self.total:
            line += f" of {human_size(self.total)} ({min(100, self._done * 100 // self.total)}%)"
        line += f", {human_size(int(rate))}/s"
        if self.total and rate and elapsed >= _ETA_AFTER and self._done < self.total:
            line += f", {human_duration((self.total - self._done) / rate)} left"
        # \x1b[K clears what a longer earlier line left behind.
        self._stream.write(f"\r{line}\x1b[K")
        self._stream.flush()


class _CountingRaw(io.RawIOBase):
    def __init__(self, raw: BinaryIO, progress: Progress) -> None:
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._raw.seekable()

    def seek(self, offset: int, whence: int = os.SEEK_SET, /) -> int:
        return self._raw.seek(offset, whence)

    def tell(self) -> int:
        return self._raw.tell()

    def readinto(self, buffer: Any) -> int:
        data = self._raw.read(len(buffer))
        buffer[: len(data)] = data
        self._progress.advance(len(data))
        return len(data)


def counting_reader(raw: BinaryIO, progress: Progress) -> BinaryIO:
    """`raw` as a buffered reader that reports every byte read to `progress`."""
    return io.BufferedReader(_CountingRaw(raw, progress), buffer_size=1 << 20)


@contextmanager
def open_with_progress(path: Path, label: str) -> Iterator[BinaryIO]:
    """Open a bundle for one streaming read, drawing how much of it has been read."""
    try:
        raw = path.open("rb")
    except OSError as exc:
        raise BadInput(f"{path}: cannot open ({exc.strerror})") from exc
    progress = Progress(label, total=os.fstat(raw.fileno()).st_size)
    with raw:
        yield counting_reader(raw, progress)
    progress.close()
