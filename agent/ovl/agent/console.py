"""One line per boot phase, to the console and to the kernel log."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TextIO


class Console:
    """Writes `ovl: <phase>: <message>` lines; /dev/kmsg failures never stop the boot."""

    def __init__(self, *, kmsg: Path | None = None, stream: TextIO | None = None) -> None:
        self._kmsg = kmsg
        self._stream = stream if stream is not None else sys.stdout
        self.lines: list[str] = []

    def line(self, phase: str, message: str) -> None:
        text = f"ovl: {phase}: {message}"
        self.lines.append(text)
        print(text, file=self._stream, flush=True)
        if self._kmsg is not None:
            try:
                with open(self._kmsg, "w") as kmsg:
                    # <6> is KERN_INFO; kmsg takes one record per write.
                    kmsg.write(f"<6>{text}\n")
            except OSError:
                self._kmsg = None
