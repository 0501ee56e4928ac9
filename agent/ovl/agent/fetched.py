"""A file fetched for the boot (a bundle or a root image, and its signature): the result, and
copying one from a mounted filesystem into place."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from ovl.agent.context import BootContext
from ovl.core.errors import OvlError

CHUNK = 1 << 20


@dataclass(frozen=True)
class FrameCount:
    """What a machine fetched of an indexed bundle: `frames` of its `of` frames, in a partial
    bundle (ovl.format.partial) of the bundle's `bundle_bytes`."""

    frames: int
    of: int
    bundle_bytes: int


@dataclass(frozen=True)
class Fetched:
    bundle: Path
    signature: Path | None
    size: int  # bytes of `bundle` as fetched (a partial bundle's, when `frames`)
    sha256: str  # of `bundle` as fetched
    frames: FrameCount | None = None  # only this machine's frames were fetched


def signature_path(bundle: Path) -> Path:
    return bundle.with_name(bundle.name + ".minisig")


def partial_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


@dataclass(frozen=True)
class Copied:
    size: int
    sha256: str


def copy_into_place(source: Path, dest: Path, size_cap: int) -> Copied:
    """Copy `source` to `dest` through a temporary file, hashing on the way."""
    digest, size = hashlib.sha256(), 0
    try:
        with open(source, "rb") as src, open(partial_path(dest), "wb") as out:
            while block := src.read(CHUNK):
                size += len(block)
                if size > size_cap:
                    raise OvlError(f"{source}: over the {size_cap} byte cap")
                digest.update(block)
                out.write(block)
    except OSError as exc:
        partial_path(dest).unlink(missing_ok=True)
        raise OvlError(f"{exc.filename or source}: {exc.strerror or exc}") from None
    except BaseException:
        partial_path(dest).unlink(missing_ok=True)
        raise
    os.replace(partial_path(dest), dest)
    return Copied(size, digest.hexdigest())


def fetch_local(source: Path, dest: Path, ctx: BootContext) -> Fetched:
    """Copy a bundle and, when it has one, its signature from a mounted filesystem."""
    if not source.is_file():
        raise OvlError(f"{source}: no such file")
    copied = copy_into_place(source, dest, ctx.size_cap)
    signature: Path | None = signature_path(dest)
    if signature_path(source).is_file():
        copy_into_place(signature_path(source), signature_path(dest), ctx.size_cap)
    else:
        signature_path(dest).unlink(missing_ok=True)
        signature = None
    return Fetched(dest, signature, copied.size, copied.sha256)
