"""apply_bundle on real filesystems: overlayfs stacking of split output, merge semantics,
all-or-nothing commits, mount-point targets."""

from __future__ import annotations

import io
import os
import random
import stat
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovl.core.errors import BadInput, OvlError
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle
from ovl.format.favors import match_layers
from ovl.format.manifest import Manifest
from tests.conftest import Mounts
from tests.format.bundle_build import Item, bundle, snapshot, tree

FACTS = Facts(
    macs=("52:54:00:aa:bb:cc",),
    kernel="Linux",
    kernel_release="6.1.0-56-cloud-amd64",
    arch="x86_64",
)


def fleet_bundle() -> bytes:
    """Base, layers matching FACTS (10, 20-mac, 20-Linux) and one not (15), interleaved."""
    return bundle(
        [
            Item(
                "ovl.json",
                data=b'{"name": "fleet", "serial": 42, "created": "2026-11-26T02:00:00Z"}',
            ),
            *tree(
                {
                    "etc/hostname": b"base\n",
                    "etc/motd": b"base motd\n",
                    "etc/keep": b"kept\n",
                    "usr/lib/a.so": b"a",
                    "usr/lib/b.so": b"b",
                    "srv/www/index.html": b"hi",
                }
            ),
            Item(".wh.from-image", data=b""),  # the base hides a file of the image below it
            Item("layers/10-x86_64/etc/hostname", data=b"x86\n"),
            Item("layers/15-aarch64/etc/hostname", data=b"arm\n"),
            Item("layers/20-525400aabbcc/etc/.wh.motd", data=b""),
            Item("layers/10-x86_64/usr/lib/.wh..wh..opq", data=b""),
            Item("layers/10-x86_64/usr/lib/c.so", data=b"c"),
            Item("layers/20-525400aabbcc/srv", "symlink", link="/var/srv"),  # file replaces dir
            Item("layers/20-525400aabbcc/etc/hostname", data=b"this machine\n"),
            Item("layers/20-Linux/etc/hostname", data=b"20-Linux wins the tie by name\n"),
        ]
    )


def contents(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        if path.is_symlink():
            out[str(path.relative_to(root))] = "-> " + os.readlink(path)
        elif path.is_file():
            out[str(path.relative_to(root))] = path.read_text()
    return out


EXPECTED = {
    "etc/hostname": "20-Linux wins the tie by name\n",
    "etc/keep": "kept\n",
    "srv": "-> /var/srv",
    "usr/lib/c.so": "c",
}


@pytest.mark.subprocess
@pytest.mark.root
def test_split_layers_stack_as_overlay_lowers(tmp_path: Path, mounts: Mounts) -> None:
    image = tmp_path / "image"
    (image / "etc").mkdir(parents=True)
    (image / "etc/os-release").write_text("image\n")
    (image / "from-image").write_text("hidden by the base\n")
    result = apply_bundle(io.BytesIO(fleet_bundle()), FACTS, tmp_path / "layers", split=True)
    names = [layer.name for layer in result.layers]
    assert names == ["base", "10-x86_64", "20-525400aabbcc", "20-Linux"]
    lowers = [str(layer.path) for layer in reversed(result.layers)] + [str(image)]
    root = mounts.mount(
        "overlay", tmp_path / "root", "-t", "overlay", "-o", "lowerdir=" + ":".join(lowers)
    )
    assert contents(root) == {**EXPECTED, "etc/os-release": "image\n"}


def test_merged_apply_gives_the_same_tree_as_the_overlay(tmp_path: Path) -> None:
    result = apply_bundle(io.BytesIO(fleet_bundle()), FACTS, tmp_path / "root", split=False)
    assert contents(tmp_path / "root") == EXPECTED
    assert result.manifest == Manifest("fleet", 42, "2026-11-26T02:00:00Z", "")
    assert [(layer.name, layer.files, layer.bytes) for layer in result.layers] == [
        ("base", 6, 24),
        ("10-x86_64", 2, 5),
        ("20-525400aabbcc", 2, 13),
        ("20-Linux", 1, 30),
    ]
    assert all(layer.path == tmp_path / "root" for layer in result.layers)


def test_merged_apply_onto_an_existing_tree(tmp_path: Path) -> None:
    target = tmp_path / "root"
    (target / "usr/lib").mkdir(parents=True)
    (target / "usr/lib/old.so").write_text("old")
    (target / "etc").mkdir()
    (target / "etc/motd").write_text("existing motd")
    (target / "etc/hostname").mkdir()  # a directory the bundle's file replaces
    (target / "from-image").write_text("gone")
    (target / "untouched").write_text("stays")
    apply_bundle(io.BytesIO(fleet_bundle()), FACTS, target, split=False)
    assert contents(target) == {**EXPECTED, "untouched": "stays"}


def test_split_apply_refuses_existing_layer_dirs_and_changes_nothing(tmp_path: Path) -> None:
    target = tmp_path / "layers"
    (target / "10-x86_64").mkdir(parents=True)
    before = snapshot(target)
    with pytest.raises(OvlError, match="10-x86_64 already exists"):
        apply_bundle(io.BytesIO(fleet_bundle()), FACTS, target, split=True)
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["layers"]


def test_failure_while_merging_puts_back_what_was_replaced(tmp_path: Path) -> None:
    """Layers 10 and 20 replace and delete files before layer 30 hits a symlink in the target:
    every earlier step is undone, down to directory mtimes."""
    target = tmp_path / "root"
    (target / "etc").mkdir(parents=True)
    (target / "etc/hostname").write_text("mine")
    (target / "etc/motd").write_text("motd")
    os.symlink("/nowhere", target / "var")
    os.utime(target / "etc", ns=(10**18, 10**18))
    before = snapshot(target)
    data = bundle(
        [
            Item("etc", "dir", mode=0o700, mtime=1),
            Item("layers/10/etc/hostname", data=b"new"),
            Item("layers/20/etc/.wh.motd", data=b""),
            Item("layers/20/etc/.wh..wh..opq", data=b""),
            Item("layers/30/var/log/x", data=b"x"),
        ]
    )
    with pytest.raises(BadInput, match="bundle layer 30: var passes through a symlink"):
        apply_bundle(io.BytesIO(data), FACTS, target, split=False)
    assert snapshot(target) == before


@pytest.mark.subprocess
@pytest.mark.root
@pytest.mark.parametrize("fails", [False, True])
def test_target_that_is_a_mount_point_stages_inside_it(
    tmp_path: Path, mounts: Mounts, fails: bool
) -> None:
    target = mounts.mount("tmpfs", tmp_path / "mnt", "-t", "tmpfs")
    (target / "old").write_text("old")
    os.utime(target, ns=(10**18, 10**18))
    before = snapshot(target)
    extra = [Item("dev/null", "char")] if fails else []
    data = bundle([*tree({"etc/hostname": b"x"}), Item(".wh..wh..opq", data=b""), *extra])
    if fails:
        with pytest.raises(BadInput, match="device nodes are not allowed"):
            apply_bundle(io.BytesIO(data), FACTS, target, split=False)
        assert snapshot(target) == before
    else:
        apply_bundle(io.BytesIO(data), FACTS, target, split=False)
        assert sorted(os.listdir(target)) == ["etc"]  # opaque root: "old" hidden, no scratch left


def test_devices_are_written_when_allowed(tmp_path: Path) -> None:
    from ovl.format.reader import Limits

    data = bundle([Item("dev/null", "char"), Item("dev/fifo", "fifo", mode=0o600)])
    apply_bundle(
        io.BytesIO(data), FACTS, tmp_path / "r", split=False, limits=Limits(allow_devices=True)
    )
    null = os.lstat(tmp_path / "r/dev/null")
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "r/dev/fifo").st_mode)


@pytest.mark.subprocess
@pytest.mark.root
def test_five_megabyte_bundle_with_ten_layers_applies_in_well_under_a_second(
    tmp_path: Path, mounts: Mounts
) -> None:
    """On tmpfs, where the agent applies at boot (this disk costs ~0.4 ms per file creation).
    The bound is loose because the test machine is shared; bench figures are in the report."""
    run = mounts.mount("tmpfs", tmp_path / "run", "-t", "tmpfs")
    items = [Item("etc", "dir"), Item("layers", "dir")]
    for layer in range(10):
        name = f"layers/{layer:02d}-x86_64"
        items += [Item(name, "dir"), Item(f"{name}/etc", "dir")]
        items += [Item(f"{name}/etc/f{i}", data=os.urandom(5000)) for i in range(100)]
    data = bundle(items)
    start = time.perf_counter()
    result = apply_bundle(io.BytesIO(data), FACTS, run / "layers", split=True)
    elapsed = time.perf_counter() - start
    assert sum(layer.bytes for layer in result.layers) == 5_000_000
    assert elapsed < 1.0, f"{elapsed:.3f} s"


@pytest.mark.parametrize("split", [False, True], ids=["merged", "split"])
def test_the_last_of_repeated_entries_wins(tmp_path: Path, split: bool) -> None:
    data = bundle(
        [
            Item("etc", "dir", mode=0o700),
            Item("etc/a", data=b"first"),
            Item("etc/.wh.gone", data=b""),
            Item("etc/a", data=b"second", mode=0o600),
            Item("etc/.wh.gone", data=b""),
            Item("etc", "dir", mode=0o750),
        ]
    )
    apply_bundle(io.BytesIO(data), FACTS, tmp_path / "t", split=split)
    root = tmp_path / "t" / "base" if split else tmp_path / "t"
    assert (root / "etc/a").read_bytes() == b"second"
    assert stat.S_IMODE(os.stat(root / "etc/a").st_mode) == 0o600
    assert stat.S_IMODE(os.stat(root / "etc").st_mode) == 0o750


@pytest.mark.parametrize("split", [False, True], ids=["merged", "split"])
def test_a_filesystem_refusal_is_one_line_and_leaves_the_target(
    tmp_path: Path, split: bool
) -> None:
    """Linux refuses user.* xattrs on symlinks: a real fault in the middle of staging."""
    target = tmp_path / "t"
    (target / "etc").mkdir(parents=True)
    (target / "etc/keep").write_text("keep")
    before = snapshot(target)
    data = bundle(
        [
            *tree({"etc/new": b"x"}),
            Item("etc/link", "symlink", link="new", xattrs={"user.note": b"no"}),
        ]
    )
    with pytest.raises(OvlError, match=r"^cannot write base/etc/link: Operation not permitted$"):
        apply_bundle(io.BytesIO(data), FACTS, target, split=split)
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t"]


_layer_folders = st.lists(
    st.builds(
        lambda order, favor: f"{order}{favor}",
        st.sampled_from(["1", "01", "2", "10", "9", "100"]),
        st.sampled_from(["", "-x86_64", "-aarch64", "-Linux", "-kernel=Linux", "-525400aabbcc"]),
    ),
    min_size=1,
    max_size=8,
    unique=True,
)


@settings(max_examples=40, deadline=None)
@given(folders=_layer_folders, seed=st.integers(0, 2**32))
def test_the_last_matching_layer_in_order_wins_whatever_the_stream_order(
    folders: list[str], seed: int
) -> None:
    shuffled = list(folders)
    random.Random(seed).shuffle(shuffled)
    items = [Item("etc/who", data=b"base")]
    items += [Item(f"layers/{name}/etc/who", data=name.encode()) for name in shuffled]
    matching = match_layers(FACTS, folders)
    with tempfile.TemporaryDirectory() as scratch:
        result = apply_bundle(io.BytesIO(bundle(items)), FACTS, Path(scratch) / "t", split=False)
        winner = (Path(scratch) / "t/etc/who").read_text()
    assert [layer.name for layer in result.layers] == ["base"] + [m.dirname for m in matching]
    assert winner == (matching[-1].dirname if matching else "base")
