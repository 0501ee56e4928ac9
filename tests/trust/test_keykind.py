"""What kind of key a file holds, for errors that say what was expected and what was found."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ovl.tools.keys import certify, new_node_identity, new_signing_pair
from ovl.trust.keykind import (
    AGE_IDENTITY,
    AGE_RECIPIENT,
    CERTIFICATE,
    MINISIGN_PUBLIC,
    MINISIGN_SECRET,
    key_kind,
    wrong_kind,
)


def test_ovl_key_files_are_told_apart(tmp_path: Path) -> None:
    key, pub = new_signing_pair(tmp_path, "alice", "signer")
    identity, recipient = new_node_identity(tmp_path, "web-1")
    cert = tmp_path / "alice.cert"
    certify(key, pub, "alice", datetime.now(UTC) + timedelta(days=1), cert)
    kinds = {path.name: key_kind(path.read_bytes()) for path in (key, pub, identity, recipient)}
    kinds["alice.cert"] = key_kind(cert.read_text())
    assert kinds == {
        "alice.key": MINISIGN_SECRET,
        "alice.pub": MINISIGN_PUBLIC,
        "web-1.age": AGE_IDENTITY,
        "web-1.age.pub": AGE_RECIPIENT,
        "alice.cert": CERTIFICATE,
    }


@pytest.mark.subprocess
def test_stock_tools_key_files_are_told_apart(tmp_path: Path) -> None:
    subprocess.run(
        ["minisign", "-G", "-W", "-p", tmp_path / "m.pub", "-s", tmp_path / "m.key"],
        check=True,
        capture_output=True,
    )
    subprocess.run(["age-keygen", "-o", tmp_path / "a.key"], check=True, capture_output=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "ssh"], check=True
    )
    found = {p.name: key_kind(p.read_bytes()) for p in sorted(tmp_path.iterdir())}
    assert found == {
        "a.key": AGE_IDENTITY,
        "m.key": MINISIGN_SECRET,
        "m.pub": MINISIGN_PUBLIC,
        "ssh": "an OpenSSH private key",
        "ssh.pub": "an OpenSSH public key (ssh-ed25519)",
    }


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"", "an empty file"),
        (b" \n\xc2\xa0\n", "an empty file"),
        (b"\x28\xb5\x2f\xfd\x00\x00", "binary data (a bundle or image?)"),
        (b'{"machines": {}}', "JSON"),
        (b"-----BEGIN OVL BUNDLE-----\nKLUv\n", "an armoured bundle"),
        (b"age-encryption.org/v1\n-> X25519 abc\n", "an age-encrypted file"),
        (b"hello\n", "text that is no key ovl knows"),
    ],
)
def test_other_files_are_named_too(data: bytes, kind: str) -> None:
    assert key_kind(data) == kind


def test_wrong_kind_says_what_was_expected_and_found() -> None:
    error = wrong_kind("--key web-1.age.pub", MINISIGN_PUBLIC, "age1qqqq\n", "see TRUST.md")
    assert error.exit_code == 2
    assert error.line == (
        "--key web-1.age.pub: expected a minisign public key, found an age recipient (age1...);"
        " see TRUST.md"
    )
