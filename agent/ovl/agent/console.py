"""One line per boot phase, to the console and to the kernel log (and, with `ovl.log=`, to a
remote syslog through a forwarder)."""

from __future__ import annotations

import enum
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO


class Level(enum.Enum):
    """How a line reads in a log: a phase going on, a failure the boot survives, or the end."""

    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


# Called with (line, phase, level) for every line, after it is printed.
Forwarder = Callable[[str, str, Level], None]


class Console:
    """Writes `ovl: <phase>: <message>` lines; /dev/kmsg failures never stop the boot."""

    def __init__(self, *, kmsg: Path | None = None, stream: TextIO | None = None) -> None:
        self._kmsg = kmsg
        self._stream = stream if stream is not None else sys.stdout
        self._forward: Forwarder | None = None
        self.lines: list[str] = []

    def forward(self, forwarder: Forwarder | None) -> None:
        """Hand every later line to `forwarder` too (None stops it)."""
        self._forward = forwarder

    def line(self, phase: str, message: str, level: Level = Level.INFO) -> None:
        text = f"ovl: {phase}: {message}"
        self.lines.append(text)
        print(text, file=self._stream, flush=True)
        if self._kmsg is not None:
            try:
                with open(self._kmsg, "w") as kmsg:
                    # <6> is KERN_INFO whatever the level: a higher one would make the kernel
                    # print the line on the console a second time. One record per write.
                    kmsg.write(f"<6>{text}\n")
            except OSError:
                self._kmsg = None
        if self._forward is not None:
            self._forward(text, phase, level)
