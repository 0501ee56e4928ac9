"""Where a bundle can come from; one module per kind, all with describe() and fetch()."""

from __future__ import annotations

from pathlib import Path

from agent.channels.base import Channel, FetchContext, Fetched
from agent.channels.file import FileChannel
from agent.channels.gist import GistChannel
from agent.channels.http import HttpChannel
from agent.channels.part import PartChannel
from agent.devices import PartPath
from agent.errors import BadInput

__all__ = ["Channel", "FetchContext", "Fetched", "parse_channel"]


def parse_channel(spec: str, *, gist_base: str) -> Channel:
    """One `ovl=` entry as a channel."""
    if spec.startswith(("http://", "https://")):
        return HttpChannel(spec)
    if spec.startswith("file:/"):
        return FileChannel(Path(spec.removeprefix("file:")))
    if spec.startswith("part:"):
        return PartChannel(PartPath.parse(spec))
    if spec.startswith("gist:"):
        return GistChannel.parse(spec.removeprefix("gist:"), gist_base)
    raise BadInput("expected http(s)://, file:/path, part:<device>:/path or gist:<id>")
