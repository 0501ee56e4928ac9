"""`ovl-agent delta pack|ship|spool-status` as a user runs them."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.tools.server_fixtures import free_port, keypair, running_server, server_with_machine

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
    server_with_machine(root, pub)
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


def test_ship_names_a_url_without_scheme_and_an_unreachable_server(tmp_path: Path) -> None:
    upper, spool = tmp_path / "upper", str(tmp_path / "spool")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/hostname").write_text("node1\n")
    agent("delta", "--spool", spool, "pack", "--upper", str(upper), "--rules", "/nonexistent")
    _, sec = keypair(tmp_path / "keys", "node1")
    ship = ["delta", "--spool", spool, "ship", "--machine-id", "node1", "--key", str(sec)]
    port = free_port()  # nothing listens there
    bare = agent(*ship, "--server", f"127.0.0.1:{port}")
    assert (bare.returncode, bare.stdout) == (2, "")
    assert bare.stderr == (
        f"ovl-agent: error: --server '127.0.0.1:{port}': expected http://HOST[:PORT] or"
        " https://...\n"
    )
    down = agent(*ship, "--server", f"http://127.0.0.1:{port}", "--tries", "1")
    assert down.returncode == 1
    assert down.stderr.endswith(
        f"not shipped after 1 tries (cannot connect to 127.0.0.1:{port} (connection refused));"
        " it stays spooled\n"
    )
    status = agent("delta", "--spool", spool, "spool-status").stdout.splitlines()
    assert re.fullmatch(r"[0-9a-f]{64} +\d+ B  created \d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", status[0])
    assert status[1] == "1 delta(s) waiting; last shipped: -"
