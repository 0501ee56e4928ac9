"""EarlyWriteback: the bytes pass through unchanged, and writeback is asked for as they go."""

from __future__ import annotations

import os
from pathlib import Path

from ovl.core.writeback import STEP, EarlyWriteback


def test_writeback_starts_every_step_and_the_file_is_whole(tmp_path: Path) -> None:
    piece = os.urandom(1 << 20)
    path = tmp_path / "out"
    with path.open("wb") as out:
        sink = EarlyWriteback(out)
        for _ in range(2 * STEP // len(piece) + 3):
            sink.write(piece)
        # sync_file_range(2) works on this filesystem: writeback was started twice on the way.
        assert sink.started == 2 * STEP
        sink.durable()
    assert path.read_bytes() == piece * (2 * STEP // len(piece) + 3)


def test_a_pipe_refuses_it_and_writing_goes_on(tmp_path: Path) -> None:
    read_end, write_end = os.pipe()
    os.set_blocking(read_end, False)
    with os.fdopen(write_end, "wb", buffering=0) as out:
        sink = EarlyWriteback(out)
        sink.write(b"x" * 10)
        sink.written = sink.started + STEP  # as if STEP bytes had gone by: ESPIPE from the pipe
        sink.write(b"y")
        assert sink.started == 0
        sink.write(b"z")
    assert os.read(read_end, 100) == b"x" * 10 + b"yz"
    os.close(read_end)
