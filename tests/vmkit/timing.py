"""A boot timed at its console lines, for the bench scripts: when each stage's line appeared."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from pathlib import Path

from tests.vmkit.qemu import Boot, Machine, VirtualMachine

Stages = Sequence[tuple[str, re.Pattern[str]]]


def stage_times(
    boot: Boot, machine: Machine, work: Path, stages: Stages, *, last: str, timeout: float
) -> dict[str, float]:
    """Seconds after QEMU started at which each stage's first line appeared; exits naming the
    console log when the boot never reached stage `last`."""
    seen: dict[str, float] = {}
    with VirtualMachine(boot, machine, work, timeout) as vm:
        for line in vm.lines(timeout):
            now = time.monotonic() - vm.started
            for stage, pattern in stages:
                if stage not in seen and pattern.search(line):
                    seen[stage] = now
    if last not in seen:
        raise SystemExit(f"the boot did not reach '{last}': see {work / 'console.log'}")
    return seen
