"""A one-line progress counter on stderr for long work, drawn only on a terminal."""

from __future__ import annotations

import io
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from ovl.core.errors import BadInput

_REDRAW_SECONDS = 0.2


def _mib(n: int) -> str:
    return f"{n / 1048576:.1f} MiB"


class Progress:
    """Counts bytes done out of an optional total; silent unless `stream` is a terminal."""

    def __init__(self, label: str, total: int | None = None, stream: TextIO | None = None) -> None:
        self._stream = stream if stream is not None else sys.stderr
        self._enabled = self._stream.isatty()
        self._label = label
        self._total = total
        self._done = 0
        self._started = time.monotonic()
        self._drawn_at = 0.0

    def advance(self, amount: int) -> None:
        self._done += amount
        now = time.monotonic()
        if self._enabled and now - self._drawn_at >= _REDRAW_SECONDS:
            self._drawn_at = now
            self._draw(now)

    def close(self) -> None:
        if self._enabled:
            self._draw(time.monotonic())
            self._stream.write("\n")
            self._stream.flush()

    def _draw(self, now: float) -> None:
        rate = self._done / max(now - self._started, 1e-6)
        of_total = f" of {_mib(self._total)}" if self._total else ""
        self._stream.write(f"\r{self._label}: {_mib(self._done)}{of_total} ({_mib(int(rate))}/s)")
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
