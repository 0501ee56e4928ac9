"""The predecessor's `openssl enc -aes-256-cbc -pbkdf2 -a` of a zlib tar reads back."""

from __future__ import annotations

import subprocess
import tarfile
import zlib
from io import BytesIO
from pathlib import Path

import pytest

from ovl.core.errors import OvlError
from ovl.trust.age import Passphrase, passphrase_file
from ovl.trust.certs import TrustStore
from ovl.trust.legacy import decrypt_legacy, is_legacy
from ovl.trust.open import open_sealed
from ovl.trust.policy import parse_policy


def _zlib_tar() -> bytes:
    raw = BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        data = b"legacy payload\n" * 20000
        info = tarfile.TarInfo("etc/motd")
        info.size = len(data)
        tar.addfile(info, BytesIO(data))
    return zlib.compress(raw.getvalue())


def _openssl(tmp_path: Path, plain: bytes, *how: str) -> Path:
    src, out = tmp_path / "plain.tar.z", tmp_path / "legacy.enc"
    src.write_bytes(plain)
    argv: list[str | Path] = [
        "openssl",
        "enc",
        "-aes-256-cbc",
        "-pbkdf2",
        "-salt",
        "-in",
        src,
        "-out",
        out,
        *how,
    ]
    subprocess.run(argv, check=True)
    return out


@pytest.mark.subprocess
@pytest.mark.parametrize("armored", [True, False], ids=["base64", "binary"])
def test_openssl_passphrase_file_decrypts(tmp_path: Path, armored: bool) -> None:
    plain = _zlib_tar()
    enc = _openssl(tmp_path, plain, "-pass", "pass:s3cret", *(["-a"] if armored else []))
    assert is_legacy(enc.read_bytes()[:16])
    decrypt_legacy(
        enc, tmp_path / "out", [Passphrase("wrong", "a"), Passphrase("s3cret", "b")], "b"
    )
    assert (tmp_path / "out").read_bytes() == plain


@pytest.mark.subprocess
def test_openssl_key_file_decrypts_through_open_sealed_with_a_warning(tmp_path: Path) -> None:
    key = tmp_path / "legacy.key"
    key.write_text("from-a-key-file\nsecond line ignored\n")
    plain = _zlib_tar()
    enc = _openssl(tmp_path, plain, "-kfile", str(key), "-a")
    keys = tmp_path / "keys"
    keys.mkdir()
    opened = open_sealed(
        enc,
        None,
        parse_policy("none,allow-legacy"),
        TrustStore.load(keys),
        [passphrase_file(key)],
        None,
    )
    assert opened.encrypted and opened.path.read_bytes() == plain
    assert "authenticated by nothing" in opened.warnings[0]
    assert zlib.decompress(opened.path.read_bytes())[257:262] == b"ustar"


@pytest.mark.subprocess
def test_wrong_legacy_passphrase_is_refused_and_leaves_nothing(tmp_path: Path) -> None:
    enc = _openssl(tmp_path, _zlib_tar(), "-pass", "pass:right", "-a")
    keys = tmp_path / "keys"
    keys.mkdir()
    with pytest.raises(OvlError, match="wrong passphrase or key file"):
        open_sealed(
            enc,
            None,
            parse_policy("none,allow-legacy"),
            TrustStore.load(keys),
            [Passphrase("wrong", "t")],
            None,
        )
    assert not list(tmp_path.glob("*.plain"))
