"""`part:<device>:/path`: a bundle on a partition, mounted read-only just for the copy."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.agent.context import BootContext
from ovl.agent.devices import PartPath, find_device
from ovl.agent.fetched import Fetched, fetch_local
from ovl.agent.mounts import mount_partition


@dataclass(frozen=True)
class PartChannel:
    location: PartPath

    def describe(self) -> str:
        return str(self.location)

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        device = find_device(self.location.device, timeout=ctx.timeout)
        mountpoint = ctx.work_dir / "part"
        mount_partition(ctx.mounts, device, mountpoint)
        try:
            return fetch_local(mountpoint / self.location.relative(), dest, ctx)
        finally:
            ctx.mounts.unmount(mountpoint)
