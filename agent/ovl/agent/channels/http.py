"""`http://` and `https://`: a bundle on a web server (ovl.agent.download does the work)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.agent.context import BootContext
from ovl.agent.download.fetch import fetch_url
from ovl.agent.fetched import Fetched


@dataclass(frozen=True)
class HttpChannel:
    url: str

    def describe(self) -> str:
        return self.url

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        return fetch_url(self.url, dest, ctx)
