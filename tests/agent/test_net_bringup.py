"""The agent's network bring-up against real busybox udhcpc and udhcpd, across veth pairs between
network namespaces: cables pulled (a peer down) and plugged in late, NICs no server answers,
two servers racing, BOOTIF, a lease renewed mid-boot, static addresses."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.agent.netlab import NetLab, mac_of

pytestmark = [pytest.mark.subprocess, pytest.mark.root]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[NetLab]:
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    net = NetLab(tmp_path)
    try:
        yield net
    finally:
        net.close()


def _lease_line(result: dict[str, object], nic: str) -> str:
    lines = [line for line in result["lines"] if f"{nic}: lease " in line]
    assert len(lines) == 1, result["lines"]
    return lines[0]


def test_first_nic_unplugged_the_second_gets_the_lease(lab: NetLab) -> None:
    lab.nic(0, carrier=False)
    lab.nic(1)
    result = lab.probe(ip=["dhcp"], window=20)
    assert result["error"] is None
    line = _lease_line(result, "eth1")
    assert re.fullmatch(
        r"ovl: net: eth1: lease 10\.99\.1\.5\d/24, router 10\.99\.1\.1, dns 10\.99\.1\.53"
        r" after \d+\.\d s",
        line,
    ), line
    assert result["lines"][0] == "ovl: net: DHCP on every NIC, up to 20 s"
    assert not any("eth0: carrier" in line for line in result["lines"])  # never started there
    assert result["running"] == ["eth1"]  # the winner keeps renewing
    assert "default via 10.99.1.1 dev eth1" in result["routes"]
    assert result["resolv_conf"] == "nameserver 10.99.1.53\n"
    assert result["report"]["dhcp"]["interface"] == "eth1"


def test_a_carrier_that_comes_late_starts_dhcp_then(lab: NetLab) -> None:
    lab.nic(0, carrier=False)
    plug = threading.Timer(3.0, lab.set_carrier, args=(0, True))
    plug.start()
    try:
        result = lab.probe(ip=["dhcp"], window=20)
    finally:
        plug.join()
    assert result["error"] is None
    started = next(line for line in result["lines"] if "eth0: carrier after" in line)
    seconds = float(started.split("carrier after ")[1].split(" s")[0])
    assert 2.0 <= seconds < 6  # the timer started a moment before the probe
    _lease_line(result, "eth0")


def test_no_lease_within_the_window_names_what_each_nic_lacks(lab: NetLab) -> None:
    lab.nic(0, carrier=False)
    lab.nic(1, dhcp=False)  # connected, but nobody answers
    result = lab.probe(ip=["dhcp"], window=6)
    assert result["error"] == (
        f"network not up after {round(result['waited'])} s: eth0 no carrier, eth1 no DHCP offer"
    )
    assert 6 <= result["waited"] < 8
    waiting = [line for line in result["lines"] if line.startswith("ovl: net: waiting: ")]
    assert waiting and waiting[0].startswith(
        "ovl: net: waiting: eth0 no carrier, eth1 no DHCP offer ("
    )
    assert result["running"] == ["eth1"]  # udhcpc keeps trying in the background


def test_two_servers_race_and_one_lease_wins(lab: NetLab) -> None:
    lab.nic(0)
    lab.nic(1)
    result = lab.probe(ip=["dhcp"], window=20)
    winner = result["report"]["dhcp"]["interface"]
    assert result["running"] == [winner]  # the other client was stopped
    routes = [line for line in result["routes"].splitlines() if line.startswith("default")]
    assert routes == [f"default via 10.99.{winner[-1]}.1 dev {winner} "]
    leased = [line for line in result["addresses"].splitlines() if "10.99." in line]
    assert len(leased) == 1 and f" {winner} " in leased[0]  # the loser configured nothing


def test_bootif_nic_runs_dhcp_first(lab: NetLab) -> None:
    lab.nic(0)
    lab.nic(1)
    result = lab.probe(ip=["dhcp"], bootif="01-" + mac_of(1).replace(":", "-"), window=20)
    assert result["report"]["dhcp"]["interface"] == "eth1"
    assert not any("eth0: carrier" in line for line in result["lines"])  # had no head start


def test_a_named_nic_is_the_only_one_tried(lab: NetLab) -> None:
    lab.nic(0)
    lab.nic(1)
    result = lab.probe(ip=[f"{mac_of(1)}:dhcp"], window=20)
    assert result["report"]["dhcp"]["interface"] == "eth1"
    assert result["events"].keys() == {"eth1"}


def test_the_lease_is_renewed_while_the_boot_works_and_the_address_is_kept(lab: NetLab) -> None:
    """warewulf#1937: udhcpc -q never renewed, and a long download outlived the lease."""
    # 30 s is udhcpc's shortest lease (it treats shorter ones as 30): it renews at half of it.
    lab.nic(0, lease=30)
    result = lab.probe(ip=["dhcp"], window=20, hold=17, stop=True)
    assert result["error"] is None
    assert result["report"]["dhcp"]["lease_seconds"] == 30
    assert result["events"]["eth0"] == "renew"
    assert result["running"] == ["eth0"]
    address = result["report"]["dhcp"]["address"]
    assert f"inet {address}" in result["addresses"]
    # Before the hand-over the client stops; the address stays for the booted system.
    assert result["running_after_stop"] == []
    assert f"inet {address}" in result["addresses_after_stop"]
    assert result["lines"][-1] == (
        "ovl: net: DHCP stopped on eth0; the address stays for the booted system"
    )


def test_a_static_address_with_gateway_dns_and_host_name(lab: NetLab) -> None:
    lab.nic(0)
    result = lab.probe(
        ip=["10.99.0.7::10.99.0.1:255.255.255.0:node7:eth0:none:10.99.0.53"],
        nameservers=["10.99.0.54"],
        window=10,
    )
    assert result["error"] is None
    assert "ovl: net: eth0: static 10.99.0.7/24 via 10.99.0.1" in result["lines"]
    assert "inet 10.99.0.7/24 brd 10.99.0.255" in result["addresses"]
    assert "default via 10.99.0.1 dev eth0" in result["routes"]
    assert result["resolv_conf"] == "nameserver 10.99.0.54\nnameserver 10.99.0.53\n"
    assert result["hostname"] == "node7"
    assert result["running"] == []


def test_a_static_nic_without_carrier_is_not_up(lab: NetLab) -> None:
    lab.nic(0, carrier=False)
    result = lab.probe(ip=["10.99.0.7::10.99.0.1:24::eth0:none"], window=2)
    assert result["error"].endswith(": eth0 no carrier")


def test_a_nic_that_is_not_there_is_named(lab: NetLab) -> None:
    lab.nic(0)
    result = lab.probe(ip=["eth7:dhcp"], window=2)
    assert result["error"].endswith(": no NIC eth7")
