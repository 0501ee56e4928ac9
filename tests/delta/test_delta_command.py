"""`ovl-agent delta pack|ship|spool-status` as a user runs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.server_fixtures import keypair, ovl, running_server

pytestmark = pytest.mark.subprocess

AGENT = [sys.executable, "-c", "import sys; from ovl.agent.cli import main; sys.exit(main())"]


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*AGENT, *args], capture_output=True, text=True, check=False)


def test_pack_spools_once_per_change_and_ship_empties_the_spool(tmp_path: Path) -> None:
    upper, spool = tmp_path / "upper", str(tmp_path / "spool")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/hostname").write_text("node1\n")
    pack = ["delta", "--spool", spool, "pack", "--upper", str(upper), "--rules", "/nonexistent"]
    first = agent(*pack)
    assert first.returncode == 0 and "spooled delta" in first.stdout
    assert "nothing spooled" in agent(*pack).stdout
    status = json.loads(agent("delta", "--spool", spool, "spool-status", "--json").stdout)
    assert len(status["pending"]) == 1 and status["last_shipped"] is None

    pub, sec = keypair(tmp_path / "keys", "node1")
    root = tmp_path / "srv"
    ovl("server", "--root", str(root), "add-machine", "node1", "--profile", "lab",
        "--mac", "52:54:00:00:00:01", "--key", str(pub))  # fmt: skip
    with running_server(root) as url:
        ship = agent("delta", "--spool", spool, "ship", "--server", url,
                     "--machine-id", "node1", "--key", str(sec))  # fmt: skip
    assert ship.returncode == 0, ship.stderr
    assert "shipped 1 delta(s)" in ship.stdout
    status = json.loads(agent("delta", "--spool", spool, "spool-status", "--json").stdout)
    assert status["pending"] == [] and status["last_shipped"] == first.stdout.split()[3]
    assert json.loads(agent(*pack, "--json").stdout) == {"spooled": None}  # as the one shipped

    (upper / "etc/motd").write_text("changed\n")
    spooled = json.loads(agent(*pack, "--json").stdout)["spooled"]
    (file,) = Path(spool).glob(f"*-{spooled['sha256']}.tar.zst")
    assert spooled["size"] == file.stat().st_size
    with running_server(root) as url:
        ship = agent("delta", "--spool", spool, "ship", "--server", url,
                     "--machine-id", "node1", "--key", str(sec), "--json")  # fmt: skip
    assert json.loads(ship.stdout) == {"shipped": 1}


def test_missing_upper_is_one_line_exit_2(tmp_path: Path) -> None:
    done = agent("delta", "--spool", str(tmp_path / "s"), "pack", "--upper", str(tmp_path / "no"))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "no upper dir to pack" in done.stderr


def test_ship_without_a_server_says_so(tmp_path: Path) -> None:
    done = agent("delta", "--spool", str(tmp_path / "s"), "ship", "--machine-id", "x")
    assert done.returncode == 2 and "no --server or OVL_DELTA_SERVER" in done.stderr
