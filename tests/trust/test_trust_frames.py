"""The signed frame index (TRUST.md, "Fetching only a machine's frames"): `ovl seal` names a
checked index in the trusted comment, stock minisign still verifies the whole file, and a
machine trusts the index (and through it each frame) by the comment alone, under the same
certificate, roots, policy and replay rules as the whole bundle."""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from ovl.core.errors import BadInput, OvlError
from ovl.format.frameindex import encode_index, index_digest, read_index
from ovl.tools.pack import PackOptions, pack_directory
from ovl.tools.seal import load_recipients, seal_bundle
from ovl.trust.certs import TrustStore
from ovl.trust.minisign import parse_signature, read_text_file
from ovl.trust.open import IndexDigest, check_comment, open_partial, signed_index
from ovl.trust.policy import parse_policy
from ovl.trust.replay import ReplayState
from tests.trust.trust_pki import Pki, make_pki

SIGNED = parse_policy("signed")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    (root / "etc").mkdir()
    (root / "etc/fleet.conf").write_text("fleet\n")
    (root / "ovl.json").write_text(json.dumps({"name": "fleet", "serial": 7}))
    for index in range(6):
        folder = root / "layers" / f"10-mac=52:54:00:00:03:{index:02x}"
        folder.mkdir(parents=True)
        (folder / "key").write_bytes(os.urandom(200_000))
    out = tmp_path_factory.mktemp("out") / "fleet.ovl"
    pack_directory(root, out, PackOptions())
    return out


def _seal(pki: Pki, bundle: Path, out: Path, serial: int = 7, **kw: object) -> Path:
    seal_bundle(
        bundle,
        out,
        signer_key=pki.signer_key,
        certificate=pki.cert,
        name="fleet",
        serial=serial,
        **kw,  # type: ignore[arg-type]
    )
    return out.with_name(out.name + ".minisig")


def _comment(signature: Path) -> str:
    return parse_signature(read_text_file(signature, "sig")).trusted_comment


@pytest.mark.subprocess
def test_seal_names_the_checked_index_and_stock_minisign_verifies_the_whole_file(
    pki: Pki, packed: Path, tmp_path: Path
) -> None:
    signature = _seal(pki, packed, tmp_path / "fleet.ovl")
    with packed.open("rb") as raw:
        size, sha256 = index_digest(raw) or (0, "")
    expected = f"ovl-bundle name=fleet serial=7 index-bytes={size} index-sha256={sha256}"
    assert _comment(signature) == expected
    done = subprocess.run(
        ["minisign", "-V", "-p", str(pki.signer_pub), "-m", str(tmp_path / "fleet.ovl")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0 and f"Trusted comment: {expected}" in done.stdout
    where = "bundle fleet.ovl"
    checked = check_comment(signature, SIGNED, TrustStore.load(pki.keys), where)
    assert (checked.signer, checked.serial, checked.index) == (
        "alice",
        7,
        IndexDigest(size, sha256),
    )


@pytest.mark.parametrize(
    "how", ["encrypted", "armoured", "no-index"], ids=["encrypted", "armoured", "no-index"]
)
def test_only_a_plain_indexed_bundle_has_its_index_signed(
    pki: Pki, packed: Path, tmp_path: Path, how: str
) -> None:
    options: dict[str, object] = {}
    bundle = packed
    if how == "encrypted":
        options["recipients"] = load_recipients(pki.node_recipient)
    elif how == "armoured":
        options["armor"] = True
    else:  # the same bytes without the trailer: what GNU tar + zstd writes has no index
        frames = read_index(packed.open("rb"))
        assert frames is not None
        bundle = tmp_path / "plain.ovl"
        bundle.write_bytes(packed.read_bytes()[: sum(f.compressed for f in frames)])
    signature = _seal(pki, bundle, tmp_path / "fleet.ovl", **options)
    assert _comment(signature) == "ovl-bundle name=fleet serial=7"


def test_seal_refuses_an_index_that_lies_and_writes_nothing(
    pki: Pki, packed: Path, tmp_path: Path
) -> None:
    """A signed index must be one lint passes: a relabelled frame would hide a layer."""
    frames = read_index(packed.open("rb"))
    assert frames is not None
    lying = [frames[0], replace(frames[1], base=False, layers=("99",))]  # digests kept
    body = packed.read_bytes()[: sum(f.compressed for f in frames)]
    liar = tmp_path / "liar.ovl"
    liar.write_bytes(body + encode_index([*lying, *frames[2:]]))
    out = tmp_path / "ship" / "fleet.ovl"
    out.parent.mkdir()
    with pytest.raises(BadInput, match=r"machines would refuse it: .*frame index lies"):
        _seal(pki, liar, out)
    assert list(out.parent.iterdir()) == []


def _edited(signature: Path, dest: Path, old: str, new: str) -> Path:
    dest.write_text(signature.read_text().replace(old, new))
    return dest


def test_an_edited_index_digest_is_tampering_under_every_policy(
    pki: Pki, packed: Path, tmp_path: Path
) -> None:
    signature = _seal(pki, packed, tmp_path / "fleet.ovl")
    comment = _comment(signature)
    digest = comment.rpartition("=")[2]
    forged = _edited(signature, tmp_path / "forged.minisig", digest, "0" * 64)
    for policy in ("signed", "none"):
        with pytest.raises(OvlError, match="trusted comment does not match its signature"):
            check_comment(forged, parse_policy(policy), TrustStore.load(pki.keys), "bundle b")


def test_the_signed_index_is_checked_like_the_bundle_before_any_frame_is_fetched(
    pki: Pki, packed: Path, tmp_path: Path
) -> None:
    trust = TrustStore.load(pki.keys)
    state = ReplayState(tmp_path / "replay.json")
    newer = _seal(pki, packed, tmp_path / "new" / "fleet.ovl", serial=9)
    older = _seal(pki, packed, tmp_path / "old" / "fleet.ovl", serial=8)
    assert signed_index(newer, SIGNED, trust, state, "bundle b") is not None
    state.accept("fleet", 9)
    with pytest.raises(OvlError, match="serial 8 of bundle 'fleet' is older than the last"):
        signed_index(older, SIGNED, trust, state, "bundle b")
    allowed = parse_policy("signed,allow-rollback")
    assert signed_index(older, allowed, trust, state, "bundle b") is not None
    with pytest.raises(OvlError, match=r"plaintext bundle refused \(ovl.require=encrypted\)"):
        signed_index(newer, parse_policy("encrypted"), trust, None, "bundle b")
    strangers = TrustStore(())
    with pytest.raises(OvlError, match="not certified by a trusted root"):
        signed_index(newer, SIGNED, strangers, None, "bundle b")
    # Under none an uncertified signer vouches for nothing: the whole bundle is fetched.
    assert signed_index(newer, parse_policy("none"), strangers, None, "bundle b") is None


def _open_partial(
    pki: Pki,
    signature: Path | None,
    index: IndexDigest,
    state: ReplayState | None = None,
    policy: str = "signed",
    frames_ok: bool = True,
) -> object:
    checked: list[bool] = []

    def check_frames() -> None:
        checked.append(True)
        if not frames_ok:
            raise BadInput("partial bundle: frame 3 does not match")

    opened = open_partial(
        Path("bundle.ovl"),
        signature,
        index,
        parse_policy(policy),
        TrustStore.load(pki.keys),
        state,
        check_frames,
    )
    assert checked == [True]
    return opened


def test_a_partial_bundle_opens_when_its_index_is_the_signed_one(
    pki: Pki, packed: Path, tmp_path: Path
) -> None:
    signature = _seal(pki, packed, tmp_path / "fleet.ovl")
    with packed.open("rb") as raw:
        index = IndexDigest(*(index_digest(raw) or (0, "")))
    state = ReplayState(tmp_path / "replay.json")
    opened = _open_partial(pki, signature, index, state)
    assert (opened.signer, opened.serial, opened.encrypted) == ("alice", 7, False)  # type: ignore[attr-defined]
    assert state.highest("fleet") == 7


def test_a_partial_bundle_is_refused_for_another_index_bad_frames_or_no_signature(
    pki: Pki, packed: Path, tmp_path: Path
) -> None:
    signature = _seal(pki, packed, tmp_path / "fleet.ovl")
    with packed.open("rb") as raw:
        index = IndexDigest(*(index_digest(raw) or (0, "")))
    other = IndexDigest(index.size, "1" * 64)
    with pytest.raises(OvlError, match="frame index does not match its signature"):
        open_partial(
            Path("b"), signature, other, SIGNED, TrustStore.load(pki.keys), None, lambda: None
        )
    state = ReplayState(tmp_path / "replay.json")
    with pytest.raises(BadInput, match="frame 3 does not match"):
        _open_partial(pki, signature, index, state, frames_ok=False)
    assert state.highest("fleet") is None  # nothing recorded for a refused bundle
    with pytest.raises(OvlError, match=r"unsigned, refused \(ovl.require=signed\)"):
        open_partial(Path("b"), None, index, SIGNED, TrustStore.load(pki.keys), None, lambda: 0)
    with pytest.raises(OvlError, match="plaintext bundle refused"):
        open_partial(
            Path("b"),
            signature,
            index,
            parse_policy("encrypted"),
            TrustStore.load(pki.keys),
            None,
            lambda: None,
        )
    whole = _seal(pki, packed, tmp_path / "armoured.ovl", armor=True)  # names no index
    with pytest.raises(OvlError, match="partial bundle, but its signature names no frame index"):
        open_partial(Path("b"), whole, index, SIGNED, TrustStore.load(pki.keys), None, lambda: 0)
