"""Last-known-good: the last bundle that verified and applied, kept on `ovl.cache=`.

Layout of the cache directory: `last-good.ovl` (the bundle exactly as fetched, still sealed),
`last-good.ovl.minisig` when it was signed, `last-good.json` (where it came from, sha256,
serial) and `replay.json` (the trust replay state, so a replayed old bundle or root image is
refused even after a reboot). The cache is re-verified on every use, like any other channel.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovl.agent.context import BootContext
from ovl.agent.devices import PartPath, find_device
from ovl.agent.fetched import Fetched, copy_into_place, fetch_local, signature_path
from ovl.agent.mounts import mount_partition
from ovl.core.errors import OvlError
from ovl.core.fs import write_atomic

BUNDLE = "last-good.ovl"
META = "last-good.json"
REPLAY = "replay.json"


@dataclass
class Cache:
    location: PartPath
    _device: str | None = None
    _missing: OvlError | None = None

    def _find(self, ctx: BootContext) -> str:
        # Waited for once per boot: a missing cache disk must not cost the timeout twice.
        if self._missing is not None:
            raise self._missing
        if self._device is None:
            try:
                self._device = find_device(self.location.device, timeout=ctx.timeout)
            except OvlError as exc:
                self._missing = exc
                raise
        return self._device

    @contextlib.contextmanager
    def directory(self, ctx: BootContext, *, writable: bool) -> Iterator[Path]:
        """The cache directory, with its partition mounted for the with-block."""
        point = ctx.work_dir / "cache"
        mount_partition(ctx.mounts, self._find(ctx), point, writable=writable)
        try:
            yield point / self.location.relative()
        finally:
            ctx.mounts.unmount(point)

    def load_replay(self, dest: Path, ctx: BootContext) -> None:
        """Copy the saved replay state to `dest` (nothing when none was saved yet)."""
        with self.directory(ctx, writable=False) as directory:
            if (directory / REPLAY).is_file():
                copy_into_place(directory / REPLAY, dest, 1 << 20)

    def remember(
        self, fetched: Fetched, source: str, replay: Path | None, ctx: BootContext
    ) -> None:
        """Keep `fetched` (and its signature) as the last-known-good bundle."""
        with self._writing(ctx) as directory:
            if fetched.signature is not None:
                copy_into_place(fetched.signature, signature_path(directory / BUNDLE), 1 << 20)
            else:
                signature_path(directory / BUNDLE).unlink(missing_ok=True)
            copy_into_place(fetched.bundle, directory / BUNDLE, ctx.size_cap)
            meta: dict[str, Any] = {
                "source": source,
                "sha256": fetched.sha256,
                "size": fetched.size,
            }
            write_atomic(directory / META, json.dumps(meta, indent=1) + "\n")
            if replay is not None and replay.is_file():
                copy_into_place(replay, directory / REPLAY, 1 << 20)

    def save_replay(self, replay: Path, ctx: BootContext) -> None:
        """Keep the replay state alone: a boot that accepted image serials but no new bundle."""
        with self._writing(ctx) as directory:
            copy_into_place(replay, directory / REPLAY, 1 << 20)

    @contextlib.contextmanager
    def _writing(self, ctx: BootContext) -> Iterator[Path]:
        """The cache directory, created, written in the with-block, synced; OvlError on OSError."""
        with self.directory(ctx, writable=True) as directory:
            try:
                directory.mkdir(parents=True, exist_ok=True)
                yield directory
                os.sync()
            except OSError as exc:
                raise OvlError(f"cache {self.location}: {exc.strerror or exc}") from None


@dataclass(frozen=True)
class CacheChannel:
    """The last-known-good bundle as a channel, tried after every configured one failed."""

    cache: Cache

    def describe(self) -> str:
        return f"cache:{self.cache.location}/{BUNDLE}"

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        with self.cache.directory(ctx, writable=False) as directory:
            return fetch_local(directory / BUNDLE, dest, ctx)
