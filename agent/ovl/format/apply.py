"""apply_bundle: one streaming pass from bundle bytes to layer directories on disk."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ovl.core.errors import BadInput, OvlError
from ovl.core.facts import Facts
from ovl.format.commit import DirState, Journal, commit_merged, commit_split
from ovl.format.favors import LayerName, apply_order, layer_matches, may_match
from ovl.format.frameindex import Frame, wanted_frames
from ovl.format.manifest import Manifest
from ovl.format.reader import DEFAULT_LIMITS, BundleReader, Limits, folder_filter
from ovl.format.stage import LayerDir

BASE = "base"


@dataclass(frozen=True)
class AppliedLayer:
    name: str  # "base" or the layer's folder name
    path: Path  # its own directory (split) or the target (merged)
    files: int  # entries other than directories and whiteouts
    bytes: int  # regular file content


@dataclass(frozen=True)
class ApplyResult:
    manifest: Manifest | None
    layers: list[AppliedLayer]  # base first, then the matched layers in apply order
    decoded_bytes: int  # of tar stream
    frames_read: tuple[int, int] | None  # (decoded, in the bundle) when its frame index was used


class _Staging:
    """A scratch directory on the target's filesystem, so that commit is renames only."""

    def __init__(self, target: Path) -> None:
        self.target = target
        if target.exists() and not target.is_dir():
            raise BadInput(f"{target}: not a directory")
        if not target.parent.is_dir():
            raise BadInput(f"{target.parent}: no such directory")
        inside = target.is_dir() and os.lstat(target).st_dev != os.lstat(target.parent).st_dev
        # Inside the target only when it is a mount point: renames cannot cross filesystems.
        before = DirState.capture(str(target)) if inside else None
        where = target if inside else target.parent
        self.root = Path(tempfile.mkdtemp(prefix=f".{target.name}.ovl-stage-", dir=where))
        self.keep = self.root.name if inside else None
        self.journal = Journal(self.root / "trash")
        if before is not None:
            self.journal.remember(str(target), before)
        self.layers_dir = self.root / "layers"
        self.layers_dir.mkdir()
        self.fresh = self.root / "target"  # built here and renamed when the target is missing

    def destination(self) -> str:
        if self.target.is_dir():
            return str(self.target)
        self.fresh.mkdir(mode=0o755, exist_ok=True)
        return str(self.fresh)

    def finish(self) -> None:
        if not self.target.exists():
            os.rename(self.fresh, self.target)
        shutil.rmtree(self.root)

    def abandon(self) -> None:
        try:
            self.journal.undo()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
        self.journal.restore_dirs()


def _wants(facts: Facts) -> tuple[Callable[[LayerName], bool], Callable[[str], bool]]:
    """Which layers a machine with `facts` writes, and a cheap filter of folder names."""
    return (lambda layer: layer_matches(layer, facts)), (lambda name: may_match(name, facts))


def machine_frames(frames: list[Frame], facts: Facts) -> list[int]:
    """The frames of an indexed bundle apply_bundle decodes for a machine with `facts`: what
    the machine must fetch. BadInput naming a malformed layer name in the index."""
    return wanted_frames(frames, folder_filter(*_wants(facts)))


def apply_bundle(
    source: BinaryIO, facts: Facts, target: Path, *, split: bool, limits: Limits = DEFAULT_LIMITS
) -> ApplyResult:
    """Apply the bundle in `source` for a machine with `facts` to `target` in one pass.

    split=True: `target/base` and `target/<layer folder>` per matched layer, whiteouts in
    overlayfs form. split=False: all merged into `target`, whiteouts applied as deletions.
    On any error the target is left as it was.
    """
    try:
        staging = _Staging(target)
    except OSError as exc:
        raise OvlError(f"cannot stage a bundle beside {target}: {exc.strerror or exc}") from None
    try:
        # Only the layers written are checked across entries; the rest cost no memory.
        wanted, may_want = _wants(facts)
        reader = BundleReader(source, limits, wanted=wanted, may_want=may_want)
        staged = _stage(reader, staging.layers_dir, split)
        dest = staging.destination()
        if split:
            commit_split(staged, dest, staging.journal)
        else:
            commit_merged(staged, dest, staging.journal, staging.keep)
        staging.finish()
    except OSError as exc:
        staging.abandon()
        raise OvlError(f"cannot apply the bundle to {target}: {exc.strerror or exc}") from None
    except BaseException:
        staging.abandon()
        raise
    return ApplyResult(
        reader.manifest,
        [
            AppliedLayer(
                layer.name, target / layer.name if split else target, layer.files, layer.bytes
            )
            for layer in staged
        ],
        reader.decoded_bytes,
        reader.frames_read,
    )


def _stage(reader: BundleReader, where: Path, split: bool) -> list[LayerDir]:
    """Write the base and every layer the reader yields (the matching ones) to its own
    directory under `where`."""
    base = LayerDir(where / BASE, BASE, overlay_whiteouts=split)
    staged: dict[str, tuple[LayerName | None, LayerDir]] = {BASE: (None, base)}
    for entry in reader.entries():
        name = entry.layer_dirname
        if name not in staged:
            layer = LayerDir(where / name, name, overlay_whiteouts=split)
            staged[name] = (entry.layer, layer)
        staged[name][1].write(entry, reader)
    for _, layer in staged.values():
        layer.finish()
    matched = sorted(
        ((name, layer) for name, layer in staged.values() if name is not None),
        key=lambda item: apply_order(item[0]),
    )
    return [base] + [layer for _, layer in matched]
