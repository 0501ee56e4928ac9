"""Where a bundle may come from, as an `ovl=` entry names it: parsed once into plain data.

The channels (ovl.agent.channels) fetch from these; the command line holds only these."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.agent.devices import PartPath
from ovl.core.errors import BadInput


@dataclass(frozen=True)
class HttpSource:
    url: str

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class FileSource:
    path: Path

    def __str__(self) -> str:
        return f"file:{self.path}"


@dataclass(frozen=True)
class GistSource:
    """An armoured bundle pasted into a gist: `gist:<id>[/<file>]`."""

    gist_id: str
    file: str | None = None

    def __str__(self) -> str:
        return f"gist:{self.gist_id}" + (f"/{self.file}" if self.file else "")


# A bundle on a partition is a PartPath: `part:<device>:/path`.
Source = HttpSource | FileSource | PartPath | GistSource


def parse_source(spec: str) -> Source:
    """One `ovl=` entry."""
    if spec.startswith(("http://", "https://")):
        return HttpSource(spec)
    if spec.startswith("file:/"):
        return FileSource(Path(spec.removeprefix("file:")))
    if spec.startswith("part:"):
        return PartPath.parse(spec)
    if spec.startswith("gist:"):
        gist_id, _, file = spec.removeprefix("gist:").partition("/")
        if not gist_id.isalnum() or "/" in file:
            raise BadInput("expected gist:<id>[/<file>]")
        return GistSource(gist_id, file or None)
    raise BadInput("expected http(s)://, file:/path, part:<device>:/path or gist:<id>")
