"""`ovl init DIR`: an example fleet that packs and lints clean, written whole or not at all."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ovl.tools.cli import main


def test_the_example_packs_lints_clean_and_gives_each_machine_its_layer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    example = tmp_path / "fleet"
    assert main(["init", str(example)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"{example}: an example fleet (8 files; {example / 'README.md'})\n")
    assert sorted(str(p.relative_to(example)) for p in example.rglob("*") if p.is_file()) == [
        "README.md",
        "bundle/etc/motd",
        "bundle/layers/10-52:54:00:aa:bb:01/etc/hostname",
        "bundle/layers/20-release=6.1.0-56-cloud-amd64/etc/modules-load.d/ovl-example.conf",
        "bundle/layers/30-machine=4c4c4544-0042-3510-8051-b4c04f4d3232/etc/hostname",
        "bundle/ovl.json",
        "fleet.json",
        "keys/README.md",
    ]
    bundle = tmp_path / "fleet.ovl"
    assert main(["pack", str(example / "bundle"), "-o", str(bundle)]) == 0
    assert capsys.readouterr().err == ""  # no warning either
    fleet = str(example / "fleet.json")
    assert main(["lint", str(bundle), "--fleet", fleet, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (report["errors"], report["warnings"]) == (0, 0), report
    assert main(["plan", str(bundle), "--fleet", fleet, "--json"]) == 0
    plans = {
        p["machine"]: [layer["name"] for layer in p["layers"]]
        for p in json.loads(capsys.readouterr().out)["machines"]
    }
    assert plans == {
        "build-1": ["base", "20-release=6.1.0-56-cloud-amd64"],
        "web-1": ["base", "10-52:54:00:aa:bb:01", "20-release=6.1.0-56-cloud-amd64"],
        "web-2": [
            "base",
            "20-release=6.1.0-56-cloud-amd64",
            "30-machine=4c4c4544-0042-3510-8051-b4c04f4d3232",
        ],
    }


def test_an_existing_empty_directory_is_used(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert main(["init", str(tmp_path / "empty")]) == 0
    assert (tmp_path / "empty/bundle/ovl.json").is_file()


def test_a_non_empty_directory_is_refused_and_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "notes").write_text("mine\n")
    assert main(["init", str(taken)]) == 2
    assert capsys.readouterr().err == (
        f"ovl: error: {taken}: not empty; ovl init writes into a new or empty directory\n"
    )
    assert [p.name for p in taken.iterdir()] == ["notes"]
    assert [p.name for p in tmp_path.iterdir()] == ["taken"]  # no staging left


def test_a_missing_parent_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["init", str(tmp_path / "no/such")]) == 2
    assert capsys.readouterr().err == (
        f"ovl: error: {tmp_path / 'no/such'}: directory {tmp_path / 'no'} does not exist\n"
    )
    assert not (tmp_path / "no").exists()
