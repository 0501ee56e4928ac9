"""file: and part: channels, devices by LABEL/UUID/path, and facts from sysfs and blkid."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest

from ovl.agent.channels.file import FileChannel
from ovl.agent.channels.part import PartChannel
from ovl.agent.console import Console
from ovl.agent.context import BootContext
from ovl.agent.devices import DeviceRef, PartPath, find_device, parse_blkid
from ovl.agent.facts import collect_facts, read_macs
from ovl.agent.mounts import MountStack, is_mounted
from ovl.core.errors import OvlError
from tests.agent.bootkit import MAC, fake_sysfs, make_fs_image, write_tree
from tests.conftest import Mounts


def _ctx(tmp_path: Path, timeout: float = 5.0) -> BootContext:
    return BootContext(
        work_dir=tmp_path / "mnt",
        timeout=timeout,
        console=Console(stream=io.StringIO()),
        mounts=MountStack(),
    )


def _label() -> str:
    return "t" + uuid.uuid4().hex[:10]


def test_file_channel_copies_bundle_and_signature(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"fleet.ovl": "bundle", "fleet.ovl.minisig": "sig"})
    fetched = FileChannel(src / "fleet.ovl").fetch(tmp_path / "b.ovl", _ctx(tmp_path))
    assert (tmp_path / "b.ovl").read_text() == "bundle"
    assert fetched.signature is not None and fetched.signature.read_text() == "sig"


def test_file_channel_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(OvlError, match="no such file"):
        FileChannel(tmp_path / "nope.ovl").fetch(tmp_path / "b.ovl", _ctx(tmp_path))
    assert not (tmp_path / "b.ovl").exists()


def test_blkid_output_of_both_implementations_parses() -> None:
    util_linux = '/dev/loop3: LABEL="data" UUID="ab-12" BLOCK_SIZE="4096" TYPE="ext4"\n'
    busybox = '/dev/vda1: LABEL="boot" UUID="CD-34" TYPE="vfat"\n/dev/vdb:\n'
    parsed = parse_blkid(util_linux + busybox)
    assert [(d.path, d.label, d.uuid, d.fstype) for d in parsed] == [
        ("/dev/loop3", "data", "ab-12", "ext4"),
        ("/dev/vda1", "boot", "CD-34", "vfat"),
    ]


@pytest.mark.subprocess
def test_part_channel_reads_from_an_ext4_label_and_unmounts(tmp_path: Path, mounts: Mounts) -> None:
    label = _label()
    dev = mounts.loop(make_fs_image(tmp_path / "disk.img", "ext4", label, 16))
    fill = mounts.mount(dev, tmp_path / "fill")
    write_tree(fill, {"b/fleet.ovl": "from ext4", "b/fleet.ovl.minisig": "sig"})
    subprocess.run(["umount", fill], check=True)
    ctx = _ctx(tmp_path)
    fetched = PartChannel(PartPath.parse(f"part:LABEL={label}:/b/fleet.ovl")).fetch(
        tmp_path / "b.ovl", ctx
    )
    assert fetched.bundle.read_text() == "from ext4"
    assert fetched.signature is not None
    assert not is_mounted(ctx.work_dir / "part")


@pytest.mark.subprocess
def test_part_channel_finds_a_btrfs_subvolume_path_whatever_the_default(
    tmp_path: Path, mounts: Mounts
) -> None:
    label = _label()
    dev = mounts.loop(make_fs_image(tmp_path / "disk.img", "btrfs", label))
    top = mounts.mount(dev, tmp_path / "top")
    subprocess.run(["btrfs", "-q", "subvolume", "create", top / "@ovls"], check=True)
    subprocess.run(["btrfs", "-q", "subvolume", "create", top / "@root"], check=True)
    (top / "@ovls" / "fleet.ovl").write_text("from a subvolume")
    # A default subvolume other than the top level hides /@ovls from a plain mount.
    subprocess.run(["btrfs", "subvolume", "set-default", top / "@root"], check=True)
    subprocess.run(["umount", top], check=True)
    uuid_ = subprocess.run(
        ["blkid", "-p", "-s", "UUID", "-o", "value", dev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    channel = PartChannel(PartPath.parse(f"part:UUID={uuid_}:/@ovls/fleet.ovl"))
    assert channel.fetch(tmp_path / "b.ovl", _ctx(tmp_path)).bundle.read_text() == (
        "from a subvolume"
    )


@pytest.mark.subprocess
def test_part_channel_by_device_path_names_a_missing_file(tmp_path: Path, mounts: Mounts) -> None:
    dev = mounts.loop(make_fs_image(tmp_path / "disk.img", "ext4", _label(), 16))
    ctx = _ctx(tmp_path)
    with pytest.raises(OvlError, match=r"fleet\.ovl: no such file"):
        PartChannel(PartPath.parse(f"part:{dev}:/fleet.ovl")).fetch(tmp_path / "b.ovl", ctx)
    assert not is_mounted(ctx.work_dir / "part")


@pytest.mark.subprocess
def test_missing_device_is_waited_for_then_named(tmp_path: Path) -> None:
    with pytest.raises(OvlError, match=r"^device LABEL=absent\w+ did not appear within 0.3 s$"):
        find_device(DeviceRef.parse("LABEL=absent" + _label()), timeout=0.3)


def test_macs_skip_lo_and_all_zero_addresses(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path / "sys", macs=(MAC, "00:00:00:00:00:00", "52-54-00-AA-BB-CC"))
    write_tree(sysfs / "class" / "net" / "sit0", {"address": "00:00:00:00\n"})
    assert read_macs(sysfs) == ("52:54:00:12:34:56", "52:54:00:aa:bb:cc")


@pytest.mark.subprocess
def test_facts_hold_sysfs_values_uname_and_a_fresh_volume_uuid(
    tmp_path: Path, mounts: Mounts
) -> None:
    dev = mounts.loop(make_fs_image(tmp_path / "disk.img", "ext4", _label(), 16))
    fs_uuid = subprocess.run(
        ["blkid", "-p", "-s", "UUID", "-o", "value", dev],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    sysfs = fake_sysfs(tmp_path / "sys", product_uuid="4C4C4544-0042-3510-8051-B4C04F4D3232")
    facts = collect_facts(sysfs)
    assert facts.macs == (MAC,)
    assert facts.product_uuid == "4c4c4544-0042-3510-8051-b4c04f4d3232"
    assert fs_uuid in facts.volume_uuids
    assert facts.kernel == "Linux" and facts.kernel_release and facts.arch


@pytest.mark.subprocess
def test_label_lookup_works_with_busybox_findfs_as_in_the_initramfs(
    tmp_path: Path, mounts: Mounts, monkeypatch: pytest.MonkeyPatch
) -> None:
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.skip("busybox is not installed")
    label = _label()
    dev = mounts.loop(make_fs_image(tmp_path / "disk.img", "ext4", label, 16))
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "findfs").symlink_to(busybox)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    assert find_device(DeviceRef.parse(f"LABEL={label}"), timeout=2) == dev
