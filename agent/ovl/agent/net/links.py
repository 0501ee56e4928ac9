"""Network interfaces as sysfs shows them: which exist, their MAC, whether a cable is in
(carrier), and bringing one up. Also the wait used when someone else configures the network."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovl.agent.deadline import Deadline
from ovl.core.errors import OvlError
from ovl.core.run import run

ARPHRD_ETHER = 1  # /sys/class/net/X/type of an Ethernet NIC
POLL_SECONDS = 0.1


@dataclass(frozen=True)
class Link:
    name: str
    mac: str | None
    ethernet: bool


def list_links(sysfs: Path) -> list[Link]:
    """Every interface but lo, in the kernel's order (ifindex)."""
    found: list[tuple[int, Link]] = []
    for path in (sysfs / "class" / "net").glob("*"):
        if path.name == "lo":
            continue
        index = _read(path / "ifindex")
        kind = _read(path / "type")
        mac = _read(path / "address")
        found.append(
            (
                int(index) if index and index.isdigit() else 1 << 30,
                Link(path.name, mac.lower() if mac else None, kind == str(ARPHRD_ETHER)),
            )
        )
    return [link for _, link in sorted(found, key=lambda pair: (pair[0], pair[1].name))]


def has_carrier(sysfs: Path, name: str) -> bool:
    """Whether the link is up and a cable (or the virtual peer) is there. Reading `carrier`
    fails with EINVAL while the interface is administratively down: not yet."""
    return _read(sysfs / "class" / "net" / name / "carrier") == "1"


def set_up(name: str, mtu: int | None = None) -> None:
    """`ip link set NAME up` (with its MTU); the carrier can only be seen once it is up."""
    run(["ip", "link", "set", name, *(["mtu", str(mtu)] if mtu else []), "up"])


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


class AnyLinkUp:
    """The network as initramfs-tools or dracut bring it up: ready once an interface other
    than lo is up (operstate up, or unknown for drivers that do not report it)."""

    def __init__(self, sysfs: Path) -> None:
        self.sysfs = sysfs

    def up(self) -> bool:
        return any(
            _read(self.sysfs / "class" / "net" / link.name / "operstate") in ("up", "unknown")
            for link in list_links(self.sysfs)
        )

    def wait(self, deadline: Deadline) -> None:
        while not self.up():
            if deadline.passed():
                raise OvlError("no network interface came up")
            time.sleep(POLL_SECONDS)

    def describe(self) -> dict[str, Any] | None:
        return None

    def stop(self) -> None:
        """Nothing of the agent's runs: the initramfs keeps its own network."""
