"""Boots that meet what a fleet's network does every day, in QEMU: a NIC whose cable is out
(QMP set_link), a carrier that comes 20 s late, a server that starts 20 s after the agent, a
connection that drops half way through a multi-MB bundle (nginx behind a relay that cuts it),
and an unattended machine that reboots until its server is back.

Each boots its own layers with the default settings (ovl.timeout=30 among them) except where
the case is the setting; assertions read what the guest printed.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.vm.conftest import Guests
from tests.vmkit.cutter import CuttingRelay
from tests.vmkit.disk import DiskFs, make_disk
from tests.vmkit.httpserve import StaticServer
from tests.vmkit.markers import GuestReport
from tests.vmkit.nginx import NginxStatic
from tests.vmkit.qemu import Machine

pytestmark = pytest.mark.vm

ALPHA_MAC, SECOND_MAC = "52:54:00:0a:00:01", "52:54:00:0a:00:11"
ALPHA_UUID = "a1a1a1a1-0000-4000-8000-000000000001"
DEFAULTS = "quiet ip=dhcp ovl=http://10.0.2.100/fleet.ovl ovl.root=/dev/vda"
AGENT_STARTED = r"ovl: net: DHCP on every NIC"
NO_BUNDLE = "no bundle verified and applied, and ovl.require=...,bundle forbids booting without one"
LONG_BOOT = 300.0  # seconds: a boot that waits out ovl.timeout (30 s) on a slow, busy host

PackBundle = Callable[..., Path]
# tests/vmkit/nginx.py's access log line
ACCESS = re.compile(
    r'GET \S+ HTTP/1\.1 "(?P<range>[^"]*)" "(?P<if_range>[^"]*)" (?P<status>\d+) (?P<sent>\d+)'
)


def alpha_tree(**extra: str) -> dict[str, str]:
    return {
        "ovl.json": json.dumps({"name": "vm-net-fleet", "serial": 1}),
        "etc/motd": "fleet motd\n",
        f"layers/10-{ALPHA_MAC}/etc/hostname": "alpha\n",
        **extra,
    }


def alpha(*disks: Path, more_macs: tuple[str, ...] = ()) -> Machine:
    return Machine(mac=ALPHA_MAC, product_uuid=ALPHA_UUID, disks=disks, more_macs=more_macs)


@pytest.fixture
def held_port() -> Iterator[socket.socket]:
    """A loopback port bound but not listening (connections refused) until the test closes it
    and starts a server there: a server that is down, then comes up."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock


def lines_with(seen: GuestReport, text: str) -> list[str]:
    return [line for line in seen.agent_lines() if text in line]


def test_first_nic_unplugged_the_second_connected_boots_over_the_second(
    guests: Guests, pack_bundle: PackBundle, test_root: Path
) -> None:
    bundle = pack_bundle("fleet.ovl", alpha_tree())
    with StaticServer(bundle.parent) as server:
        vm = guests.start(DEFAULTS, server.port, alpha(test_root, more_macs=(SECOND_MAC,)))
        vm.set_link(0, False)  # before the kernel has even started
        seen = guests.finish(vm)
    assert seen.files["/etc/hostname"] == "alpha"
    assert lines_with(seen, "ovl: net: eth1: lease 10.0.2.15/24")
    assert not lines_with(seen, "eth0: carrier")  # no DHCP into an unplugged cable
    assert seen.report is not None and seen.report["network"]["dhcp"]["interface"] == "eth1"


def test_a_carrier_20_s_late_is_waited_for(
    guests: Guests, pack_bundle: PackBundle, test_root: Path
) -> None:
    bundle = pack_bundle("fleet.ovl", alpha_tree())
    with StaticServer(bundle.parent) as server:
        vm = guests.start(DEFAULTS, server.port, alpha(test_root))
        vm.set_link(0, False)
        vm.wait_for(AGENT_STARTED)
        time.sleep(20)  # the scenario: the switch port comes up 20 s after the agent started
        vm.set_link(0, True)
        seen = guests.finish(vm)
    assert seen.files["/etc/hostname"] == "alpha"
    carrier = lines_with(seen, "ovl: net: eth0: carrier after ")
    assert len(carrier) == 1
    assert float(carrier[0].split("carrier after ")[1].split(" s")[0]) >= 20
    assert lines_with(seen, "ovl: net: waiting: eth0 no carrier")  # said while it waited


def test_a_server_that_starts_20_s_after_the_agent_is_reached(
    guests: Guests, pack_bundle: PackBundle, test_root: Path, held_port: socket.socket
) -> None:
    bundle = pack_bundle("fleet.ovl", alpha_tree())
    port = int(held_port.getsockname()[1])
    vm = guests.start(DEFAULTS, port, alpha(test_root))
    vm.wait_for(r"ovl-init: running agent")
    time.sleep(20)  # the scenario: the bundle server reboots and comes back 20 s later
    held_port.close()
    with StaticServer(bundle.parent, port=port) as server:
        seen = guests.finish(vm)
    assert seen.files["/etc/hostname"] == "alpha"
    retried = lines_with(seen, "failed: connection failed; retry in")
    assert len(retried) >= 2, seen.agent_lines()
    assert lines_with(seen, "ovl: fetch: http://10.0.2.100/fleet.ovl ok ")
    assert "GET /fleet.ovl 200" in server.requests


def test_a_connection_dropped_half_way_through_a_big_bundle_is_resumed(
    guests: Guests, pack_bundle: PackBundle, test_root: Path, tmp_path: Path
) -> None:
    blob = base64.b64encode(os.urandom(6_000_000)).decode()  # zstd keeps 6 of its 8 MB
    bundle = pack_bundle("fleet.ovl", alpha_tree(**{"var/blob": blob}))
    size = bundle.stat().st_size
    assert size > 5_000_000
    with (
        NginxStatic(bundle.parent, tmp_path / "nginx") as nginx,
        CuttingRelay(nginx.port, path="/fleet.ovl", after=size // 2) as relay,
    ):
        whole = f"{DEFAULTS} ovl.fetch=full"  # (a frame fetch resumes too: tests/agent)
        seen = guests.finish(guests.start(whole, relay.port, alpha(test_root)))
        log = nginx.requests()
    assert seen.files["/etc/hostname"] == "alpha"
    assert relay.cut == 1
    dropped = lines_with(seen, "attempt 1 failed: truncated: connection closed at ")
    assert len(dropped) == 1, seen.agent_lines()
    fetches = [ACCESS.fullmatch(line) for line in log if line.startswith("GET /fleet.ovl ")]
    assert [(f["range"], f["if_range"], f["status"]) for f in fetches if f][:1] == [
        ("-", "-", "200")
    ]
    resumed = fetches[1]
    assert len(fetches) == 2 and resumed is not None
    assert resumed["range"].startswith("bytes=") and resumed["range"].endswith("-")
    assert resumed["if_range"] != "-"  # nginx's strong ETag: resumed only if unchanged
    assert resumed["status"] == "206"
    assert int(resumed["sent"]) == size - int(resumed["range"][6:-1])
    assert seen.report is not None
    assert seen.report["bundle"]["sha256"] == hashlib.sha256(bundle.read_bytes()).hexdigest()


def test_an_unattended_machine_reboots_until_its_server_is_back_and_says_why(
    guests: Guests,
    pack_bundle: PackBundle,
    test_root: Path,
    tmp_path: Path,
    held_port: socket.socket,
) -> None:
    cache = make_disk(tmp_path / "cache.img", fs=DiskFs.EXT4, label="ovlcache", size_mb=64)
    cmdline = (
        f"{DEFAULTS} ovl.require=signed,bundle ovl.cache=part:LABEL=ovlcache:/cache"
        " ovl.emergency=reboot:5"
    )
    bundle = pack_bundle("fleet.ovl", alpha_tree())
    port = int(held_port.getsockname()[1])
    vm = guests.start(cmdline, port, alpha(test_root, cache), reboot=True, lifetime=LONG_BOOT)
    vm.wait_for(r"ovl-init: ovl.emergency=reboot: rebooting in 5 s", timeout=LONG_BOOT)
    held_port.close()
    with StaticServer(bundle.parent, port=port):
        seen = guests.finish(vm, timeout=LONG_BOOT)
    reason = NO_BUNDLE
    assert f"ovl-init: emergency: {reason}" in seen.console
    assert "ovl-init: rebooting" in seen.console
    assert seen.files["/etc/hostname"] == "alpha"  # the later try booted
    assert f"ovl: boot: 1 failed boot(s) before this one; the last: {reason}" in seen.agent_lines()
    assert seen.report is not None
    previous = seen.report["previous_failures"]
    assert previous["count"] == 1 and previous["reasons"][0]["reason"] == reason
