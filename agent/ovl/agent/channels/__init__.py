"""Where a bundle can come from; one module per kind, all with describe() and fetch()."""

from __future__ import annotations

from pathlib import Path

from ovl.agent.channels.base import Channel, FetchContext, Fetched
from ovl.agent.channels.file import FileChannel
from ovl.agent.channels.gist import GistChannel
from ovl.agent.channels.http import HttpChannel
from ovl.agent.channels.part import PartChannel
from ovl.agent.devices import PartPath
from ovl.core.errors import BadInput

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
