"""The rw round trip with real boots: a change made in boot 1 is shipped and baked, boot 2
(fresh tmpfs upper) has it from the server; after a rollback, boot 3 does not.

Boot 1 keeps its upper on a disk; the delta is packed and shipped from that disk by
`ovl-agent delta` on the host, because the busybox test root has no Python to run the agent.
Everything the guests see comes from `ovl server serve` (bundle and signature), signed by a
signer the initramfs's root certifies.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ovl_tools.server.bake import bake
from ovl_tools.server.history import import_bundle, rollback
from ovl_tools.server.signing import certified_signer
from ovl_tools.server.store import Machine as Registered
from ovl_tools.server.store import Store
from ovl_tools.vm.disk import DiskFs, make_disk
from ovl_tools.vm.initrd import build_initrd
from ovl_tools.vm.kernel import fetch_kernel
from ovl_tools.vm.markers import GuestReport
from ovl_tools.vm.qemu import Boot, Machine, VirtualMachine
from ovl_tools.vm.rootimage import build_test_root
from ovl_tools.vm.sealing import make_signer, seal_tree

from tests.tools.server_fixtures import keypair, running_server

pytestmark = [pytest.mark.vm, pytest.mark.root]

MAC = "52:54:00:0a:00:01"
CHANNEL = "quiet ip=dhcp ovl=http://10.0.2.100/profiles/lab/current/bundle.ovl ovl.timeout=5"
ON_IMAGE = f"{CHANNEL} ovl.root=/dev/vda"
AGENT = [sys.executable, "-c", "import sys; from agent.cli import main; sys.exit(main())"]
BOOT_TIMEOUT = 180.0


def boot(
    kernel: object, initrd: Path, cmdline: str, port: int, machine: Machine, work: Path
) -> GuestReport:
    vm = VirtualMachine(
        Boot(kernel=kernel.vmlinuz, initrd=initrd, cmdline=cmdline, http_port=port),  # type: ignore[attr-defined]
        machine,
        work,
        lifetime=BOOT_TIMEOUT,
    )
    try:
        for _ in vm.lines(BOOT_TIMEOUT):
            pass
        report = GuestReport.parse(vm.text())
    finally:
        vm.kill()
    assert report.done, vm.text()
    return report


def test_change_shipped_baked_booted_then_rolled_back(tmp_path: Path, mounts: object) -> None:
    kernel = fetch_kernel()
    signer = make_signer(tmp_path / "trust")
    initrd = build_initrd(kernel, signer.keys, tmp_path / "initrd.img")
    root_image = build_test_root(
        tmp_path / "root.sqfs",
        files={"/etc/hostname": "base-image\n"},
        probes=("/etc/hostname",),
    )
    fleet = {
        "ovl.json": json.dumps({"name": "lab", "serial": 1}),
        f"layers/10-{MAC}/etc/hostname": "alpha\n",
    }
    bundle = seal_tree(fleet, tmp_path / "seal", tmp_path / "fleet.ovl", signer)
    store = Store(tmp_path / "srv")
    import_bundle(store, "lab", bundle, bundle.with_name("fleet.ovl.minisig"))
    pub, node_key = keypair(tmp_path / "node", "alpha")
    store.add_machine(Registered("alpha", "lab", MAC, pub.read_text()))
    sign = certified_signer(signer.key, signer.cert)
    upper_disk = make_disk(tmp_path / "upper.img", fs=DiskFs.EXT4, label="ovlupper", size_mb=64)

    with running_server(store.root) as url:
        port = int(url.rsplit(":", 1)[1])
        persistent = f"{ON_IMAGE} ovl.upper=part:LABEL=ovlupper:/upper"
        both = Machine(mac=MAC, disks=(root_image, upper_disk))
        first = boot(kernel, initrd, persistent, port, both, tmp_path / "boot-1")
        assert first.scratch == {"before": "absent", "after": "present"}
        assert first.files["/etc/hostname"] == "alpha"

        disk = mounts.mount(upper_disk, tmp_path / "upper-mnt", "-o", "loop")  # type: ignore[attr-defined]
        spool = str(tmp_path / "spool")
        for action in (
            # ovl.upper=part:...:/upper keeps the overlay upper and work dirs below /upper.
            ["pack", "--upper", str(disk / "upper/upper"), "--rules", "/nonexistent"],
            ["ship", "--server", url, "--machine-id", "alpha", "--key", str(node_key)],
        ):
            done = subprocess.run([*AGENT, "delta", "--spool", spool, *action],
                                  capture_output=True, text=True, check=False)  # fmt: skip
            assert done.returncode == 0, done.stderr
        subprocess.run(["umount", str(disk)], check=True)

        baked = bake(store, "lab", sign)
        assert baked is not None
        second = boot(kernel, initrd, ON_IMAGE, port, Machine(mac=MAC, disks=(root_image,)),
                      tmp_path / "boot-2")  # fmt: skip
        assert second.scratch["before"] == "present"  # from the server, not from a disk
        assert second.files["/etc/hostname"] == "alpha"

        rollback(store, "lab", 1, sign)
        third = boot(kernel, initrd, ON_IMAGE, port, Machine(mac=MAC, disks=(root_image,)),
                     tmp_path / "boot-3")  # fmt: skip
        assert third.scratch["before"] == "absent"
        assert third.files["/etc/hostname"] == "alpha"
