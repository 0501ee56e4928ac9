"""overlayfs root: read-only images at the bottom, matched layer dirs above, a writable upper."""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ovl.agent.cmdline import BootConfig, Upper, Url
from ovl.agent.context import BootContext
from ovl.agent.devices import find_device
from ovl.agent.mounts import MountStack, mount_partition
from ovl.agent.stack.images import mount_images
from ovl.core.errors import OvlError

if TYPE_CHECKING:
    from ovl.agent.verify import Verifier
    from ovl.format.apply import ApplyResult


class OverlayBuilder:
    split = True

    def __init__(
        self,
        config: BootConfig,
        run_dir: Path,
        sysroot: Path,
        ctx: BootContext,
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
            self.images = mount_images(
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
            holder = prepare_upper(self.upper, self.run_dir, self.ctx.mounts, self.ctx.timeout)
        except OvlError as exc:
            if self.upper.part is None:
                raise
            # A lost persistent upper must not stop the boot: writes go to RAM this time.
            self._note(f"upper {self.upper.part}: {exc.line}; using tmpfs")
            self.upper = Upper()
            holder = prepare_upper(self.upper, self.run_dir, self.ctx.mounts, self.ctx.timeout)
        stack_overlay([*images, *self.layers], holder, self.sysroot, self.run_dir, self.ctx.mounts)

    def describe(self) -> dict[str, Any]:
        return {
            "mode": "overlay",
            "images": [str(i) for i in self.config.images],
            "lowers": len(self.images or []) + len(self.layers),
            "upper": str(self.upper.part) if self.upper.part else "tmpfs",
            "notes": self.notes,
        }


def prepare_upper(upper: Upper, run_dir: Path, mounts: MountStack, timeout: float) -> Path:
    """The directory holding upper/ and work/: on /run (tmpfs) or on a partition."""
    if upper.part is None:
        holder = run_dir
        upper_wipe = True  # tmpfs upper: every boot starts pristine
    else:
        device = find_device(upper.part.device, timeout=timeout)
        persist = mount_partition(mounts, device, run_dir / "persist", writable=True)
        holder = persist / upper.part.relative()
        upper_wipe = upper.wipe
    for name in ("upper", "work"):
        path = holder / name
        if path.exists() and (upper_wipe or name == "work"):
            shutil.rmtree(path)
        path.mkdir(parents=True, exist_ok=True)
    if holder != run_dir:
        # Delta shipping reads the upper at /run/ovl/upper whichever volume holds it.
        mounts.mount(holder / "upper", run_dir / "upper", options=["bind"])
    return holder


def stack_overlay(
    lowers: Sequence[Path], holder: Path, sysroot: Path, run_dir: Path, mounts: MountStack
) -> None:
    """Mount overlayfs on `sysroot`: `lowers` bottom to top, upper and work in `holder`."""
    if not lowers:
        raise OvlError("no read-only image and no bundle layer: nothing to boot")
    # Layer dirnames may hold ':' or ',' (which overlayfs options split on), and many long
    # paths can pass the one-page option limit: refer to each lower by a short link.
    links = run_dir / "lower"
    if links.exists():
        shutil.rmtree(links)
    links.mkdir(parents=True)
    names = []
    for index, lower in enumerate(lowers):
        (links / str(index)).symlink_to(lower.resolve())
        names.append(str(links / str(index)))
    options = [
        "lowerdir=" + ":".join(reversed(names)),
        f"upperdir={holder / 'upper'}",
        f"workdir={holder / 'work'}",
    ]
    mounts.mount("overlay", sysroot, fstype="overlay", options=options)
