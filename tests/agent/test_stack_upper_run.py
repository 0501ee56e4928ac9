"""/run/ovl/upper is the real upper dir for delta shipping, on tmpfs and on a persistent volume."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from ovl.agent.cmdline import Upper
from ovl.agent.console import Console
from ovl.agent.context import BootContext
from ovl.agent.devices import DeviceRef, PartPath
from ovl.agent.mounts import MountStack
from ovl.agent.stack.images import mount_images
from ovl.agent.stack.overlay import prepare_upper, stack_overlay
from ovl.delta.upper import walk_upper
from tests.agent.bootkit import make_fs_image, make_squashfs
from tests.agent.test_stack_overlay import local_only
from tests.conftest import Mounts

pytestmark = pytest.mark.subprocess


@pytest.mark.parametrize("persistent", [False, True])
def test_changes_in_the_root_are_seen_under_run_upper(
    tmp_path: Path, mounts: Mounts, persistent: bool
) -> None:
    run = mounts.mount("tmpfs", tmp_path / "run", "-t", "tmpfs")
    image = mounts.loop(make_squashfs(tmp_path / "i.sqfs", {"etc/a": "a", "etc/gone": "x"}))
    upper = Upper()
    if persistent:
        dev = mounts.loop(make_fs_image(tmp_path / "st.img", "ext4", "u" + os.urandom(4).hex(), 16))
        upper = Upper(PartPath.parse(f"part:{dev}:/ovl"))
    ctx = BootContext(
        work_dir=run / "mnt", timeout=5, console=Console(stream=io.StringIO()), mounts=MountStack()
    )
    sysroot = tmp_path / "sysroot"
    try:
        points = mount_images([DeviceRef.parse(image)], run, ctx, local_only)
        stack_overlay(points, prepare_upper(upper, run, ctx.mounts, 5), sysroot, run, ctx.mounts)
        (sysroot / "etc/new").write_text("made after boot")
        (sysroot / "etc/gone").unlink()
        seen = {e.path for e in walk_upper(run / "upper", lambda rel, is_dir: True)}
        assert seen == {"etc", "etc/new", "etc/.wh.gone"}
        assert (run / "upper/etc/new").read_text() == "made after boot"
    finally:
        ctx.mounts.release()
