"""The read-only images at the bottom of an overlay root: on a device, on a partition, or
downloaded into RAM (and checked) from a URL, each loop- or block-mounted read-only."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from pathlib import Path

from ovl.agent.cmdline import Image, Url
from ovl.agent.context import BootContext
from ovl.agent.devices import DeviceRef, PartPath, find_device
from ovl.agent.download.fetch import fetch_url
from ovl.agent.mounts import MountStack, mount_partition
from ovl.core.errors import OvlError

IMAGE_SIZE_CAP = 16 * 1024 * 1024 * 1024

# Checks a downloaded image (file, signature or None, URL) or raises OvlError to refuse it.
ImageCheck = Callable[[Path, Path | None, Url], None]


def mount_images(
    images: Sequence[Image], run_dir: Path, ctx: BootContext, check: ImageCheck
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


def _download(image: Url, run_dir: Path, index: int, ctx: BootContext, check: ImageCheck) -> Path:
    # Into run_dir, which is RAM in the initramfs, like dracut's root=live:URL.
    dest = run_dir / "image-files" / f"{index}.img"
    dest.parent.mkdir(parents=True, exist_ok=True)
    fetched = fetch_url(image.value, dest, dataclasses.replace(ctx, size_cap=IMAGE_SIZE_CAP))
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
