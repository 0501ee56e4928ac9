"""What an unattended machine does when no root can be assembled (`ovl.emergency=`), and the
record of failed boots that the next successful one reports.

The action travels to the /init shim in the hand-over file (EMERGENCY_ACTION, EMERGENCY_DELAY);
the record is kept on `ovl.cache=` (cache.FAILURES) so it survives the reboot.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any

from ovl.core.errors import BadInput

DEFAULT_REBOOT_DELAY = 10
MAX_DELAY = 24 * 3600
KEPT_REASONS = 5  # the most recent failures a record keeps


class Action(enum.Enum):
    SHELL = "shell"
    REBOOT = "reboot"
    POWEROFF = "poweroff"


@dataclass(frozen=True)
class Emergency:
    """`ovl.emergency=shell|reboot[:SECONDS]|poweroff`."""

    action: Action = Action.SHELL
    delay: int = 0  # seconds before a reboot

    @classmethod
    def parse(cls, value: str) -> Emergency:
        word, sep, seconds = value.partition(":")
        if word == Action.REBOOT.value:
            if not sep:
                return cls(Action.REBOOT, DEFAULT_REBOOT_DELAY)
            if not seconds.isdigit() or int(seconds) > MAX_DELAY:
                raise BadInput(f"expected reboot:SECONDS, whole seconds from 0 to {MAX_DELAY}")
            return cls(Action.REBOOT, int(seconds))
        if sep or word not in (Action.SHELL.value, Action.POWEROFF.value):
            raise BadInput("expected shell, reboot[:SECONDS] or poweroff")
        return cls(Action(word))

    def handover(self) -> dict[str, str]:
        """The hand-over file's keys for the /init shim."""
        if self.action is Action.REBOOT:
            return {"EMERGENCY_ACTION": "reboot", "EMERGENCY_DELAY": str(self.delay)}
        return {"EMERGENCY_ACTION": self.action.value}

    def describe(self) -> str:
        if self.action is Action.REBOOT:
            return f"rebooting in {self.delay} s"
        return {Action.SHELL: "emergency shell", Action.POWEROFF: "powering off"}[self.action]


@dataclass(frozen=True)
class FailedBoots:
    """Consecutive boots that ended in an emergency, newest last (kept on the cache)."""

    count: int
    reasons: tuple[dict[str, Any], ...]  # {"reason": str, "time": epoch seconds, "action": str}

    def add(self, reason: str, action: Action, now: float | None = None) -> FailedBoots:
        entry = {
            "reason": reason,
            "time": round(time.time() if now is None else now),
            "action": action.value,
        }
        return FailedBoots(self.count + 1, (*self.reasons, entry)[-KEPT_REASONS:])

    @property
    def last_reason(self) -> str:
        return str(self.reasons[-1]["reason"]) if self.reasons else "unknown"

    def to_json(self) -> dict[str, Any]:
        return {"version": 1, "count": self.count, "reasons": list(self.reasons)}

    @classmethod
    def from_json(cls, data: Any) -> FailedBoots:
        """The record as read from the cache; BadInput when it is not one."""
        if not isinstance(data, dict) or data.get("version") != 1:
            raise BadInput("not a failed-boots record (version 1)")
        count, reasons = data.get("count"), data.get("reasons")
        if not isinstance(count, int) or count < 1 or not isinstance(reasons, list):
            raise BadInput("failed-boots record without count and reasons")
        kept = tuple(r for r in reasons if isinstance(r, dict) and isinstance(r.get("reason"), str))
        return cls(count, kept[-KEPT_REASONS:])


NO_FAILURES = FailedBoots(0, ())
