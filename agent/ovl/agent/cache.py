"""Last-known-good: the last bundle that verified and applied, kept on `ovl.cache=`.

Layout of the cache directory: `last-good.ovl` (the bundle exactly as fetched, still sealed),
`last-good.ovl.minisig` when it was signed, `last-good.json` (where it came from, sha256,
serial), `replay.json` (the trust replay state, so a replayed old bundle or root image is
refused even after a reboot) and `failed-boots.json` (boots that ended in an emergency since
the last one that did not: reported, then removed, by the next successful boot). The cache is
re-verified on every use, like any other channel.
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
from ovl.agent.emergency import NO_FAILURES, Action, FailedBoots
from ovl.agent.fetched import Fetched, copy_into_place, fetch_local, signature_path
from ovl.agent.mounts import mount_partition
from ovl.core.errors import OvlError, error_line
from ovl.core.fs import write_atomic

BUNDLE = "last-good.ovl"
META = "last-good.json"
REPLAY = "replay.json"
FAILURES = "failed-boots.json"


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

    def load_state(self, replay: Path, ctx: BootContext) -> FailedBoots:
        """Copy the saved replay state to `replay` (nothing when none was saved yet); the
        failed boots recorded since the last successful one."""
        with self.directory(ctx, writable=False) as directory:
            if (directory / REPLAY).is_file():
                copy_into_place(directory / REPLAY, replay, 1 << 20)
            return _read_failures(directory / FAILURES)

    def record_failure(self, reason: str, action: Action, ctx: BootContext) -> FailedBoots:
        """Add this boot's emergency to the failed-boots record; the record as now kept."""
        with self._writing(ctx) as directory:
            record = _read_failures(directory / FAILURES).add(reason, action)
            write_atomic(directory / FAILURES, json.dumps(record.to_json(), indent=1) + "\n")
        return record

    def clear_failures(self, ctx: BootContext) -> None:
        """This boot succeeded: the failed boots before it have been reported."""
        with self._writing(ctx) as directory:
            (directory / FAILURES).unlink(missing_ok=True)

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


def _read_failures(path: Path) -> FailedBoots:
    """The record at `path`; none when there is no file; an unreadable one counts as one
    failure whose reason says so (it must not hide that boots failed)."""
    try:
        return FailedBoots.from_json(json.loads(path.read_text()))
    except FileNotFoundError:
        return NO_FAILURES
    except (OSError, ValueError, OvlError) as exc:
        return NO_FAILURES.add(f"{FAILURES} unreadable: {error_line(exc)}", Action.SHELL)


@dataclass(frozen=True)
class CacheChannel:
    """The last-known-good bundle as a channel, tried after every configured one failed."""

    cache: Cache

    def describe(self) -> str:
        return f"cache:{self.cache.location}/{BUNDLE}"

    def fetch(self, dest: Path, ctx: BootContext) -> Fetched:
        with self.cache.directory(ctx, writable=False) as directory:
            return fetch_local(directory / BUNDLE, dest, ctx)
