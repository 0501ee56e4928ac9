"""`ovl-agent boot` and `facts` as the initramfs runs them: a process, files, exit codes."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ovl.agent.console import Console
from ovl.core.facts import Facts

pytestmark = pytest.mark.subprocess


def _agent(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ovl.agent", *map(str, args)], capture_output=True, text=True
    )


def test_facts_json_is_the_documented_shape() -> None:
    proc = _agent("facts", "--json")
    assert proc.returncode == 0, proc.stderr
    facts = Facts.from_json(json.loads(proc.stdout))
    assert facts.kernel == "Linux" and facts.arch


def test_malformed_cmdline_is_an_emergency_with_one_line(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("ovl.mode=ext4 quiet\n")
    run_dir = tmp_path / "run"
    proc = _agent(
        "boot",
        "--cmdline",
        cmdline,
        "--defaults",
        tmp_path / "none",
        "--run-dir",
        run_dir,
        "--sysroot",
        tmp_path / "sysroot",
        "--kmsg",
        "/dev/null",
    )
    assert proc.returncode == 1
    assert proc.stdout == "ovl: cmdline: ovl.mode=ext4: expected one of overlay, btrfs, zfs\n"
    assert (run_dir / "handover").read_text() == (
        "EMERGENCY='ovl.mode=ext4: expected one of overlay, btrfs, zfs'\nEMERGENCY_ACTION=shell\n"
    )


def test_malformed_cmdline_still_gets_the_emergency_action_it_names(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("ovl.mode=ext4 ovl.emergency=reboot:5\n")
    run_dir = tmp_path / "run"
    proc = _agent("boot", "--cmdline", cmdline, "--defaults", tmp_path / "none",
                  "--run-dir", run_dir, "--kmsg", "/dev/null")  # fmt: skip
    assert proc.returncode == 1
    assert (
        (run_dir / "handover").read_text().endswith("EMERGENCY_ACTION=reboot\nEMERGENCY_DELAY=5\n")
    )


def test_an_agent_killed_mid_boot_leaves_a_hand_over_with_the_emergency_action(
    tmp_path: Path,
) -> None:
    """The OOM killer or a crash: the shim still finds a reason and ovl.emergency's action."""
    cmdline = tmp_path / "cmdline"
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        cmdline.write_text(f"ovl=http://127.0.0.1:{port}/f.ovl ovl.emergency=poweroff\n")
        run_dir = tmp_path / "run"
        agent = subprocess.Popen(
            [sys.executable, "-m", "ovl.agent", "boot", "--cmdline", str(cmdline),
             "--defaults", str(tmp_path / "none"), "--run-dir", str(run_dir),
             "--sysroot", str(tmp_path / "sysroot"), "--kmsg", "/dev/null"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert agent.stdout is not None
            for line in agent.stdout:  # retrying the refusing server: kill it there
                if "attempt 1 failed" in line:
                    break
            agent.kill()
        finally:
            agent.kill()
            agent.wait()
    assert (run_dir / "handover").read_text() == (
        "EMERGENCY='the agent stopped before it wrote its hand-over (see the console)'\n"
        "EMERGENCY_ACTION=poweroff\n"
    )


def test_break_exits_zero_and_no_break_ignores_it(tmp_path: Path) -> None:
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("ovl.break=fetch ovl.require=none\n")
    common: list[str | Path] = [
        "--cmdline",
        cmdline,
        "--defaults",
        tmp_path / "none",
        "--run-dir",
        tmp_path / "run",
        "--sysroot",
        tmp_path / "sysroot",
        "--kmsg",
        "/dev/null",
    ]
    stopped = _agent("boot", *common)
    assert stopped.returncode == 0
    assert (tmp_path / "run" / "handover").read_text() == "BREAK=fetch\n"
    rerun = _agent("boot", "--no-break", *common)
    # No image and no bundle: nothing to boot, which the hand-over says.
    assert rerun.returncode == 1
    assert (tmp_path / "run" / "handover").read_text().startswith("EMERGENCY=")


def test_console_lines_also_go_to_the_kernel_log_as_info_records(tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.touch()
    stream = io.StringIO()
    console = Console(kmsg=kmsg, stream=stream)
    console.line("fetch", "http://h/fleet.ovl ok 1.2 MB unsigned 80 ms")
    assert stream.getvalue() == "ovl: fetch: http://h/fleet.ovl ok 1.2 MB unsigned 80 ms\n"
    assert kmsg.read_text() == "<6>ovl: fetch: http://h/fleet.ovl ok 1.2 MB unsigned 80 ms\n"


def test_unwritable_kernel_log_never_stops_the_console(tmp_path: Path) -> None:
    stream = io.StringIO()
    console = Console(kmsg=tmp_path / "missing" / "kmsg", stream=stream)
    console.line("facts", "one")
    console.line("facts", "two")
    assert stream.getvalue() == "ovl: facts: one\novl: facts: two\n"
