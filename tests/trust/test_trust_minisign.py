"""minisign signatures: ovl and stock minisign verify each other's, both algorithms."""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.core.errors import BadInput, OvlError
from ovl.tools.keys import new_signing_pair
from ovl.trust.minisign import (
    PublicKey,
    parse_public_key,
    parse_signature,
    verify_bytes,
    verify_file,
)
from ovl.trust.signing import load_secret_key, sign_file


def _stock_pair(tmp_path: Path) -> tuple[Path, Path]:
    pub, key = tmp_path / "stock.pub", tmp_path / "stock.key"
    subprocess.run(["minisign", "-G", "-W", "-p", pub, "-s", key], check=True, capture_output=True)
    return pub, key


@pytest.mark.subprocess
@pytest.mark.parametrize("legacy", [False, True], ids=["prehashed-ED", "legacy-Ed"])
def test_stock_minisign_signature_verifies(tmp_path: Path, legacy: bool) -> None:
    pub, key = _stock_pair(tmp_path)
    message = tmp_path / "bundle"
    message.write_bytes(b"bundle bytes\n" * 5000)
    argv: list[str | Path] = [
        "minisign",
        "-S",
        "-s",
        key,
        "-m",
        message,
        "-t",
        "ovl-bundle name=a serial=1",
    ]
    subprocess.run([*argv, *(["-l"] if legacy else [])], check=True, capture_output=True)
    sig = parse_signature((tmp_path / "bundle.minisig").read_text())
    assert sig.algorithm == (b"Ed" if legacy else b"ED")
    assert sig.trusted_comment == "ovl-bundle name=a serial=1"
    verify_file(parse_public_key(pub.read_text()), sig, message, "bundle")


@pytest.mark.subprocess
def test_ovl_signature_verifies_with_stock_minisign(tmp_path: Path) -> None:
    key_path, pub_path = new_signing_pair(tmp_path, "signer", "signer")
    message = tmp_path / "bundle"
    message.write_bytes(bytes(range(256)) * 4000)
    sig = sign_file(load_secret_key(key_path), message, "ovl-bundle name=a serial=7", "u", ("x",))
    (tmp_path / "bundle.minisig").write_text(sig.to_text())
    out = subprocess.run(
        ["minisign", "-V", "-p", pub_path, "-m", message], check=True, capture_output=True
    )
    assert b"ovl-bundle name=a serial=7" in out.stdout


@pytest.mark.subprocess
def test_stock_minisign_signs_with_an_ovl_secret_key(tmp_path: Path) -> None:
    key_path, pub_path = new_signing_pair(tmp_path, "root", "root")
    message = tmp_path / "m"
    message.write_bytes(b"hi\n")
    subprocess.run(["minisign", "-S", "-s", key_path, "-m", message], check=True)
    sig = parse_signature((tmp_path / "m.minisig").read_text())
    verify_file(parse_public_key(pub_path.read_text()), sig, message, "m")


@pytest.mark.subprocess
def test_password_protected_stock_secret_key_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pub, key = tmp_path / "enc.pub", tmp_path / "enc.key"
    subprocess.run(
        ["minisign", "-G", "-p", pub, "-s", key], input=b"pw\npw\n", check=True, capture_output=True
    )
    monkeypatch.setenv("OVL_KEY_PASSWORD", "pw")
    secret = load_secret_key(key)
    assert secret.public_key.key == parse_public_key(pub.read_text()).key
    monkeypatch.setenv("OVL_KEY_PASSWORD", "wrong")
    with pytest.raises(BadInput, match="wrong password"):
        load_secret_key(key)


@pytest.fixture
def signed(tmp_path: Path) -> tuple[Path, Path, Path]:
    key_path, pub_path = new_signing_pair(tmp_path, "s", "signer")
    message = tmp_path / "bundle"
    message.write_bytes(b"0123456789" * 10000)
    sig = sign_file(load_secret_key(key_path), message, "ovl-bundle name=a serial=1", "u")
    sig_path = tmp_path / "bundle.minisig"
    sig_path.write_text(sig.to_text())
    return message, sig_path, pub_path


def test_flipped_byte_is_refused_as_tampered(signed: tuple[Path, Path, Path]) -> None:
    message, sig_path, pub_path = signed
    data = bytearray(message.read_bytes())
    data[5000] ^= 1
    message.write_bytes(bytes(data))
    with pytest.raises(OvlError, match="signature does not match"):
        verify_file(
            parse_public_key(pub_path.read_text()),
            parse_signature(sig_path.read_text()),
            message,
            "bundle",
        )


def test_truncated_file_is_refused(signed: tuple[Path, Path, Path]) -> None:
    message, sig_path, pub_path = signed
    message.write_bytes(message.read_bytes()[:-1])
    with pytest.raises(OvlError, match="signature does not match"):
        verify_file(
            parse_public_key(pub_path.read_text()),
            parse_signature(sig_path.read_text()),
            message,
            "bundle",
        )


def test_edited_trusted_comment_is_refused(signed: tuple[Path, Path, Path]) -> None:
    message, sig_path, pub_path = signed
    sig_path.write_text(sig_path.read_text().replace("serial=1", "serial=9"))
    with pytest.raises(OvlError, match="trusted comment does not match"):
        verify_file(
            parse_public_key(pub_path.read_text()),
            parse_signature(sig_path.read_text()),
            message,
            "bundle",
        )


def test_other_key_is_named_in_the_refusal(signed: tuple[Path, Path, Path], tmp_path: Path) -> None:
    message, sig_path, _ = signed
    _, other = new_signing_pair(tmp_path, "other", "signer")
    with pytest.raises(OvlError, match=r"signed by key [0-9A-F]{16}, expected key"):
        verify_bytes(
            parse_public_key(other.read_text()),
            parse_signature(sig_path.read_text()),
            message.read_bytes(),
            "bundle",
        )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "untrusted comment: x\n",
        "untrusted comment: x\nnot base64!\ntrusted comment: y\nAA==\n",
        "comment: x\nRWQ=\ntrusted comment: y\nAA==\n",
    ],
)
def test_malformed_signature_is_bad_input(text: str) -> None:
    with pytest.raises(BadInput):
        parse_signature(text)


@given(st.text(max_size=400))
def test_any_text_parses_or_is_bad_input(text: str) -> None:
    for parse in (parse_signature, parse_public_key):
        with contextlib.suppress(BadInput):
            parse(text)


@given(
    st.binary(min_size=74, max_size=74),
    st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=80),
)
def test_random_signature_blobs_never_verify(blob: bytes, comment: str) -> None:
    import base64

    key = PublicKey(blob[2:10], bytes(32))
    text = (
        f"untrusted comment: x\n{base64.b64encode(b'ED' + blob[2:]).decode()}\n"
        f"trusted comment: {comment}\n{base64.b64encode(blob[10:]).decode()}\n"
    )
    sig = parse_signature(text)
    with pytest.raises(OvlError):
        verify_bytes(key, sig, b"message", "m")


@pytest.mark.subprocess
def test_password_protected_ovl_secret_key_signs_with_stock_minisign(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key_path, pub_path = new_signing_pair(tmp_path, "root", "root", b"s3cret")
    message = tmp_path / "m"
    message.write_bytes(b"hi\n")
    sign_argv: list[str | Path] = ["minisign", "-S", "-s", key_path, "-m", message]
    subprocess.run(sign_argv, input=b"s3cret\n", check=True, capture_output=True)
    sig = parse_signature((tmp_path / "m.minisig").read_text())
    verify_file(parse_public_key(pub_path.read_text()), sig, message, "m")
    monkeypatch.setenv("OVL_KEY_PASSWORD", "s3cret")
    assert load_secret_key(key_path).public_key.key == parse_public_key(pub_path.read_text()).key
