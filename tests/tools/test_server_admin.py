"""The server keeps an admin from losing trust or changes without a word: signed profiles stay
signed, imports keep what bakes made, machines are registered on purpose, and every action
says what it did."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from ovl.tools.cli import main
from ovl.tools.keys import new_signing_pair
from ovl.tools.server.store import Store
from tests.tools.server_fixtures import accept, delta_file, make_bundle, read_bundle_files
from tests.trust.trust_pki import Pki, make_pki

MAC = "52:54:00:aa:bb:01"
BAKED = "layers/90-525400aabb01"


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return make_pki(tmp_path / "pki")


def keypair(directory: Path, name: str) -> tuple[Path, Path]:
    """A node's minisign key pair (.pub, .key), as `ovl keys signer-new` makes it."""
    key, pub = new_signing_pair(directory, name, "node")
    return pub, key


def signing(pki: Pki) -> list[str]:
    return ["--sign-key", str(pki.signer_key), "--cert", str(pki.cert)]


def sealed(pki: Pki, bundle: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """`bundle` signed with `ovl seal` (plaintext), as an admin ships it."""
    out = bundle.with_name(f"sealed-{bundle.name}")
    code, _, err = run(capsys, "seal", bundle, *signing(pki), "-o", out)
    assert code == 0, err
    return out


@pytest.fixture
def signed_root(tmp_path: Path, pki: Pki, capsys: pytest.CaptureFixture[str]) -> Path:
    """Profile lab, version 1 sealed by the admin's certified signer."""
    root = tmp_path / "srv"
    v1 = sealed(pki, make_bundle(tmp_path / "v1.ovl", {"etc/motd": b"v1\n"}, serial=1), capsys)
    code, _, err = run(capsys, "server", "--root", root, "import", "lab", v1)
    assert code == 0, err
    return root


def test_an_unsigned_bundle_is_refused_by_a_signed_profile_unless_allowed(
    tmp_path: Path, signed_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=2)
    code, out, err = run(capsys, "server", "--root", signed_root, "import", "lab", v2)
    assert (code, out) == (2, "")
    assert err == (
        "ovl: error: profile lab is signed (version 1 is): importing an unsigned bundle needs"
        " --sign-key and --cert (or OVL_SIGN_KEY) to sign the new version; --allow-unsigned"
        " publishes it unsigned\n"
    )
    assert [v.number for v in Store(signed_root).versions("lab")] == [1]

    code, out, err = run(
        capsys, "server", "--root", signed_root, "import", "lab", v2, "--allow-unsigned"
    )
    assert code == 0
    assert out == "lab: published version 2 (serial 2, unsigned)\n"
    assert err == (
        "ovl: warning: profile lab: version 2 is unsigned (--allow-unsigned); machines under"
        " ovl.require=signed refuse it\n"
    )


def test_an_unsigned_bundle_imported_with_the_servers_signer_is_signed(
    tmp_path: Path, signed_root: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=2)
    code, out, _ = run(capsys, "server", "--root", signed_root, *signing(pki), "import", "lab", v2)
    assert (code, out) == (0, "lab: published version 2 (serial 2, signed by alice)\n")
    published = signed_root / "profiles/lab/current/bundle.ovl"
    assert published.read_bytes() == v2.read_bytes()  # byte for byte
    code, out, _ = run(capsys, "verify", published, "--keys", pki.keys)
    assert code == 0 and "good signature by alice, bundle fleet serial 2" in out


@pytest.mark.parametrize("action", ["rollback", "cherry-pick", "bake"])
def test_rollback_cherry_pick_and_bake_sign_a_signed_profile_or_refuse(
    action: str,
    tmp_path: Path,
    signed_root: Path,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
) -> None:
    server = ["server", "--root", str(signed_root)]
    pub, _ = keypair(tmp_path / "node", "alpha")
    run(capsys, *server, "add-machine", "alpha", "--profile", "lab", "--mac", MAC, "--key", pub)
    sha = accept(Store(signed_root), "alpha", delta_file(tmp_path, "a", {"etc/x": b"x\n"}), 1)
    v2 = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=2)
    assert run(capsys, *server, *signing(pki), "import", "lab", v2)[0] == 0
    argv = {
        "rollback": ["rollback", "1", "--profile", "lab"],
        "cherry-pick": ["cherry-pick", sha[:12], "--to", "lab"],
        "bake": ["bake", "--profile", "lab"],
    }[action]

    code, out, err = run(capsys, *server, *argv)
    assert (code, out) == (2, "")
    assert err.startswith("ovl: error: profile lab is signed (version 2 is): ")
    assert "needs --sign-key and --cert (or OVL_SIGN_KEY)" in err

    code, out, err = run(capsys, *server, *argv, *signing(pki))  # options after the action
    assert code == 0, err
    assert out == "lab: published version 3 (serial 3, signed by alice)\n"
    current = signed_root / "profiles/lab/current/bundle.ovl"
    code, out, _ = run(capsys, "verify", current, "--keys", pki.keys)
    assert code == 0 and "good signature by alice, bundle fleet serial 3" in out
    # The server writes an indexed bundle: machines fetch only their frames of it.
    assert "frame index signed" in out


def test_history_shows_serial_and_signer_of_every_version(
    tmp_path: Path, signed_root: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=5)
    run(capsys, "server", "--root", signed_root, "import", "lab", v2, "--allow-unsigned")
    code, out, _ = run(capsys, "server", "--root", signed_root, "history")
    lines = out.splitlines()
    assert code == 0 and lines[0] == "lab (signed profile):"
    key_id = json.loads(run(capsys, "keys", "list", pki.signer_pub.parent, "--json")[1])
    signer_id = next(f["key_id"] for f in key_id["files"] if f["file"].endswith("alice.pub"))
    assert lines[1].startswith("     1  serial    1  ")
    assert f"signed by alice ({signer_id})  import " in lines[1]
    assert lines[2].startswith("*    2  serial    5  ") and "  UNSIGNED  import " in lines[2]
    listing = json.loads(run(capsys, "server", "--root", signed_root, "history", "--json")[1])
    versions = listing["lab"]["versions"]
    assert [(v["serial"], v["signer"]) for v in versions] == [
        (1, {"name": "alice", "key_id": signer_id}),
        (5, None),
    ]


def test_a_stale_signature_beside_a_repacked_bundle_is_refused(
    tmp_path: Path, signed_root: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = sealed(pki, make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=2), capsys)
    v2.write_bytes(make_bundle(tmp_path / "again.ovl", {"etc/motd": b"v2b\n"}, 2).read_bytes())
    code, _, err = run(capsys, "server", "--root", signed_root, "import", "lab", v2)
    assert code == 1
    assert err == f"ovl: error: bundle {v2}: signature does not match (tampered or truncated)\n"


def test_a_signature_of_another_serial_is_refused(
    tmp_path: Path, signed_root: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    v2 = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=2)
    out = tmp_path / "v2s.ovl"
    run(capsys, "seal", v2, *signing(pki), "--serial", "7", "-o", out)
    code, _, err = run(capsys, "server", "--root", signed_root, "import", "lab", out)
    assert code == 2
    assert err == (
        f"ovl: error: {out}.minisig: signs bundle 'fleet' serial 7, but {out} is 'fleet'"
        " serial 2 (a signature of another bundle?)\n"
    )


def test_imported_signatures_are_checked_against_trusted_roots_when_given(
    tmp_path: Path, signed_root: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    other = make_pki(tmp_path / "other")
    v2 = sealed(pki, make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=2), capsys)
    server = ["server", "--root", str(signed_root)]
    code, _, err = run(capsys, *server, "--keys", other.keys, "import", "lab", v2)
    assert code == 1 and "is not certified by a trusted root" in err
    code, _, err = run(capsys, *server, "--keys", pki.keys, "import", "lab", v2)
    assert code == 0, err


@pytest.fixture
def baked_root(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    """Profile lab (unsigned): version 1 imported, machine alpha's delta baked into v2."""
    root = tmp_path / "srv"
    server = ["server", "--root", str(root)]
    assert run(capsys, *server, "import", "lab", make_bundle(tmp_path / "v1.ovl", {}, 1))[0] == 0
    pub, _ = keypair(tmp_path / "node", "alpha")
    run(capsys, *server, "add-machine", "alpha", "--profile", "lab", "--mac", MAC, "--key", pub)
    accept(Store(root), "alpha", delta_file(tmp_path, "a", {"etc/app.conf": b"mine\n"}), 1)
    assert run(capsys, *server, "bake")[0] == 0
    assert f"{BAKED}/etc/app.conf" in read_bundle_files(root / "profiles/lab/current/bundle.ovl")
    return root


def test_import_keeps_the_layers_bakes_made(
    tmp_path: Path, baked_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v3 = make_bundle(tmp_path / "v3.ovl", {"etc/motd": b"v3\n"}, serial=3)
    code, out, err = run(capsys, "server", "--root", baked_root, "import", "lab", v3)
    assert code == 0, err
    assert out == (
        f"lab: published version 3 (serial 3, unsigned)\n  kept the layers bakes made: {BAKED}\n"
    )
    files = read_bundle_files(baked_root / "profiles/lab/current/bundle.ovl")
    assert files["etc/motd"] == b"v3\n" and files[f"{BAKED}/etc/app.conf"] == b"mine\n"
    assert json.loads(files["ovl.json"])["serial"] == 3
    meta = Store(baked_root).current("lab").meta  # type: ignore[union-attr]
    assert (meta["rebased"], meta["dropped"]) == ([BAKED], [])
    schema = resources.files("ovl.tools.server").joinpath("version.schema.json").read_text()
    jsonschema.validate(meta, json.loads(schema))


def test_import_drop_baked_publishes_the_bundle_as_it_is(
    tmp_path: Path, baked_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    v3 = make_bundle(tmp_path / "v3.ovl", {"etc/motd": b"v3\n"}, serial=3)
    server = ["server", "--root", str(baked_root)]
    code, out, _ = run(capsys, *server, "import", "lab", v3, "--drop-baked")
    assert code == 0
    assert out.endswith(f"  dropped the layers bakes made: {BAKED}\n")
    assert (baked_root / "profiles/lab/current/bundle.ovl").read_bytes() == v3.read_bytes()


def test_a_signed_import_that_would_lose_baked_layers_is_refused_with_the_list(
    tmp_path: Path, baked_root: Path, pki: Pki, capsys: pytest.CaptureFixture[str]
) -> None:
    v3 = sealed(pki, make_bundle(tmp_path / "v3.ovl", {"etc/motd": b"v3\n"}, serial=3), capsys)
    server = ["server", "--root", str(baked_root)]
    code, _, err = run(capsys, *server, "import", "lab", v3)
    assert code == 2
    assert err == (
        f"ovl: error: profile lab: keeping the layers bakes made ({BAKED}), which it lacks,"
        f" re-writes {v3}, and the new version must be signed again: give --sign-key and"
        " --cert (or OVL_SIGN_KEY); or --drop-baked to publish it as it is; or"
        " --allow-unsigned\n"
    )
    code, out, err = run(capsys, *server, *signing(pki), "import", "lab", v3)
    assert code == 0 and "signed by alice" in out, err
    current = baked_root / "profiles/lab/current/bundle.ovl"
    assert f"{BAKED}/etc/app.conf" in read_bundle_files(current)
    assert run(capsys, "verify", current, "--keys", pki.keys)[0] == 0


def test_serial_auto_takes_the_next_serial(
    tmp_path: Path, baked_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = make_bundle(tmp_path / "stale.ovl", {"etc/motd": b"v3\n"}, serial=1)
    server = ["server", "--root", str(baked_root)]
    code, _, err = run(capsys, *server, "import", "lab", stale)
    assert code == 2 and "its serial 1 is not above the current 2" in err
    code, out, _ = run(capsys, *server, "import", "lab", stale, "--serial", "auto")
    assert (code, out.splitlines()[0]) == (0, "lab: published version 3 (serial 3, unsigned)")
    files = read_bundle_files(baked_root / "profiles/lab/current/bundle.ovl")
    assert json.loads(files["ovl.json"])["serial"] == 3
    assert run(capsys, *server, "import", "lab", stale, "--serial", "9")[0] == 0
    assert Store(baked_root).current("lab").meta["serial"] == 9  # type: ignore[union-attr]


def test_add_machine_checks_the_profile_the_key_and_what_it_replaces(
    tmp_path: Path, baked_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = ["server", "--root", str(baked_root), "add-machine"]
    pub, _ = keypair(tmp_path / "node", "beta")
    mac = "52:54:00:aa:bb:02"
    code, out, err = run(capsys, *server, "beta", "--profile", "lba", "--mac", mac, "--key", pub)
    assert (code, out) == (2, "")
    assert err == (
        "ovl: error: profile 'lba': no such profile; did you mean lab? (profiles here: lab)\n"
    )
    age_pub = tmp_path / "beta.age.pub"
    run(capsys, "keys", "node-new", "beta", "-d", tmp_path)
    code, _, err = run(capsys, *server, "beta", "--profile", "lab", "--mac", mac, "--key", age_pub)
    assert code == 2
    assert err.startswith(
        f"ovl: error: --key {age_pub}: expected a minisign public key, found an age recipient"
        " (age1...); a node signs its deltas with a minisign key"
    )
    code, out, _ = run(capsys, *server, "beta", "--profile", "lab", "--mac", mac, "--key", pub)
    assert code == 0 and out.startswith(f"beta: registered, profile lab, mac {mac}, node key ")

    code, _, err = run(capsys, *server, "beta", "--profile", "lab", "--mac", MAC, "--key", pub)
    assert code == 2
    assert err == (
        f"ovl: error: machine beta is registered (profile lab, mac {mac}); --replace replaces it\n"
    )
    code, _, err = run(
        capsys, *server, "beta", "--profile", "lab", "--mac", MAC, "--key", pub, "--replace"
    )
    assert code == 2
    assert err == f"ovl: error: mac {MAC} is machine alpha's; a MAC names one machine's layer\n"
    mac3 = "52:54:00:aa:bb:03"
    code, out, _ = run(
        capsys,
        *server,
        "beta",
        "--profile",
        "lab",
        "--mac",
        mac3,
        "--key",
        pub,
        "--replace",
        "--json",
    )
    assert code == 0 and json.loads(out)["mac"] == mac3


def test_machines_lists_each_machine_with_its_deltas(
    tmp_path: Path, baked_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    accept(Store(baked_root), "alpha", delta_file(tmp_path, "b", {"etc/y": b"y\n"}), 2)
    code, out, _ = run(capsys, "server", "--root", baked_root, "machines", "--json")
    [alpha] = json.loads(out)["machines"]
    assert code == 0
    assert {k: alpha[k] for k in ("machine", "profile", "mac", "deltas", "pending")} == {
        "machine": "alpha",
        "profile": "lab",
        "mac": MAC,
        "deltas": 2,
        "pending": 1,
    }
    assert len(alpha["key_id"]) == 16 and alpha["last_delta"].endswith("Z")
    code, out, _ = run(capsys, "server", "--root", baked_root, "machines")
    header, row = out.splitlines()
    assert header.split() == ["machine", "profile", "mac", "node", "key", "deltas", "pending",
                              "last", "delta"]  # fmt: skip
    assert row.split()[:2] == ["alpha", "lab"] and row.split()[4:6] == ["2", "1"]


def test_history_of_an_unknown_profile_and_a_mistyped_root_are_errors(
    tmp_path: Path, baked_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "server", "--root", baked_root, "history", "--profile", "nope")
    assert (code, out) == (2, "")
    assert err == "ovl: error: profile 'nope': no such profile (profiles here: lab)\n"
    for action in (["serve"], ["history"], ["bake"], ["machines"]):
        code, _, err = run(capsys, "server", "--root", tmp_path / "srv-typo", *action)
        assert code == 2 and "not an ovl server root (no such directory)" in err
    assert not (tmp_path / "srv-typo").exists()


def test_server_root_and_signer_come_from_the_environment(
    tmp_path: Path,
    signed_root: Path,
    pki: Pki,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OVL_SERVER_ROOT", str(signed_root))
    code, _, err = run(capsys, "server", "history")
    assert code == 0, err
    lone = tmp_path / "lone" / "alice.key"
    lone.parent.mkdir()
    lone.write_bytes(pki.signer_key.read_bytes())
    monkeypatch.setenv("OVL_SIGN_KEY", str(lone))
    code, _, err = run(capsys, "server", "rollback", "1", "--profile", "lab")
    assert code == 2
    assert err == (
        f"ovl: error: --sign-key {lone}: no --cert (or OVL_SIGN_CERT), and no"
        f" {lone.with_suffix('.cert')} beside it\n"
    )
    monkeypatch.setenv("OVL_SIGN_CERT", str(pki.cert))
    v2 = make_bundle(tmp_path / "v2.ovl", {"etc/motd": b"v2\n"}, serial=2)
    code, out, err = run(capsys, "server", "import", "lab", v2)
    assert (code, out) == (0, "lab: published version 2 (serial 2, signed by alice)\n"), err
    monkeypatch.setenv("OVL_SIGN_KEY", str(pki.signer_key))  # its alice.cert is beside it
    monkeypatch.delenv("OVL_SIGN_CERT")
    code, out, err = run(capsys, "server", "rollback", "1", "--profile", "lab")
    assert (code, out) == (0, "lab: published version 3 (serial 3, signed by alice)\n"), err
    monkeypatch.delenv("OVL_SERVER_ROOT")
    code, _, err = run(capsys, "server", "history")
    assert code == 2
    assert err == "ovl: error: no server directory: give --root DIR or set OVL_SERVER_ROOT\n"
