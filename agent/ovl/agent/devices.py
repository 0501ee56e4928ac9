"""Block devices named the way the kernel command line names them: LABEL=x, UUID=y, /dev/x.

Works without udevd: `/dev/disk/by-*` links are used when they exist, otherwise `findfs` is
asked (busybox or util-linux). `blkid` (either flavour; both print `DEV: KEY="value" ...`
lines) lists volume UUIDs for the facts.
"""

from __future__ import annotations

import enum
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.core.run import run

_BLKID_PAIR = re.compile(r'([A-Z_]+)="((?:[^"\\]|\\.)*)"')
_POLL_SECONDS = 0.25


# BLKID_FILE=/dev/null switches off util-linux's blkid cache, which goes stale when loop devices
# are reused; busybox has no cache and ignores it.
def _fresh_probe_env() -> dict[str, str]:
    return {**os.environ, "BLKID_FILE": "/dev/null"}


_BTRFS_MAGIC_OFFSET = 0x10040  # superblock at 64 KiB, magic 0x40 bytes into it


class DeviceKind(enum.Enum):
    LABEL = "LABEL"
    UUID = "UUID"
    PATH = "path"


@dataclass(frozen=True)
class DeviceRef:
    """A block device as the user named it."""

    kind: DeviceKind
    value: str

    @classmethod
    def parse(cls, text: str) -> DeviceRef:
        for kind in (DeviceKind.LABEL, DeviceKind.UUID):
            prefix = kind.value + "="
            if text.startswith(prefix) and len(text) > len(prefix):
                return cls(kind, text[len(prefix) :])
        if text.startswith("/dev/") and len(text) > len("/dev/"):
            return cls(DeviceKind.PATH, text)
        raise BadInput(f"{text!r}: not a device (expected LABEL=x, UUID=y or /dev/x)")

    def __str__(self) -> str:
        return self.value if self.kind is DeviceKind.PATH else f"{self.kind.value}={self.value}"


@dataclass(frozen=True)
class PartPath:
    """A path inside a filesystem on a block device: `part:<device>:/path`."""

    device: DeviceRef
    path: str

    @classmethod
    def parse(cls, text: str) -> PartPath:
        if not text.startswith("part:"):
            raise BadInput(f"{text!r}: expected part:<LABEL=x|UUID=y|/dev/x>:/path")
        rest = text[len("part:") :]
        # The path starts with '/'; device names may hold ':' (by-path) but never ':/'.
        device, sep, path = rest.partition(":/")
        if not sep:
            raise BadInput(f"{text!r}: expected part:<LABEL=x|UUID=y|/dev/x>:/path")
        return cls(DeviceRef.parse(device), "/" + path)

    def relative(self) -> str:
        """The path without its leading slash, for joining below a mount point."""
        return self.path.lstrip("/")

    def __str__(self) -> str:
        return f"part:{self.device}:{self.path}"


@dataclass(frozen=True)
class BlockDevice:
    """One line of `blkid` output."""

    path: str
    uuid: str | None
    label: str | None
    fstype: str | None


def parse_blkid(text: str) -> list[BlockDevice]:
    """Parse `blkid` output (util-linux or busybox format)."""
    devices = []
    for line in text.splitlines():
        dev, sep, rest = line.partition(": ")
        if not sep:
            continue
        tags = {key: value for key, value in _BLKID_PAIR.findall(rest)}
        devices.append(
            BlockDevice(dev, tags.get("UUID") or None, tags.get("LABEL"), tags.get("TYPE"))
        )
    return devices


def probe_block_devices(*devices: str) -> list[BlockDevice]:
    """What blkid identifies on `devices` (all devices if none given), probed afresh."""
    proc = run(["blkid", *devices], check=False, env=_fresh_probe_env())
    # blkid exits 2 when it found nothing, which is not an error here.
    if proc.returncode not in (0, 2):
        raise OvlError(f"blkid: exit status {proc.returncode}")
    return parse_blkid(proc.stdout.decode(errors="replace"))


def _lookup(ref: DeviceRef, dev_root: Path) -> str | None:
    if ref.kind is DeviceKind.PATH:
        return ref.value if Path(ref.value).exists() else None
    link = dev_root / "disk" / f"by-{ref.kind.value.lower()}" / ref.value
    if link.exists():
        return str(link.resolve())
    # findfs is in busybox and util-linux alike; blkid is not always in the initramfs.
    proc = run(["findfs", str(ref)], check=False, env=_fresh_probe_env())
    found = proc.stdout.decode(errors="replace").strip()
    return found if proc.returncode == 0 and found.startswith("/dev/") else None


def find_device(ref: DeviceRef, *, timeout: float, dev_root: Path = Path("/dev")) -> str:
    """The device node for `ref`, waiting up to `timeout` seconds for it to appear."""
    deadline = time.monotonic() + timeout
    while True:
        found = _lookup(ref, dev_root)
        if found is not None:
            return found
        if time.monotonic() >= deadline:
            raise OvlError(f"device {ref} did not appear within {timeout:g} s")
        time.sleep(_POLL_SECONDS)


def is_btrfs(device: str) -> bool:
    """Whether `device` holds btrfs, by its superblock magic."""
    try:
        with open(device, "rb") as dev:
            dev.seek(_BTRFS_MAGIC_OFFSET)
            return dev.read(8) == b"_BHRfS_M"
    except OSError:
        return False
