"""btrfs and zfs modes: a fresh writable root per boot, layers merged into it, old ones pruned."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from ovl.agent.boot import BootPaths, boot
from ovl.agent.cmdline import parse_cmdline
from ovl.agent.console import Console
from ovl.agent.stack.btrfs import boot_snapshots
from tests.agent.bootkit import MAC, fake_sysfs, make_bundle, make_fs_image, write_tree
from tests.conftest import Mounts

pytestmark = pytest.mark.subprocess


def test_each_boot_gets_a_fresh_snapshot_with_layers_merged_and_old_ones_pruned(
    tmp_path: Path, mounts: Mounts
) -> None:
    dev = mounts.loop(make_fs_image(tmp_path / "pool.img", "btrfs", "bt" + os.urandom(4).hex()))
    top = mounts.mount(dev, tmp_path / "top")
    subprocess.run(["btrfs", "-q", "subvolume", "create", top / "@root"], check=True)
    write_tree(top / "@root", {"etc/os-release": "pristine", "etc/gone": "pristine file"})
    subprocess.run(["umount", top], check=True)
    bundle = make_bundle(
        tmp_path / "fleet.ovl",
        {"etc/fleet": "base", "etc/.wh.gone": ""},
        {f"20-mac={MAC}": {"etc/hostname": "node-1"}, "30-mac=52:54:00:99:99:99": {"etc/x": "x"}},
    )
    run = mounts.mount("tmpfs", tmp_path / "run", "-t", "tmpfs")
    paths = BootPaths(
        run_dir=run / "ovl",
        sysroot=tmp_path / "sysroot",
        sysfs=fake_sysfs(tmp_path / "sys"),
        keys_dir=tmp_path / "no-keys",
        kmsg=None,
    )
    config = parse_cmdline(
        f"ovl=file:{bundle} ovl.require=none ovl.mode=btrfs ovl.btrfs=part:{dev}:/@root"
    )
    snapshots = []
    for number in range(3):
        handover = boot(config, paths, Console(stream=io.StringIO()))
        assert handover.root == paths.sysroot
        root = paths.sysroot
        assert (root / "etc" / "os-release").read_text() == "pristine"
        assert (root / "etc" / "fleet").read_text() == "base"
        assert (root / "etc" / "hostname").read_text() == "node-1"
        assert not (root / "etc" / "gone").exists() and not (root / "etc" / "x").exists()
        assert not (root / "etc" / "leftover").exists()  # every boot starts from pristine
        (root / "etc" / "leftover").write_text(f"boot {number}")
        subprocess.run(["umount", root], check=True)
        top = mounts.mount(dev, tmp_path / "top", "-o", "subvolid=5")
        snapshots.append([p.name for _, p in boot_snapshots(top)])
        assert (top / "@root" / "etc" / "gone").exists()  # the pristine subvolume is untouched
        assert not (top / "@root" / "etc" / "fleet").exists()
        subprocess.run(["umount", top], check=True)
    assert [len(s) for s in snapshots] == [1, 2, 2]
    assert [int(name.split("-")[1]) for name in snapshots[2]] == [2, 3]


# zfsutils without the kernel module (a host whose kernel has no zfs) cannot create a pool.
@pytest.mark.skipif(
    shutil.which("zfs") is None or not os.path.exists("/dev/zfs"),
    reason="zfs tools or the zfs kernel module missing on this host",
)
def test_zfs_boot_clones_the_snapshot(tmp_path: Path, mounts: Mounts) -> None:
    pool = f"ovltest{os.getpid()}"
    image = tmp_path / "zpool.img"
    with open(image, "wb") as f:
        f.truncate(256 * 1024 * 1024)
    subprocess.run(["zpool", "create", "-m", "none", pool, image], check=True)
    try:
        subprocess.run(["zfs", "create", "-o", "mountpoint=legacy", f"{pool}/root"], check=True)
        mnt = mounts.mount(f"{pool}/root", tmp_path / "fill", "-t", "zfs")
        write_tree(mnt, {"etc/os-release": "pristine"})
        subprocess.run(["umount", mnt], check=True)
        subprocess.run(["zfs", "snapshot", f"{pool}/root@pristine"], check=True)
        bundle = make_bundle(tmp_path / "fleet.ovl", {"etc/fleet": "base"}, {})
        paths = BootPaths(
            run_dir=tmp_path / "run",
            sysroot=tmp_path / "sysroot",
            sysfs=fake_sysfs(tmp_path / "sys"),
            keys_dir=tmp_path / "no-keys",
            kmsg=None,
        )
        config = parse_cmdline(
            f"ovl=file:{bundle} ovl.require=none ovl.mode=zfs ovl.zfs={pool}/root@pristine"
        )
        assert boot(config, paths, Console(stream=io.StringIO())).root == paths.sysroot
        assert (paths.sysroot / "etc" / "fleet").read_text() == "base"
        assert (paths.sysroot / "etc" / "os-release").read_text() == "pristine"
        subprocess.run(["umount", paths.sysroot], check=True)
    finally:
        subprocess.run(["zpool", "destroy", "-f", pool], check=False)
