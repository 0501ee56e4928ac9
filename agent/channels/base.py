"""What every channel shares: the fetch context, the result, and copying into place."""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from agent.console import Console
from agent.errors import OvlError
from agent.mounts import MountStack

SIZE_CAP = 512 * 1024 * 1024


@dataclass(frozen=True)
class FetchContext:
    work_dir: Path  # temporary mount points go below here
    timeout: float  # seconds for the whole channel: device or network wait and transfer
    console: Console
    mounts: MountStack
    proxy: str | None = None
    size_cap: int = SIZE_CAP
    sysfs_root: Path = Path("/sys")


@dataclass(frozen=True)
class Fetched:
    bundle: Path
    signature: Path | None
    size: int
    sha256: str


class Channel(Protocol):
    def describe(self) -> str: ...

    def fetch(self, dest: Path, ctx: FetchContext) -> Fetched:
        """Write the bundle to `dest` (and its signature to `dest.minisig` when the source has
        one), through temporary files renamed into place."""
        ...


def signature_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ".minisig")


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as src:
        for block in iter(lambda: src.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def copy_into_place(source: Path, dest: Path, size_cap: int) -> int:
    """Copy `source` to `dest` through a temporary file; returns the size."""
    try:
        size = source.stat().st_size
        if size > size_cap:
            raise OvlError(f"{source}: {size} bytes is over the {size_cap} byte cap")
        shutil.copyfile(source, partial_path(dest))
    except OSError as exc:
        partial_path(dest).unlink(missing_ok=True)
        raise OvlError(f"{source}: {exc.strerror or exc}") from None
    os.replace(partial_path(dest), dest)
    return size


def fetch_local(source: Path, dest: Path, ctx: FetchContext) -> Fetched:
    """Copy a bundle and, when it has one, its signature from a mounted filesystem."""
    if not source.is_file():
        raise OvlError(f"{source}: no such file")
    size = copy_into_place(source, dest, ctx.size_cap)
    signature: Path | None = signature_path(dest)
    if signature_path(source).is_file():
        copy_into_place(signature_path(source), signature_path(dest), ctx.size_cap)
    else:
        signature_path(dest).unlink(missing_ok=True)
        signature = None
    return Fetched(dest, signature, size, sha256_file(dest))
