"""`gist:<id>[/<file>]`: an armoured bundle pasted into a gist, fetched as raw text."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.agent.channels.base import FetchContext, Fetched
from ovl.agent.channels.http import HttpChannel
from ovl.core.errors import BadInput


@dataclass(frozen=True)
class GistChannel:
    gist_id: str
    file: str | None
    base: str

    @classmethod
    def parse(cls, spec: str, base: str) -> GistChannel:
        gist_id, _, file = spec.partition("/")
        if not gist_id.isalnum() or "/" in file:
            raise BadInput("expected gist:<id>[/<file>]")
        return cls(gist_id, file or None, base)

    @property
    def url(self) -> str:
        return f"{self.base}/{self.gist_id}/raw" + (f"/{self.file}" if self.file else "")

    def describe(self) -> str:
        return f"gist:{self.gist_id}" + (f"/{self.file}" if self.file else "")

    def fetch(self, dest: Path, ctx: FetchContext) -> Fetched:
        return HttpChannel(self.url).fetch(dest, ctx)
