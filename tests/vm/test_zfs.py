"""zfs mode in real boots: a pool made in the guest, then a fresh clone of its snapshot per boot.

The host's kernel need not have zfs: DKMS builds the modules for the guest kernel
(ovl.tools/vm/zfs.py), and the pool is created by the guest itself in a first boot that runs
the initramfs's setup init (`rdinit=`) instead of the agent.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ovl.core.run import run
from tests.vmkit.httpserve import StaticServer
from tests.vmkit.kernel import Kernel
from tests.vmkit.markers import GuestReport
from tests.vmkit.qemu import Machine
from tests.vmkit.sealing import Signer
from tests.vmkit.zfs import (
    SETUP_INIT,
    ZfsUnavailable,
    build_zfs_initrd,
    make_pool_disk,
    zfs_kernel,
)

pytestmark = pytest.mark.vm

MAC, OTHER_MAC = "52:54:00:0a:00:01", "52:54:00:0a:00:02"
SNAPSHOT = "ovltest/root@pristine"
CMDLINE = (
    f"quiet ip=dhcp ovl.timeout=5 ovl=http://10.0.2.100/fleet.ovl ovl.mode=zfs ovl.zfs={SNAPSHOT}"
)
SETUP_DONE = "OVL-ZFS-SETUP done"

BootVm = Callable[..., GuestReport]


@pytest.fixture(scope="module")
def kernel_with_zfs(kernel: Kernel) -> Kernel:
    try:
        return zfs_kernel(kernel)
    except ZfsUnavailable as exc:
        pytest.skip(f"zfs for the guest kernel: {exc.line}")


@pytest.fixture(scope="module")
def initrd(
    kernel_with_zfs: Kernel, signer: Signer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Replaces the session initramfs for this module's boots: the same plus zfs."""
    output = tmp_path_factory.mktemp("zfs-initramfs") / "initrd.img"
    return build_zfs_initrd(kernel_with_zfs, signer.keys, output)


def machine(*disks: Path) -> Machine:
    return Machine(mac=MAC, disks=disks)


@pytest.mark.subprocess
def test_pool_disk_has_one_gpt_partition_over_the_whole_disk(tmp_path: Path) -> None:
    disk = make_pool_disk(tmp_path / "pool.img", size_mb=64)
    table = json.loads(run(["sfdisk", "--json", disk]).stdout)["partitiontable"]
    assert table["label"] == "gpt"
    [partition] = table["partitions"]
    assert partition["start"] == 2048
    end = (partition["start"] + partition["size"]) * 512
    assert end >= 63 * 1024 * 1024  # all but the last MiB, where GPT keeps its backup


@pytest.mark.slow
def test_zfs_mode_boots_a_fresh_clone_of_the_snapshot_with_the_layers_every_boot(
    boot_vm: BootVm,
    pack_bundle: Callable[..., Path],
    test_root: Path,
    tmp_path: Path,
    refusing_port: int,
) -> None:
    pool = make_pool_disk(tmp_path / "pool.img")
    setup = boot_vm(
        f"quiet rdinit={SETUP_INIT} ovl.zfs={SNAPSHOT}", refusing_port, machine(pool, test_root)
    )
    assert SETUP_DONE in setup.console
    bundle = pack_bundle(
        "fleet.ovl",
        {
            "ovl.json": json.dumps({"name": "zfs-fleet", "serial": 1}),
            "etc/motd": "fleet motd\n",
            f"layers/10-{MAC}/etc/hostname": "alpha\n",
            f"layers/10-{OTHER_MAC}/etc/role": "not for this machine\n",
        },
    )
    with StaticServer(bundle.parent) as server:
        boots = [boot_vm(CMDLINE, server.port, machine(pool)) for _ in range(3)]
    for number, seen in enumerate(boots, 1):
        assert seen.done
        assert seen.root_mount == f"ovltest/root-boot-{number:06d} zfs"
        assert seen.files["/etc/hostname"] == "alpha"
        assert seen.files["/etc/motd"] == "fleet motd"
        assert seen.files["/etc/role"] == "<missing>"
        assert seen.files["/etc/base-only"] == "from the image"
        # written by every boot, seen by none: each boot's clone starts from the snapshot
        assert seen.scratch == {"before": "absent", "after": "present"}
        assert seen.report is not None
        assert seen.report["layers"] == ["base", f"10-{MAC}"]
    removed = [seen.report["root"]["removed"] for seen in boots if seen.report]
    assert removed == [[], [], ["ovltest/root-boot-000001"]]


@pytest.mark.slow
def test_zfs_mode_without_its_pool_stops_in_the_emergency_shell_naming_the_pool(
    boot_vm: BootVm, tmp_path: Path, refusing_port: int
) -> None:
    blank = make_pool_disk(tmp_path / "blank.img")
    seen = boot_vm(
        "quiet ovl.timeout=2 ovl.mode=zfs ovl.zfs=nopool/root@pristine",
        refusing_port,
        machine(blank),
    )
    assert not seen.booted
    # The reason, then what ovl.emergency= does about it (the default: a shell).
    emergency, action = [x for x in seen.agent_lines() if x.startswith("ovl: emergency: ")]
    assert action.startswith("ovl: emergency: emergency shell (ovl.emergency)")
    assert emergency.startswith("ovl: emergency: zfs pool nopool: not imported: zpool import")
    assert emergency.endswith("cannot import 'nopool': no such pool available")
    assert "ovl-init: emergency: zfs pool nopool: not imported" in seen.console
