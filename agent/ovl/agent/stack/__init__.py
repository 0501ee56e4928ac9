"""Assembling the new root at /sysroot: overlayfs, a btrfs snapshot, or a zfs clone; one module
per way, each with its builder behind the `RootBuilder` interface the boot drives: prepare()
gives the directory the bundle is applied into, finish() mounts the root."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ovl.agent.cmdline import BootConfig, Mode
from ovl.agent.context import BootContext
from ovl.agent.stack.btrfs import BtrfsBuilder
from ovl.agent.stack.overlay import OverlayBuilder
from ovl.agent.stack.zfs import ZfsBuilder

if TYPE_CHECKING:
    from ovl.agent.verify import Verifier
    from ovl.format.apply import ApplyResult


class RootBuilder(Protocol):
    split: bool  # apply_bundle(split=...): layer dirs to stack, or merged into the root

    def prepare(self) -> Path: ...

    def finish(self, applied: ApplyResult | None) -> None: ...

    def describe(self) -> dict[str, Any]: ...


def make_builder(
    config: BootConfig, run_dir: Path, sysroot: Path, ctx: BootContext, verifier: Verifier
) -> RootBuilder:
    """`verifier` checks root images downloaded over http(s) (overlay mode) before mounting."""
    if config.mode is Mode.BTRFS:
        return BtrfsBuilder(config, run_dir, sysroot, ctx)
    if config.mode is Mode.ZFS:
        return ZfsBuilder(config, sysroot, ctx)
    return OverlayBuilder(config, run_dir, sysroot, ctx, verifier)
