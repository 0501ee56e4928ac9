"""Read what the test root's init printed (`OVL-TEST <kind> <value>` console lines)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

PREFIX = "OVL-TEST "


@dataclass
class GuestReport:
    """The booted system as its init saw it; `files` maps each probed path to its content."""

    console: str
    booted: bool = False
    done: bool = False
    facts: dict[str, str] = field(default_factory=dict)
    pid1: str = ""
    root_mount: str = ""
    files: dict[str, str] = field(default_factory=dict)
    scratch: dict[str, str] = field(default_factory=dict)
    report: dict[str, Any] | None = None

    @classmethod
    def parse(cls, console: str) -> GuestReport:
        seen = cls(console=console)
        for line in console.splitlines():
            _, found, rest = line.partition(PREFIX)
            if not found:
                continue
            kind, _, value = rest.partition(" ")
            if kind == "booted":
                seen.booted = True
            elif kind == "done":
                seen.done = True
            elif kind == "file":
                path, _, content = value.partition("=")
                seen.files[path] = content
            elif kind == "facts":
                seen.facts = _pairs(value)
            elif kind == "pid1":
                seen.pid1 = value
            elif kind == "mounts":
                seen.root_mount = value
            elif kind == "scratch":
                seen.scratch = _pairs(value)
            elif kind == "report" and value != "none":
                seen.report = json.loads(value)
        return seen

    def agent_lines(self) -> list[str]:
        """The boot agent's `ovl: <phase>: ...` console lines."""
        return [
            line[line.index("ovl: ") :] for line in self.console.splitlines() if "ovl: " in line
        ]


def _pairs(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split() if "=" in item)
