"""A dnsmasq configuration that adds iPXE network boot to an existing network (proxy DHCP:
the network's own DHCP server keeps handing out addresses) and chains to the ovl server."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import BadInput

BIOS_LOADER = "undionly.kpxe"  # iPXE over the firmware's PXE stack (Debian: ipxe)
UEFI_LOADER = "snponly.efi"  # iPXE over the firmware's network driver (Debian: ipxe)
IPXE_FILES = Path("/usr/lib/ipxe")
_INTERFACE = re.compile(r"^[A-Za-z0-9_.:-]{1,15}$")
_SERVER = re.compile(r"^(https?://)?[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?$")


@dataclass(frozen=True)
class ProxySettings:
    server: str  # the ovl server as machines reach it: host[:port][/path] or http://...
    network: str  # the network served, e.g. 192.168.1.0
    interface: str | None = None
    tftp_root: Path = Path("/srv/ovl/tftp")


def script_url(server: str) -> str:
    """The URL iPXE is told to fetch: the server's /boot.ipxe with iPXE's own facts in it."""
    if not _SERVER.match(server):
        raise BadInput(f"--server {server!r}: expected host[:port][/path] or http://...")
    if server.startswith("https://"):
        raise BadInput("--server: https is beyond QEMU's and many firmwares' iPXE; use http://")
    base = server if server.startswith("http://") else f"http://{server}"
    return f"{base.rstrip('/')}/boot.ipxe?mac=${{net0/mac}}&uuid=${{uuid}}"


def render(settings: ProxySettings) -> str:
    """The configuration text (checked: bad values are BadInput, never a broken file)."""
    try:
        network = ipaddress.IPv4Address(settings.network)
    except ValueError:
        raise BadInput(f"--network {settings.network!r}: expected an IPv4 address") from None
    if settings.interface is not None and not _INTERFACE.match(settings.interface):
        raise BadInput(f"--interface {settings.interface!r}: not an interface name")
    url = script_url(settings.server)
    root = str(settings.tftp_root)
    if not settings.tftp_root.is_absolute() or any(c in root for c in ",\n #"):
        raise BadInput(f"--tftp-root {root!r}: expected an absolute path without , # or spaces")
    lines = [
        "# ovl netboot: proxy DHCP and TFTP for iPXE (ovl netboot dnsmasq-conf; docs/NETBOOT.md).",
        "# The network's DHCP server still hands out the addresses; this only adds boot offers.",
        "port=0",
        *([f"interface={settings.interface}", "bind-interfaces"] if settings.interface else []),
        f"dhcp-range={network},proxy",
        "dhcp-no-override",
        "enable-tftp",
        f"tftp-root={root}",
        "# Firmware PXE gets iPXE over TFTP; iPXE (DHCP option 175) is sent the ovl script's",
        "# URL as its boot server's file: iPXE asks for it at port 4011 (PXE boot server",
        "# discovery), and dnsmasq answers that only from a pxe-service entry.",
        "dhcp-match=set:ipxe,175",
        'pxe-prompt=tag:!ipxe,"ovl netboot",0',
        f'pxe-service=tag:!ipxe,X86PC,"ovl: iPXE",{BIOS_LOADER}',
        f'pxe-service=tag:!ipxe,X86-64_EFI,"ovl: iPXE",{UEFI_LOADER}',
        f'pxe-service=tag:ipxe,X86PC,"ovl",{url}',
        f'pxe-service=tag:ipxe,X86-64_EFI,"ovl",{url}',
    ]
    return "\n".join(lines) + "\n"


def missing_loaders(tftp_root: Path) -> list[str]:
    """The iPXE loaders not (yet) in the TFTP root."""
    return [name for name in (BIOS_LOADER, UEFI_LOADER) if not (tftp_root / name).is_file()]
