"""The /init shim's udhcpc hook, against busybox udhcpd across a veth pair between two network
namespaces: address, default route, resolv.conf and /run/ovl/net come from the lease."""

from __future__ import annotations

import ipaddress
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = [pytest.mark.subprocess, pytest.mark.root]

SCRIPT = Path(__file__).resolve().parents[2] / "initramfs" / "udhcpc.script"


@pytest.fixture
def namespaces(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A DHCP server namespace (udhcpd on 10.99.0.1) and an empty client namespace."""
    if os.geteuid() != 0:
        pytest.skip("needs root for network namespaces")
    server, client = f"ovl-dhcpd-{os.getpid()}", f"ovl-dhcpc-{os.getpid()}"
    conf = tmp_path / "udhcpd.conf"
    conf.write_text(
        "start 10.99.0.50\nend 10.99.0.60\ninterface srv0\n"
        f"lease_file {tmp_path}/leases\npidfile {tmp_path}/udhcpd.pid\n"
        "option subnet 255.255.255.0\noption router 10.99.0.1\n"
        "option dns 10.99.0.53 10.99.0.54\noption domain fleet.test\n"
    )
    (tmp_path / "leases").touch()
    daemon = None
    try:
        for ns in (server, client):
            subprocess.run(["ip", "netns", "add", ns], check=True)
        subprocess.run(
            ["ip", "link", "add", "srv0", "netns", server, "type", "veth",
             "peer", "name", "eth0", "netns", client],
            check=True,
        )  # fmt: skip
        for command in ("ip addr add 10.99.0.1/24 dev srv0", "ip link set srv0 up"):
            subprocess.run(["ip", "netns", "exec", server, *command.split()], check=True)
        daemon = subprocess.Popen(
            ["ip", "netns", "exec", server, "busybox", "udhcpd", "-f", str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        yield server, client
    finally:
        if daemon is not None:
            daemon.terminate()
            daemon.wait(timeout=10)
        for ns in (server, client):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def test_lease_sets_address_route_resolv_conf_and_run_ovl_net(
    namespaces: tuple[str, str], tmp_path: Path
) -> None:
    _, client = namespaces
    # Busybox applets first on PATH, as in the image; /run and resolv.conf private to the
    # client's mount namespace so the host's are never touched.
    applets = tmp_path / "bin"
    applets.mkdir()
    for applet in ("ip", "udhcpc", "sh", "cat"):
        (applets / applet).symlink_to("/bin/busybox")
    resolv = tmp_path / "resolv.conf"
    resolv.touch()
    script = (
        f"set -e; export PATH={applets}:$PATH; "
        f"mount --bind {resolv} /etc/resolv.conf; mount -t tmpfs tmpfs /run; "
        "mkdir /run/ovl; ip link set lo up; ip link set eth0 up; "
        f"udhcpc -i eth0 -s {SCRIPT} -f -q -n -t 5 -T 1 >/dev/null 2>&1; "
        "cat /run/ovl/net; echo ---; ip -4 addr show dev eth0; echo ---; ip route"
    )
    out = subprocess.run(
        ["ip", "netns", "exec", client, "unshare", "--mount", "sh", "-c", script],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    net, addr, route = out.split("---\n")
    fields = dict(line.split("=", 1) for line in net.splitlines())
    assert fields["INTERFACE"] == "eth0"
    # udhcpd hands out any free address of its pool (it hashes the client's MAC), so the
    # lease is anywhere in 10.99.0.50-60.
    lease = ipaddress.ip_interface(fields["IP"])
    assert lease.network == ipaddress.ip_network("10.99.0.0/24")
    assert ipaddress.ip_address("10.99.0.50") <= lease.ip <= ipaddress.ip_address("10.99.0.60")
    assert fields["ROUTER"] == "10.99.0.1"
    assert fields["DNS"] == "10.99.0.53 10.99.0.54"
    assert f"inet {fields['IP']}" in addr
    assert "default via 10.99.0.1 dev eth0" in route
    assert resolv.read_text() == "search fleet.test\nnameserver 10.99.0.53\nnameserver 10.99.0.54\n"
