"""One check for bundles: `ovl pack` refuses (or with --force warns of) exactly what `ovl lint`
reports as errors, and both warn of near-miss names and favors that swallowed a MAC or UUID."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ovl.tools.cli import main

MAC = "52:54:00:aa:bb:01"
UUID = "4c4c4544-0042-3510-8051-b4c04f4d3232"


def write(path: Path, text: str = "x\n") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def whiteout_beside_its_file(tree: Path) -> None:
    write(tree / "etc/motd")
    write(tree / "etc/.wh.motd", "")


def whiteout_beside_its_file_in_a_layer(tree: Path) -> None:
    write(tree / f"layers/10-{MAC}/etc/motd")
    write(tree / f"layers/10-{MAC}/etc/.wh.motd", "")


def symlink_climbing_out_of_the_root(tree: Path) -> None:
    (tree / "etc").mkdir(parents=True)
    os.symlink("../../../etc/passwd", tree / "etc/evil")


def device_node(tree: Path) -> None:
    (tree / "dev").mkdir(parents=True)
    os.mknod(tree / "dev/null", 0o20666, os.makedev(1, 3))


def reserved_whiteout_name(tree: Path) -> None:
    write(tree / "etc/.wh..wh.foo", "")


def malformed_layer_names(tree: Path) -> None:
    write(tree / "layers/web-1/etc/hostname")
    write(tree / "layers/20-colour=blue/etc/hostname")


REFUSED: dict[str, tuple[Callable[[Path], None], str, str, str]] = {
    # case: (tree maker, finding code, where it points, words of its message)
    "whiteout beside its file": (whiteout_beside_its_file, "refused", "etc/motd", "declared both"),
    "in a layer": (
        whiteout_beside_its_file_in_a_layer,
        "refused",
        f"layers/10-{MAC}/etc/motd",
        "declared both",
    ),
    "symlink out": (symlink_climbing_out_of_the_root, "refused", "etc/evil", "outside the root"),
    "device node": (device_node, "refused", "dev/null", "device nodes are not allowed"),
    "reserved whiteout": (
        reserved_whiteout_name,
        "refused",
        "etc/.wh..wh.foo",
        "reserved whiteout name",
    ),
    "malformed layer": (
        malformed_layer_names,
        "malformed-layer",
        "layers/20-colour=blue",
        "unknown favor key",
    ),
}


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", REFUSED, ids=list(REFUSED))
def test_pack_refuses_what_lint_reports_as_an_error(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    make, code_name, where, words = REFUSED[case]
    tree = tmp_path / "tree"
    write(tree / "ovl.json", json.dumps({"name": "lab", "serial": 1}))
    make(tree)
    out = tmp_path / "lab.ovl"

    code, stdout, err = run(capsys, "pack", str(tree), "-o", str(out))
    assert (code, stdout) == (2, "")
    assert err.startswith(f"ovl: error: {tree}: machines would refuse the bundle: {where}: ")
    assert words in err and err.endswith("nothing written (--force writes it anyway)\n")
    assert err.count("\n") == 1
    assert not out.exists() and os.listdir(tmp_path) == ["tree"]

    code, stdout, err = run(capsys, "pack", str(tree), "-o", str(out), "--force")
    assert code == 0 and out.is_file()
    assert f"ovl: warning: {code_name}: {where}: " in err and "(written anyway: --force)" in err

    code, stdout, _ = run(capsys, "lint", str(out), "--json")
    report = json.loads(stdout)
    assert code == 1 and report["errors"] >= 1
    errors = [f for f in report["findings"] if f["severity"] == "error"]
    assert (errors[0]["code"], errors[0]["where"]) == (code_name, where)
    assert words in errors[0]["message"]


def test_a_refusal_lint_finds_is_the_line_pack_prints(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    symlink_climbing_out_of_the_root(tree)
    _, _, refused = run(capsys, "pack", str(tree), "-o", str(tmp_path / "a.ovl"))
    run(capsys, "pack", str(tree), "-o", str(tmp_path / "a.ovl"), "--force")
    _, stdout, _ = run(capsys, "lint", str(tmp_path / "a.ovl"))
    finding = stdout.splitlines()[0]
    assert finding.startswith("error refused: etc/evil: ")
    assert finding.removeprefix("error refused: ") in refused


@pytest.mark.parametrize("armor", [False, True], ids=["plain", "armoured"])
def test_an_empty_uncompressed_bundle_is_refused_as_lint_refuses_it(
    armor: bool, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # An empty tar is nothing but zeros: no reader can tell it for a tar. Compressed, it can.
    tree = tmp_path / "tree"
    tree.mkdir()
    out = tmp_path / "empty.ovl"
    encoding = ["--compress", "none", *(["--armor"] if armor else [])]
    code, stdout, refused = run(capsys, "pack", str(tree), "-o", str(out), *encoding)
    assert (code, stdout, os.listdir(tmp_path)) == (2, "", ["tree"])
    assert refused.startswith(f"ovl: error: {tree}: machines would refuse the bundle: bundle: ")
    assert refused.count("\n") == 1
    code, _, warned = run(capsys, "pack", str(tree), "-o", str(out), *encoding, "--force")
    assert code == 0 and "ovl: warning: refused: bundle: unknown encoding" in warned
    code, stdout, _ = run(capsys, "lint", str(out))
    assert code == 1
    assert stdout.splitlines()[0].removeprefix("error refused: bundle: ") in refused

    assert run(capsys, "pack", str(tree), "-o", str(tmp_path / "z.ovl"))[0] == 0  # zstd
    assert run(capsys, "lint", str(tmp_path / "z.ovl"))[0] == 0


def test_lint_json_reports_a_file_machines_cannot_read_as_a_finding(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    garbage = tmp_path / "fleet.ovl"
    garbage.write_bytes(os.urandom(4096))
    code, stdout, err = run(capsys, "lint", str(garbage), "--json")
    [finding] = json.loads(stdout)["findings"]
    assert (code, err, finding["code"], finding["where"]) == (1, "", "refused", "bundle")
    assert "unknown encoding" in finding["message"]


@pytest.mark.parametrize(
    ("name", "meant"),
    [("layer", "layers"), ("Layers", "layers"), ("layres", "layers"), ("ovl.jsn", "ovl.json")],
)
def test_near_miss_top_level_names_are_warned_of_by_pack_and_lint(
    name: str, meant: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    write(tree / "etc/motd")
    if meant == "layers":
        write(tree / name / f"10-{MAC}/etc/hostname")
    else:
        write(tree / name, json.dumps({"name": "lab", "serial": 1}))
    out = tmp_path / "b.ovl"
    code, _, err = run(capsys, "pack", str(tree), "-o", str(out))
    assert code == 0
    assert err == (
        f"ovl: warning: near-miss: {name}: looks like a misspelt {meant}; as it is, it is base "
        f"content every machine gets as /{name}\n"
    )
    code, stdout, _ = run(capsys, "lint", str(out), "--json")
    report = json.loads(stdout)
    assert (code, report["warnings"]) == (0, 1)
    assert [(f["code"], f["where"]) for f in report["findings"]] == [("near-miss", name)]


def test_ordinary_top_level_names_are_no_near_miss(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    for top in ("etc", "usr", "var", "opt", "srv", "home", "root", "ovl.conf"):
        write(tree / top / "f")
    code, _, err = run(capsys, "pack", str(tree), "-o", str(tmp_path / "b.ovl"))
    assert (code, err) == (0, "")


@pytest.mark.parametrize(
    ("folder", "swallowed", "kind", "key"),
    [
        (f"14-release=6.1.0-56-cloud-amd64-{MAC}", MAC, "MAC", "mac"),
        ("14-release=6.1.0-56-cloud-amd64-52-54-00-aa-bb-01", "52-54-00-aa-bb-01", "MAC", "mac"),
        (f"14-arch=x86_64-{UUID}", UUID, "machine UUID", "machine"),
        (f"14-machine={UUID}-{MAC}", MAC, "MAC", "mac"),
    ],
)
def test_a_typed_favor_that_swallowed_a_mac_or_uuid_is_warned_of(
    folder: str,
    swallowed: str,
    kind: str,
    key: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tree = tmp_path / "tree"
    write(tree / f"layers/{folder}/etc/hostname")
    out = tmp_path / "b.ovl"
    code, _, err = run(capsys, "pack", str(tree), "-o", str(out))
    assert code == 0
    assert f"ovl: warning: swallowed-favor: layers/{folder}: " in err
    assert f"runs on over {swallowed!r}, which looks like a {kind}" in err
    assert f"write {key}={swallowed}" in err
    _, stdout, _ = run(capsys, "lint", str(out), "--json")
    assert [f["code"] for f in json.loads(stdout)["findings"]] == ["swallowed-favor"]


@pytest.mark.parametrize(
    "folder",
    [
        "14-release=6.1.0-56-cloud-amd64",
        f"14-machine={UUID}",
        f"14-{MAC}-release=6.1.0-56-cloud-amd64",
        f"14-release=6.1.0-56-cloud-amd64-mac={MAC}",
    ],
)
def test_favors_written_as_meant_get_no_warning(
    folder: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = tmp_path / "tree"
    write(tree / f"layers/{folder}/etc/hostname")
    code, _, err = run(capsys, "pack", str(tree), "-o", str(tmp_path / "b.ovl"))
    assert (code, err) == (0, "")
