"""overlay stacking on real squashfs images and layer dirs; assertions read the mounted root."""

from __future__ import annotations

import io
import os
import subprocess
from pathlib import Path

import pytest

from ovl.agent.cmdline import Upper, Url
from ovl.agent.console import Console
from ovl.agent.context import BootContext
from ovl.agent.devices import DeviceRef, PartPath
from ovl.agent.mounts import MountStack
from ovl.agent.stack.images import mount_images
from ovl.agent.stack.overlay import prepare_upper, stack_overlay
from tests.agent.bootkit import make_fs_image, make_squashfs, write_tree
from tests.conftest import Mounts

pytestmark = pytest.mark.subprocess


def _ctx(tmp_path: Path) -> BootContext:
    return BootContext(
        work_dir=tmp_path / "run" / "mnt",
        timeout=5,
        console=Console(stream=io.StringIO()),
        mounts=MountStack(),
    )


def local_only(image: Path, signature: Path | None, url: Url) -> None:
    raise AssertionError(f"{url}: images on devices and partitions are not signature-checked")


@pytest.mark.parametrize("count", [1, 3])
def test_images_and_layers_stack_bottom_to_top(tmp_path: Path, mounts: Mounts, count: int) -> None:
    run = mounts.mount("tmpfs", tmp_path / "run", "-t", "tmpfs")
    images = []
    for i in range(count):
        files = {"etc/who": f"image{i}", f"etc/image{i}": "x", "etc/gone": "lower"}
        images.append(DeviceRef.parse(mounts.loop(make_squashfs(tmp_path / f"{i}.sqfs", files))))
    layers = []
    for i in range(count):
        layer = write_tree(run / "layers" / f"{10 + i}-x:y,z", {"etc/who": f"layer{i}"})
        layers.append(layer)
    os.mknod(layers[-1] / "etc" / "gone", 0o600 | 0o020000, os.makedev(0, 0))  # whiteout
    ctx = _ctx(tmp_path)
    points = mount_images(images, run, ctx, local_only)
    holder = prepare_upper(Upper(), run, ctx.mounts, 5)
    sysroot = tmp_path / "sysroot"
    stack_overlay([*points, *layers], holder, sysroot, run, ctx.mounts)
    assert (sysroot / "etc" / "who").read_text() == f"layer{count - 1}"
    assert all((sysroot / "etc" / f"image{i}").exists() for i in range(count))
    assert not (sysroot / "etc" / "gone").exists()
    (sysroot / "etc" / "new").write_text("written")
    assert (run / "upper" / "etc" / "new").read_text() == "written"
    ctx.mounts.release()
    assert not os.path.ismount(sysroot)


def test_image_file_on_a_partition_is_loop_mounted(tmp_path: Path, mounts: Mounts) -> None:
    run = mounts.mount("tmpfs", tmp_path / "run", "-t", "tmpfs")
    dev = mounts.loop(
        make_fs_image(tmp_path / "disk.img", "ext4", "ovlimg" + os.urandom(3).hex(), 16)
    )
    fill = mounts.mount(dev, tmp_path / "fill")
    make_squashfs(fill / "images" / "base.sqfs", {"etc/os-release": "base"})
    subprocess.run(["umount", fill], check=True)
    ctx = _ctx(tmp_path)
    (point,) = mount_images([PartPath.parse(f"part:{dev}:/images/base.sqfs")], run, ctx, local_only)
    assert (point / "etc" / "os-release").read_text() == "base"
    ctx.mounts.release()


@pytest.mark.parametrize("wipe", [False, True])
def test_persistent_upper_keeps_writes_unless_wiped(
    tmp_path: Path, mounts: Mounts, wipe: bool
) -> None:
    run = mounts.mount("tmpfs", tmp_path / "run", "-t", "tmpfs")
    image = DeviceRef.parse(mounts.loop(make_squashfs(tmp_path / "b.sqfs", {"etc/a": "a"})))
    dev = mounts.loop(make_fs_image(tmp_path / "state.img", "ext4", "st" + os.urandom(4).hex(), 16))
    upper = Upper(PartPath.parse(f"part:{dev}:/ovl"), wipe=wipe)
    sysroot = tmp_path / "sysroot"
    seen = []
    for boot in range(2):
        ctx = _ctx(tmp_path)
        points = mount_images([image], run, ctx, local_only)
        holder = prepare_upper(upper, run, ctx.mounts, 5)
        stack_overlay(points, holder, sysroot, run, ctx.mounts)
        seen.append((sysroot / "etc" / "kept").exists())
        (sysroot / "etc" / "kept").write_text(f"boot {boot}")
        ctx.mounts.release()
    assert seen == [False, not wipe]
