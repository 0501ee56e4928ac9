"""Real boots: the Debian cloud kernel, ovl's initramfs and agent, a bundle from a loopback server.

Every assertion reads what the booted system printed (OVL-TEST lines of the test root's init)
or the agent's own console lines; nothing is inspected from the host side.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ovl.core.run import run
from tests.vmkit.debianroot import debian_root
from tests.vmkit.disk import DiskFs, make_disk
from tests.vmkit.httpserve import StaticServer
from tests.vmkit.kernel import Kernel
from tests.vmkit.markers import GuestReport
from tests.vmkit.ovlcommand import ovl
from tests.vmkit.qemu import Machine
from tests.vmkit.rootimage import reporting_init_script
from tests.vmkit.sealing import Signer

pytestmark = pytest.mark.vm

ALPHA_MAC, ALPHA_UUID = "52:54:00:0a:00:01", "a1a1a1a1-0000-4000-8000-000000000001"
BETA_MAC, BETA_UUID = "52:54:00:0a:00:02", "b2b2b2b2-0000-4000-8000-000000000002"
# Bundles are sealed by the session signer; the agent's default is ovl.require=signed.
BASE = "quiet ip=dhcp ovl.timeout=5"
FETCH = f"{BASE} ovl=http://10.0.2.100/fleet.ovl"
ON_IMAGE = f"{FETCH} ovl.root=/dev/vda"
MANIFEST = json.dumps({"name": "vm-test-fleet", "serial": 1})

PackBundle = Callable[..., Path]
BootVm = Callable[..., GuestReport]


def fleet_tree() -> dict[str, str]:
    """A base file for everyone, one layer per MAC, one per product UUID (with a whiteout)."""
    return {
        "ovl.json": MANIFEST,
        "etc/motd": "fleet motd\n",
        f"layers/10-{ALPHA_MAC}/etc/hostname": "alpha\n",
        f"layers/10-{BETA_MAC}/etc/hostname": "beta\n",
        # the same MAC without separators, and a DMI product UUID
        f"layers/20-{ALPHA_MAC.replace(':', '')}/etc/role": "web\n",
        f"layers/20-{BETA_UUID}/etc/role": "database\n",
        # an OCI whiteout: hides the read-only image's file from beta only
        f"layers/20-{BETA_UUID}/etc/.wh.base-only": "",
    }


def alpha(*disks: Path) -> Machine:
    return Machine(mac=ALPHA_MAC, product_uuid=ALPHA_UUID, disks=disks)


def beta(*disks: Path) -> Machine:
    return Machine(mac=BETA_MAC, product_uuid=BETA_UUID, disks=disks)


def test_two_machines_booting_one_bundle_each_get_only_their_layers(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path
) -> None:
    bundle = pack_bundle("fleet.ovl", fleet_tree())
    with StaticServer(bundle.parent) as server:
        first = boot_vm(ON_IMAGE, server.port, alpha(test_root))
        second = boot_vm(ON_IMAGE, server.port, beta(test_root))
    assert first.facts["mac"] == ALPHA_MAC and second.facts["mac"] == BETA_MAC
    assert first.facts["uuid"] == ALPHA_UUID and second.facts["uuid"] == BETA_UUID
    assert first.files == {
        "/etc/hostname": "alpha",
        "/etc/motd": "fleet motd",
        "/etc/role": "web",
        "/etc/release-note": "<missing>",
        "/etc/base-only": "from the image",
    }
    assert second.files["/etc/hostname"] == "beta"
    assert second.files["/etc/role"] == "database"
    assert second.files["/etc/motd"] == "fleet motd"
    assert second.files["/etc/base-only"] == "<missing>"
    assert first.root_mount.endswith(" overlay")
    # Python's static server ignores Range: each machine's ask for the frame index gets the
    # whole file (200), and the agent fetches the whole bundle instead, saying so.
    assert server.requests.count("GET /fleet.ovl 200") == 4
    fallback = "the server ignores Range (HTTP 200); fetching the whole bundle"
    assert all(any(fallback in line for line in seen.agent_lines()) for seen in (first, second))


def test_layer_named_by_a_dashed_kernel_release_applies_only_on_that_kernel(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path, kernel: Kernel
) -> None:
    tree = {
        "ovl.json": MANIFEST,
        f"layers/30-{kernel.version}/etc/release-note": f"built for {kernel.version}\n",
        "layers/40-5.10.0-99-cloud-amd64/etc/motd": "for another kernel\n",
    }
    bundle = pack_bundle("fleet.ovl", tree)
    with StaticServer(bundle.parent) as server:
        seen = boot_vm(ON_IMAGE, server.port, alpha(test_root))
    assert seen.facts["release"] == kernel.version
    assert seen.files["/etc/release-note"] == f"built for {kernel.version}"
    assert seen.files["/etc/motd"] == "<missing>"


def test_server_down_boots_the_last_known_good_bundle_from_the_cache_partition(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path, tmp_path: Path, refusing_port: int
) -> None:
    cache = make_disk(tmp_path / "cache.img", fs=DiskFs.EXT4, label="ovlcache", size_mb=64)
    cmdline = f"{ON_IMAGE} ovl.cache=part:LABEL=ovlcache:/cache"
    bundle = pack_bundle("fleet.ovl", fleet_tree())
    with StaticServer(bundle.parent) as server:
        online = boot_vm(cmdline, server.port, alpha(test_root, cache))
    offline = boot_vm(cmdline, refusing_port, alpha(test_root, cache))
    assert online.files["/etc/hostname"] == "alpha"
    assert offline.files["/etc/hostname"] == "alpha"
    assert offline.files["/etc/role"] == "web"
    lines = offline.agent_lines()
    assert any(line.startswith("ovl: fetch: http://10.0.2.100/fleet.ovl failed") for line in lines)
    assert any(line.startswith("ovl: fetch: cache:") and " ok " in line for line in lines)
    assert offline.report is not None and offline.report["bundle"]["source"].startswith("cache:")


def test_tampered_bundle_boots_the_bare_image_and_says_why(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path
) -> None:
    bundle = pack_bundle("fleet.ovl", fleet_tree())
    data = bytearray(bundle.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(b ^ 0xFF for b in data[middle : middle + 16])
    bundle.write_bytes(bytes(data))
    with StaticServer(bundle.parent) as server:
        seen = boot_vm(ON_IMAGE, server.port, alpha(test_root))
    assert seen.booted
    assert seen.files["/etc/hostname"] == "base-image"
    assert seen.files["/etc/motd"] == "<missing>"
    reason = (
        "ovl: verify: http://10.0.2.100/fleet.ovl failed: bundle bundle.ovl: signature does not"
    )
    assert any(line.startswith(reason) for line in seen.agent_lines())
    assert seen.report is not None and seen.report["bundle"] is None
    # the frame fetch's signature and index (answered whole: the server ignores Range), then
    # the whole bundle and its signature
    assert server.requests == [
        "GET /fleet.ovl.minisig 200",
        "GET /fleet.ovl 200",
        "GET /fleet.ovl 200",
        "GET /fleet.ovl.minisig 200",
    ]


def test_change_made_in_one_boot_is_gone_in_the_next_with_a_tmpfs_upper(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path
) -> None:
    bundle = pack_bundle("fleet.ovl", fleet_tree())
    with StaticServer(bundle.parent) as server:
        first = boot_vm(ON_IMAGE, server.port, alpha(test_root))
        second = boot_vm(ON_IMAGE, server.port, alpha(test_root))
    assert first.scratch == {"before": "absent", "after": "present"}
    assert second.scratch == {"before": "absent", "after": "present"}


def test_change_is_kept_by_a_persistent_upper_until_a_boot_wipes_it(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path, tmp_path: Path
) -> None:
    upper = make_disk(tmp_path / "upper.img", fs=DiskFs.EXT4, label="ovlupper", size_mb=64)
    cmdline = f"{ON_IMAGE} ovl.upper=part:LABEL=ovlupper:/upper"
    bundle = pack_bundle("fleet.ovl", fleet_tree())
    with StaticServer(bundle.parent) as server:
        first = boot_vm(cmdline, server.port, alpha(test_root, upper))
        second = boot_vm(cmdline, server.port, alpha(test_root, upper))
        wiped = boot_vm(f"{cmdline},wipe", server.port, alpha(test_root, upper))
    assert first.scratch == {"before": "absent", "after": "present"}
    assert second.scratch == {"before": "present", "after": "present"}
    assert second.files["/etc/hostname"] == "alpha"
    assert wiped.scratch == {"before": "absent", "after": "present"}


def test_btrfs_mode_boots_a_fresh_snapshot_of_the_pristine_subvolume(
    boot_vm: BootVm,
    pack_bundle: PackBundle,
    test_root: Path,
    tmp_path: Path,
    mounts: Any,
) -> None:
    disk = make_disk(tmp_path / "btrfs.img", fs=DiskFs.BTRFS, label="ovlbtrfs", size_mb=256)
    pristine = tmp_path / "mnt"
    mounts.mount(disk, pristine, "-o", "loop")
    run(["btrfs", "subvolume", "create", pristine / "@root"])
    run(["unsquashfs", "-f", "-d", pristine / "@root", test_root])
    run(["umount", pristine])
    cmdline = f"{FETCH} ovl.mode=btrfs ovl.btrfs=part:LABEL=ovlbtrfs:/@root"
    bundle = pack_bundle("fleet.ovl", fleet_tree())
    with StaticServer(bundle.parent) as server:
        first = boot_vm(cmdline, server.port, alpha(disk))
        second = boot_vm(cmdline, server.port, alpha(disk))
    assert first.root_mount.endswith(" btrfs")
    assert first.report is not None and second.report is not None
    assert first.report["root"]["snapshot"] != second.report["root"]["snapshot"]
    assert first.files["/etc/hostname"] == "alpha"
    assert first.files["/etc/base-only"] == "from the image"
    assert first.scratch == {"before": "absent", "after": "present"}
    assert second.scratch == {"before": "absent", "after": "present"}


DEBIAN_UNIT = """[Unit]
Description=Report the booted system for ovl's VM tests

[Service]
Type=oneshot
ExecStart=/bin/sh /usr/local/sbin/ovl-test-report
StandardOutput=tty
StandardError=tty
TTYPath=/dev/console
"""


@pytest.mark.slow
@pytest.mark.root
def test_real_debian_root_with_systemd_boots_with_the_machines_layers(
    boot_vm: BootVm, pack_bundle: PackBundle
) -> None:
    if os.geteuid() != 0:
        pytest.skip("debootstrap needs root")
    root = debian_root()
    tree = {
        "ovl.json": MANIFEST,
        "etc/ovl-probe": "/etc/hostname\n/etc/motd\n/etc/role\n",
        "usr/local/sbin/ovl-test-report": reporting_init_script(),
        "etc/systemd/system/ovl-test.service": DEBIAN_UNIT,
        f"layers/10-{ALPHA_MAC}/etc/hostname": "debian-alpha\n",
        f"layers/20-{BETA_MAC}/etc/role": "not for alpha\n",
    }
    bundle = pack_bundle("fleet.ovl", tree)
    cmdline = f"{FETCH} ovl.root=/dev/vda systemd.wants=ovl-test.service systemd.firstboot=off"
    with StaticServer(bundle.parent) as server:
        seen = boot_vm(cmdline, server.port, alpha(root))
    assert seen.pid1 == "systemd"
    assert seen.root_mount.endswith(" overlay")
    assert seen.files["/etc/hostname"] == "debian-alpha"
    assert seen.files["/etc/role"] == "<missing>"
    assert seen.report is not None and seen.report["layers"] == ["base", f"10-{ALPHA_MAC}"]


def test_malformed_command_line_stops_in_the_emergency_shell_with_the_reason(
    boot_vm: BootVm, test_root: Path, refusing_port: int
) -> None:
    seen = boot_vm(f"{ON_IMAGE} ovl.mode=ext4", refusing_port, alpha(test_root))
    assert not seen.booted
    assert any(line.startswith("ovl: cmdline: ovl.mode=ext4") for line in seen.agent_lines())
    assert "ovl-init: emergency: " in seen.console


def test_encrypted_bundle_opens_only_on_the_machine_holding_its_key(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path, tmp_path: Path
) -> None:
    def key_disk(name: str) -> Path:
        """A partition labelled ovlkey holding this machine's own age identity as /node.age."""
        keys = tmp_path / f"{name}-keys"
        ovl("keys", "node-new", "node", "-d", keys)
        (keys / "node.age.pub").rename(tmp_path / f"{name}.age.pub")
        return make_disk(
            tmp_path / f"{name}-key.img", fs=DiskFs.EXT4, label="ovlkey", size_mb=16, contents=keys
        )

    alpha_keys, beta_keys = key_disk("alpha"), key_disk("beta")
    bundle = pack_bundle("fleet.ovl", fleet_tree(), recipients=[tmp_path / "alpha.age.pub"])
    cmdline = f"{ON_IMAGE} ovl.require=encrypted ovl.key=part:LABEL=ovlkey:/node.age"
    with StaticServer(bundle.parent) as server:
        holder = boot_vm(cmdline, server.port, alpha(test_root, alpha_keys))
        stranger = boot_vm(cmdline, server.port, beta(test_root, beta_keys))
    assert holder.files["/etc/hostname"] == "alpha"
    assert holder.report is not None and holder.report["bundle"]["encrypted"] is True
    assert stranger.files["/etc/hostname"] == "base-image"
    failed = "ovl: verify: http://10.0.2.100/fleet.ovl failed: "
    reasons = [line for line in stranger.agent_lines() if line.startswith(failed)]
    assert reasons and "this machine's key" in reasons[0]


def test_older_serial_is_refused_as_a_rollback_and_the_cached_newer_bundle_boots(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path, tmp_path: Path
) -> None:
    def release(serial: int) -> dict[str, str]:
        return {
            "ovl.json": json.dumps({"name": "vm-test-fleet", "serial": serial}),
            f"layers/10-{ALPHA_MAC}/etc/hostname": f"alpha-v{serial}\n",
        }

    cache = make_disk(tmp_path / "cache.img", fs=DiskFs.EXT4, label="ovlcache", size_mb=64)
    cmdline = f"{ON_IMAGE} ovl.cache=part:LABEL=ovlcache:/cache"
    newer = pack_bundle("fleet.ovl", release(2))
    with StaticServer(newer.parent) as server:
        current = boot_vm(cmdline, server.port, alpha(test_root, cache))
        pack_bundle("fleet.ovl", release(1))  # replaces what the server offers
        replayed = boot_vm(cmdline, server.port, alpha(test_root, cache))
    assert current.files["/etc/hostname"] == "alpha-v2"
    assert replayed.files["/etc/hostname"] == "alpha-v2"
    # refused from its signature alone, before any byte of the bundle is asked for
    refused = "ovl: fetch: http://10.0.2.100/fleet.ovl failed: "
    reasons = [line for line in replayed.agent_lines() if line.startswith(refused)]
    assert reasons and "serial 1" in reasons[0] and "replay" in reasons[0]
    assert replayed.report is not None and replayed.report["bundle"]["serial"] == 2
    assert server.requests[-1] == "GET /fleet.ovl.minisig 200"


def test_channels_are_tried_in_order_and_a_partition_serves_when_the_server_is_down(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path, tmp_path: Path, refusing_port: int
) -> None:
    bundle = pack_bundle("fleet.ovl", fleet_tree())
    on_disk = tmp_path / "on-disk"
    on_disk.mkdir()
    for sealed in (bundle, bundle.with_name("fleet.ovl.minisig")):
        (on_disk / sealed.name).write_bytes(sealed.read_bytes())
    disk = make_disk(tmp_path / "boot.img", fs=DiskFs.EXT4, label="ovlboot", contents=on_disk)
    channels = "ovl=http://10.0.2.100/fleet.ovl,part:LABEL=ovlboot:/fleet.ovl"
    seen = boot_vm(f"{BASE} {channels} ovl.root=/dev/vda", refusing_port, alpha(test_root, disk))
    assert seen.files["/etc/hostname"] == "alpha"
    lines = seen.agent_lines()
    assert any(line.startswith("ovl: fetch: http://10.0.2.100/fleet.ovl failed") for line in lines)
    assert any(line.startswith("ovl: fetch: part:LABEL=ovlboot:/fleet.ovl ok") for line in lines)


def test_root_images_stack_bottom_to_top_from_a_disk_and_from_the_server(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path, tmp_path: Path, signer: Signer
) -> None:
    upper_tree = tmp_path / "upper-image"
    (upper_tree / "etc").mkdir(parents=True)
    (upper_tree / "etc/hostname").write_text("second-image\n")
    (upper_tree / "etc/release-note").write_text("from the second image\n")
    bundle = pack_bundle("fleet.ovl", {"ovl.json": MANIFEST, "etc/motd": "fleet motd\n"})
    extra = bundle.parent / "extra.sqfs"
    run(["mksquashfs", upper_tree, extra, "-quiet", "-all-root"])
    # images over http are checked
    ovl("sign", extra, "--sign", signer.key, "--cert", signer.cert, "--serial", "7")
    cmdline = f"{FETCH} ovl.root=/dev/vda,http://10.0.2.100/extra.sqfs"
    with StaticServer(bundle.parent) as server:
        seen = boot_vm(cmdline, server.port, alpha(test_root))
    signed_line = "ovl: stack: image http://10.0.2.100/extra.sqfs: signed by vm-test, serial 7"
    assert signed_line in seen.agent_lines()
    assert seen.files["/etc/hostname"] == "second-image"
    assert seen.files["/etc/release-note"] == "from the second image"
    assert seen.files["/etc/base-only"] == "from the image"
    assert seen.files["/etc/motd"] == "fleet motd"
    assert "GET /extra.sqfs 200" in server.requests


def test_armoured_bundle_from_a_gist_channel_boots_the_machines_layers(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path
) -> None:
    bundle = pack_bundle("gist/abc123/raw/fleet.ovl", fleet_tree(), armor=True)
    assert bundle.read_bytes().isascii()
    www = bundle.parents[3]
    cmdline = f"{BASE} ovl=gist:abc123/fleet.ovl ovl.gist_base=http://10.0.2.100/gist"
    with StaticServer(www) as server:
        seen = boot_vm(f"{cmdline} ovl.root=/dev/vda", server.port, alpha(test_root))
    assert seen.files["/etc/hostname"] == "alpha"
    assert any(
        line.startswith("ovl: fetch: gist:abc123/fleet.ovl ok") for line in seen.agent_lines()
    )
    assert "GET /gist/abc123/raw/fleet.ovl.minisig 200" in server.requests


def test_a_machine_decodes_only_its_own_frames_of_a_big_fleet_bundle(
    boot_vm: BootVm, pack_bundle: PackBundle, test_root: Path
) -> None:
    """ovl pack's frame index on a real boot: of a fleet bundle with 40 machines' layers the
    agent decodes the base's frames and alpha's, and gets the same files as ever."""
    noise = os.urandom(60_000).hex()  # ~120 kB of text per layer: a few layers per frame
    tree = fleet_tree()
    for index in range(40):
        tree[f"layers/10-52:54:00:0b:00:{index:02x}/etc/key"] = noise[index:] + "\n"
    bundle = pack_bundle("fleet.ovl", tree)
    with StaticServer(bundle.parent) as server:
        seen = boot_vm(ON_IMAGE, server.port, alpha(test_root))
    assert seen.files["/etc/hostname"] == "alpha" and seen.files["/etc/role"] == "web"
    applied = next(line for line in seen.agent_lines() if line.startswith("ovl: apply: "))
    read, total = (int(n) for n in applied.split(" frames read")[0].split(", ")[-1].split(" of "))
    assert total >= 10 and read <= 3, applied
