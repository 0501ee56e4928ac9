"""The node signs deltas itself: stock minisign verifies them; no minisign binary needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ovl.core.errors import BadInput
from ovl.delta.protocol import trusted_comment
from ovl.delta.ship import node_signer
from ovl.tools.keys import new_signing_pair
from ovl.trust.minisign import parse_public_key, parse_signature, verify_file
from tests.tools.server_fixtures import keypair, running_server, server_with_machine

AGENT = [sys.executable, "-c", "import sys; from ovl.agent.cli import main; sys.exit(main())"]


@pytest.mark.subprocess
def test_stock_minisign_verifies_a_node_signature_made_with_a_stock_key(tmp_path: Path) -> None:
    pub, sec = keypair(tmp_path / "keys", "node1")
    body = tmp_path / "delta.tar.zst"
    body.write_bytes(b"delta bytes" * 1000)
    comment = trusted_comment("node1", "ab" * 32, 123)
    (tmp_path / "delta.tar.zst.minisig").write_text(node_signer(sec)(body, comment))
    done = subprocess.run(
        ["minisign", "-V", "-p", pub, "-m", body], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert f"Trusted comment: {comment}" in done.stdout


def test_node_signature_is_prehashed_and_names_the_node_key(tmp_path: Path) -> None:
    sec, pub = new_signing_pair(tmp_path, "node1", "node")
    body = tmp_path / "delta"
    body.write_bytes(b"x")
    signature = parse_signature(node_signer(sec)(body, "ovl-delta machine=node1"), "sig")
    key = parse_public_key(pub.read_text(), "pub")
    verify_file(key, signature, body, "delta")
    assert signature.algorithm == b"ED" and signature.trusted_comment == "ovl-delta machine=node1"
    assert key.id_hex in signature.untrusted_comment


def test_unreadable_node_key_fails_before_any_upload(tmp_path: Path) -> None:
    (tmp_path / "node.key").write_text("not a key\n")
    with pytest.raises(BadInput, match="expected a minisign secret key, found text that is no key"):
        node_signer(tmp_path / "node.key")


@pytest.mark.subprocess
def test_delta_ship_works_without_a_minisign_binary_on_path(tmp_path: Path) -> None:
    upper, spool = tmp_path / "upper", str(tmp_path / "spool")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/hostname").write_text("node1\n")
    pub, sec = keypair(tmp_path / "keys", "node1")
    root = tmp_path / "srv"
    server_with_machine(root, pub)
    empty = tmp_path / "empty-path"
    empty.mkdir()
    env = {**os.environ, "PATH": str(empty)}
    pack = [*AGENT, "delta", "--spool", spool, "pack", "--upper", str(upper), "--rules", "/none"]
    assert subprocess.run(pack, env=env, check=False).returncode == 0
    with running_server(root) as url:
        ship = subprocess.run(
            [*AGENT, "delta", "--spool", spool, "ship", "--server", url,
             "--machine-id", "node1", "--key", str(sec)],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
    assert ship.returncode == 0, ship.stderr
    assert "shipped 1 delta(s)" in ship.stdout
