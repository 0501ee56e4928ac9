"""A static `ip=<client>::<gw>:<netmask>:<hostname>:<iface>:none`: address, default route,
resolv.conf and host name, set once."""

from __future__ import annotations

from pathlib import Path

from ovl.agent.net.ipconfig import Static
from ovl.core.run import run


def apply_static(entry: Static, interface: str) -> None:
    """Put `entry`'s address (and gateway) on `interface`, replacing what it had."""
    run(["ip", "addr", "flush", "dev", interface])
    address = entry.address
    run(["ip", "addr", "add", str(address), "broadcast", str(address.network.broadcast_address),
         "dev", interface])  # fmt: skip
    if entry.gateway is not None:
        run(["ip", "route", "replace", "default", "via", str(entry.gateway), "dev", interface])


def set_hostname(name: str) -> None:
    """The kernel's host name (it outlives the initramfs, as dracut's does)."""
    import socket

    socket.sethostname(name)


def write_resolv_conf(path: Path, nameservers: tuple[str, ...]) -> None:
    """resolv.conf naming `nameservers` in order (nothing written when there are none)."""
    if nameservers:
        path.write_text("".join(f"nameserver {server}\n" for server in nameservers))
