"""`ip=`, `BOOTIF=` and `nameserver=` (dracut's forms, IPv4), parsed once into a NetConfig.

    ip=dhcp | on | any | single-dhcp        DHCP on every NIC, first lease wins
    ip=<iface|MAC>:dhcp[:<mtu>]             DHCP on that NIC
    ip=<client>:[<peer>]:<gw>:<netmask>:[<hostname>]:<iface|MAC>:none[:<mtu> | :<dns1>[:<dns2>]]
    ip=off | none                           no network
    BOOTIF=01-aa-bb-cc-dd-ee-ff              PXE's NIC: tried first (and a static ip= without
                                            an interface means it)
    nameserver=<ip>                         DNS servers, before the lease's (repeatable)

With several `ip=`, each must name its interface (as dracut requires).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass

from ovl.core.errors import BadInput

DHCP_METHODS = ("dhcp", "on", "any", "single-dhcp")
STATIC_METHODS = ("none", "off")
_UNSUPPORTED = ("dhcp6", "auto6", "either6", "link6", "link-local", "ibft")
_IFNAME = re.compile(r"[A-Za-z0-9_.-]{1,15}")
_HEX_PAIR = re.compile(r"[0-9A-Fa-f]{2}")
_MAC = re.compile(r"[0-9A-Fa-f]{2}([-:][0-9A-Fa-f]{2}){5}")
_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*")
USAGE = "expected dhcp, <iface>:dhcp or <client>::<gateway>:<netmask>:<hostname>:<iface>:none"


@dataclass(frozen=True)
class NicRef:
    """A NIC as `ip=` names it: by interface name or by MAC (lower case, colons)."""

    name: str | None = None
    mac: str | None = None

    def __str__(self) -> str:
        return self.name or self.mac or ""


@dataclass(frozen=True)
class Dhcp:
    nic: NicRef | None = None  # None: every NIC
    mtu: int | None = None


@dataclass(frozen=True)
class Static:
    address: ipaddress.IPv4Interface
    nic: NicRef | None = None  # None: the NIC BOOTIF names
    gateway: ipaddress.IPv4Address | None = None
    hostname: str | None = None
    mtu: int | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()


Entry = Dhcp | Static


@dataclass(frozen=True)
class NetConfig:
    """What the initramfs brings up before anything needs the network."""

    entries: tuple[Entry, ...]
    bootif: str | None = None  # a MAC
    nameservers: tuple[str, ...] = ()

    @property
    def dhcp(self) -> tuple[Dhcp, ...]:
        return tuple(e for e in self.entries if isinstance(e, Dhcp))

    @property
    def static(self) -> tuple[Static, ...]:
        return tuple(e for e in self.entries if isinstance(e, Static))


def parse_network(
    ips: Sequence[str], bootif: str | None = None, nameservers: Sequence[str] = ()
) -> NetConfig | None:
    """The network the command line asks for; None when it asks for none (no ip=, ip=off).

    BadInput names the offending word (`ip=...: reason`)."""
    entries: list[Entry] = []
    for value in ips:
        try:
            entry = parse_ip(value)
        except BadInput as exc:
            raise BadInput(f"ip={value}: {exc}") from None
        if entry is not None:
            entries.append(entry)
    mac = None
    if bootif is not None:
        try:
            mac = parse_bootif(bootif)
        except BadInput as exc:
            raise BadInput(f"BOOTIF={bootif}: {exc}") from None
    servers = []
    for value in nameservers:
        try:
            servers.append(str(ipaddress.ip_address(value)))
        except ValueError:
            raise BadInput(f"nameserver={value}: expected an IP address") from None
    if not entries:
        return None
    _check_together(entries, mac)
    return NetConfig(tuple(entries), mac, tuple(servers))


def _check_together(entries: list[Entry], bootif: str | None) -> None:
    if len(entries) > 1 and any(entry.nic is None for entry in entries):
        raise BadInput("ip=: with several ip= each must name its interface")
    named = [str(entry.nic) for entry in entries if entry.nic is not None]
    twice = {nic for nic in named if named.count(nic) > 1}
    if twice:
        raise BadInput(f"ip=: interface {sorted(twice)[0]} is configured twice")
    for entry in entries:
        if isinstance(entry, Static) and entry.nic is None and bootif is None:
            raise BadInput(
                f"ip={entry.address.ip}: a static address needs an interface (or BOOTIF=)"
            )


def parse_ip(value: str) -> Entry | None:
    """One `ip=` value; None for `off`/`none`."""
    if value.startswith("["):
        raise BadInput("IPv6 addresses are not supported")
    if ":" not in value:
        if value in DHCP_METHODS:
            return Dhcp()
        if value in STATIC_METHODS:
            return None
        _refuse_unsupported(value)
        raise BadInput(USAGE)
    fields = _fields(value)
    if len(fields) >= 7:
        return _long_form(fields)
    if 2 <= len(fields) <= 4:
        return _interface_form(fields)
    raise BadInput(USAGE)


def _interface_form(fields: list[str]) -> Dhcp:
    nic, method, *rest = fields
    if method in STATIC_METHODS:
        raise BadInput("a static address goes in <client>::<gateway>:<netmask>::<iface>:none")
    _refuse_unsupported(method)
    if method not in DHCP_METHODS:
        raise BadInput(USAGE)
    if len(rest) == 2 and rest[1]:
        raise BadInput("setting a NIC's MAC address is not supported")
    return Dhcp(_nic(nic), _mtu(rest[0]) if rest and rest[0] else None)


def _long_form(fields: list[str]) -> Entry:
    if len(fields) > 9:
        raise BadInput(USAGE)
    client, peer, gateway, mask, hostname, nic, method, *extra = fields
    _refuse_unsupported(method)
    if method in DHCP_METHODS:
        if client:
            raise BadInput(f"a client address with {method}: drop it, or use none")
        if peer or gateway or mask or hostname or any(extra):
            raise BadInput(f"addresses with {method} come from the lease")
        return Dhcp(_nic(nic) if nic else None)
    if method not in STATIC_METHODS:
        raise BadInput(USAGE)
    if not client:
        raise BadInput("a static address needs <client>")
    if not mask:
        raise BadInput("a static address needs <netmask>")
    if peer:
        raise BadInput("a peer address is not supported")
    mtu: int | None = None
    dns: tuple[ipaddress.IPv4Address, ...] = ()
    if extra and extra[0].isdigit():
        if len(extra) == 2 and extra[1]:
            raise BadInput("setting a NIC's MAC address is not supported")
        mtu = _mtu(extra[0])
    else:
        dns = tuple(_ipv4(server, "DNS server") for server in extra if server)
    if hostname and not _HOSTNAME.fullmatch(hostname):
        raise BadInput(f"hostname {hostname!r} is not a valid host name")
    address = ipaddress.IPv4Interface(f"{_ipv4(client, 'client address')}/{_prefix(mask)}")
    return Static(
        address=address,
        nic=_nic(nic) if nic else None,
        gateway=_ipv4(gateway, "gateway") if gateway else None,
        hostname=hostname or None,
        mtu=mtu,
        dns=dns,
    )


def _fields(value: str) -> list[str]:
    """Split on ':', joining six hex pairs in a row back into one MAC address."""
    raw, fields, index = value.split(":"), [], 0
    while index < len(raw):
        run = raw[index : index + 6]
        if len(run) == 6 and all(_HEX_PAIR.fullmatch(part) for part in run):
            fields.append(":".join(run))
            index += 6
        else:
            fields.append(raw[index])
            index += 1
    return fields


def _refuse_unsupported(method: str) -> None:
    if method in _UNSUPPORTED:
        raise BadInput(f"{method} is not supported (IPv4 DHCP or static addresses only)")


def _nic(text: str) -> NicRef:
    if _MAC.fullmatch(text):
        return NicRef(mac=text.replace("-", ":").lower())
    if not _IFNAME.fullmatch(text) or text in (".", ".."):
        raise BadInput(f"{text!r} is neither an interface name nor a MAC address")
    return NicRef(name=text)


def _mtu(text: str) -> int:
    if not text.isdigit() or not 68 <= int(text) <= 65535:
        raise BadInput(f"MTU {text!r}: expected 68 to 65535")
    return int(text)


def _ipv4(text: str, what: str) -> ipaddress.IPv4Address:
    try:
        return ipaddress.IPv4Address(text)
    except ValueError:
        raise BadInput(f"{what} {text!r} is not an IPv4 address") from None


def _prefix(mask: str) -> int:
    """A netmask, dotted (255.255.255.0) or as a prefix length (24)."""
    if mask.isdigit():
        if int(mask) > 32:
            raise BadInput(f"netmask /{mask}: expected 0 to 32")
        return int(mask)
    bits = int(_ipv4(mask, "netmask"))
    host = ~bits & 0xFFFFFFFF
    if host & (host + 1):
        raise BadInput(f"netmask {mask} is not contiguous")
    return 32 - host.bit_length()


def parse_bootif(value: str) -> str:
    """PXE's `BOOTIF=01-aa-bb-cc-dd-ee-ff` (hardware type first) as a MAC `aa:bb:cc:dd:ee:ff`."""
    octets = re.split(r"[-:]", value)
    if len(octets) == 7:
        octets = octets[1:]
    if len(octets) != 6 or not all(_HEX_PAIR.fullmatch(octet) for octet in octets):
        raise BadInput("expected 01-aa-bb-cc-dd-ee-ff")
    return ":".join(octets).lower()
