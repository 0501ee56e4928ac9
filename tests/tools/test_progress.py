"""The progress line: drawn on a terminal only, and counting every byte read through it."""

from __future__ import annotations

import io

from ovl.tools.progress import Progress, counting_reader


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_with_label_and_total() -> None:
    screen = Terminal()
    progress = Progress("pack b.ovl", total=4 * 1048576, stream=screen)
    progress.advance(3 * 1048576)
    progress.close()
    assert screen.getvalue().startswith("\rpack b.ovl: 3.0 MiB of 4.0 MiB (")
    assert screen.getvalue().endswith("/s)\n")


def test_progress_writes_nothing_into_a_pipe_or_file() -> None:
    pipe = io.StringIO()
    progress = Progress("pack", stream=pipe)
    progress.advance(10)
    progress.close()
    assert pipe.getvalue() == ""


def test_counting_reader_passes_bytes_through_and_counts_them() -> None:
    screen = Terminal()
    progress = Progress("read", stream=screen)
    data = bytes(range(256)) * 5000
    reader = counting_reader(io.BytesIO(data), progress)
    assert reader.read(10) + reader.read() == data
    progress.close()
    assert "read: 1.2 MiB" in screen.getvalue()
