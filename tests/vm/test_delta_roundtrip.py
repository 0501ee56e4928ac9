"""The rw round trip in real VMs, shipped from inside the guest (docs/DELTA.md, docs/SERVER.md).

Boot 1 runs the Debian root with systemd as PID 1: a unit changes a file, adds one and deletes
one, then starts the shipped `ovl-delta.service`, which packs the overlay upper and ships it
with the frozen agent /init kept in /run/ovl/agent (the root has no Python); a fourth file
written just before power-off is shipped by the shipped `ovl-delta-shutdown.service`. The host
bakes both deltas with `ovl server bake`; boot 2 fetches that version and sees all four
changes; after `ovl server rollback 1`, boot 3 sees none. Every bundle comes from
`ovl server serve` on 127.0.0.1, signed by a signer the initramfs's root certifies.

The node's minisign secret key reaches the guest on its own small disk, mounted below /run
(never in the upper, so never shipped): the bundle is served to anyone who asks, so a key in
the machine's layer would let anyone sign deltas as this machine.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.tools.server_fixtures import keypair, ovl, running_server
from tests.vmkit.debianroot import debian_root
from tests.vmkit.disk import DiskFs, make_disk
from tests.vmkit.markers import GuestReport
from tests.vmkit.qemu import Machine
from tests.vmkit.rootimage import reporting_init_script
from tests.vmkit.sealing import Signer

pytestmark = [pytest.mark.vm, pytest.mark.slow, pytest.mark.root]

MAC = "52:54:00:0a:00:01"
BAKED_LAYER = "90-5254000a0001"  # the machine's own layer, where `ovl server bake` merges
UNITS = Path(__file__).parents[2] / "initramfs" / "systemd"
CMDLINE = (
    "quiet ip=dhcp ovl.timeout=5 ovl=http://10.0.2.100/profiles/lab/current/bundle.ovl"
    " ovl.root=/dev/vda systemd.firstboot=off"
)
SHIPPING_UNITS = "systemd.wants=ovl-rt-change.service systemd.wants=ovl-delta-shutdown.service"
PROBES = ("/etc/ovl-rt/changed", "/etc/ovl-rt/added", "/etc/ovl-rt/deleted", "/etc/ovl-rt/late")

# Boot 1: make the three changes and ship them with ovl-delta.service, then make one more and
# power off: ovl-delta-shutdown.service (wanted on the command line) ships that one when systemd
# stops it. The node key is copied to /run (tmpfs, never shipped), so no key disk mount can be
# stopped under the shutdown unit.
CHANGE_SCRIPT = """#!/bin/sh
say() { echo "OVL-TEST $*"; }
mkdir -p /run/ovl-keydisk
mount -o ro LABEL=ovlnode /run/ovl-keydisk
install -m 600 /run/ovl-keydisk/node.key /run/ovl-node.key
umount /run/ovl-keydisk
echo "changed in boot 1" > /etc/ovl-rt/changed
echo "added in boot 1" > /etc/ovl-rt/added
rm /etc/ovl-rt/deleted
say changed
systemctl start ovl-delta.timer
say "timer $(systemctl is-active ovl-delta.timer)"
systemctl start ovl-delta.service
say "shipped rc=$?"
journalctl --no-pager -o cat -u ovl-delta.service | sed 's/^/OVL-TEST delta-log /'
echo "written just before power-off" > /etc/ovl-rt/late
systemctl --no-block --job-mode=replace-irreversibly start poweroff.target
"""
# The shutdown unit's output on the console too, where the test can read it.
SHUTDOWN_OUTPUT = "[Service]\nStandardOutput=journal+console\nStandardError=journal+console\n"


def unit(script: str) -> str:
    """A oneshot unit running `script`, its output on the serial console."""
    return f"""[Unit]
Description=ovl VM test: {script}

[Service]
Type=oneshot
ExecStart=/bin/sh {script}
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
"""


def fleet() -> dict[str, str]:
    """Version 1: the files boot 1 changes, the shipped delta units, this machine's settings."""
    tree = {
        "ovl.json": '{"name": "lab", "serial": 1}',
        "etc/ovl-rt/changed": "original\n",
        "etc/ovl-rt/deleted": "doomed\n",
        "etc/ovl-probe": "".join(f"{probe}\n" for probe in PROBES),
        # the journal would make the delta megabytes for nothing
        "etc/ovl/delta.conf": "exclude /var/log/journal\n",
        "usr/local/sbin/ovl-rt-change": CHANGE_SCRIPT,
        "usr/local/sbin/ovl-test-report": reporting_init_script(),
        "etc/systemd/system/ovl-rt-change.service": unit("/usr/local/sbin/ovl-rt-change"),
        "etc/systemd/system/ovl-test.service": unit("/usr/local/sbin/ovl-test-report"),
        "etc/systemd/system/ovl-delta-shutdown.service.d/console.conf": SHUTDOWN_OUTPUT,
        f"layers/10-{MAC}/etc/ovl/delta.env": (
            "OVL_DELTA_SERVER=http://10.0.2.100\n"
            "OVL_MACHINE_ID=alpha\n"
            "OVL_NODE_KEY=/run/ovl-node.key\n"
        ),
    }
    for shipped in sorted(UNITS.iterdir()):
        tree[f"etc/systemd/system/{shipped.name}"] = shipped.read_text()
    return tree


def node_key_disk(secret: Path, work: Path) -> Path:
    """A small ext4 disk labelled ovlnode holding only node.key (mode 0600)."""
    contents = work / "contents"
    contents.mkdir(parents=True)
    (contents / "node.key").write_bytes(secret.read_bytes())
    (contents / "node.key").chmod(0o600)
    return make_disk(work / "node.img", fs=DiskFs.EXT4, label="ovlnode", size_mb=16,
                     contents=contents)  # fmt: skip


def server(root: Path, signer: Signer, *args: str | Path) -> None:
    """Run `ovl server` on `root`, every version it publishes signed by the certified signer."""
    signing = ("--sign-key", str(signer.key), "--cert", str(signer.cert))
    done = ovl("server", "--root", str(root), *signing, *map(str, args))
    assert done.returncode == 0, done.stderr


def test_delta_shipped_from_the_guest_is_baked_booted_then_rolled_back(
    boot_vm: Callable[..., GuestReport],
    pack_bundle: Callable[..., Path],
    signer: Signer,
    tmp_path: Path,
) -> None:
    if os.geteuid() != 0:
        pytest.skip("debootstrap and mkfs -d need root")
    root = debian_root()
    srv = tmp_path / "srv"
    bundle = pack_bundle("fleet.ovl", fleet())
    server(srv, signer, "import", "lab", bundle)
    pub, secret = keypair(tmp_path / "node", "alpha")
    server(srv, signer, "add-machine", "alpha", "--profile", "lab", "--mac", MAC, "--key", pub)
    key_disk = node_key_disk(secret, tmp_path / "keydisk")

    with running_server(srv) as url:
        port = int(url.rsplit(":", 1)[1])
        first = boot_vm(f"{CMDLINE} {SHIPPING_UNITS}", port,
                        Machine(mac=MAC, disks=(root, key_disk)))  # fmt: skip
        assert "OVL-TEST changed" in first.console
        assert "OVL-TEST timer active" in first.console  # systemd took the shipped timer
        assert "OVL-TEST shipped rc=0" in first.console

        server(srv, signer, "bake", "--profile", "lab")
        second = boot_vm(f"{CMDLINE} systemd.wants=ovl-test.service", port,
                         Machine(mac=MAC, disks=(root,)))  # fmt: skip
        assert second.pid1 == "systemd"
        assert second.files == {
            "/etc/ovl-rt/changed": "changed in boot 1",
            "/etc/ovl-rt/added": "added in boot 1",
            "/etc/ovl-rt/deleted": "<missing>",
            "/etc/ovl-rt/late": "written just before power-off",
        }
        assert second.report is not None
        assert second.report["layers"] == ["base", f"10-{MAC}", BAKED_LAYER]

        server(srv, signer, "rollback", "1", "--profile", "lab")
        third = boot_vm(f"{CMDLINE} systemd.wants=ovl-test.service", port,
                        Machine(mac=MAC, disks=(root,)))  # fmt: skip
        assert third.files == {
            "/etc/ovl-rt/changed": "original",
            "/etc/ovl-rt/added": "<missing>",
            "/etc/ovl-rt/deleted": "doomed",
            "/etc/ovl-rt/late": "<missing>",
        }
        assert third.report is not None
        assert third.report["layers"] == ["base", f"10-{MAC}"]
