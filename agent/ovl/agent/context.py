"""What every step of the boot is handed: where to mount things, how long to wait, where to
say what happens, what to undo, and how to reach the network."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.agent.console import Console
from ovl.agent.mounts import MountStack

SIZE_CAP = 512 * 1024 * 1024  # bytes a bundle may have; root images have their own cap


@dataclass(frozen=True)
class BootContext:
    work_dir: Path  # temporary mount points go below here
    timeout: float  # seconds for one source: device or network wait and transfer
    console: Console
    mounts: MountStack
    proxy: str | None = None
    size_cap: int = SIZE_CAP
    sysfs_root: Path = Path("/sys")
