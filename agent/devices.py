"""Block devices named the way the kernel command line names them: LABEL=x, UUID=y, /dev/x.

Works without udevd: `/dev/disk/by-*` links are used when they exist, otherwise `blkid` is asked
(util-linux or busybox; both print `DEV: KEY="value" ...` lines).
"""

from __future__ import annotations

import enum
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from agent.errors import BadInput, OvlError
from agent.run import run

_BLKID_PAIR = re.compile(r'([A-Z_]+)="((?:[^"\\]|\\.)*)"')
_POLL_SECONDS = 0.25


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
    # BLKID_FILE=/dev/null switches off util-linux's cache (stale after loop reuse); busybox
    # has no cache and ignores it.
    env = {**os.environ, "BLKID_FILE": "/dev/null"}
    proc = run(["blkid", *devices], check=False, env=env)
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
    for device in probe_block_devices():
        value = device.label if ref.kind is DeviceKind.LABEL else device.uuid
        if value == ref.value:
            return device.path
    return None


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


def filesystem_type(device: str) -> str | None:
    """The filesystem type blkid reports for `device`, if any."""
    found = probe_block_devices(device)
    return found[0].fstype if found else None
