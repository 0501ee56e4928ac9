"""Changing a CIK stick after it was made: files added, replaced and removed on its OVLCIK
partition, in an image (a copy renamed over it: all or nothing) or on a device in place (each
file through a temporary name); and what a stick holds (docs/CIK.md)."""

from __future__ import annotations

import os
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.core.fs import atomic_write
from ovl.core.run import run
from ovl.tools.cik.fat import FatVolume
from ovl.tools.cik.gpt import ESP_TYPE, read_gpt
from ovl.tools.cik.stick import (
    BOOT_PATH,
    CLUSTER,
    MIB,
    Content,
    find_data_partition,
    round_up,
    write_files,
)


@dataclass(frozen=True)
class Updated:
    target: Path
    written: tuple[str, ...]
    removed: tuple[str, ...]
    free: int


def _mounted(device: Path) -> str | None:
    """A mount point of `device` or one of its partitions, if the host has one mounted."""
    real = os.path.realpath(device)
    with open("/proc/self/mounts") as table:
        for line in table:
            source, point = line.split()[:2]
            partition = source[len(real) :].lstrip("p")
            if source == real or (source.startswith(real) and partition.isdigit()):
                return point
    return None


def update_stick(
    target: Path, content: Content, removals: Sequence[str] = (), epoch: int = 0
) -> Updated:
    """Add or replace `content` and delete `removals` on a stick image or a stick device.

    An image is changed as a copy renamed over it (all or nothing); on a device each file is
    written under a temporary name and renamed over the old one."""
    try:
        mode = target.stat().st_mode
    except FileNotFoundError:
        raise BadInput(f"{target}: no such stick or image") from None
    if stat.S_ISBLK(mode):
        point = _mounted(target)
        if point is not None:
            raise BadInput(f"{target}: mounted on {point}; unmount it first")
        return _update(target, content, removals, epoch, in_place=True)
    if not stat.S_ISREG(mode):
        raise BadInput(f"{target}: neither an image file nor a block device")
    find_data_partition(target)  # before copying gigabytes: is it a stick at all?
    with atomic_write(target, mode=stat.S_IMODE(mode)) as staged:
        run(["cp", "--sparse=always", "--reflink=auto", target, staged.path])
        return _update(staged.path, content, removals, epoch, in_place=False, shown=target)


def _update(
    device: Path,
    content: Content,
    removals: Sequence[str],
    epoch: int,
    *,
    in_place: bool,
    shown: Path | None = None,
) -> Updated:
    shown = shown or device
    volume = FatVolume(device, find_data_partition(device).start, epoch)
    present = {p.casefold() for p in volume.paths()}
    for path in removals:
        if path.casefold() not in present and path.casefold() + "/" not in present:
            raise BadInput(f"{shown}: --remove {path}: not on the stick")
    adding = sum(round_up(p.stat().st_size, CLUSTER) for p in content.files.values())
    free = volume.free()
    if adding + MIB > free:
        raise BadInput(
            f"{shown}: not enough room: {adding / MIB:.1f}M to write, {free / MIB:.1f}M free "
            "(a replaced file is dropped only once its new copy is written)"
        )
    for path in removals:
        volume.remove(path + ("/" if path.casefold() + "/" in present else ""))
    write_files(volume, content.files, in_place=in_place)
    return Updated(shown, tuple(sorted(content.files)), tuple(removals), volume.free())


def stick_listing(device: Path) -> tuple[list[str], str]:
    """The data partition's paths and the stick's command line (from its UKI's .cmdline)."""
    parts = read_gpt(device)
    data = find_data_partition(device)
    esp = next((p for p in parts if p.type == ESP_TYPE), None)
    paths = sorted(FatVolume(device, data.start).paths())
    cmdline = ""
    if esp is not None:
        efi = FatVolume(device, esp.start).read(BOOT_PATH)
        with tempfile.TemporaryDirectory(prefix="ovl-cik-") as scratch:
            image, section = Path(scratch) / "boot.efi", Path(scratch) / "cmdline"
            image.write_bytes(efi)
            run(["objcopy", "-O", "binary", "--only-section=.cmdline", image, section])
            cmdline = section.read_text()
    return paths, cmdline
