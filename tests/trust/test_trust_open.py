"""open_sealed end to end: each refusal names its own cause and leaves nothing behind."""

from __future__ import annotations

import tarfile
import zlib
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path

import pytest

from ovl.core.errors import BadInput, OvlError
from ovl.tools.keys import certify, new_node_identity, new_signing_pair, revoke
from ovl.tools.seal import load_recipients, seal_bundle
from ovl.trust.age import AgeIdentity, Passphrase, load_identity_file, load_machine_key
from ovl.trust.certs import TrustStore
from ovl.trust.open import Opened, open_sealed
from ovl.trust.policy import Policy, parse_policy
from ovl.trust.replay import ReplayState
from tests.trust.trust_pki import Pki, make_pki

SIGNED = parse_policy("signed")
ENCRYPTED = parse_policy("encrypted")
NONE = parse_policy("none")


def _bundle(path: Path, text: bytes = b"hello") -> Path:
    raw = BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        info = tarfile.TarInfo("base/etc/motd")
        info.size = len(text)
        tar.addfile(info, BytesIO(text))
    path.write_bytes(zlib.compress(raw.getvalue()))
    return path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def _seal(
    pki: Pki, tmp_path: Path, serial: int = 5, encrypt: bool = True, certificate: Path | None = None
) -> Path:
    out = tmp_path / "ship" / f"fleet-{serial}.ovl"
    seal_bundle(
        _bundle(tmp_path / "plain.ovl"),
        out,
        signer_key=pki.signer_key,
        certificate=certificate or pki.cert,
        name="fleet",
        serial=serial,
        recipients=load_recipients(pki.node_recipient) if encrypt else [],
    )
    return out


def _open(pki: Pki, out: Path, policy: Policy = SIGNED, state: ReplayState | None = None) -> Opened:
    return open_sealed(
        out,
        out.with_name(out.name + ".minisig"),
        policy,
        TrustStore.load(pki.keys),
        load_identity_file(pki.node_identity),
        state,
    )


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".plain"))


def test_sealed_encrypted_bundle_opens_to_the_plain_bytes(pki: Pki, tmp_path: Path) -> None:
    out = _seal(pki, tmp_path)
    opened = _open(pki, out, ENCRYPTED)
    assert (opened.signer, opened.serial, opened.encrypted) == ("alice", 5, True)
    assert opened.path.read_bytes() == (tmp_path / "plain.ovl").read_bytes()
    assert opened.path.parent == out.parent


def test_plaintext_is_refused_when_encryption_is_required(pki: Pki, tmp_path: Path) -> None:
    out = _seal(pki, tmp_path, encrypt=False)
    assert _open(pki, out, SIGNED).path == out
    with pytest.raises(OvlError, match="plaintext bundle refused"):
        _open(pki, out, ENCRYPTED)


def test_missing_signature_is_refused_unless_policy_is_none(pki: Pki, tmp_path: Path) -> None:
    out = _seal(pki, tmp_path, encrypt=False)
    store = TrustStore.load(pki.keys)
    with pytest.raises(OvlError, match="unsigned, refused"):
        open_sealed(out, None, SIGNED, store, [], None)
    assert open_sealed(out, None, NONE, store, [], None).signer is None


def test_tampered_byte_is_refused_and_nothing_decrypted(pki: Pki, tmp_path: Path) -> None:
    out = _seal(pki, tmp_path)
    data = bytearray(out.read_bytes())
    data[len(data) // 2] ^= 0x40
    out.write_bytes(bytes(data))
    with pytest.raises(OvlError, match="signature does not match"):
        _open(pki, out)
    assert _leftovers(out.parent) == []


def test_bundle_that_decrypts_but_carries_another_bundles_signature_leaves_no_plaintext(
    pki: Pki, tmp_path: Path
) -> None:
    first, second = _seal(pki, tmp_path, serial=1), _seal(pki, tmp_path, serial=2)
    swapped = second.with_name(second.name + ".minisig")
    swapped.write_bytes(first.with_name(first.name + ".minisig").read_bytes())
    with pytest.raises(OvlError, match="signature does not match"):
        _open(pki, second)
    assert _leftovers(second.parent) == []


def test_tampering_is_refused_even_under_policy_none(pki: Pki, tmp_path: Path) -> None:
    out = _seal(pki, tmp_path)
    out.write_bytes(out.read_bytes()[:-10])
    with pytest.raises(OvlError, match="signature does not match"):
        _open(pki, out, NONE)


def test_wrong_machine_key_names_the_cause(pki: Pki, tmp_path: Path) -> None:
    out = _seal(pki, tmp_path)
    other, _ = new_node_identity(tmp_path / "other", "node2")
    with pytest.raises(
        OvlError, match=r"not encrypted to this machine's key \(encrypted to 1 X25519"
    ):
        open_sealed(
            out,
            out.with_name(out.name + ".minisig"),
            SIGNED,
            TrustStore.load(pki.keys),
            load_identity_file(other),
            None,
        )
    assert _leftovers(out.parent) == []


def test_uncertified_signer_is_refused(pki: Pki, tmp_path: Path) -> None:
    rogue_root, _ = new_signing_pair(tmp_path / "rogue", "root", "root")
    cert = tmp_path / "rogue" / "alice.cert"
    certify(rogue_root, pki.signer_pub, "alice", datetime.now(UTC) + timedelta(days=1), cert)
    out = _seal(pki, tmp_path, certificate=cert)
    with pytest.raises(OvlError, match="is not certified by a trusted root"):
        _open(pki, out)
    opened = _open(pki, out, NONE)
    assert opened.signer is None
    assert "not certified" in opened.warnings[0]


def test_expired_certificate_is_refused(pki: Pki, tmp_path: Path) -> None:
    # `ovl seal` refuses an expired certificate; a signature carrying one is made by hand:
    # the certificate is the trailer after the signature's four lines, which it does not cover.
    out = _seal(pki, tmp_path)
    expired = tmp_path / "expired.cert"
    certify(
        pki.root_key, pki.signer_pub, "alice", datetime.now(UTC) - timedelta(minutes=1), expired
    )
    signature = out.with_name(out.name + ".minisig")
    lines = signature.read_text().splitlines()[:4] + expired.read_text().splitlines()
    signature.write_text("\n".join(lines) + "\n")
    with pytest.raises(OvlError, match="certificate of signer 'alice' expired on"):
        _open(pki, out)


def test_revoked_signer_is_refused(pki: Pki, tmp_path: Path) -> None:
    out = _seal(pki, tmp_path)
    revoke(pki.root_key, pki.keys, [str(pki.signer_pub)], "laptop lost")
    with pytest.raises(OvlError, match=r"signer 'alice' \(key [0-9A-F]{16}\) is revoked"):
        _open(pki, out)


def test_revocation_list_not_signed_by_a_root_is_refused(pki: Pki, tmp_path: Path) -> None:
    revoke(pki.root_key, pki.keys, ["0123456789ABCDEF"], "")
    (pki.keys / "revoked").write_text("# emptied by an attacker\n")
    with pytest.raises(OvlError, match="signature does not match"):
        TrustStore.load(pki.keys)


def test_older_serial_is_refused_after_a_newer_one(pki: Pki, tmp_path: Path) -> None:
    state = ReplayState(tmp_path / "cache" / "replay.json")
    old, new = _seal(pki, tmp_path, serial=4), _seal(pki, tmp_path, serial=9)
    _open(pki, new, state=state).path.unlink()
    assert ReplayState(tmp_path / "cache" / "replay.json").highest("fleet") == 9
    with pytest.raises(
        OvlError, match=r"serial 4 of bundle 'fleet' is older than the last accepted \(9\)"
    ):
        _open(pki, old, state=state)
    assert _leftovers(old.parent) == []
    _open(pki, new, state=state)  # the same serial again is a re-fetch, not a replay
    rolled = _open(pki, old, parse_policy("signed,allow-rollback"), state)
    assert rolled.serial == 4 and "allow-rollback" in rolled.warnings[0]
    assert state.highest("fleet") == 9


def test_legacy_openssl_input_needs_allow_legacy(pki: Pki, tmp_path: Path) -> None:
    legacy = tmp_path / "legacy.ovl"
    legacy.write_bytes(b"U2FsdGVkX1+AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
    with pytest.raises(OvlError, match="legacy openssl-encrypted bundle refused"):
        open_sealed(legacy, None, NONE, TrustStore.load(pki.keys), [Passphrase("x", "t")], None)


def test_signature_without_certificate_is_refused_or_ignored_by_policy(
    pki: Pki, tmp_path: Path
) -> None:
    out = _seal(pki, tmp_path, encrypt=False)
    sig = out.with_name(out.name + ".minisig")
    sig.write_text("".join(sig.read_text().splitlines(keepends=True)[:4]))
    with pytest.raises(OvlError, match="carries no signer certificate; signer not certified"):
        _open(pki, out)
    opened = _open(pki, out, NONE)
    assert opened.signer is None and "not checked" in opened.warnings[0]


def test_machine_key_file_is_an_identity_or_a_passphrase(pki: Pki, tmp_path: Path) -> None:
    assert isinstance(load_machine_key(pki.node_identity)[0], AgeIdentity)
    legacy = tmp_path / "legacy.key"
    legacy.write_text("hunter2\n")
    assert load_machine_key(legacy) == [Passphrase("hunter2", str(legacy))]


def test_oversized_signature_file_is_bad_input(pki: Pki, tmp_path: Path) -> None:
    out = _seal(pki, tmp_path, encrypt=False)
    sig = out.with_name(out.name + ".minisig")
    sig.write_bytes(sig.read_bytes() + b"#" * (65 << 10))
    with pytest.raises(BadInput, match="larger than 65536 bytes"):
        _open(pki, out)
