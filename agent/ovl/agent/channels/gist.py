"""`gist:<id>[/<file>]`: an armoured bundle pasted into a gist, fetched as raw text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.agent.context import BootContext
from ovl.agent.download.fetch import fetch_url
from ovl.agent.fetched import Fetched


@dataclass(frozen=True)
class GistChannel:
    gist_id: str
    file: str | None
    base: str

    @property
    def url(self) -> str:
        return f"{self.base}/{self.gist_id}/raw" + (f"/{self.file}" if self.file else "")

    def describe(self) -> str:
        return f"gist:{self.gist_id}" + (f"/{self.file}" if self.file else "")

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        return fetch_url(self.url, dest, ctx)
