"""The VM harness itself: kernel fetch, test root, loopback server, QEMU runner."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from ovl.core.errors import OvlError
from ovl.core.run import run
from tests.vmkit.httpserve import StaticServer
from tests.vmkit.kernel import Kernel, fetch_kernel, resolve_package
from tests.vmkit.markers import GuestReport
from tests.vmkit.qemu import Boot, Firmware, Machine, VirtualMachine, qemu_argv
from tests.vmkit.rootimage import build_test_root


@pytest.mark.subprocess
def test_meta_package_resolves_to_a_versioned_kernel_image() -> None:
    versioned = resolve_package("linux-image-cloud-amd64")
    assert versioned.startswith("linux-image-")
    assert versioned.endswith("-cloud-amd64")
    assert resolve_package(versioned) == versioned


@pytest.mark.subprocess
def test_fetched_kernel_has_an_image_and_indexed_modules(kernel: Kernel) -> None:
    assert kernel.vmlinuz.read_bytes()[0x202:0x206] == b"HdrS"  # x86 boot protocol header
    modules_dep = (kernel.modules_dir / "modules.dep").read_text()
    assert "kernel/drivers/net/virtio_net.ko:" in modules_dep
    assert "kernel/fs/overlayfs/overlay.ko:" in modules_dep


@pytest.mark.subprocess
def test_second_fetch_reuses_the_unpacked_kernel(kernel: Kernel) -> None:
    before = kernel.vmlinuz.stat().st_mtime_ns
    again = fetch_kernel()
    assert again == kernel
    assert again.vmlinuz.stat().st_mtime_ns == before


def test_static_server_serves_the_directory_and_records_requests(tmp_path: Path) -> None:
    (tmp_path / "fleet.ovl").write_bytes(b"bundle bytes")
    with StaticServer(tmp_path) as server:
        with urllib.request.urlopen(f"{server.url}/fleet.ovl", timeout=5) as response:
            assert response.read() == b"bundle bytes"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"{server.url}/fleet.ovl.minisig", timeout=5)
        assert missing.value.code == 404
        assert server.requests == ["GET /fleet.ovl 200", "GET /fleet.ovl.minisig 404"]


@pytest.mark.subprocess
def test_test_root_holds_busybox_the_reporting_init_and_the_probe_list(tmp_path: Path) -> None:
    image = build_test_root(
        tmp_path / "root.sqfs", files={"/etc/motd": "hello\n"}, probes=["/etc/motd"]
    )
    listing = run(["unsquashfs", "-lls", image]).stdout.decode()
    assert "squashfs-root/sbin/init" in listing
    assert "squashfs-root/bin/sh -> /bin/busybox" in listing
    extracted = tmp_path / "x"
    run(["unsquashfs", "-d", extracted, image, "etc", "sbin/init"])
    assert (extracted / "etc/motd").read_text() == "hello\n"
    assert (extracted / "etc/ovl-probe").read_text() == "/etc/motd\n"
    assert "OVL-TEST" in (extracted / "sbin/init").read_text()


def test_guest_network_is_restricted_and_forwards_only_to_loopback(tmp_path: Path) -> None:
    boot = Boot(kernel=tmp_path / "k", initrd=tmp_path / "i", cmdline="quiet", http_port=8123)
    machine = Machine(mac="52:54:00:00:00:07", disks=(tmp_path / "a.img",))
    argv = qemu_argv(boot, machine, tmp_path / "console", tmp_path / "pid")
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev.startswith("user,id=n0,restrict=on,")
    assert netdev.endswith("guestfwd=tcp:10.0.2.100:80-cmd:/bin/busybox nc 127.0.0.1 8123")
    assert "virtio-net-pci,id=nic0,netdev=n0,mac=52:54:00:00:00:07" in argv
    assert f"file={tmp_path / 'a.img'},if=virtio,format=raw" in argv
    assert argv[argv.index("-append") + 1] == "console=ttyS0 panic=-1 quiet"
    assert "-no-reboot" in argv and "-qmp" not in argv


def test_every_nic_is_restricted_on_a_network_of_its_own_and_qmp_can_reach_them(
    tmp_path: Path,
) -> None:
    boot = Boot(tmp_path / "k", tmp_path / "i", "quiet", http_port=8123, reboot=True)
    machine = Machine(mac="52:54:00:00:00:07", more_macs=("52:54:00:00:00:08",))
    argv = qemu_argv(boot, machine, tmp_path / "console", tmp_path / "pid", tmp_path / "qmp")
    netdevs = [argv[i + 1] for i, arg in enumerate(argv) if arg == "-netdev"]
    assert [n.split(",")[:3] for n in netdevs] == [
        ["user", "id=n0", "restrict=on"],
        ["user", "id=n1", "restrict=on"],
    ]
    assert all(n.endswith("-cmd:/bin/busybox nc 127.0.0.1 8123") for n in netdevs)
    assert "virtio-net-pci,id=nic1,netdev=n1,mac=52:54:00:00:00:08" in argv
    assert argv[argv.index("-qmp") + 1] == f"unix:{tmp_path / 'qmp'},server=on,wait=off"
    assert "-no-reboot" not in argv


def test_firmware_boots_get_ovmf_usb_sticks_a_bootfile_or_a_tap(tmp_path: Path) -> None:
    stick, efi_vars = tmp_path / "stick.img", tmp_path / "vars.fd"
    machine = Machine(mac="52:54:00:00:00:08", usb_disks=(stick,))
    secure = Boot(kernel=None, initrd=None, cmdline="", http_port=None,
                  firmware=Firmware.SECURE_BOOT)  # fmt: skip
    argv = qemu_argv(secure, machine, tmp_path / "console", tmp_path / "pid", efi_vars=efi_vars)
    assert "-kernel" not in argv and argv[argv.index("-machine") + 1] == "q35,smm=on"
    assert "driver=cfi.pflash01,property=secure,value=on" in argv
    assert f"if=pflash,format=raw,unit=1,file={efi_vars}" in argv
    assert f"if=none,id=usb0,format=raw,snapshot=on,file={stick}" in argv
    assert "usb-storage,bus=xhci.0,drive=usb0,removable=on,bootindex=0" in argv
    nic = argv.index("-nic")
    assert argv[nic + 1 : nic + 4] == [
        "none",
        "-device",
        "virtio-net-pci,id=nic0,mac=52:54:00:00:00:08",
    ]
    with pytest.raises(OvlError, match="needs a copy of the variable store"):
        qemu_argv(secure, machine, tmp_path / "console", tmp_path / "pid")
    netboot = Boot(kernel=None, initrd=None, cmdline="", http_port=8123, bootfile="http://x/a,b")
    argv = qemu_argv(netboot, Machine(), tmp_path / "c", tmp_path / "p")
    netdev = argv[argv.index("-netdev") + 1]
    assert netdev.endswith(",bootfile=http://x/a,,b")
    tapped = Boot(kernel=None, initrd=None, cmdline="", http_port=None, tap="tap0", netns="ns")
    argv = qemu_argv(tapped, Machine(), tmp_path / "c", tmp_path / "p")
    assert "tap,id=n0,ifname=tap0,script=no,downscript=no" in argv


@pytest.mark.vm
def test_qemu_that_cannot_start_reports_why(tmp_path: Path) -> None:
    boot = Boot(kernel=tmp_path / "missing", initrd=tmp_path / "missing", cmdline="", http_port=1)
    with (
        VirtualMachine(boot, Machine(), tmp_path / "vm") as vm,
        pytest.raises(OvlError, match=r"qemu exit status 1: .*missing"),
    ):
        vm.wait_for("never printed", timeout=30)


@pytest.mark.vm
def test_kernel_boots_under_the_runner_and_its_console_is_captured(
    kernel: Kernel, tmp_path: Path
) -> None:
    # No initramfs and no disk: the kernel must panic at mounting root, and panic=-1 ends QEMU.
    empty = tmp_path / "empty.cpio"
    empty.write_bytes(b"")
    boot = Boot(kernel=kernel.vmlinuz, initrd=empty, cmdline="", http_port=1)
    with VirtualMachine(boot, Machine(), tmp_path / "vm", lifetime=120) as vm:
        found = vm.wait_for(r"Linux version (\S+)", timeout=120)
        assert found.group(1) == kernel.version
        with pytest.raises(OvlError, match="without a line matching"):
            vm.wait_for("OVL-TEST booted", timeout=120)
    assert "Kernel panic" in vm.text()


@pytest.mark.vm
def test_qmp_pulls_and_plugs_a_nics_cable(kernel: Kernel, tmp_path: Path) -> None:
    empty = tmp_path / "empty.cpio"
    empty.write_bytes(b"")
    boot = Boot(kernel=kernel.vmlinuz, initrd=empty, cmdline="", http_port=1)
    with VirtualMachine(boot, Machine(), tmp_path / "vm", lifetime=120) as vm:
        vm.set_link(0, False)
        vm.set_link(0, True)
        with pytest.raises(OvlError, match=r"QMP set_link: .*nic7"):
            vm.set_link(7, False)


def test_guest_report_reads_the_init_lines_between_kernel_noise() -> None:
    console = "\n".join(
        [
            "[    1.0] virtio_net virtio0 eth0: renamed",
            "ovl: fetch: http://10.0.2.100/fleet.ovl ok 812 B 40 ms",
            "OVL-TEST booted",
            "OVL-TEST facts mac=52:54:00:0a:00:01 uuid=u-1 release=6.1.0-56-cloud-amd64",
            "OVL-TEST mounts overlay overlay",
            "OVL-TEST file /etc/hostname=alpha",
            "OVL-TEST file /etc/role=<missing>",
            "OVL-TEST scratch before=absent after=present",
            'OVL-TEST report {"layers": ["10-52:54:00:0a:00:01"]}',
            "OVL-TEST done",
        ]
    )
    seen = GuestReport.parse(console)
    assert seen.booted and seen.done
    assert seen.facts == {
        "mac": "52:54:00:0a:00:01",
        "uuid": "u-1",
        "release": "6.1.0-56-cloud-amd64",
    }
    assert seen.root_mount == "overlay overlay"
    assert seen.files == {"/etc/hostname": "alpha", "/etc/role": "<missing>"}
    assert seen.scratch == {"before": "absent", "after": "present"}
    assert seen.report == {"layers": ["10-52:54:00:0a:00:01"]}
    assert seen.agent_lines() == ["ovl: fetch: http://10.0.2.100/fleet.ovl ok 812 B 40 ms"]
