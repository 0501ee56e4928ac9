"""Where a bundle is fetched from; one module per kind, all behind the `Channel` protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from ovl.agent.channels.file import FileChannel
from ovl.agent.channels.gist import GistChannel
from ovl.agent.channels.http import HttpChannel
from ovl.agent.channels.part import PartChannel
from ovl.agent.context import BootContext
from ovl.agent.devices import PartPath
from ovl.agent.download.frames import FrameChoice
from ovl.agent.fetched import Fetched
from ovl.agent.sources import FileSource, GistSource, HttpSource, Source


class Channel(Protocol):
    def describe(self) -> str: ...

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        """Write the bundle to `dest` (and its signature to `dest.minisig` when the source has
        one), through temporary files renamed into place."""
        ...


def open_channel(source: Source, *, gist_base: str, frames: FrameChoice | None = None) -> Channel:
    """The channel that fetches from `source`; an http(s) one fetches only the `frames` a
    machine reads of a bundle that allows it (the other kinds read what they hold)."""
    if isinstance(source, HttpSource):
        return HttpChannel(source.url, frames)
    if isinstance(source, FileSource):
        return FileChannel(source.path)
    if isinstance(source, PartPath):
        return PartChannel(source)
    if isinstance(source, GistSource):
        return GistChannel(source.gist_id, source.file, gist_base)
    raise AssertionError(f"no channel for {source!r}")  # pragma: no cover
