"""The bundle commands end to end, in process through ovl.tools.cli.main and once as `ovl`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ovl.tools.cli import main
from ovl.tools.fleet import load_fleet

MAC_1 = "52:54:00:aa:bb:01"
MAC_2 = "52:54:00:aa:bb:02"


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def make_fleet_tree(root: Path) -> Path:
    """Base for all, a layer for x86_64, one per machine, and one no machine has."""
    write(root / "ovl.json", json.dumps({"name": "lab", "serial": 7}))
    write(root / "etc/motd", "base\n")
    write(root / "etc/old.conf", "legacy\n")
    write(root / "layers/10-x86_64/etc/motd", "x86 motd\n")
    write(root / f"layers/20-{MAC_1}/etc/hostname", "web-1\n")
    write(root / f"layers/20-{MAC_1}/etc/.wh.old.conf", "")
    write(root / f"layers/20-{MAC_2}/etc/hostname", "web-2\n")
    write(root / "layers/30-aarch64/etc/motd", "arm motd\n")
    return root


def make_fleet_file(path: Path) -> Path:
    fleet = {
        "defaults": {"arch": "x86_64", "kernel_release": "6.1.0-56-cloud-amd64"},
        "machines": {"web-1": {"macs": [MAC_1]}, "web-2": {"macs": [MAC_2]}},
    }
    path.write_text(json.dumps(fleet))
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    out = tmp_path / "lab.ovl"
    assert main(["pack", str(make_fleet_tree(tmp_path / "tree")), "-o", str(out)]) == 0
    return out


def test_pack_json_summary_counts_entries_and_bytes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_fleet_tree(tmp_path / "tree")
    code = main(["pack", str(tree), "-o", str(tmp_path / "b.ovl"), "--json", "--armor"])
    summary = json.loads(capsys.readouterr().out)
    assert code == 0
    assert summary["entries"] == len(list(tree.rglob("*")))
    assert summary["content_bytes"] == sum(p.stat().st_size for p in tree.rglob("*") if p.is_file())
    assert summary["output_bytes"] == (tmp_path / "b.ovl").stat().st_size
    assert (summary["compression"], summary["armor"]) == ("zstd", True)


def test_pack_of_a_missing_directory_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["pack", str(tmp_path / "absent"), "-o", str(tmp_path / "b.ovl")])
    err = capsys.readouterr().err
    assert code == 2
    assert err == f"ovl pack: error: argument DIR: {tmp_path / 'absent'}: no such directory\n"


@pytest.mark.subprocess
def test_installed_ovl_script_packs_and_reports_errors(tmp_path: Path) -> None:
    ovl = Path(sys.executable).parent / "ovl"
    tree = make_fleet_tree(tmp_path / "tree")
    done = subprocess.run(
        [ovl, "pack", tree, "-o", tmp_path / "b.ovl", "--compress", "xz"],
        capture_output=True,
        text=True,
        env={**os.environ, "SOURCE_DATE_EPOCH": "1700000000"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    listing = subprocess.run(
        ["tar", "-tJvf", tmp_path / "b.ovl", "--full-time"], capture_output=True, text=True
    ).stdout
    assert f"layers/20-{MAC_1}/etc/hostname" in listing
    assert "2023-11-14 22:13:20" in listing
    bad = subprocess.run(
        [ovl, "pack", tree, "-o", tmp_path / "c.ovl", "--level", "99"],
        capture_output=True,
        text=True,
    )
    assert (bad.returncode, bad.stderr) == (2, "ovl: error: --level 99: zstd takes 1..22\n")


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any]:
    code = main(list(argv))
    out = capsys.readouterr().out
    return code, json.loads(out)


def test_inspect_shows_encoding_manifest_and_layers_in_apply_order(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, data = run_json(capsys, "inspect", str(bundle), "--json")
    assert code == 0
    assert (data["compression"], data["armoured"]) == ("zstd", False)
    assert data["size"] == bundle.stat().st_size
    assert (data["manifest"]["name"], data["manifest"]["serial"]) == ("lab", 7)
    layers = {layer["name"]: layer for layer in data["layers"]}
    assert list(layers) == [
        "base",
        "10-x86_64",
        f"20-{MAC_1}",
        f"20-{MAC_2}",
        "30-aarch64",
    ]
    assert (layers["base"]["files"], layers["base"]["bytes"]) == (2, len("base\nlegacy\n"))
    assert layers[f"20-{MAC_1}"]["whiteouts"] == 1
    assert layers["10-x86_64"]["favors"] == ["x86_64"]


def test_inspect_reads_an_armoured_gzip_bundle(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "b.txt"
    tree = str(make_fleet_tree(tmp_path / "tree"))
    assert main(["pack", tree, "-o", str(out), "--compress", "gzip", "--armor"]) == 0
    capsys.readouterr()
    code, data = run_json(capsys, "inspect", str(out), "--json")
    assert (code, data["compression"], data["armoured"]) == (0, "gzip", True)


def test_match_lists_base_then_the_machines_layers(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"macs": [MAC_2.replace(":", "")], "arch": "x86_64"}))
    code, data = run_json(capsys, "match", str(bundle), "--facts", str(facts), "--json")
    assert code == 0
    assert [layer["name"] for layer in data["layers"]] == ["base", "10-x86_64", f"20-{MAC_2}"]


def test_apply_merges_layers_in_order_and_applies_whiteouts(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"macs": [MAC_1], "arch": "x86_64"}))
    target = tmp_path / "root"
    code, data = run_json(
        capsys, "apply", str(bundle), "--target", str(target), "--facts", str(facts), "--json"
    )
    assert code == 0
    assert [layer["name"] for layer in data["layers"]] == ["base", "10-x86_64", f"20-{MAC_1}"]
    assert (target / "etc/motd").read_text() == "x86 motd\n"
    assert (target / "etc/hostname").read_text() == "web-1\n"
    assert not (target / "etc/old.conf").exists()


def test_apply_of_a_corrupt_bundle_exits_2_and_leaves_the_target_alone(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.ovl"
    broken.write_bytes(bundle.read_bytes()[:-40])
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps({"macs": [MAC_1]}))
    target = tmp_path / "root"
    write(target / "etc/keep", "mine\n")
    code = main(["apply", str(broken), "--target", str(target), "--facts", str(facts)])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ovl: error: bundle: ") and err.count("\n") == 1
    assert sorted(p.name for p in target.rglob("*")) == ["etc", "keep"]


def test_plan_counts_layers_and_the_merged_result_per_machine(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = make_fleet_file(tmp_path / "fleet.json")
    code, data = run_json(capsys, "plan", str(bundle), "--fleet", str(fleet), "--json")
    assert code == 0
    plans = {plan["machine"]: plan for plan in data["machines"]}
    web1, web2 = plans["web-1"], plans["web-2"]
    assert [(x["name"], x["files"], x["bytes"]) for x in web1["layers"]] == [
        ("base", 2, 12),
        ("10-x86_64", 1, 9),
        (f"20-{MAC_1}", 1, 6),
    ]
    # web-1: x86 motd (9) + hostname (6); its whiteout removed old.conf.
    assert (web1["files"], web1["bytes"]) == (2, 15)
    # web-2: x86 motd (9) + old.conf (7) + hostname (6).
    assert (web2["files"], web2["bytes"]) == (3, 22)


def test_plan_numbers_agree_with_a_real_apply(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = make_fleet_file(tmp_path / "fleet.json")
    code, data = run_json(capsys, "plan", str(bundle), "--fleet", str(fleet), "--json")
    assert code == 0
    machines = load_fleet(fleet).machines
    for plan in data["machines"]:
        facts = tmp_path / f"{plan['machine']}.json"
        facts.write_text(json.dumps(machines[plan["machine"]].to_json()))
        target = tmp_path / plan["machine"]
        assert main(["apply", str(bundle), "--target", str(target), "--facts", str(facts)]) == 0
        files = [p for p in target.rglob("*") if not p.is_dir()]
        assert (len(files), sum(p.stat().st_size for p in files)) == (plan["files"], plan["bytes"])


def test_plan_of_an_unknown_machine_exits_2(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = make_fleet_file(tmp_path / "fleet.json")
    code = main(["plan", str(bundle), "--fleet", str(fleet), "--machine", "db-9"])
    assert code == 2
    assert "no machine named 'db-9'" in capsys.readouterr().err


def test_bad_fleet_file_exits_2_naming_the_json_path(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps({"machines": {"web-1": {"macs": ["52:54:00"]}}}))
    code = main(["lint", str(bundle), "--fleet", str(fleet)])
    assert code == 2
    err = capsys.readouterr().err
    assert err == f"ovl: error: {fleet}: $.machines.web-1.macs[0]: not a MAC address: '52:54:00'\n"


def test_lint_reports_unmatched_layers_and_overrides_on_a_crafted_fleet(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_fleet_tree(tmp_path / "tree")
    write(tree / f"layers/20-{MAC_1}/etc/motd", "web-1 motd\n")
    write(tree / "etc/.wh.nothing", "")
    out = tmp_path / "b.ovl"
    assert main(["pack", str(tree), "-o", str(out)]) == 0
    fleet = make_fleet_file(tmp_path / "fleet.json")
    capsys.readouterr()
    code, data = run_json(capsys, "lint", str(out), "--fleet", str(fleet), "--json")
    assert code == 0
    found = {(f["severity"], f["code"], f["where"]): f for f in data["findings"]}
    assert set(found) == {
        ("warning", "base-whiteout", "etc/nothing"),
        ("warning", "unmatched-layer", "layers/30-aarch64"),
        ("warning", "override", "etc/motd"),
        ("info", "override", "etc/motd"),
    }
    fight = found[("warning", "override", "etc/motd")]
    assert fight["machines"] == ["web-1"]
    assert fight["message"] == f"written by base, 10-x86_64, 20-{MAC_1}; 20-{MAC_1} wins"
    assert found[("info", "override", "etc/motd")]["machines"] == ["web-2"]
    assert (data["errors"], data["warnings"]) == (0, 3)


def test_lint_warns_of_directories_that_hide_merged_usr_symlinks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_fleet_tree(tmp_path / "tree")
    write(tree / "bin/tool", "#!/bin/sh\n")
    write(tree / f"layers/20-{MAC_1}/lib64/libx.so", "x")
    write(tree / f"layers/20-{MAC_1}/usr/lib/liby.so", "y")  # where it belongs: no finding
    (tree / "sbin").symlink_to("usr/sbin")  # the merged-/usr link itself: no finding
    out = tmp_path / "b.ovl"
    assert main(["pack", str(tree), "-o", str(out)]) == 0
    capsys.readouterr()
    code, data = run_json(capsys, "lint", str(out), "--json")
    assert code == 0
    assert [(f["code"], f["where"]) for f in data["findings"]] == [
        ("merged-usr", "bin"),
        ("merged-usr", f"layers/20-{MAC_1}/lib64"),
    ]
    assert data["findings"][0]["message"].endswith("write usr/bin/... instead")


def test_lint_without_a_fleet_checks_only_the_bundle(
    bundle: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["lint", str(bundle)])
    assert (code, capsys.readouterr().out) == (0, f"{bundle}: 0 errors, 0 warnings\n")


@pytest.mark.subprocess
def test_lint_names_every_malformed_layer_of_a_gnu_tar_bundle_and_exits_1(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tree = make_fleet_tree(tmp_path / "tree")
    write(tree / "layers/web-1/etc/hostname", "x\n")
    write(tree / "layers/20-colour=blue/etc/hostname", "x\n")
    out = tmp_path / "b.tar.gz"
    subprocess.run(["tar", "--format=pax", "-czf", out, "-C", tree, "."], check=True)
    code, data = run_json(capsys, "lint", str(out), "--json")
    assert code == 1
    assert [(f["code"], f["where"]) for f in data["findings"]] == [
        ("malformed-layer", "layers/20-colour=blue"),
        ("malformed-layer", "layers/web-1"),
    ]
    assert data["errors"] == 2


@pytest.mark.subprocess
def test_facts_reads_macs_and_dmi_uuid_from_the_given_sysfs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sysfs = tmp_path / "sys"
    write(sysfs / "class/net/eth0/address", "52:54:00:AA:BB:01\n")
    write(sysfs / "class/net/lo/address", "00:00:00:00:00:00\n")
    write(sysfs / "class/dmi/id/product_uuid", "4C4C4544-0042\n")
    code, data = run_json(capsys, "facts", "--sysfs", str(sysfs), "--json")
    assert code == 0
    assert (data["macs"], data["product_uuid"]) == ([MAC_1], "4c4c4544-0042")
    assert data["kernel_release"] == os.uname().release


def test_plan_files_lists_each_path_with_the_layer_it_comes_from(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fleet = make_fleet_file(tmp_path / "fleet.json")
    argv = ["plan", str(bundle), "--fleet", str(fleet), "--machine", "web-1", "--files", "--json"]
    code, data = run_json(capsys, *argv)
    assert code == 0
    (web1,) = data["machines"]
    assert web1["paths"] == [
        {"path": "etc/hostname", "kind": "file", "size": 6, "layer": f"20-{MAC_1}"},
        {"path": "etc/motd", "kind": "file", "size": 9, "layer": "10-x86_64"},
    ]


@pytest.mark.subprocess
def test_match_here_uses_this_machines_own_facts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arch = os.uname().machine
    write(tmp_path / "tree/etc/motd", "base\n")
    write(tmp_path / f"tree/layers/10-arch={arch}/etc/motd", "mine\n")
    write(tmp_path / "tree/layers/20-arch=sparc64/etc/motd", "not mine\n")
    out = tmp_path / "b.ovl"
    assert main(["pack", str(tmp_path / "tree"), "-o", str(out)]) == 0
    capsys.readouterr()
    code, data = run_json(capsys, "match", str(out), "--here", "--json")
    assert code == 0
    assert data["layers"] == [
        {"name": "base"},
        {"name": f"10-arch={arch}", "order": 10, "favors": [f"arch={arch}"]},
    ]


def test_lint_reports_a_truncated_bundle_as_a_refusal_finding(
    bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.ovl"
    broken.write_bytes(bundle.read_bytes()[: bundle.stat().st_size // 2])
    code, data = run_json(capsys, "lint", str(broken), "--json")
    assert code == 1
    [finding] = data["findings"]
    assert (finding["severity"], finding["code"]) == ("error", "refused")
    assert "truncated" in finding["message"] or "ends" in finding["message"], finding
