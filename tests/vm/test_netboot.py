"""Netboot from bare metal: QEMU with no -kernel and no disk. The NIC's iPXE ROM gets its boot
file name from QEMU's DHCP (`/boot.ipxe?mac=${net0/mac}&uuid=${uuid}`, expanded by iPXE),
`ovl server serve` answers the machine's script, iPXE loads kernel and initramfs from the same
server, and the agent fetches the profile's bundle and its signed root image from it too.

Then the same on a network with a DHCP server of its own (busybox udhcpd) and the dnsmasq
`ovl netboot dnsmasq-conf` writes, as proxy DHCP, in a network namespace with a bridge."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.tools.server_fixtures import running_server
from tests.vm.conftest import StartVm, run_to_end
from tests.vmkit.kernel import Kernel
from tests.vmkit.netns import private_lan
from tests.vmkit.ovlcommand import OVL, ovl
from tests.vmkit.qemu import Boot, Firmware, Machine
from tests.vmkit.sealing import Signer

pytestmark = pytest.mark.vm

ALPHA = ("52:54:00:0d:00:01", "d1d1d1d1-0000-4000-8000-000000000001")
BETA = ("52:54:00:0d:00:02", "d2d2d2d2-0000-4000-8000-000000000002")
STRANGER = ("52:54:00:0d:00:03", "d3d3d3d3-0000-4000-8000-000000000003")
BOOTFILE = "http://10.0.2.100/boot.ipxe?mac=${net0/mac}&uuid=${uuid}"
CMDLINE = "console=ttyS0 panic=-1 quiet ovl.timeout=20"
PackBundle = Callable[..., Path]


def fleet(profile: str) -> dict[str, str]:
    return {
        "ovl.json": json.dumps({"name": f"{profile}-fleet", "serial": 1}),
        "etc/motd": f"profile {profile}\n",
        f"layers/10-{ALPHA[0]}/etc/hostname": "alpha\n",
        f"layers/10-machine={BETA[1]}/etc/hostname": "beta\n",
        f"layers/10-{STRANGER[0]}/etc/hostname": "stranger\n",
    }


@pytest.fixture
def server_root(
    tmp_path: Path, pack_bundle: PackBundle, test_root: Path, kernel: Kernel, initrd: Path,
    signer: Signer,
) -> Path:  # fmt: skip
    """Profiles lab (alpha, by MAC) and web (beta, by UUID); unknown machines boot lab."""
    root = tmp_path / "srv"
    image = tmp_path / "images" / "base.sqfs"
    image.parent.mkdir()
    image.write_bytes(test_root.read_bytes())
    ovl("sign", image, "--sign", signer.key, "--cert", signer.cert, "--serial", "3")
    for profile in ("lab", "web"):
        bundle = pack_bundle(f"{profile}.ovl", fleet(profile))
        ovl("server", "--root", root, "import", profile, bundle)
        ovl("netboot", "publish", "--root", root, profile, "--kernel", kernel.vmlinuz,
            "--initrd", initrd, "--image", image, "--cmdline", CMDLINE)  # fmt: skip
    ovl("netboot", "add-machine", "--root", root, "lab", "--mac", ALPHA[0])
    ovl("netboot", "add-machine", "--root", root, "web", "--uuid", BETA[1])
    (root / "netboot.json").write_text(json.dumps({"unknown": "default", "default_profile": "lab"}))
    return root


@pytest.mark.slow
def test_machines_boot_their_profiles_scripts_over_ipxe_and_a_stranger_gets_the_default(
    start_vm: StartVm, server_root: Path
) -> None:
    with running_server(server_root) as url:
        port = int(url.rsplit(":", 1)[1])
        bios = Boot(kernel=None, initrd=None, cmdline="", http_port=port, bootfile=BOOTFILE)
        uefi = Boot(kernel=None, initrd=None, cmdline="", http_port=port, bootfile=BOOTFILE,
                    firmware=Firmware.UEFI)  # fmt: skip
        alpha = run_to_end(start_vm(bios, Machine(mac=ALPHA[0], product_uuid=ALPHA[1])))
        beta = run_to_end(start_vm(uefi, Machine(mac=BETA[0], product_uuid=BETA[1])))
        stranger = run_to_end(start_vm(bios, Machine(mac=STRANGER[0], product_uuid=STRANGER[1])))

    assert f"ovl netboot: entries 10-{ALPHA[0]}" in alpha.console
    assert alpha.files["/etc/hostname"] == "alpha" and alpha.files["/etc/motd"] == "profile lab"
    assert f"ovl netboot: entries 10-machine={BETA[1]}" in beta.console
    assert beta.files["/etc/hostname"] == "beta" and beta.files["/etc/motd"] == "profile web"
    assert f"ovl netboot: no netboot entry matches {STRANGER[0]}" in stranger.console
    assert "ovl netboot: profile lab for" in stranger.console
    assert stranger.files["/etc/motd"] == "profile lab"
    assert stranger.files["/etc/hostname"] == "stranger"  # its own layer of lab's bundle
    for seen, profile in ((alpha, "lab"), (beta, "web"), (stranger, "lab")):
        assert seen.report is not None
        assert seen.report["bundle"]["source"] == (
            f"http://10.0.2.100/profiles/{profile}/current/bundle.ovl"
        )
        image = f"http://10.0.2.100/profiles/{profile}/netboot/base.sqfs"
        assert seen.report["root"]["images"] == [image]
        assert f"ovl: stack: image {image}: signed by vm-test, serial 3" in seen.agent_lines()


UDHCPD_CONF = """start {prefix}.100
end {prefix}.150
interface br0
lease_file {leases}
pidfile {pid}
option subnet 255.255.255.0
"""


@pytest.mark.slow
@pytest.mark.root
def test_dnsmasq_conf_adds_netboot_to_a_network_with_its_own_dhcp_server(
    start_vm: StartVm, server_root: Path, tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    tftp = tmp_path / "tftp"
    tftp.mkdir()
    for loader in ("undionly.kpxe", "snponly.efi"):
        shutil.copyfile(Path("/usr/lib/ipxe") / loader, tftp / loader)
    with private_lan(tmp_path / "lan") as lan:
        conf = tmp_path / "dnsmasq.conf"
        made = ovl("netboot", "dnsmasq-conf", "--server", f"{lan.host}:8470", "--network",
                   f"{lan.prefix}.0", "--interface", "br0", "--tftp-root", tftp)  # fmt: skip
        conf.write_bytes(made.stdout)
        lan.run(["dnsmasq", "--test", f"--conf-file={conf}"])
        udhcpd = tmp_path / "udhcpd.conf"
        udhcpd.write_text(UDHCPD_CONF.format(
            prefix=lan.prefix, leases=tmp_path / "leases", pid=tmp_path / "udhcpd.pid"
        ))  # fmt: skip
        (tmp_path / "leases").touch()
        lan.start("udhcpd", ["busybox", "udhcpd", "-f", udhcpd])
        lan.start("dnsmasq", ["dnsmasq", "--no-daemon", "--user=root", f"--conf-file={conf}",
                              f"--pid-file={tmp_path / 'dnsmasq.pid'}", "--log-dhcp",
                              "--log-facility=-"])  # fmt: skip
        lan.start("server", [OVL, "server", "--root", server_root, "serve", "--listen",
                             f"{lan.host}:8470"])  # fmt: skip
        lan.wait_for_http(f"http://{lan.host}:8470/boot.ipxe")
        bios = Boot(kernel=None, initrd=None, cmdline="", http_port=None, tap="tap0",
                    netns=lan.name)  # fmt: skip
        alpha = run_to_end(start_vm(bios, Machine(mac=ALPHA[0], product_uuid=ALPHA[1])))
        uefi = replace(bios, firmware=Firmware.UEFI)
        beta = run_to_end(start_vm(uefi, Machine(mac=BETA[0], product_uuid=BETA[1])))
        dnsmasq_log, udhcpd_log = lan.log("dnsmasq"), lan.log("udhcpd")

    server = f"http://{lan.host}:8470"
    for seen, facts, profile in ((alpha, ALPHA, "lab"), (beta, BETA, "web")):
        assert f"PXE(br0) {facts[0]} proxy" in dnsmasq_log  # dnsmasq made the boot offer
        assert f"Filename: {server}/boot.ipxe?mac={facts[0]}" in seen.console
        assert seen.files["/etc/motd"] == f"profile {profile}"
        assert seen.report is not None
        assert seen.report["bundle"]["source"] == f"{server}/profiles/{profile}/current/bundle.ovl"
    assert alpha.files["/etc/hostname"] == "alpha" and beta.files["/etc/hostname"] == "beta"
    assert f"ovl: net: eth0: lease {lan.prefix}." in alpha.console  # udhcpd's lease
    assert "sending ACK" in udhcpd_log
