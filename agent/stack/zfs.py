"""zfs root: a fresh clone of a snapshot for every boot, through the zfs command.

Clones are siblings of the snapshot's dataset named `<dataset>-boot-<seq>`, with
mountpoint=legacy so the agent mounts them; the previous boot's clone is kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from agent.mounts import MountStack
from agent.run import run

KEEP = 2  # this boot's clone and the previous one


@dataclass(frozen=True)
class ZfsRoot:
    dataset: str  # the snapshot's dataset
    clone: str


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


def clone_snapshot(snapshot: str) -> ZfsRoot:
    """Clone `pool/dataset@snap` into a new boot dataset."""
    dataset = snapshot.split("@", 1)[0]
    existing = boot_clones(dataset)
    seq = existing[-1][0] + 1 if existing else 1
    clone = f"{dataset}-boot-{seq:06d}"
    run(["zfs", "clone", "-o", "mountpoint=legacy", snapshot, clone])
    return ZfsRoot(dataset, clone)


def mount_clone(root: ZfsRoot, sysroot: Path, mounts: MountStack) -> None:
    mounts.mount(root.clone, sysroot, fstype="zfs", options=["rw"])


def prune_clones(root: ZfsRoot) -> list[str]:
    """Destroy boot clones older than the previous one; returns the names removed."""
    removed = []
    for _, name in boot_clones(root.dataset)[:-KEEP]:
        run(["zfs", "destroy", name])
        removed.append(name)
    return removed
