"""`ovl sign` of root images: checked by the agent's own image check and by stock minisign."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pytest

from ovl.core.errors import OvlError
from ovl.tools.cli import main
from ovl.tools.seal import load_certified
from ovl.trust.certs import TrustStore
from ovl.trust.open import check_image, check_signature
from ovl.trust.policy import parse_policy
from ovl.trust.replay import ReplayState
from tests.trust.trust_pki import Pki, make_pki

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


def test_signature_is_checked_by_the_agent_as_a_named_image_with_a_serial_of_now(
    pki: Pki, image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = int(time.time())
    assert _sign(pki, image, "--json") == 0
    signature = image.with_name("base.sqfs.minisig")
    report = json.loads(capsys.readouterr().out)
    serial = report.pop("serial")
    assert before <= serial <= time.time()
    assert report == {"signer": "alice", "name": "base.sqfs", "signature": str(signature)}
    assert f"trusted comment: ovl-image name=base.sqfs serial={serial}\n" in signature.read_text()
    state = ReplayState(tmp_path / "replay.json")
    trust = TrustStore.load(pki.keys)
    signed = check_image(image, signature, SIGNED, trust, "image x", "base.sqfs", state)
    assert (signed.signer, signed.name, signed.serial, signed.warnings) == (
        "alice",
        "base.sqfs",
        serial,
        (),
    )
    assert ReplayState(state.path).highest("base.sqfs", "image") == serial


def _check(pki: Pki, image: Path, state: ReplayState, policy: str = "signed") -> tuple[str, ...]:
    signature = image.with_name("base.sqfs.minisig")
    trust = TrustStore.load(pki.keys)
    policy_ = parse_policy(policy)
    return check_image(image, signature, policy_, trust, "image u", "base.sqfs", state).warnings


def test_an_older_image_serial_is_refused_and_kept_apart_from_bundle_names(
    pki: Pki, image: Path, tmp_path: Path
) -> None:
    state = ReplayState(tmp_path / "replay.json")
    state.accept("base.sqfs", 100)  # a bundle of the same name does not count for the image
    _sign(pki, image, "--serial", "7")
    assert _check(pki, image, state) == ()
    _sign(pki, image, "--serial", "6")
    with pytest.raises(
        OvlError, match=r"^image u: serial 6 of image 'base.sqfs' is older than the last accepted"
    ):
        _check(pki, image, state)
    assert _check(pki, image, state, "signed,allow-rollback") == (
        "image u: serial 6 older than 7, accepted (allow-rollback)",
    )
    assert (state.highest("base.sqfs", "image"), state.highest("base.sqfs")) == (7, 100)


def test_an_image_signature_without_serial_is_refused_or_warned_by_policy(
    pki: Pki, image: Path, tmp_path: Path
) -> None:
    signer = load_certified(pki.signer_key, pki.cert)  # what `ovl sign` signed with before
    signature = image.with_name("base.sqfs.minisig")
    signature.write_text(signer.sign(image, "ovl-image name=base.sqfs", "old image signature"))
    state = ReplayState(tmp_path / "replay.json")
    with pytest.raises(OvlError, match="signed trusted comment carries no image name and serial"):
        _check(pki, image, state)
    assert _check(pki, image, state, "none") == (
        "image u: signed trusted comment carries no image name and serial;"
        " no replay check (ovl.require=none)",
    )
    assert not state.path.exists()


def test_name_and_output_path_are_taken_from_the_options(
    pki: Pki, image: Path, tmp_path: Path
) -> None:
    out = tmp_path / "elsewhere" / "sig"
    out.parent.mkdir()
    assert _sign(pki, image, "--name", "debian-12", "--serial", "42", "-o", str(out)) == 0
    assert "trusted comment: ovl-image name=debian-12 serial=42\n" in out.read_text()
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
        _check(pki, image, ReplayState(image.with_name("replay.json")))


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
    assert "Trusted comment: ovl-image name=base.sqfs serial=" in seen.stdout


def test_verify_reports_an_image_signature(
    pki: Pki, image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _sign(pki, image, "--serial", "9")
    capsys.readouterr()
    assert main(["verify", str(image), "--keys", str(pki.keys)]) == 0
    assert (
        capsys.readouterr().out == f"{image}: good signature by alice, image base.sqfs serial 9\n"
    )
    assert main(["verify", str(image), "--keys", str(pki.keys), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "kind": "image",
        "image": str(image),
        "signature": str(image.with_name("base.sqfs.minisig")),
        "signer": "alice",
        "name": "base.sqfs",
        "serial": 9,
    }
