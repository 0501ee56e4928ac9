"""`ovl sign` of root images: checked by the agent's own image check and by stock minisign."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from ovl_tools.cli import main

from agent.errors import OvlError
from agent.trust.certs import TrustStore
from agent.trust.open import check_image, check_signature
from agent.trust.policy import parse_policy
from tests.agent.trust_pki import Pki, make_pki

SIGNED = parse_policy("signed")


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "base.sqfs"
    path.write_bytes(b"hsqs" + bytes(range(256)) * 64)
    return path


def _sign(pki: Pki, image: Path, *extra: str) -> int:
    return main(
        ["sign", str(image), "--sign", str(pki.signer_key), "--cert", str(pki.cert), *extra]
    )


def test_signature_is_checked_by_the_agent_as_a_named_image(
    pki: Pki, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _sign(pki, image, "--json") == 0
    signature = image.with_name("base.sqfs.minisig")
    report = json.loads(capsys.readouterr().out)
    assert report == {"signer": "alice", "name": "base.sqfs", "signature": str(signature)}
    signed = check_image(image, signature, SIGNED, TrustStore.load(pki.keys), "image x")
    assert (signed.signer, signed.name, signed.serial, signed.warnings) == (
        "alice",
        "base.sqfs",
        None,
        (),
    )


def test_name_and_output_path_are_taken_from_the_options(
    pki: Pki, image: Path, tmp_path: Path
) -> None:
    out = tmp_path / "elsewhere" / "sig"
    out.parent.mkdir()
    assert _sign(pki, image, "--name", "debian-12", "-o", str(out)) == 0
    assert "trusted comment: ovl-image name=debian-12\n" in out.read_text()
    assert not image.with_name("base.sqfs.minisig").exists()


def test_an_image_signature_is_no_bundle_signature(pki: Pki, image: Path) -> None:
    _sign(pki, image)
    signature = image.with_name("base.sqfs.minisig")
    with pytest.raises(OvlError, match="carries no bundle name and serial"):
        check_signature(image, signature, SIGNED, TrustStore.load(pki.keys), "bundle x")


def test_a_tampered_image_is_refused(pki: Pki, image: Path) -> None:
    _sign(pki, image)
    image.write_bytes(image.read_bytes()[:-1] + b"!")
    with pytest.raises(OvlError, match="signature does not match"):
        check_image(
            image, image.with_name("base.sqfs.minisig"), SIGNED, TrustStore.load(pki.keys), "i"
        )


@pytest.mark.parametrize("name", ["two words", "a=b", ""])
def test_bad_name_is_bad_input_and_writes_nothing(
    pki: Pki, image: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _sign(pki, image, "--name", name) == 2
    assert "without spaces or '='" in capsys.readouterr().err
    assert not image.with_name("base.sqfs.minisig").exists()


def test_missing_file_is_bad_input(pki: Pki, tmp_path: Path) -> None:
    assert _sign(pki, tmp_path / "none.sqfs") == 2


@pytest.mark.subprocess
def test_stock_minisign_verifies_the_image_signature(pki: Pki, image: Path) -> None:
    _sign(pki, image)
    signature = image.with_name("base.sqfs.minisig")
    seen = subprocess.run(
        ["minisign", "-V", "-p", pki.signer_pub, "-m", image, "-x", signature],
        check=True,
        capture_output=True,
        text=True,
    )
    assert "Trusted comment: ovl-image name=base.sqfs" in seen.stdout
