"""Baking deltas into bundle versions; history, rollback, cherry-pick; a full disk."""

from __future__ import annotations

import io
import json
import os
import subprocess
import tarfile
import time
from importlib import resources
from pathlib import Path

import pytest

from ovl.format.frameindex import read_index
from ovl.tools.server.layers import Layer, Member, merge_layers
from ovl.tools.server.store import Store
from tests.tools.server_fixtures import (
    accept,
    delta_file,
    keypair,
    make_bundle,
    ovl,
    read_bundle_files,
)

MAC = "52:54:00:12:34:56"
LAYER = "layers/90-525400123456"


def member(path: str, kind: bytes = tarfile.REGTYPE) -> Member:
    info = tarfile.TarInfo(path)
    info.type = kind
    return Member(path, info, tarfile.TarFile(fileobj=io.BytesIO(), mode="w"))


def layer(*paths: str) -> Layer:
    return {
        p.rstrip("/"): member(
            p.rstrip("/"), tarfile.DIRTYPE if p.endswith("/") else tarfile.REGTYPE
        )
        for p in paths
    }


@pytest.mark.parametrize(
    ("lower", "upper", "merged"),
    [
        # a whiteout removes the older name and everything below it, and stays
        (("etc/", "etc/a", "etc/b"), ("etc/", "etc/.wh.a"), ("etc", "etc/.wh.a", "etc/b")),
        (("d/", "d/x/", "d/x/y"), ("d/", "d/.wh.x"), ("d", "d/.wh.x")),
        # an opaque dir hides the older children but keeps the marker
        (("d/", "d/a", "d/b"), ("d/", "d/.wh..wh..opq", "d/c"), ("d", "d/.wh..wh..opq", "d/c")),
        # a name brought back drops the older deletion marker
        (("etc/", "etc/.wh.a"), ("etc/", "etc/a"), ("etc", "etc/a")),
        # a file replacing a dir hides the dir's children
        (("x/", "x/y"), ("x",), ("x",)),
        # an untouched older file survives next to a newer one
        (("a", "b"), ("b",), ("a", "b")),
    ],
)
def test_merge_layers_means_the_same_as_stacking(
    lower: tuple[str, ...], upper: tuple[str, ...], merged: tuple[str, ...]
) -> None:
    up = layer(*upper)
    result = merge_layers(layer(*lower), up)
    assert tuple(result) == merged
    assert all(result[p] is up[p] for p in result if p in up)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    srv = tmp_path / "srv"
    pub, _ = keypair(tmp_path / "keys", "node1")
    bundle = make_bundle(tmp_path / "fleet.ovl", {"etc/motd": b"base\n", "etc/issue": b"v1\n"})
    for args in (
        ["import", "lab", str(bundle)],
        ["import", "kiosk", str(bundle)],
        ["add-machine", "node1", "--profile", "lab", "--mac", MAC, "--key", str(pub)],
    ):
        done = ovl("server", "--root", str(srv), *args)
        assert done.returncode == 0, done.stderr
    return srv


def current_files(root: Path, profile: str) -> dict[str, bytes | str]:
    return read_bundle_files(root / "profiles" / profile / "current/bundle.ovl")


@pytest.mark.subprocess
def test_bake_turns_deltas_into_the_machine_layer_newest_winning(
    tmp_path: Path, root: Path
) -> None:
    store = Store(root)
    accept(
        store, "node1", delta_file(tmp_path, "a", {"etc/app.conf": b"one\n", "etc/x": b"x\n"}), 1
    )
    done = ovl("server", "--root", str(root), "bake")
    assert done.returncode == 0, done.stderr
    assert "lab: published version 2 (serial 2, unsigned)" in done.stdout
    assert "kiosk: nothing to bake" in done.stdout
    files = current_files(root, "lab")
    assert files[f"{LAYER}/etc/app.conf"] == b"one\n"
    assert files["etc/motd"] == b"base\n"
    assert json.loads(files["ovl.json"])["serial"] == 2

    accept(
        store,
        "node1",
        delta_file(tmp_path, "b", {"etc/app.conf": b"two\n"}, ("etc/x", "etc/motd")),
        2,
    )
    assert ovl("server", "--root", str(root), "bake", "--profile", "lab").returncode == 0
    files = current_files(root, "lab")
    assert files[f"{LAYER}/etc/app.conf"] == b"two\n"
    assert f"{LAYER}/etc/x" not in files
    assert files[f"{LAYER}/etc/.wh.x"] == b"" and files[f"{LAYER}/etc/.wh.motd"] == b""
    assert files["etc/motd"] == b"base\n"  # the base stays; the whiteout hides it on node1 only
    again = ovl("server", "--root", str(root), "bake", "--profile", "lab")
    assert "lab: nothing to bake" in again.stdout


@pytest.mark.subprocess
def test_a_baked_bundle_carries_the_frame_index(tmp_path: Path, root: Path) -> None:
    accept(Store(root), "node1", delta_file(tmp_path, "a", {"etc/app.conf": b"one\n"}), 1)
    assert ovl("server", "--root", str(root), "bake").returncode == 0
    bundle = root / "profiles/lab/current/bundle.ovl"
    with bundle.open("rb") as raw:
        frames = read_index(raw)
    assert frames is not None and frames[0].base
    assert frames[-1].layers == (LAYER.removeprefix("layers/"),)


@pytest.mark.subprocess
def test_history_rollback_and_cherry_pick(tmp_path: Path, root: Path) -> None:
    store = Store(root)
    sha = accept(
        store, "node1", delta_file(tmp_path, "a", {"etc/app.conf": b"one\n"}, ("etc/issue",)), 1
    )
    assert ovl("server", "--root", str(root), "bake").returncode == 0
    back = ovl("server", "--root", str(root), "rollback", "1", "--profile", "lab")
    assert back.returncode == 0, back.stderr
    assert "lab: published version 3 (serial 3, unsigned)" in back.stdout
    files = current_files(root, "lab")
    assert f"{LAYER}/etc/app.conf" not in files and files["etc/issue"] == b"v1\n"
    assert json.loads(files["ovl.json"])["serial"] == 3
    # a rolled-back delta is not baked in again by the next bake
    again = json.loads(ovl("server", "--root", str(root), "bake", "--json").stdout)
    assert again == {"published": [], "unchanged": ["kiosk", "lab"]}

    pick = ovl("server", "--root", str(root), "cherry-pick", sha[:10], "--to", "kiosk", "--json")
    assert pick.returncode == 0, pick.stderr
    (picked,) = json.loads(pick.stdout)["published"]
    assert (picked["profile"], picked["version"], picked["action"]) == ("kiosk", 2, "cherry-pick")
    kiosk = current_files(root, "kiosk")
    assert kiosk["etc/app.conf"] == b"one\n" and kiosk["etc/.wh.issue"] == b""

    listing = json.loads(ovl("server", "--root", str(root), "history", "--json").stdout)
    assert [v["action"] for v in listing["lab"]["versions"]] == ["import", "bake", "rollback"]
    assert listing["lab"]["current"] == 3 and listing["kiosk"]["current"] == 2
    assert listing["lab"]["versions"][1]["deltas"] == [f"node1/{sha}"]
    text = ovl("server", "--root", str(root), "history", "--profile", "lab").stdout
    assert "*    3  serial    3" in text and "content of version 1" in text
    for version in (1, 2, 3):  # every version is kept
        assert (root / f"profiles/lab/versions/{version:06d}/bundle.ovl").is_file()


@pytest.mark.subprocess
def test_rollback_to_an_unknown_version_is_one_clear_line(root: Path) -> None:
    done = ovl("server", "--root", str(root), "rollback", "7", "--profile", "lab")
    assert done.returncode == 2 and done.stderr == "ovl: error: profile lab: no version 7\n"


@pytest.mark.subprocess
def test_bake_on_a_full_disk_fails_clearly_and_publishes_nothing(
    tmp_path: Path, root: Path, mounts: object
) -> None:
    small = tmp_path / "small"
    mounts.mount("tmpfs", small, "-t", "tmpfs", "-o", "size=1M")  # type: ignore[attr-defined]
    subprocess.run(["cp", "-a", f"{root}/.", str(small)], check=True)
    accept(Store(small), "node1", delta_file(tmp_path, "big", {"blob": os.urandom(700_000)}), 1)
    before = os.readlink(small / "profiles/lab/current")
    done = ovl("server", "--root", str(small), "bake")
    assert done.returncode == 1
    assert "server store" in done.stderr and "is full" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert os.readlink(small / "profiles/lab/current") == before
    assert sorted(p.name for p in (small / "profiles/lab/versions").iterdir()) == ["000001"]
    assert list((small / "tmp").iterdir()) == []


@pytest.mark.subprocess
def test_watch_bakes_when_a_delta_lands(tmp_path: Path, root: Path) -> None:
    from tests.tools.server_fixtures import OVL

    watcher = subprocess.Popen(
        [*OVL, "server", "--root", str(root), "watch", "--interval", "0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(0.5)
        assert Store(root).current("lab").number == 1  # type: ignore[union-attr]
        accept(Store(root), "node1", delta_file(tmp_path, "w", {"etc/seen": b"yes\n"}), 1)
        deadline = time.monotonic() + 20
        while Store(root).current("lab").number == 1:  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "watch did not bake"
            time.sleep(0.1)
    finally:
        watcher.terminate()
        out, _ = watcher.communicate(timeout=10)
    assert current_files(root, "lab")[f"{LAYER}/etc/seen"] == b"yes\n"
    assert "lab: published version 2" in out


def test_sweep_tmp_drops_only_what_is_old(tmp_path: Path) -> None:
    store = Store(tmp_path)
    old_file, young_file, old_dir = store.temp_file(), store.temp_file(), store.temp_dir()
    (old_dir / "half-written").write_bytes(b"x")
    for path in (old_file, old_dir):
        os.utime(path, (1, 1))
    store.sweep_tmp()
    assert [p for p in (old_file, young_file, old_dir) if p.exists()] == [young_file]


@pytest.mark.subprocess
def test_records_the_server_writes_match_their_shipped_schemas(tmp_path: Path, root: Path) -> None:
    import jsonschema

    schemas = resources.files("ovl.tools.server")
    machine_schema = json.loads(schemas.joinpath("machine.schema.json").read_text())
    version_schema = json.loads(schemas.joinpath("version.schema.json").read_text())
    jsonschema.validate(json.loads((root / "machines/node1.json").read_text()), machine_schema)
    accept(Store(root), "node1", delta_file(tmp_path, "s", {"etc/x": b"x\n"}), 1)
    assert ovl("server", "--root", str(root), "bake").returncode == 0
    assert ovl("server", "--root", str(root), "rollback", "1", "--profile", "lab").returncode == 0
    for version in Store(root).versions("lab"):
        jsonschema.validate(version.meta, version_schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"profile": "lab", "mac": "nope", "public_key": ""}, machine_schema)
