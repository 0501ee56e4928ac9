"""zfs root: a fresh clone of a snapshot for every boot, through the zpool and zfs commands.

The pool is imported without mounting anything (`zpool import -N`), scanning /dev, unless it
is imported already. Clones are siblings of the snapshot's dataset named `<dataset>-boot-<seq>`,
with mountpoint=legacy so the agent mounts them; the previous boot's clone is kept.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ovl.agent.cmdline import BootConfig
from ovl.agent.context import BootContext
from ovl.agent.mounts import MountStack
from ovl.core.errors import OvlError
from ovl.core.run import run

if TYPE_CHECKING:
    from ovl.format.apply import ApplyResult

KEEP = 2  # this boot's clone and the previous one
_RETRY_S = 0.5  # between import attempts while the pool's disks may still be appearing


@dataclass(frozen=True)
class ZfsRoot:
    dataset: str  # the snapshot's dataset
    clone: str


def import_pool(pool: str, timeout: float) -> None:
    """Import `pool` (nothing mounted), retrying for `timeout` s while its disks appear."""
    if run(["zpool", "list", "-H", "-o", "name", pool], check=False).returncode == 0:
        return
    deadline = time.monotonic() + timeout
    while True:
        try:
            # The initramfs has neither /etc/zfs for a cache file nor udev for by-id links.
            run(["zpool", "import", "-N", "-o", "cachefile=none", "-d", "/dev", pool])
            return
        except OvlError as exc:
            if time.monotonic() >= deadline:
                raise OvlError(f"zfs pool {pool}: not imported: {exc.line}") from exc
        time.sleep(_RETRY_S)


def boot_clones(dataset: str) -> list[tuple[int, str]]:
    """Existing boot clones of `dataset`, oldest first."""
    parent = dataset.rsplit("/", 1)[0]
    listing = run(["zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-r", parent])
    pattern = re.compile(re.escape(dataset) + r"-boot-(\d+)$")
    found = []
    for name in listing.stdout.decode().split():
        match = pattern.match(name)
        if match:
            found.append((int(match.group(1)), name))
    return sorted(found)


def clone_snapshot(snapshot: str, timeout: float) -> ZfsRoot:
    """Import the pool of `pool/dataset@snap` and clone the snapshot into a new boot dataset."""
    dataset = snapshot.split("@", 1)[0]
    import_pool(dataset.split("/", 1)[0], timeout)
    existing = boot_clones(dataset)
    seq = existing[-1][0] + 1 if existing else 1
    clone = f"{dataset}-boot-{seq:06d}"
    run(["zfs", "clone", "-o", "mountpoint=legacy", snapshot, clone])
    return ZfsRoot(dataset, clone)


def mount_clone(root: ZfsRoot, sysroot: Path, mounts: MountStack) -> None:
    """Mount the boot clone on `sysroot`, writable."""
    mounts.mount(root.clone, sysroot, fstype="zfs", options=["rw"])


def prune_clones(root: ZfsRoot) -> list[str]:
    """Destroy boot clones older than the previous one; returns the names removed."""
    removed = []
    for _, name in boot_clones(root.dataset)[:-KEEP]:
        run(["zfs", "destroy", name])
        removed.append(name)
    return removed


class ZfsBuilder:
    split = False

    def __init__(self, config: BootConfig, sysroot: Path, ctx: BootContext):
        assert config.zfs is not None
        self.snapshot, self.sysroot, self.ctx = config.zfs, sysroot, ctx
        self.root: ZfsRoot | None = None
        self.removed: list[str] = []

    def prepare(self) -> Path:
        if self.root is None:
            self.root = clone_snapshot(self.snapshot, self.ctx.timeout)
            mount_clone(self.root, self.sysroot, self.ctx.mounts)
        return self.sysroot

    def finish(self, applied: ApplyResult | None) -> None:
        self.prepare()
        assert self.root is not None
        self.removed = prune_clones(self.root)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "zfs",
            "snapshot": self.snapshot,
            "clone": self.root.clone if self.root else None,
            "removed": self.removed,
        }
