"""The rescue boot's disk handling: disks listed from sysfs, set read-only in the kernel (a real
loop device: the flag read back with BLKROGET and through sysfs), and described on one line."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ovl.agent.rescue import Disk, describe, list_disks, probe_volumes, protect
from tests.agent.bootkit import write_tree
from tests.conftest import Mounts


def fake_block(root: Path) -> Path:
    write_tree(root / "block" / "vda", {"size": "131072\n", "removable": "0\n", "ro": "0\n"})
    write_tree(root / "block" / "vda" / "device", {"model": "  QEMU   HARDDISK \n"})
    write_tree(root / "block" / "vda" / "vda1", {"partition": "1\n", "size": "2048\n"})
    write_tree(root / "block" / "vda" / "vda2", {"partition": "2\n", "size": "2048\n"})
    write_tree(root / "block" / "vda" / "queue", {"rotational": "1\n"})
    write_tree(root / "block" / "sda", {"size": "524288\n", "removable": "1\n"})
    for skipped in ("loop0", "ram0", "zram0", "nbd3"):
        write_tree(root / "block" / skipped, {"size": "8\n"})
    return root


def test_disks_come_from_sys_block_without_loop_ram_zram_and_nbd(tmp_path: Path) -> None:
    disks = list_disks(fake_block(tmp_path))
    assert disks == [
        Disk("sda", 256 << 20, "", True, ()),
        Disk("vda", 64 << 20, "QEMU HARDDISK", False, ("vda1", "vda2")),
    ]
    assert list_disks(tmp_path / "no-sysfs") == []


def test_a_disk_line_says_size_model_flags_and_what_is_on_it() -> None:
    disk = Disk("vda", 64 << 20, "QEMU HARDDISK", False, ("vda1", "vda2"), read_only=True)
    volumes = {"vda1": "vfat LABEL=OVLESP", "vda2": "ext4"}
    assert describe(disk, volumes) == (
        "vda 64.0 MiB 'QEMU HARDDISK' (read-only): vda1 vfat LABEL=OVLESP, vda2 ext4"
    )
    writable = Disk("sda", 1 << 20, "", True, ())
    assert describe(writable, {"sda": "squashfs"}) == "sda 1.0 MiB (removable): squashfs"
    assert describe(Disk("sdb", 1 << 20, "", False, ()), {}) == "sdb 1.0 MiB (WRITABLE)"


@pytest.mark.subprocess
@pytest.mark.root
def test_a_real_disk_is_set_read_only_and_writes_to_it_fail(tmp_path: Path, mounts: Mounts) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices")
    image = tmp_path / "disk.img"
    with image.open("wb") as out:
        out.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-L", "victim", str(image)], check=True)
    loop = Path(mounts.loop(image))
    dev = tmp_path / "dev"
    dev.mkdir()
    (dev / "vdz").symlink_to(loop)
    disks, problems = protect([Disk("vdz", 8 << 20, "", False, ())], dev)
    try:
        assert problems == []
        assert disks[0].read_only
        assert (Path("/sys/block") / loop.name / "ro").read_text().strip() == "1"
        fd = os.open(loop, os.O_WRONLY)
        try:
            with pytest.raises(PermissionError):  # EPERM from the block layer
                os.write(fd, b"x" * 4096)
        finally:
            os.close(fd)
        point = mounts.mount(loop, tmp_path / "mnt", "-o", "rw")  # mount falls back to ro
        with open("/proc/self/mounts") as table:
            options = next(line.split()[3] for line in table if line.split()[1] == str(point))
        assert options.split(",")[0] == "ro"
        subprocess.run(["umount", str(point)], check=True)
        assert probe_volumes(disks, dev) == {"vdz": "ext4 LABEL=victim"}
    finally:
        subprocess.run(["blockdev", "--setrw", str(loop)], check=True)
    gone, problems = protect([Disk("vdy", 1, "", False, ())], dev)
    assert not gone[0].read_only
    assert problems[0].startswith("vdy: not set read-only: ")
