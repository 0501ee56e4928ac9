"""The three ways to build the root, behind one small interface the boot drives:
prepare() gives the directory the bundle is applied into, finish() mounts the root."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ovl.agent.channels.base import FetchContext
from ovl.agent.cmdline import BootConfig, Mode, Upper, Url
from ovl.agent.stack import btrfs, overlay, zfs
from ovl.core.errors import OvlError

if TYPE_CHECKING:
    from ovl.agent.verify import Verifier
    from ovl.format.apply import ApplyResult


class RootBuilder(Protocol):
    split: bool  # apply_bundle(split=...): layer dirs to stack, or merged into the root

    def prepare(self) -> Path: ...

    def finish(self, applied: ApplyResult | None) -> None: ...

    def describe(self) -> dict[str, Any]: ...


class OverlayBuilder:
    split = True

    def __init__(
        self,
        config: BootConfig,
        run_dir: Path,
        sysroot: Path,
        ctx: FetchContext,
        verifier: Verifier,
    ):
        self.config, self.run_dir, self.sysroot, self.ctx = config, run_dir, sysroot, ctx
        self.verifier = verifier
        self.images: list[Path] | None = None
        self.layers: list[Path] = []
        self.upper: Upper = config.upper
        self.notes: list[str] = []

    def prepare(self) -> Path:
        if self.images is None:
            self.images = overlay.mount_images(
                self.config.images, self.run_dir, self.ctx, self._check_image
            )
        return self.run_dir / "layers"

    def _check_image(self, image: Path, signature: Path | None, url: Url) -> None:
        signed = self.verifier.check_image(image, signature, url)
        for warning in signed.warnings:
            self._note(warning)
        if signed.signer:
            serial = "" if signed.serial is None else f", serial {signed.serial}"
            self.ctx.console.line("stack", f"image {url}: signed by {signed.signer}{serial}")

    def _note(self, line: str) -> None:
        self.notes.append(line)
        self.ctx.console.line("stack", line)

    def finish(self, applied: ApplyResult | None) -> None:
        self.prepare()
        images = self.images or []
        self.layers = [layer.path for layer in applied.layers] if applied else []
        try:
            holder = overlay.prepare_upper(
                self.upper, self.run_dir, self.ctx.mounts, self.ctx.timeout
            )
        except OvlError as exc:
            if self.upper.part is None:
                raise
            # A lost persistent upper must not stop the boot: writes go to RAM this time.
            self._note(f"upper {self.upper.part}: {exc.line}; using tmpfs")
            self.upper = Upper()
            holder = overlay.prepare_upper(
                self.upper, self.run_dir, self.ctx.mounts, self.ctx.timeout
            )
        overlay.stack_overlay(
            [*images, *self.layers], holder, self.sysroot, self.run_dir, self.ctx.mounts
        )

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "overlay",
            "images": [str(i) for i in self.config.images],
            "lowers": len(self.images or []) + len(self.layers),
            "upper": str(self.upper.part) if self.upper.part else "tmpfs",
            "notes": self.notes,
        }


class BtrfsBuilder:
    split = False

    def __init__(self, config: BootConfig, run_dir: Path, sysroot: Path, ctx: FetchContext):
        assert config.btrfs is not None
        self.pristine, self.run_dir, self.sysroot, self.ctx = config.btrfs, run_dir, sysroot, ctx
        self.root: btrfs.BtrfsRoot | None = None
        self.removed: list[str] = []

    def prepare(self) -> Path:
        if self.root is None:
            self.root = btrfs.snapshot_pristine(
                self.pristine, self.run_dir, self.ctx.mounts, self.ctx.timeout
            )
        return self.root.snapshot

    def finish(self, applied: ApplyResult | None) -> None:
        self.prepare()
        assert self.root is not None
        btrfs.mount_snapshot(self.root, self.sysroot, self.ctx.mounts)
        self.removed = btrfs.prune_snapshots(self.root)
        self.ctx.mounts.unmount(self.root.top)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "btrfs",
            "pristine": str(self.pristine),
            "snapshot": self.root.subvolume if self.root else None,
            "removed": self.removed,
        }


class ZfsBuilder:
    split = False

    def __init__(self, config: BootConfig, sysroot: Path, ctx: FetchContext):
        assert config.zfs is not None
        self.snapshot, self.sysroot, self.ctx = config.zfs, sysroot, ctx
        self.root: zfs.ZfsRoot | None = None
        self.removed: list[str] = []

    def prepare(self) -> Path:
        if self.root is None:
            self.root = zfs.clone_snapshot(self.snapshot, self.ctx.timeout)
            zfs.mount_clone(self.root, self.sysroot, self.ctx.mounts)
        return self.sysroot

    def finish(self, applied: ApplyResult | None) -> None:
        self.prepare()
        assert self.root is not None
        self.removed = zfs.prune_clones(self.root)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "zfs",
            "snapshot": self.snapshot,
            "clone": self.root.clone if self.root else None,
            "removed": self.removed,
        }


def make_builder(
    config: BootConfig, run_dir: Path, sysroot: Path, ctx: FetchContext, verifier: Verifier
) -> RootBuilder:
    """`verifier` checks root images downloaded over http(s) (overlay mode) before mounting."""
    if config.mode is Mode.BTRFS:
        return BtrfsBuilder(config, run_dir, sysroot, ctx)
    if config.mode is Mode.ZFS:
        return ZfsBuilder(config, sysroot, ctx)
    return OverlayBuilder(config, run_dir, sysroot, ctx, verifier)
