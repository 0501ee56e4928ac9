"""Facts of the running machine, read from sysfs, blkid and uname (docs/FACTS.md)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.core.facts import Facts, normalize_mac

_ZERO_MAC = "00:00:00:00:00:00"


def read_macs(sysfs_root: Path) -> tuple[str, ...]:
    """MACs of the network interfaces, without lo and all-zero or non-Ethernet addresses."""
    macs = set()
    for nic in (sysfs_root / "class" / "net").glob("*"):
        if nic.name == "lo":
            continue
        try:
            mac = normalize_mac((nic / "address").read_text().strip())
        except (OSError, BadInput):
            continue
        if mac != _ZERO_MAC:
            macs.add(mac)
    return tuple(sorted(macs))


def read_product_uuid(sysfs_root: Path) -> str | None:
    """The DMI product UUID, lower case, when the firmware provides one."""
    try:
        value = (sysfs_root / "class" / "dmi" / "id" / "product_uuid").read_text().strip()
    except OSError:
        return None
    return value.lower() or None


def probe_volume_uuids() -> tuple[str, ...]:
    """Filesystem UUIDs of every block device, as blkid sees them."""
    from ovl.agent.devices import probe_block_devices  # udev and blkid: only when probing

    return tuple(sorted({d.uuid for d in probe_block_devices() if d.uuid}))


def collect_facts(
    sysfs_root: Path = Path("/sys"),
    *,
    volume_uuids: Callable[[], tuple[str, ...]] = probe_volume_uuids,
) -> Facts:
    """The facts of the running machine (sysfs, blkid, uname)."""
    uname = os.uname()
    return Facts(
        macs=read_macs(sysfs_root),
        product_uuid=read_product_uuid(sysfs_root),
        volume_uuids=volume_uuids(),
        kernel=uname.sysname,
        kernel_release=uname.release,
        arch=uname.machine,
    )
