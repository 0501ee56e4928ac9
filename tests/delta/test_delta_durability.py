"""kill -9 at random points while packing into the spool and while uploading: no delta lost."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import zstandard

from ovl.delta.spool import Spool
from ovl.tools.server.store import Store
from tests.tools.server_fixtures import keypair, running_server, server_with_machine

pytestmark = [pytest.mark.subprocess, pytest.mark.slow]

AGENT = [sys.executable, "-c", "import sys; from ovl.agent.cli import main; sys.exit(main())"]
TRIALS = 30


def killed_at_random(argv: list[str], rng: random.Random, longest: float) -> int | None:
    """Run argv, SIGKILL it after a random delay; its exit code if it finished first."""
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        return proc.wait(timeout=rng.uniform(0, longest))
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def whole_run(argv: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, capture_output=True)
    return time.monotonic() - start


def intact(path: Path, sha: str) -> bool:
    """The file is a whole delta: it hashes to its name and decompresses to the end."""
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != sha:
        return False
    zstandard.ZstdDecompressor().stream_reader(data).read()
    return True


def test_no_delta_is_lost_when_pack_and_ship_are_killed_at_random(tmp_path: Path) -> None:
    rng = random.Random(20260602)
    root, upper, spool_dir = tmp_path / "srv", tmp_path / "upper", tmp_path / "spool"
    pub, sec = keypair(tmp_path / "keys", "node1")
    server_with_machine(root, pub)
    upper.mkdir()
    (upper / "bulk").write_bytes(os.urandom(24 << 20))  # long enough for kills to land mid-way
    spool, store = Spool(spool_dir), Store(root)
    common = [*AGENT, "delta", "--spool", str(spool_dir)]
    pack = [*common, "pack", "--upper", str(upper), "--rules", str(tmp_path / "none.conf")]
    seen: set[str] = set()
    finished = {"pack": 0, "ship": 0}
    with running_server(root) as url:
        ship = [*common, "ship", "--server", url, "--machine-id", "node1", "--key", str(sec)]
        # Kill within 1.3x of how long a whole run takes on this machine now, so kills land
        # before, during and after the work whatever the load.
        longest = {"pack": 1.3 * whole_run(pack), "ship": 1.3 * whole_run(ship)}
        for trial in range(TRIALS):
            (upper / f"change-{trial}").write_text(f"{trial}\n")
            finished["pack"] += killed_at_random(pack, rng, longest["pack"]) == 0
            for delta in spool.pending():
                assert intact(delta.path, delta.sha256), f"trial {trial}: torn spool file"
                seen.add(delta.sha256)
            finished["ship"] += killed_at_random(ship, rng, longest["ship"]) == 0
            on_server = {d.sha256 for d in store.deltas("node1")}
            waiting = {d.sha256 for d in spool.pending()}
            assert seen <= on_server | waiting, f"trial {trial}: a spooled delta vanished"
            for sha in on_server:
                assert intact(root / "deltas/node1" / f"{sha}.tar.zst", sha)
        final = subprocess.run(ship, capture_output=True, text=True, check=False)
    assert final.returncode == 0, final.stderr
    assert spool.pending() == []
    assert seen <= {d.sha256 for d in store.deltas("node1")}
    # Both outcomes happened for both commands: runs killed part-way, and runs that finished.
    assert 0 < finished["pack"] < TRIALS and 0 < finished["ship"] < TRIALS
    assert len(seen) >= finished["pack"]  # every pack that finished spooled a new delta
    leftovers = [p.name for p in spool_dir.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
