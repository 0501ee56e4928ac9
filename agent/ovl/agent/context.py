"""What every step of the boot is handed: where to mount things, how long to wait, where to
say what happens, what to undo, and how to reach the network."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ovl.agent.console import Console
from ovl.agent.deadline import Deadline
from ovl.agent.mounts import MountStack
from ovl.agent.net.links import AnyLinkUp

SIZE_CAP = 512 * 1024 * 1024  # bytes a bundle may have; root images have their own cap


class Network(Protocol):
    """The network a download needs: the agent's own bring-up (ip=), or someone else's."""

    def up(self) -> bool:
        """Whether it is up now (without waiting)."""
        ...

    def wait(self, deadline: Deadline) -> None:
        """Return once it is up; OvlError saying what is missing when `deadline` passes."""
        ...

    def describe(self) -> dict[str, Any] | None:
        """For report.json (None when the agent did not bring it up)."""
        ...

    def stop(self) -> None:
        """Before the hand-over to the root: stop what keeps it up (DHCP clients)."""
        ...


@dataclass(frozen=True)
class BootContext:
    work_dir: Path  # temporary mount points go below here
    timeout: float  # seconds a source may wait without progress (math.inf: forever)
    console: Console
    mounts: MountStack
    proxy: str | None = None
    size_cap: int = SIZE_CAP
    network: Network = field(default_factory=lambda: AnyLinkUp(Path("/sys")))
