"""btrfs root: a fresh writable snapshot of a pristine subvolume for every boot.

Boot snapshots sit beside the pristine subvolume as `@boot-<seq>-<UTC time>`; the sequence
number orders them even when the clock is wrong. The one booted before is kept for forensics.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from ovl.agent.cmdline import BootConfig
from ovl.agent.context import BootContext
from ovl.agent.devices import PartPath, find_device
from ovl.agent.mounts import MountStack, mount_partition
from ovl.core.errors import OvlError
from ovl.core.run import run

if TYPE_CHECKING:
    from ovl.format.apply import ApplyResult

_BOOT_NAME = re.compile(r"@boot-(\d+)-")
KEEP = 2  # this boot's snapshot and the previous one


@dataclass(frozen=True)
class BtrfsRoot:
    device: str
    top: Path  # the filesystem's top level, mounted
    snapshot: Path  # the new boot subvolume below `top`

    @property
    def subvolume(self) -> str:
        return str(self.snapshot.relative_to(self.top))


def boot_snapshots(parent: Path) -> list[tuple[int, Path]]:
    """Existing boot snapshots in `parent`, oldest first."""
    found = []
    for entry in parent.iterdir():
        match = _BOOT_NAME.match(entry.name)
        if match:
            found.append((int(match.group(1)), entry))
    return sorted(found)


def snapshot_pristine(
    pristine: PartPath, run_dir: Path, mounts: MountStack, timeout: float
) -> BtrfsRoot:
    """Mount the filesystem's top level and snapshot the pristine subvolume, writable."""
    device = find_device(pristine.device, timeout=timeout)
    top = mount_partition(mounts, device, run_dir / "btrfs", writable=True)
    source = top / pristine.relative()
    if not source.is_dir():
        raise OvlError(f"ovl.btrfs={pristine}: no such subvolume")
    existing = boot_snapshots(source.parent)
    seq = existing[-1][0] + 1 if existing else 1
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    snapshot = source.parent / f"@boot-{seq:06d}-{stamp}"
    run(["btrfs", "subvolume", "snapshot", source, snapshot])
    return BtrfsRoot(device, top, snapshot)


def mount_snapshot(root: BtrfsRoot, sysroot: Path, mounts: MountStack) -> None:
    """Mount the boot snapshot on `sysroot`."""
    subvol = str(PurePosixPath("/") / root.subvolume)
    mounts.mount(root.device, sysroot, fstype="btrfs", options=["rw", f"subvol={subvol}"])


def prune_snapshots(root: BtrfsRoot) -> list[str]:
    """Delete boot snapshots older than the previous one; returns the names removed."""
    removed = []
    for _, path in boot_snapshots(root.snapshot.parent)[:-KEEP]:
        run(["btrfs", "subvolume", "delete", path])
        removed.append(path.name)
    return removed


class BtrfsBuilder:
    split = False

    def __init__(self, config: BootConfig, run_dir: Path, sysroot: Path, ctx: BootContext):
        assert config.btrfs is not None
        self.pristine, self.run_dir, self.sysroot, self.ctx = config.btrfs, run_dir, sysroot, ctx
        self.root: BtrfsRoot | None = None
        self.removed: list[str] = []

    def prepare(self) -> Path:
        if self.root is None:
            self.root = snapshot_pristine(
                self.pristine, self.run_dir, self.ctx.mounts, self.ctx.timeout
            )
        return self.root.snapshot

    def finish(self, applied: ApplyResult | None) -> None:
        self.prepare()
        assert self.root is not None
        mount_snapshot(self.root, self.sysroot, self.ctx.mounts)
        self.removed = prune_snapshots(self.root)
        self.ctx.mounts.unmount(self.root.top)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "btrfs",
            "pristine": str(self.pristine),
            "snapshot": self.root.subvolume if self.root else None,
            "removed": self.removed,
        }
