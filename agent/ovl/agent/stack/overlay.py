"""overlayfs root: read-only images at the bottom, matched layer dirs above, a writable upper."""

from __future__ import annotations

import dataclasses
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

from ovl.agent.channels.base import FetchContext
from ovl.agent.channels.http import HttpChannel
from ovl.agent.cmdline import Image, Upper, Url
from ovl.agent.devices import DeviceRef, PartPath, find_device
from ovl.agent.mounts import MountStack, mount_partition
from ovl.core.errors import OvlError

IMAGE_SIZE_CAP = 16 * 1024 * 1024 * 1024

# Checks a downloaded image (file, signature or None, URL) or raises OvlError to refuse it.
ImageCheck = Callable[[Path, Path | None, Url], None]


def mount_images(
    images: Sequence[Image], run_dir: Path, ctx: FetchContext, check: ImageCheck
) -> list[Path]:
    """Mount each read-only image below run_dir/images; returns the mount points in order.

    Images from the network pass `check` before they are mounted; those on local devices and
    partitions are trusted as the hardware is.
    """
    points = []
    for index, image in enumerate(images):
        point = run_dir / "images" / str(index)
        if isinstance(image, DeviceRef):
            device = find_device(image, timeout=ctx.timeout)
            ctx.mounts.mount(device, point, options=["ro"])
        elif isinstance(image, PartPath):
            device = find_device(image.device, timeout=ctx.timeout)
            holder = mount_partition(ctx.mounts, device, run_dir / "image-parts" / str(index))
            _mount_file(holder / image.relative(), point, ctx.mounts, str(image))
        else:
            path = _download(image, run_dir, index, ctx, check)
            _mount_file(path, point, ctx.mounts, str(image))
        points.append(point)
    return points


def _download(image: Url, run_dir: Path, index: int, ctx: FetchContext, check: ImageCheck) -> Path:
    # Into run_dir, which is RAM in the initramfs, like dracut's root=live:URL.
    dest = run_dir / "image-files" / f"{index}.img"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetched = HttpChannel(image.value).fetch(
        dest, dataclasses.replace(ctx, size_cap=IMAGE_SIZE_CAP)
    )
    try:
        check(fetched.bundle, fetched.signature, image)
    except BaseException:
        # A refused image must not linger in RAM, nor be loop-mounted by hand later.
        for path in (fetched.bundle, fetched.signature):
            if path is not None:
                path.unlink(missing_ok=True)
        raise
    return dest


def _mount_file(path: Path, point: Path, mounts: MountStack, name: str) -> None:
    if not path.is_file():
        raise OvlError(f"image {name}: no such file")
    mounts.mount(path, point, options=["loop", "ro"])


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
