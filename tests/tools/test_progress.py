"""The progress line: drawn on a terminal only, and counting every byte read through it."""

from __future__ import annotations

import contextlib
import io
import os
import pty
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ovl.core.units import human_duration, human_size
from ovl.tools.progress import Progress, counting_reader


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_is_drawn_on_a_terminal_with_label_and_total() -> None:
    screen = Terminal()
    progress = Progress("pack b.ovl", total=4 * 1048576, stream=screen)
    progress.advance(3 * 1048576)
    progress.close()
    assert screen.getvalue().startswith("\rpack b.ovl: 3.00 MiB of 4.00 MiB (75%), ")
    assert screen.getvalue().endswith("/s\x1b[K\n")


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
    assert "read: 1.22 MiB, " in screen.getvalue()


def test_progress_estimates_the_time_left_once_the_rate_is_known() -> None:
    screen = Terminal()
    clock = iter([100.0, 101.0, 102.0, 103.0])
    progress = Progress("pack b.ovl", total=40 * 1048576, stream=screen, clock=lambda: next(clock))
    progress.advance(10 * 1048576)  # 10 MiB in the first second...
    progress.advance(10 * 1048576)  # ...20 MiB after two: 10 MiB/s, 20 MiB to go
    assert screen.getvalue().endswith(
        "\rpack b.ovl: 20.0 MiB of 40.0 MiB (50%), 10.0 MiB/s, 0:02 left\x1b[K"
    )


def test_human_sizes_and_durations() -> None:
    assert [human_size(n) for n in (0, 1023, 1024, 1536, 10 * 1048576, 123 * 1048576)] == [
        "0 B",
        "1023 B",
        "1.00 KiB",
        "1.50 KiB",
        "10.0 MiB",
        "123 MiB",
    ]
    assert human_size(3 << 40) == "3.00 TiB"
    assert [human_duration(s) for s in (0, 5.4, 754, 3723)] == ["0:00", "0:05", "12:34", "1:02:03"]


@pytest.mark.subprocess
def test_pack_on_a_terminal_draws_its_total_and_on_a_pipe_nothing(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    (tree / "usr/lib").mkdir(parents=True)
    (tree / "usr/lib/blob").write_bytes(os.urandom(3 << 20))
    ovl = [sys.executable, "-c", "import sys; from ovl.tools.cli import main; sys.exit(main())"]
    controller, terminal = pty.openpty()
    with os.fdopen(controller, "rb", buffering=0) as screen:
        done = subprocess.run(
            [*ovl, "pack", str(tree), "-o", str(tmp_path / "a.ovl")],
            stdout=subprocess.PIPE,
            stderr=terminal,
            check=True,
        )
        os.close(terminal)
        drawn = b""
        with contextlib.suppress(OSError):  # EIO once the terminal side is closed
            while chunk := screen.read(4096):
                drawn += chunk
    assert done.stdout.decode().startswith(f"{tmp_path / 'a.ovl'}: 3 entries, 3.00 MiB of content")
    assert re.search(rb"\rpack a\.ovl: 3\.00 MiB of 3\.00 MiB \(100%\), [0-9.]+ [KMG]iB/s", drawn)
    piped = subprocess.run(
        [*ovl, "pack", str(tree), "-o", str(tmp_path / "b.ovl")], capture_output=True, check=True
    )
    assert piped.stderr == b""
