"""`http://` and `https://`: a bundle on a web server (ovl.agent.download does the work): only
this machine's frames when the boot says which (`frames`) and the bundle allows it, else the
whole bundle."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.agent.context import BootContext
from ovl.agent.download.fetch import fetch_url
from ovl.agent.download.frames import FrameChoice, FullDownload, fetch_frames
from ovl.agent.fetched import Fetched


@dataclass(frozen=True)
class HttpChannel:
    url: str
    frames: FrameChoice | None = None

    def describe(self) -> str:
        return self.url

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        if self.frames is not None:
            try:
                return fetch_frames(self.url, dest, ctx, self.frames)
            except FullDownload as reason:
                ctx.console.line("fetch", f"{self.url}: {reason}; fetching the whole bundle")
        return fetch_url(self.url, dest, ctx)
