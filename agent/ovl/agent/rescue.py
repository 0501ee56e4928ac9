"""The rescue boot (`ovl.cik=rescue`, or a machine a CIK stick has no key for): nothing is
fetched or applied, every disk of the machine is set read-only in the kernel and listed, and the
/init shim offers its busybox shell (docs/CIK.md).

Read-only is the block layer's flag (BLKROSET, what `blockdev --setro` sets): no filesystem
can be mounted read-write and no write reaches the disk until someone runs `blockdev --setrw`.
"""

from __future__ import annotations

import fcntl
import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from ovl.core.errors import OvlError, error_line

BLKROSET = 0x125D  # <linux/fs.h> _IO(0x12, 93)
BLKROGET = 0x125E  # _IO(0x12, 94)
_NOT_DISKS = ("loop", "ram", "zram", "nbd")


@dataclass(frozen=True)
class Disk:
    name: str
    size: int  # bytes
    model: str
    removable: bool
    partitions: tuple[str, ...]
    read_only: bool = False

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "size": self.size,
            "model": self.model,
            "removable": self.removable,
            "partitions": list(self.partitions),
            "read_only": self.read_only,
        }


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def list_disks(sysfs: Path) -> list[Disk]:
    """The machine's disks (`/sys/block`, without loop, ram, zram and nbd devices)."""
    disks = []
    block = sysfs / "block"
    for entry in sorted(block.iterdir()) if block.is_dir() else []:
        if entry.name.startswith(_NOT_DISKS):
            continue
        sectors = _read(entry / "size")
        partitions = tuple(sorted(p.name for p in entry.iterdir() if (p / "partition").is_file()))
        disks.append(
            Disk(
                name=entry.name,
                size=int(sectors) * 512 if sectors.isdigit() else 0,
                model=" ".join(_read(entry / "device" / "model").split()),
                removable=_read(entry / "removable") == "1",
                partitions=partitions,
            )
        )
    return disks


def set_read_only(device: Path) -> bool:
    """Set the kernel's read-only flag on `device`; whether it reads back as set."""
    fd = os.open(device, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.ioctl(fd, BLKROSET, struct.pack("i", 1))
        flag = fcntl.ioctl(fd, BLKROGET, struct.pack("i", 0))
    finally:
        os.close(fd)
    return bool(struct.unpack("i", flag)[0])


def protect(disks: list[Disk], dev: Path) -> tuple[list[Disk], list[str]]:
    """Set every disk read-only (its partitions follow the whole disk); the disks as they are
    now and one line per disk that could not be protected."""
    protected, problems = [], []
    for disk in disks:
        try:
            read_only = set_read_only(dev / disk.name)
        except OSError as exc:
            problems.append(f"{disk.name}: not set read-only: {error_line(exc)}")
            read_only = False
        protected.append(replace(disk, read_only=read_only))
    return protected, problems


def describe(disk: Disk, volumes: dict[str, str]) -> str:
    """One console line: name, size, model, flags, and what blkid sees on it and its parts."""
    flags = [f for f, on in (("removable", disk.removable), ("read-only", disk.read_only)) if on]
    parts = [f"{name} {volumes[name]}" if name in volumes else name for name in disk.partitions]
    whole = volumes.get(disk.name)
    text = f"{disk.name} {disk.size / (1 << 20):.1f} MiB"
    text += f" {disk.model!r}" if disk.model else ""
    text += f" ({', '.join(flags)})" if flags else " (WRITABLE)"
    if whole:
        text += f": {whole}"
    elif parts:
        text += ": " + ", ".join(parts)
    return text


def probe_volumes(disks: list[Disk], dev: Path) -> dict[str, str]:
    """`TYPE LABEL=...` per device name, as blkid sees it (read-only probing); {} without blkid."""
    from ovl.agent.devices import probe_block_devices

    names = [n for d in disks for n in (d.name, *d.partitions)]
    try:
        found = probe_block_devices(*(str(dev / name) for name in names))
    except OvlError:
        return {}
    by_path = {os.path.realpath(b.path): b for b in found}
    volumes = {}
    for name in names:
        seen = by_path.get(os.path.realpath(dev / name))
        if seen is not None and seen.fstype:
            volumes[name] = seen.fstype + (f" LABEL={seen.label}" if seen.label else "")
    return volumes
