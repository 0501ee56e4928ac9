"""Freezing the agent with PyInstaller: cached by source hash, and reproducible."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from ovl.tools.initramfs.freeze import (
    EXECUTABLE,
    cache_root,
    freeze_key,
    frozen_agent,
    prune_agents,
)

pytestmark = pytest.mark.subprocess


def test_second_freeze_of_the_same_sources_is_the_cached_directory() -> None:
    first = frozen_agent()
    start = time.monotonic()
    again = frozen_agent()
    assert again == first
    assert time.monotonic() - start < 2
    assert first.parent == cache_root()
    assert first.name == f"agent-{freeze_key()}"
    run = subprocess.run([first / EXECUTABLE, "--help"], capture_output=True, text=True)
    assert run.returncode == 0
    assert "boot" in run.stdout


def test_frozen_agent_has_every_agent_module_and_no_admin_tools(tmp_path: Path) -> None:
    from PyInstaller.archive.readers import (  # type: ignore[import-untyped]
        CArchiveReader,
        ZlibArchiveReader,
    )

    agent = frozen_agent()
    pyz = tmp_path / "PYZ.pyz"
    pyz.write_bytes(CArchiveReader(str(agent / EXECUTABLE)).extract("PYZ.pyz"))
    modules = set(ZlibArchiveReader(str(pyz)).toc)
    assert not any(m.startswith(("ovl.tools", "ovl.initramfs")) for m in modules)
    sources = Path(__file__).resolve().parents[2] / "agent"
    expected = {
        ".".join(p.relative_to(sources).with_suffix("").parts).removesuffix(".__init__")
        for p in sources.rglob("*.py")
        if p.name != "__main__.py"
    }
    assert expected - modules == set()
    assert {"requests", "zstandard", "cryptography", "pyrage", "pyudev"} <= modules
    assert (agent / "_internal" / "cryptography").is_dir()


def test_pruning_keeps_the_current_the_recent_and_the_just_used(tmp_path: Path) -> None:
    now = time.time()
    ages = {"current": 99999, "f": 50, "a": 100, "g": 200, "c": 1800, "b": 7200, "d": 9000}
    for name, age in ages.items():
        (tmp_path / f"agent-{name}").mkdir()
        os.utime(tmp_path / f"agent-{name}", (now - age, now - age))
    (tmp_path / "unrelated").mkdir()
    removed = prune_agents(tmp_path, keep=tmp_path / "agent-current", spare=3, grace=3600)
    # kept: the current one, the three most recent others (f, a, g), and c, used 30 min ago
    assert sorted(p.name for p in removed) == ["agent-b", "agent-d"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "agent-a", "agent-c", "agent-current", "agent-f", "agent-g", "unrelated"
    ]  # fmt: skip


@pytest.mark.slow
def test_freezing_twice_gives_identical_trees(tmp_path: Path) -> None:
    one = frozen_agent(tmp_path / "one")
    two = frozen_agent(tmp_path / "two")
    assert subprocess.run(["diff", "-r", str(one), str(two)]).returncode == 0
