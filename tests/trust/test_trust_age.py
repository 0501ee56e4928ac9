"""age interop: stock age and ovl encrypt/decrypt each other's files, X25519 and SSH keys."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ovl.core.errors import BadInput, OvlError
from ovl.tools.keys import new_node_identity
from ovl.tools.seal import load_recipients
from ovl.trust.age import (
    Passphrase,
    decrypt_age,
    describe_recipients,
    header_stanzas,
    is_age,
    load_identity_file,
)

PLAIN = bytes(range(256)) * 3000


def _ssh_key(tmp_path: Path) -> Path:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    return key


def _ovl_encrypt(src: Path, dst: Path, recipient: str, armor: bool = False) -> None:
    import pyrage

    with src.open("rb") as reader, dst.open("wb") as writer:
        pyrage.encrypt_io(reader, writer, load_recipients(recipient), armor)


@pytest.fixture
def plain(tmp_path: Path) -> Path:
    path = tmp_path / "plain"
    path.write_bytes(PLAIN)
    return path


@pytest.mark.subprocess
@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
def test_stock_age_x25519_file_decrypts(tmp_path: Path, plain: Path, armor: bool) -> None:
    identity, recipient = new_node_identity(tmp_path, "node")
    enc = tmp_path / "enc"
    argv: list[str | Path] = [
        "age",
        "-r",
        recipient.read_text().strip(),
        *(["-a"] if armor else []),
        "-o",
        enc,
        plain,
    ]
    subprocess.run(argv, check=True)
    assert is_age(enc.read_bytes()[:64])
    decrypt_age(enc, tmp_path / "out", load_identity_file(identity), "bundle")
    assert (tmp_path / "out").read_bytes() == PLAIN


@pytest.mark.subprocess
def test_ovl_x25519_file_decrypts_with_stock_age(tmp_path: Path, plain: Path) -> None:
    identity, recipient = new_node_identity(tmp_path, "node")
    enc = tmp_path / "enc"
    _ovl_encrypt(plain, enc, recipient.read_text().strip(), armor=True)
    out = subprocess.run(["age", "-d", "-i", identity, enc], check=True, capture_output=True)
    assert out.stdout == PLAIN


@pytest.mark.subprocess
def test_stock_age_ssh_recipient_decrypts_with_the_ssh_key(tmp_path: Path, plain: Path) -> None:
    key = _ssh_key(tmp_path)
    enc = tmp_path / "enc"
    subprocess.run(["age", "-R", f"{key}.pub", "-o", enc, plain], check=True)
    decrypt_age(enc, tmp_path / "out", load_identity_file(key), "bundle")
    assert (tmp_path / "out").read_bytes() == PLAIN


@pytest.mark.subprocess
def test_ovl_ssh_recipient_decrypts_with_stock_age(tmp_path: Path, plain: Path) -> None:
    key = _ssh_key(tmp_path)
    enc = tmp_path / "enc"
    _ovl_encrypt(plain, enc, str(Path(f"{key}.pub")))
    out = subprocess.run(["age", "-d", "-i", key, enc], check=True, capture_output=True)
    assert out.stdout == PLAIN


@pytest.mark.subprocess
def test_wrong_key_lists_the_ssh_tag_and_anonymous_x25519(tmp_path: Path, plain: Path) -> None:
    key = _ssh_key(tmp_path)
    _, recipient = new_node_identity(tmp_path, "other")
    enc = tmp_path / "enc"
    subprocess.run(["age", "-R", f"{key}.pub", "-R", recipient, "-o", enc, plain], check=True)
    mine, _ = new_node_identity(tmp_path, "mine")
    with pytest.raises(OvlError) as caught:
        decrypt_age(enc, tmp_path / "out", load_identity_file(mine), "bundle b")
    assert str(caught.value).startswith("bundle b: not encrypted to this machine's key")
    assert "ssh-ed25519 key tag" in str(caught.value)
    assert "1 X25519 recipient(s), which age does not reveal" in str(caught.value)


@pytest.mark.subprocess
def test_stock_age_passphrase_file_decrypts(tmp_path: Path, plain: Path) -> None:
    import pyrage

    enc = tmp_path / "enc"
    enc.write_bytes(pyrage.passphrase.encrypt(PLAIN, "correct horse"))
    with pytest.raises(OvlError, match="wrong passphrase"):
        decrypt_age(enc, tmp_path / "out", [Passphrase("nope", "test")], "bundle")
    decrypt_age(enc, tmp_path / "out", [Passphrase("correct horse", "test")], "bundle")
    assert (tmp_path / "out").read_bytes() == PLAIN


def test_truncated_age_file_is_refused(tmp_path: Path, plain: Path) -> None:
    identity, recipient = new_node_identity(tmp_path, "node")
    enc = tmp_path / "enc"
    _ovl_encrypt(plain, enc, recipient.read_text().strip())
    enc.write_bytes(enc.read_bytes()[:-100])
    with pytest.raises(OvlError, match="age decryption failed, truncated or tampered"):
        decrypt_age(enc, tmp_path / "out", load_identity_file(identity), "bundle")


def test_identity_file_without_keys_is_bad_input(tmp_path: Path) -> None:
    junk = tmp_path / "junk"
    junk.write_text("# nothing here\n")
    with pytest.raises(BadInput, match="expected an age identity"):
        load_identity_file(junk)


def test_header_of_a_scrypt_file_says_passphrase(tmp_path: Path) -> None:
    import pyrage

    enc = tmp_path / "enc"
    enc.write_bytes(pyrage.passphrase.encrypt(b"x", "pw", armored=True))
    assert describe_recipients(header_stanzas(enc)) == "a passphrase"
