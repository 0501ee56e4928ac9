"""The retry policy of every download: capped exponential backoff with full jitter, for as long
as the deadline (`ovl.timeout` without progress; forever when it is 0) allows.

A failure is retried unless it is `Final` (404 or another 4xx, an untrusted certificate, over
the size cap, a full disk): refused connections, timeouts, dropped connections, 5xx, 408, 425
and 429 are all worth another attempt, so a server that comes up late is still reached.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from ovl.agent.deadline import Deadline
from ovl.core.errors import OvlError

T = TypeVar("T")


class Final(OvlError):
    """A failure another attempt cannot fix."""


class NotFound(Final):
    """HTTP 404: final, and for an optional file (a signature) simply absent."""


class Transient(OvlError):
    """A failure worth another attempt; `after` is the server's Retry-After in seconds."""

    def __init__(self, message: str, *, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after


@dataclass(frozen=True)
class Backoff:
    """Pause before attempt n+1: uniform in [0, min(cap, first * 2**(n-1))] (full jitter, so a
    fleet that failed together does not retry together)."""

    first: float = 0.5
    cap: float = 10.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def pause(self, failed_attempts: int, after: float | None = None) -> float:
        ceiling = min(self.cap, self.first * 2 ** min(failed_attempts - 1, 32))
        pause = self.rng.uniform(0, ceiling)
        if after is not None:  # the server asked for a pause: honour it, up to the cap
            pause = max(pause, min(after, self.cap))
        return pause


def retrying(
    attempt: Callable[[], T],
    *,
    deadline: Deadline,
    say: Callable[[str], None],
    backoff: Backoff | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """attempt() until it returns, raises Final, or fails once the deadline has passed.

    Each failure that is retried is one `say()` line ("attempt N failed: reason; retry in P s
    (L s left)"); the last pause is cut to the deadline, so one attempt falls on it. The error
    that ends it says how many attempts were made.
    """
    policy = backoff or Backoff()
    failed = 0
    while True:
        try:
            return attempt()
        except Final:
            raise
        except OvlError as exc:
            failed += 1
            if deadline.passed():
                if failed == 1:
                    raise
                raise OvlError(f"{exc.line} ({failed} attempts)") from None
            after = exc.after if isinstance(exc, Transient) else None
            pause = min(policy.pause(failed, after), deadline.remaining())
            left = deadline.describe()
            say(f"attempt {failed} failed: {exc.line}; retry in {pause:.1f} s ({left})")
            sleep(pause)
