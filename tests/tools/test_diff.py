"""`ovl diff OLD NEW`: what changes for which machine, checked against real applies."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from ovl.tools.cli import main

MAC_1 = "52:54:00:aa:bb:01"
MAC_2 = "52:54:00:aa:bb:02"


def write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def old_tree(root: Path) -> Path:
    write(root / "etc/motd", "base\n")
    write(root / "etc/issue", "Debian\n")
    write(root / "etc/old.conf", "legacy\n")
    write(root / "etc/moved.conf", "same\n")
    write(root / f"layers/10-{MAC_1}/etc/hostname", "web-1\n")
    write(root / "layers/20-x86_64/etc/arch", "x86\n")
    return root


def new_tree(root: Path) -> Path:
    old_tree(root)
    write(root / "etc/motd", "base, new\n")  # content: every machine
    (root / "etc/old.conf").unlink()  # removed: every machine
    write(root / "etc/new.conf", "added\n")  # added: every machine
    (root / "etc/moved.conf").unlink()  # the same bytes, now from the x86 layer only
    write(root / "layers/20-x86_64/etc/moved.conf", "same\n")
    (root / f"layers/10-{MAC_1}/etc/hostname").chmod(0o600)  # mode: web-1 only
    write(root / f"layers/10-{MAC_1}/etc/.wh.issue", "")  # web-1 loses etc/issue
    os.utime(root / "layers/20-x86_64/etc/arch", (1, 1))  # an mtime alone is no change
    return root


@pytest.fixture
def bundles(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[Path, Path, Path]:
    old, new = tmp_path / "old.ovl", tmp_path / "new.ovl"
    assert main(["pack", str(old_tree(tmp_path / "a")), "-o", str(old)]) == 0
    assert main(["pack", str(new_tree(tmp_path / "b")), "-o", str(new)]) == 0
    fleet = tmp_path / "fleet.json"
    fleet.write_text(
        json.dumps(
            {
                "defaults": {"arch": "x86_64"},
                "machines": {
                    "web-1": {"macs": [MAC_1]},
                    "web-2": {"macs": [MAC_2]},
                    "arm-1": {"macs": ["52:54:00:aa:bb:03"], "arch": "aarch64"},
                },
            }
        )
    )
    capsys.readouterr()
    return old, new, fleet


def diff_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, list[dict[str, object]]]:
    assert main(["diff", *argv, "--json"]) == 0
    data: dict[str, list[dict[str, object]]] = json.loads(capsys.readouterr().out)
    return data


def summary(machine: dict[str, object]) -> dict[str, list[tuple[str, ...]]]:
    def rows(key: str) -> list[tuple[str, ...]]:
        return [
            (c["path"], *c["what"])  # type: ignore[index, misc]
            for c in machine[key]  # type: ignore[attr-defined]
        ]

    return {key: rows(key) for key in ("added", "removed", "changed")}


def test_each_machine_sees_what_changes_in_its_own_tree(
    bundles: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, fleet = bundles
    machines = diff_json(capsys, str(old), str(new), "--fleet", str(fleet))["machines"]
    by_name = {m["machine"]: summary(m) for m in machines}
    assert by_name["web-1"] == {
        "added": [("etc/new.conf",)],
        "removed": [("etc/issue",), ("etc/old.conf",)],
        "changed": [("etc/hostname", "mode"), ("etc/motd", "content"), ("etc/moved.conf", "layer")],
    }
    assert by_name["web-2"] == {
        "added": [("etc/new.conf",)],
        "removed": [("etc/old.conf",)],
        "changed": [("etc/motd", "content"), ("etc/moved.conf", "layer")],
    }
    assert by_name["arm-1"] == {  # no x86 layer: moved.conf is simply gone
        "added": [("etc/new.conf",)],
        "removed": [("etc/moved.conf",), ("etc/old.conf",)],
        "changed": [("etc/motd", "content")],
    }


def applied(
    bundle: Path, target: Path, mac: str, arch: str, facts_dir: Path
) -> dict[str, tuple[bytes | str, int]]:
    facts = facts_dir / f"{target.name}.json"
    facts.write_text(json.dumps({"macs": [mac], "arch": arch}))
    assert main(["apply", str(bundle), "--target", str(target), "--facts", str(facts)]) == 0
    found: dict[str, tuple[bytes | str, int]] = {}
    for path in target.rglob("*"):
        st = path.lstat()
        if not stat.S_ISDIR(st.st_mode):
            found[str(path.relative_to(target))] = (path.read_bytes(), stat.S_IMODE(st.st_mode))
    return found


@pytest.mark.parametrize(
    ("machine", "mac", "arch"),
    [("web-1", MAC_1, "x86_64"), ("arm-1", "52:54:00:aa:bb:03", "aarch64")],
)
def test_the_diff_is_what_two_real_applies_differ_by(
    machine: str,
    mac: str,
    arch: str,
    bundles: tuple[Path, Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    old, new, fleet = bundles
    before = applied(old, tmp_path / "before", mac, arch, tmp_path)
    after = applied(new, tmp_path / "after", mac, arch, tmp_path)
    capsys.readouterr()
    [diff] = diff_json(capsys, str(old), str(new), "--fleet", str(fleet), "--machine", machine)[
        "machines"
    ]
    rows = summary(diff)
    assert [r[0] for r in rows["added"]] == sorted(after.keys() - before.keys())
    assert [r[0] for r in rows["removed"]] == sorted(before.keys() - after.keys())
    really_changed = sorted(p for p in before.keys() & after.keys() if before[p] != after[p])
    assert [r[0] for r in rows["changed"] if r[1] != "layer"] == really_changed


def test_without_machines_each_layer_shows_its_own_entries(
    bundles: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, _ = bundles
    assert main(["diff", str(old), str(new)]) == 0
    assert capsys.readouterr().out == (
        "layer base: 1 added, 2 removed, 1 changed\n"
        "  + etc/new.conf  (from base)\n"
        "  - etc/moved.conf  (was from base)\n"
        "  - etc/old.conf  (was from base)\n"
        "  ~ etc/motd  content  (base)\n"
        f"layer 10-{MAC_1}: 1 added, 0 removed, 1 changed\n"
        f"  + etc/.wh.issue  (from 10-{MAC_1})\n"
        f"  ~ etc/hostname  mode  (10-{MAC_1})\n"
        "layer 20-x86_64: 1 added, 0 removed, 0 changed\n"
        "  + etc/moved.conf  (from 20-x86_64)\n"
    )
    assert main(["diff", str(old), str(old)]) == 0
    assert capsys.readouterr().out == f"{old} and {old} hold the same entries\n"


def test_an_unknown_machine_or_machine_without_fleet_is_bad_input(
    bundles: tuple[Path, Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    old, new, fleet = bundles
    assert main(["diff", str(old), str(new), "--fleet", str(fleet), "--machine", "web-9"]) == 2
    assert capsys.readouterr().err == f"ovl: error: {fleet}: no machine named 'web-9'\n"
    assert main(["diff", str(old), str(new), "--machine", "web-1"]) == 2
    assert "--machine NAME needs --fleet" in capsys.readouterr().err
