"""Start writing a file's pages to disk while the file is still being written, so the fsync
that makes it durable at the end waits for little (dpkg does the same, for the same reason).

sync_file_range(2) with SYNC_FILE_RANGE_WRITE only queues the writeback and returns; Python's
os module does not offer it, so it is called from libc. Where libc lacks it, nothing is
started early and the final fsync does all the waiting, as before."""

from __future__ import annotations

import ctypes
import os
from collections.abc import Callable
from typing import BinaryIO

STEP = 16 << 20
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).sync_file_range
    except AttributeError:
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int
    start: Callable[[int, int, int, int], int] = function
    return start


class EarlyWriteback:
    """`out` (a file opened for writing from its start) with writeback started every STEP
    bytes written through this object."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._fd = out.fileno()
        self._start = _sync_file_range()
        self.written = 0
        self.started = 0  # bytes whose writeback has been asked for

    def write(self, data: bytes | memoryview, /) -> int:
        count = self._out.write(data)
        self.written += count
        if self._start is not None and self.written - self.started >= STEP:
            self._out.flush()
            pending = self.written - self.started
            if self._start(self._fd, self.started, pending, _SYNC_FILE_RANGE_WRITE) == 0:
                self.started = self.written
            else:  # an fs that refuses it (EINVAL, ESPIPE): fsync at the end does it all
                self._start = None
        return count

    def durable(self) -> None:
        """Flush and fsync: everything written is on disk when this returns."""
        self._out.flush()
        os.fsync(self._fd)
