"""`file:/path`: a bundle already in the initramfs or on a mounted filesystem."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.agent.context import BootContext
from ovl.agent.fetched import Fetched, fetch_local


@dataclass(frozen=True)
class FileChannel:
    path: Path

    def describe(self) -> str:
        return f"file:{self.path}"

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        return fetch_local(self.path, dest, ctx)
