"""`ovl keys/seal/verify/open` end to end, with stock minisign and age as the other side."""

from __future__ import annotations

import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from ovl.format.codec import open_decoded
from ovl.format.scan import scan_bundle
from ovl.tools.cli import main
from ovl.tools.pack import PackOptions, pack_directory
from ovl.trust.age import load_identity_file
from ovl.trust.certs import TrustStore
from ovl.trust.minisign import parse_signature
from ovl.trust.open import open_sealed
from ovl.trust.policy import parse_policy
from ovl.trust.signing import load_secret_key, sign_file
from tests.trust.trust_pki import Pki, make_pki


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path)


def _tree(root: Path, layers: list[str]) -> Path:
    (root / "base" / "etc").mkdir(parents=True)
    (root / "base" / "etc" / "motd").write_text("base\n")
    (root / "ovl.json").write_text(json.dumps({"name": "fleet", "serial": 12}))
    for layer in layers:
        (root / "layers" / layer / "etc").mkdir(parents=True)
        (root / "layers" / layer / "etc" / "who").write_text(layer + "\n")
    return root


def _bundle(tmp_path: Path, layers: list[str] = ["00"]) -> Path:  # noqa: B006
    out = tmp_path / "fleet.ovl"
    pack_directory(_tree(tmp_path / "tree", layers), out, PackOptions())
    return out


def _seal(pki: Pki, bundle: Path, out: Path, *extra: str) -> int:
    argv = ["seal", str(bundle), "--sign", str(pki.signer_key), "--cert", str(pki.cert)]
    return main([*argv, *extra, "-o", str(out)])


def test_seal_reads_name_and_serial_from_ovl_json(pki: Pki, tmp_path: Path) -> None:
    (tmp_path / "ship").mkdir()
    out = tmp_path / "ship" / "fleet.ovl.age"
    assert _seal(pki, _bundle(tmp_path), out, "-r", pki.node_recipient) == 0
    sig = (tmp_path / "ship" / "fleet.ovl.age.minisig").read_text()
    assert "trusted comment: ovl-bundle name=fleet serial=12\n" in sig


def test_verify_json_reports_signer_serial_and_encryption(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "fleet.ovl.age"
    _seal(pki, _bundle(tmp_path), out, "-r", pki.node_recipient, "--armor")
    capsys.readouterr()
    assert main(["verify", str(out), "--keys", str(pki.keys), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["kind"], report["signer"], report["name"], report["serial"]) == (
        "bundle",
        "alice",
        "fleet",
        12,
    )
    assert report["encryption"].startswith("age, to 1 X25519")
    assert report["frame_index"] is None  # an encrypted bundle is fetched whole


def test_verify_names_the_signed_frame_index_of_a_plain_packed_bundle(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ship.ovl"
    assert _seal(pki, _bundle(tmp_path, ["00", "10-x86_64"]), out) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--keys", str(pki.keys), "--json"]) == 0
    index = json.loads(capsys.readouterr().out)["frame_index"]
    assert index["frames"] >= 1 and len(index["sha256"]) == 64 and index["bytes"] > 12
    assert main(["verify", str(out), "--keys", str(pki.keys)]) == 0
    line = capsys.readouterr().out
    assert f"frame index signed ({index['frames']} frames: machines fetch only theirs)" in line
    # The signer named another index than the file's: whole-file signature good, index not.
    signature = out.with_name(out.name + ".minisig")
    original = parse_signature(signature.read_text())
    comment = original.trusted_comment.replace(index["sha256"], "0" * 64)
    key = load_secret_key(pki.signer_key)
    signature.write_text(sign_file(key, out, comment, "x", original.trailer).to_text())
    assert main(["verify", str(out), "--keys", str(pki.keys)]) == 1
    assert "its signature names another frame index than the file's" in capsys.readouterr().err


def test_open_writes_the_plain_bundle_and_refuses_a_tampered_one(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(tmp_path)
    out = tmp_path / "fleet.ovl.age"
    _seal(pki, bundle, out, "-r", pki.node_recipient)
    argv = ["open", str(out), "-i", str(pki.node_identity), "--keys", str(pki.keys)]
    assert main([*argv, "-o", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain").read_bytes() == bundle.read_bytes()
    data = bytearray(out.read_bytes())
    data[-1] ^= 1
    out.write_bytes(bytes(data))
    capsys.readouterr()
    assert main([*argv, "-o", str(tmp_path / "plain2")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"ovl: error: bundle {out.name}: signature does not match (tampered or truncated)"
    ]
    assert not (tmp_path / "plain2").exists()


def test_seal_and_open_json_say_what_was_written_and_opened(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bundle = _bundle(tmp_path)
    out = tmp_path / "fleet.ovl.age"
    capsys.readouterr()
    assert _seal(pki, bundle, out, "-r", pki.node_recipient, "--json") == 0
    assert json.loads(capsys.readouterr().out) == {
        "out": str(out),
        "signature": f"{out}.minisig",
        "name": "fleet",
        "serial": 12,
        "encrypted": True,
    }
    plain = tmp_path / "plain"
    argv = ["open", str(out), "-i", str(pki.node_identity), "--keys", str(pki.keys), "--json"]
    assert main([*argv, "-o", str(plain)]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "out": str(plain),
        "signer": "alice",
        "serial": 12,
        "encrypted": True,
        "warnings": [],
    }
    assert plain.read_bytes() == bundle.read_bytes()


def test_passphrase_seal_opens_with_the_passphrase(
    pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bundle = _bundle(tmp_path)
    out = tmp_path / "fleet.ovl.age"
    monkeypatch.setenv("OVL_PASSPHRASE", "open sesame")
    assert _seal(pki, bundle, out, "-p") == 0
    argv = ["open", str(out), "--keys", str(pki.keys), "--require", "encrypted"]
    assert main([*argv, "-o", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "plain").read_bytes() == bundle.read_bytes()


def test_certificate_for_another_key_is_refused_at_seal_time(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "signer-new", "bob", "-d", str(tmp_path)]) == 0
    argv = ["seal", str(_bundle(tmp_path)), "--sign", str(tmp_path / "bob.key")]
    assert main([*argv, "--cert", str(pki.cert), "-o", str(tmp_path / "x")]) == 2
    assert "certifies key" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


@pytest.mark.subprocess
def test_stock_tools_check_what_ovl_sealed(pki: Pki, tmp_path: Path) -> None:
    bundle = _bundle(tmp_path)
    out = tmp_path / "fleet.ovl.age"
    _seal(pki, bundle, out, "-r", pki.node_recipient)
    root_pub = pki.keys / "root.pub"
    subprocess.run(
        ["minisign", "-V", "-p", root_pub, "-m", pki.signer_pub, "-x", pki.cert], check=True
    )
    subprocess.run(["minisign", "-V", "-p", pki.signer_pub, "-m", out], check=True)
    plain = subprocess.run(
        ["age", "-d", "-i", pki.node_identity, out], check=True, capture_output=True
    ).stdout
    assert plain == bundle.read_bytes()


@pytest.mark.subprocess
def test_keys_certify_revoke_and_list(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(
            [
                "keys",
                "revoke",
                "--root",
                str(pki.root_key),
                "--keys-dir",
                str(pki.keys),
                str(pki.signer_pub),
                "--reason",
                "laptop lost",
            ]
        )
        == 0
    )
    subprocess.run(
        ["minisign", "-V", "-p", pki.keys / "root.pub", "-m", pki.keys / "revoked"], check=True
    )
    capsys.readouterr()
    assert main(["keys", "list", str(pki.keys), str(pki.cert.parent)]) == 0
    listing = capsys.readouterr().out
    signer_id = TrustStore.load(pki.keys).revoked
    assert "certificate  alice.cert" in listing
    assert any(f"{key_id}  revoked" in listing for key_id in signer_id)

    assert main(["keys", "list", str(pki.keys), str(pki.cert.parent), "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    by_file = {Path(entry["file"]).name: entry for entry in listed["files"]}
    root_id = TrustStore.load(pki.keys).roots[0].id_hex
    cert = by_file["alice.cert"]
    assert (cert["kind"], cert["certified_by"]) == ("certificate", root_id)
    assert cert["key_id"] in signer_id  # the signer this test revoked
    assert cert["expires"] is not None and cert["expires"] in cert["detail"]
    assert by_file["root.pub"] == {
        "file": str(pki.keys / "root.pub"),
        "kind": "public key",
        "key_id": root_id,
        "detail": by_file["root.pub"]["detail"],
        "certified_by": None,
        "expires": None,
    }
    assert [entry["key_id"] for entry in listed["revoked"]] == sorted(signer_id)


def test_per_machine_outputs_hold_only_matching_layers_for_each_key(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    layers = ["00", "10-arch=aarch64", "20-mac=52:54:00:aa:bb:01"]
    bundle = _bundle(tmp_path, layers)
    fleet = tmp_path / "fleet.json"
    fleet.write_text(
        json.dumps(
            {
                "version": 1,
                "defaults": {"arch": "x86_64"},
                "machines": {
                    "web-1": {"macs": ["52:54:00:aa:bb:01"]},
                    "arm-1": {
                        "macs": ["52:54:00:aa:bb:03", "52:54:00:aa:bb:04"],
                        "arch": "aarch64",
                    },
                },
            }
        )
    )
    recipients = tmp_path / "nodes"
    for machine in ("web-1", "arm-1"):
        assert main(["keys", "node-new", machine, "-d", str(recipients)]) == 0
    out = tmp_path / "per-mac"
    capsys.readouterr()
    per_machine = ["--per-machine", str(fleet), "--recipients-dir", str(recipients), "--json"]
    assert _seal(pki, bundle, out, *per_machine) == 0
    listed = json.loads(capsys.readouterr().out)["machines"]
    assert [(m["machine"], Path(m["out"]).name, m["layers"], m["serial"]) for m in listed] == [
        ("arm-1", "52-54-00-aa-bb-03.ovl", 2, 12),
        ("web-1", "52-54-00-aa-bb-01.ovl", 2, 12),
    ]
    assert all(Path(m["signature"]).is_file() for m in listed)
    assert sorted(p.name for p in out.iterdir()) == [
        f"52-54-00-aa-bb-0{n}.ovl{s}" for n in (1, 3, 4) for s in ("", ".minisig")
    ]
    expect = {"web-1": ("1", {"00", layers[2]}), "arm-1": ("3", {"00", layers[1]})}
    store = TrustStore.load(pki.keys)
    for machine, (n, kept) in expect.items():
        sealed = out / f"52-54-00-aa-bb-0{n}.ovl"
        identities = load_identity_file(recipients / f"{machine}.age")
        opened = open_sealed(
            sealed, Path(f"{sealed}.minisig"), parse_policy("encrypted"), store, identities, None
        )
        with opened.path.open("rb") as source:
            info = scan_bundle(source)
        assert {layer.name for layer in info.layers[1:]} == kept
        assert info.manifest is not None and info.manifest.serial == 12
        with opened.path.open("rb") as raw, tarfile.open(fileobj=open_decoded(raw), mode="r|") as t:
            assert "base/etc/motd" in [m.name for m in t]
        other = load_identity_file(
            recipients / ("arm-1.age" if machine == "web-1" else "web-1.age")
        )
        with pytest.raises(Exception, match="not encrypted to this machine's key"):
            open_sealed(
                sealed, Path(f"{sealed}.minisig"), parse_policy("signed"), store, other, None
            )


def test_armoured_plaintext_seal_still_scans(pki: Pki, tmp_path: Path) -> None:
    out = tmp_path / "fleet.ovl.asc"
    assert _seal(pki, _bundle(tmp_path), out, "--armor") == 0
    assert out.read_bytes().startswith(b"-----BEGIN OVL BUNDLE-----\n")
    opened = open_sealed(
        out, Path(f"{out}.minisig"), parse_policy("signed"), TrustStore.load(pki.keys), [], None
    )
    with opened.path.open("rb") as source:
        assert scan_bundle(source).manifest is not None


def test_key_commands_refuse_overwrites_and_bad_dates(
    pki: Pki, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["keys", "signer-new", "alice", "-d", str(pki.signer_key.parent)]) == 2
    assert "refusing to overwrite a key" in capsys.readouterr().err
    argv = ["keys", "certify", "--root", str(pki.root_key), str(pki.signer_pub), "--name", "a"]
    assert main([*argv, "--expires", "next tuesday", "-o", str(tmp_path / "c")]) == 2
    assert "--expires 'next tuesday'" in capsys.readouterr().err


@pytest.mark.subprocess
def test_keys_made_by_stock_minisign_certify_and_seal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, secret = tmp_path / "keys", tmp_path / "secret"
    keys.mkdir()
    secret.mkdir()
    root: list[str | Path] = ["minisign", "-G", "-p", keys / "root.pub", "-s", secret / "root.key"]
    subprocess.run(root, input=b"rootpw\nrootpw\n", check=True, capture_output=True)
    signer: list[str | Path] = [
        "minisign",
        "-G",
        "-W",
        "-p",
        secret / "bob.pub",
        "-s",
        secret / "bob.key",
    ]
    subprocess.run(signer, check=True, capture_output=True)
    monkeypatch.setenv("OVL_KEY_PASSWORD", "rootpw")
    cert = secret / "bob.cert"
    argv = ["keys", "certify", "--root", str(secret / "root.key"), str(secret / "bob.pub")]
    assert main([*argv, "--name", "bob", "--expires", "2099-01-01", "-o", str(cert)]) == 0
    out = tmp_path / "fleet.ovl"
    seal = ["seal", str(_bundle(tmp_path)), "--sign", str(secret / "bob.key"), "--cert", str(cert)]
    assert main([*seal, "-o", str(out)]) == 0
    assert main(["verify", str(out), "--keys", str(keys)]) == 0
