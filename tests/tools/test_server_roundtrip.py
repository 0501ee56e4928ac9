"""The whole rw round trip on the host: a real overlayfs upper is packed, shipped into the
server's store, baked into a signed bundle, and the bundle engine puts it back: merged, and
split into overlay lowers stacked by a real overlayfs mount. Both equal the original view."""

from __future__ import annotations

import hashlib
import io
import subprocess
from pathlib import Path

import pytest
import zstandard

from ovl.core.facts import Facts
from ovl.delta.pack import write_delta
from ovl.delta.rules import Rules
from ovl.delta.upper import walk_upper
from ovl.format.apply import apply_bundle
from ovl.tools.server.bake import bake
from ovl.tools.server.history import rollback
from ovl.tools.server.importing import ImportRequest, import_bundle
from ovl.tools.server.signing import certified_signer
from ovl.tools.server.store import Machine, Store
from ovl.trust.certs import TrustStore
from ovl.trust.open import check_signature
from ovl.trust.policy import Policy
from tests.delta.test_delta_upper import change_merged, make_lower, overlay, tree
from tests.trust.trust_pki import make_pki

pytestmark = [pytest.mark.subprocess, pytest.mark.root]

MAC = "52:54:00:12:34:56"


def gnu_tar_bundle(src: Path, out: Path) -> Path:
    """The admin's bundle, made by the independent peers: GNU tar (pax) and zstd."""
    raw = subprocess.run(
        ["tar", "--format=pax", "--xattrs", "--numeric-owner", "-C", src, "-cf", "-", "."],
        check=True,
        capture_output=True,
    ).stdout
    out.write_bytes(zstandard.ZstdCompressor().compress(raw))
    return out


def test_upper_baked_and_applied_by_the_engine_equals_the_merged_view(
    tmp_path: Path, mounts: object
) -> None:
    lower = tmp_path / "lower"
    make_lower(lower)
    (lower / "ovl.json").write_text('{"name": "lab", "serial": 1}\n')
    original = tree(lower)
    del original["ovl.json"]  # the engine reads the manifest; it does not write it out
    merged = overlay(mounts, [lower], tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
    change_merged(merged)
    expected = {k: v for k, v in tree(merged).items() if not k.startswith(("tmp/", "var/cache/"))}

    pki = make_pki(tmp_path / "pki")
    sign = certified_signer(pki.signer_key, pki.cert)
    store = Store(tmp_path / "srv")
    import_bundle(
        store, ImportRequest("lab", gnu_tar_bundle(lower, tmp_path / "lab.ovl"), None), None
    )
    store.add_machine(Machine("node1", "lab", MAC, pki.signer_pub.read_text()))
    delta = store.temp_file()
    with delta.open("wb") as out:
        packed = write_delta(walk_upper(tmp_path / "upper", Rules().wanted), out)
    store.accept_delta("node1", packed.sha256, delta, "sig", 1)
    assert hashlib.sha256(store.deltas("node1")[0].path.read_bytes()).hexdigest() == packed.sha256

    version = bake(store, "lab", sign)
    assert version is not None and version.number == 2
    signed = check_signature(
        version.bundle,
        version.bundle.with_name("bundle.ovl.minisig"),
        Policy(),
        TrustStore.load(pki.keys),
        "baked",
    )
    assert (signed.name, signed.serial) == ("lab", 2)

    facts = Facts(macs=(MAC,))
    whole = tmp_path / "applied"
    with version.bundle.open("rb") as source:
        apply_bundle(source, facts, whole, split=False)
    got = tree(whole)
    got.pop("ovl.json", None)
    expected.pop("ovl.json", None)
    assert got == expected

    split = tmp_path / "split"
    with version.bundle.open("rb") as source:
        result = apply_bundle(source, facts, split, split=True)
    lowers = [layer.path for layer in reversed(result.layers)]
    assert [p.name for p in lowers] == ["90-525400123456", "base"]
    stacked = overlay(mounts, lowers, tmp_path / "u2", tmp_path / "w2", tmp_path / "m2")
    view = tree(stacked)
    view.pop("ovl.json", None)
    assert view == expected

    # Another machine does not get node1's layer; a rollback takes it away from node1 too.
    other = tmp_path / "other"
    with version.bundle.open("rb") as source:
        apply_bundle(source, Facts(macs=("52:54:00:99:99:99",)), other, split=False)
    assert tree(other).keys() == original.keys()
    back = rollback(store, "lab", 1, sign)
    again = tmp_path / "rolled-back"
    with back.bundle.open("rb") as source:
        apply_bundle(source, facts, again, split=False)
    assert tree(again).keys() == original.keys()
    assert io.BytesIO(back.bundle.read_bytes()).read(4) == b"\x28\xb5\x2f\xfd"
