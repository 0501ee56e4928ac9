"""ip=, BOOTIF= and nameserver= (dracut's forms, IPv4): what parses into what, what is refused
with which line, and that any text either parses or is refused in one line."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.agent.net.ipconfig import (
    Dhcp,
    NetConfig,
    NicRef,
    Static,
    parse_bootif,
    parse_ip,
    parse_network,
)
from ovl.core.errors import BadInput

IF = ipaddress.IPv4Interface
ADDR = ipaddress.IPv4Address


@pytest.mark.parametrize(
    ("value", "entry"),
    [
        ("dhcp", Dhcp()),
        ("on", Dhcp()),
        ("any", Dhcp()),
        ("single-dhcp", Dhcp()),
        ("off", None),
        ("none", None),
        ("eth1:dhcp", Dhcp(NicRef(name="eth1"))),
        ("enp0s3:on:9000", Dhcp(NicRef(name="enp0s3"), mtu=9000)),
        ("52:54:00:0A:00:02:dhcp", Dhcp(NicRef(mac="52:54:00:0a:00:02"))),
        ("52-54-00-0a-00-02:dhcp", Dhcp(NicRef(mac="52:54:00:0a:00:02"))),
        (":::::eth0:dhcp", Dhcp(NicRef(name="eth0"))),
        ("::::::dhcp", Dhcp()),
        (
            "10.0.0.5::10.0.0.1:255.255.255.0:node5:eth0:none",
            Static(IF("10.0.0.5/24"), NicRef(name="eth0"), ADDR("10.0.0.1"), "node5"),
        ),
        ("10.0.0.5:::16::eth0:off", Static(IF("10.0.0.5/16"), NicRef(name="eth0"))),
        (
            "10.0.0.5::10.0.0.1:24::52:54:00:0a:00:09:none:1400",
            Static(IF("10.0.0.5/24"), NicRef(mac="52:54:00:0a:00:09"), ADDR("10.0.0.1"), mtu=1400),
        ),
        (
            "10.0.0.5::10.0.0.1:24:::none:10.0.0.53:10.0.0.54",
            Static(
                IF("10.0.0.5/24"),
                None,
                ADDR("10.0.0.1"),
                dns=(ADDR("10.0.0.53"), ADDR("10.0.0.54")),
            ),
        ),
        ("10.0.0.5:::255.255.255.252::eth0:none", Static(IF("10.0.0.5/30"), NicRef(name="eth0"))),
    ],
)
def test_each_form_parses(value: str, entry: Dhcp | Static | None) -> None:
    assert parse_ip(value) == entry


USAGE = "expected dhcp, <iface>:dhcp or <client>::<gateway>:<netmask>:<hostname>:<iface>:none"
V4_ONLY = "is not supported (IPv4 DHCP or static addresses only)"


@pytest.mark.parametrize(
    ("words", "reason"),
    [
        (["dhcp6"], f"dhcp6 {V4_ONLY}"),
        (["eth0:auto6"], f"auto6 {V4_ONLY}"),
        (["[fd00::5]::[fd00::1]:64::eth0:none"], "IPv6 addresses are not supported"),
        (["static"], USAGE),
        (["eth0:none"], "a static address goes in <client>::<gateway>:<netmask>::<iface>:none"),
        (["10.0.0.5::10.0.0.1:::eth0:none"], "a static address needs <netmask>"),
        (["10.0.0.5::10.0.0.1:24::eth0:dhcp"], "a client address with dhcp: drop it, or use none"),
        (["::10.0.0.1:24::eth0:none"], "a static address needs <client>"),
        (["10.0.0.5::10.0.0.1:255.0.255.0::eth0:none"], "netmask 255.0.255.0 is not contiguous"),
        (["10.0.0.5::10.0.0.1:33::eth0:none"], "netmask /33: expected 0 to 32"),
        (
            ["10.0.0.300::10.0.0.1:24::eth0:none"],
            "client address '10.0.0.300' is not an IPv4 address",
        ),
        (["10.0.0.5:10.0.0.6:10.0.0.1:24::eth0:none"], "a peer address is not supported"),
        (
            ["10.0.0.5::10.0.0.1:24:bad_name:eth0:none"],
            "hostname 'bad_name' is not a valid host name",
        ),
        (["eth0:dhcp:9000:52:54:00:00:00:01"], "setting a NIC's MAC address is not supported"),
        (["eth0:dhcp:20"], "MTU '20': expected 68 to 65535"),
        (["a/b:dhcp"], "'a/b' is neither an interface name nor a MAC address"),
    ],
)
def test_malformed_ip_is_one_line_naming_it(words: list[str], reason: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_network(words)
    assert caught.value.line == f"ip={words[0]}: {reason}"


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (["dhcp", "eth1:dhcp"], "ip=: with several ip= each must name its interface"),
        (["eth1:dhcp", "eth1:dhcp"], "ip=: interface eth1 is configured twice"),
        (
            ["10.0.0.5::10.0.0.1:24:::none"],
            "ip=10.0.0.5: a static address needs an interface (or BOOTIF=)",
        ),
    ],
)
def test_entries_that_do_not_go_together_are_refused(words: list[str], message: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_network(words)
    assert caught.value.line == message


def test_static_without_an_interface_is_the_bootif_nic() -> None:
    config = parse_network(["10.0.0.5::10.0.0.1:24:::none"], "01-52-54-00-0a-00-09")
    assert config == NetConfig(
        (Static(IF("10.0.0.5/24"), None, ADDR("10.0.0.1")),), bootif="52:54:00:0a:00:09"
    )


def test_several_entries_each_naming_its_nic_and_dns_servers_keep_their_order() -> None:
    config = parse_network(
        ["eth0:dhcp", "10.9.0.2::10.9.0.1:24::eth1:none"], None, ["10.9.0.53", "fd00::53"]
    )
    assert config is not None
    assert config.dhcp == (Dhcp(NicRef(name="eth0")),)
    assert config.static == (Static(IF("10.9.0.2/24"), NicRef(name="eth1"), ADDR("10.9.0.1")),)
    assert config.nameservers == ("10.9.0.53", "fd00::53")


def test_no_ip_or_ip_off_asks_for_no_network() -> None:
    assert parse_network([]) is None
    assert parse_network(["off"], "01-52-54-00-0a-00-09", ["10.0.0.53"]) is None


@pytest.mark.parametrize(
    ("value", "mac"),
    [
        ("01-52-54-00-0A-00-02", "52:54:00:0a:00:02"),
        ("52-54-00-0a-00-02", "52:54:00:0a:00:02"),
        ("52:54:00:0a:00:02", "52:54:00:0a:00:02"),
    ],
)
def test_bootif_forms(value: str, mac: str) -> None:
    assert parse_bootif(value) == mac


octets = st.lists(st.integers(0, 255), min_size=6, max_size=6)


@given(octets, st.sampled_from(["-", ":"]), st.booleans(), st.booleans())
def test_bootif_of_any_mac_round_trips(
    mac: list[int], separator: str, hardware_type: bool, upper: bool
) -> None:
    parts = [f"{o:02X}" if upper else f"{o:02x}" for o in mac]
    text = separator.join((["01"] if hardware_type else []) + parts)
    assert parse_bootif(text) == ":".join(f"{o:02x}" for o in mac)


names = st.from_regex(r"[a-z][a-z0-9]{0,10}", fullmatch=True)
addresses = st.builds(ipaddress.IPv4Address, st.integers(1, 2**32 - 2))


@given(
    address=addresses,
    prefix=st.integers(0, 32),
    gateway=st.none() | addresses,
    nic=names,
    dotted=st.booleans(),
    dns=st.lists(addresses, max_size=2),
)
def test_any_static_entry_round_trips(
    address: ipaddress.IPv4Address,
    prefix: int,
    gateway: ipaddress.IPv4Address | None,
    nic: str,
    dotted: bool,
    dns: list[ipaddress.IPv4Address],
) -> None:
    mask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefix}").netmask) if dotted else str(prefix)
    extra = "".join(f":{server}" for server in dns)
    text = f"{address}::{gateway or ''}:{mask}::{nic}:none{extra}"
    assert parse_ip(text) == Static(
        IF(f"{address}/{prefix}"), NicRef(name=nic), gateway, None, None, tuple(dns)
    )


@given(mac=octets, dashed=st.booleans(), mtu=st.none() | st.integers(68, 65535))
def test_dhcp_on_any_mac_round_trips(mac: list[int], dashed: bool, mtu: int | None) -> None:
    written = ("-" if dashed else ":").join(f"{o:02x}" for o in mac)
    text = f"{written}:dhcp" + (f":{mtu}" if mtu else "")
    assert parse_ip(text) == Dhcp(NicRef(mac=":".join(f"{o:02x}" for o in mac)), mtu)


@given(st.lists(st.text(alphabet="0123456789abcdefx.:-[]", max_size=40), max_size=3))
def test_any_ip_text_parses_or_is_refused_in_one_line(values: list[str]) -> None:
    try:
        parse_network(values)
    except BadInput as exc:
        assert "\n" not in exc.line and exc.line.startswith("ip=")
