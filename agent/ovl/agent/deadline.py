"""How long the boot may wait for something: `ovl.timeout` seconds, or forever when it is 0."""

from __future__ import annotations

import math
import time


class Deadline:
    """A moment on the monotonic clock, `window` seconds ahead; progress pushes it back.

    `window` is math.inf for "wait forever" (`ovl.timeout=0`): the deadline never passes.
    """

    def __init__(self, window: float) -> None:
        self.window = window
        self.at = time.monotonic() + window

    def remaining(self) -> float:
        """Seconds left, never below 0 (math.inf when there is no limit)."""
        return max(0.0, self.at - time.monotonic())

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def progress(self) -> None:
        """Something moved (bytes arrived): the whole window is available again."""
        self.at = time.monotonic() + self.window

    def describe(self) -> str:
        """'12 s left', or 'no time limit'."""
        if math.isinf(self.at):
            return "no time limit"
        return f"{self.remaining():.0f} s left"


def window_words(window: float) -> str:
    """`ovl.timeout` as people read it: 'up to 30 s', or 'no time limit'."""
    return "no time limit" if math.isinf(window) else f"up to {window:g} s"
