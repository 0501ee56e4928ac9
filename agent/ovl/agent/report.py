"""/run/ovl/report.json: what the boot did and why, for machines (the console has it for humans).

Shape: {"version": 1, "facts": {...}, "channels": [{"channel", "outcome", "reason", "ms",
"bytes"}], "bundle": {...} | null, "layers": [...], "root": {...}, "timings_ms": {phase: ms},
"errors": [...], "recoverable_errors": [...], "network": {...} | null (ip=: what was asked,
"up", "seconds", "dhcp": {lease}, "static": [NICs], "lacking"), "previous_failures":
{"count", "reasons": [{"reason", "time", "action"}]} | null (boots that ended in an emergency
before this one, from ovl.cache=), "rescue": {"reason", "disks": [...]} | null}
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ovl.core.fs import write_atomic

VERSION = 1


@dataclass
class Attempt:
    channel: str
    outcome: str  # "ok" or the phase that failed: "fetch", "verify", "apply"
    reason: str
    ms: int
    bytes: int = 0


@dataclass
class Report:
    facts: dict[str, Any] = field(default_factory=dict)
    channels: list[Attempt] = field(default_factory=list)
    bundle: dict[str, Any] | None = None
    layers: list[str] = field(default_factory=list)
    root: dict[str, Any] = field(default_factory=dict)
    timings_ms: dict[str, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    recoverable_errors: list[str] = field(default_factory=list)
    network: dict[str, Any] | None = None
    previous_failures: dict[str, Any] | None = None
    rescue: dict[str, Any] | None = None

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time spent in the with-block to the phase's total."""
        start = time.monotonic()
        try:
            yield
        finally:
            spent = round((time.monotonic() - start) * 1000)
            self.timings_ms[name] = self.timings_ms.get(name, 0) + spent

    def to_json(self) -> dict[str, Any]:
        return {"version": VERSION, **asdict(self)}

    def write(self, path: Path) -> None:
        """Write through a temporary file, so a reader never sees half a report."""
        write_atomic(path, json.dumps(self.to_json(), indent=1) + "\n", durable=False)
