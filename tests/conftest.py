"""Shared fixtures: a guard against accidental processes, and mounts/loop devices that are
always cleaned up, even when a test fails."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

_real_popen_init = subprocess.Popen.__init__


@pytest.fixture(autouse=True)
def _forbid_processes(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests may not start processes by accident; mark the test `subprocess` to allow it."""
    if request.node.get_closest_marker("subprocess") or request.node.get_closest_marker("vm"):
        return

    def refuse(self: subprocess.Popen[bytes], args: object, *a: object, **kw: object) -> None:
        raise AssertionError(f"test started a process without @pytest.mark.subprocess: {args!r}")

    monkeypatch.setattr(subprocess.Popen, "__init__", refuse)


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for mounts and loop devices")


class Mounts:
    """Mounts made through this helper are unmounted (lazily, innermost first) at teardown."""

    def __init__(self) -> None:
        self.points: list[Path] = []
        self.loops: list[str] = []

    def mount(self, source: str | Path, target: Path, *opts: str) -> Path:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *opts, str(source), str(target)], check=True)
        self.points.append(target)
        return target

    def track(self, target: Path) -> Path:
        """Register a mount point made by the code under test so teardown removes it."""
        self.points.append(target)
        return target

    def loop(self, image: Path) -> str:
        dev = subprocess.run(
            ["losetup", "--find", "--show", str(image)], check=True, capture_output=True, text=True
        ).stdout.strip()
        self.loops.append(dev)
        return dev

    def cleanup(self, below: Path) -> None:
        """Unmount what was tracked and anything else mounted below `below`."""
        for point in reversed(self.points):
            if os.path.ismount(point):
                subprocess.run(["umount", "-R", "-l", str(point)], check=False)
        prefix = str(below.resolve()) + "/"
        with open("/proc/self/mounts") as table:
            stray = [line.split()[1] for line in table if line.split()[1].startswith(prefix)]
        for point_str in sorted(stray, key=len, reverse=True):
            subprocess.run(["umount", "-l", point_str], check=False)
        for dev in reversed(self.loops):
            subprocess.run(["losetup", "-d", dev], check=False)


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Mounts]:
    """Real mounts and loop devices, always released (also anything left mounted in tmp_path)."""
    _needs_root()
    helper = Mounts()
    try:
        yield helper
    finally:
        helper.cleanup(tmp_path)
