"""scan_bundle: what a bundle holds, validated, without writing anything (inspect, lint, plan)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from typing import BinaryIO, cast

from ovl.format.codec import Encoding
from ovl.format.favors import LayerName, apply_order
from ovl.format.frameindex import FrameDigestCheck, IndexCheck, read_index
from ovl.format.manifest import Manifest
from ovl.format.paths import show
from ovl.format.reader import DEFAULT_LIMITS, BundleReader, Entry, Kind, Limits


@dataclass(frozen=True)
class EntryInfo:
    path: str  # relative to the layer's root
    kind: Kind
    size: int  # content bytes of regular files, 0 otherwise
    link: str = ""  # symlink target, or hardlink target relative to the layer's root
    mode: int = 0  # permission bits (with set-id and sticky)
    uid: int = 0
    gid: int = 0
    sha256: str = ""  # of a regular file's content, when scanned with digests


@dataclass
class LayerInfo:
    name: str  # "base" or the layer's folder name
    layer: LayerName | None  # None for the base
    entries: list[EntryInfo] = field(default_factory=list)

    @property
    def bytes(self) -> int:
        return sum(entry.size for entry in self.entries)


@dataclass(frozen=True)
class BundleInfo:
    encoding: Encoding
    manifest: Manifest | None
    layers: list[LayerInfo]  # base first, then every layer in apply order
    decoded_bytes: int  # size of the tar stream once decompressed
    frames: int | None  # zstd frames listed by its frame index; None without one

    @property
    def armoured(self) -> bool:
        return self.encoding.armoured


def scan_bundle(
    source: BinaryIO, limits: Limits = DEFAULT_LIMITS, *, digests: bool = False
) -> BundleInfo:
    """Read the whole bundle once, with the same checks as apply_bundle, and check its frame
    index (if any) against what it holds, each frame against its sha256; BadInput on the first
    problem. With `digests`,
    every regular file's content is hashed (`EntryInfo.sha256`), through a temporary file so
    that memory stays bounded whatever the file's size."""
    if digests:
        with tempfile.TemporaryFile() as scratch:
            return _scan(source, limits, scratch.fileno())
    return _scan(source, limits, None)


def _sha256(reader: BundleReader, entry: Entry, scratch: int) -> str:
    os.lseek(scratch, 0, os.SEEK_SET)
    os.ftruncate(scratch, 0)
    reader.copy_data(entry, scratch)
    os.lseek(scratch, 0, os.SEEK_SET)
    digest = hashlib.sha256()
    while chunk := os.read(scratch, 1 << 20):
        digest.update(chunk)
    return digest.hexdigest()


def _scan(source: BinaryIO, limits: Limits, scratch: int | None) -> BundleInfo:
    frames = None
    if source.seekable() and source.tell() == 0:
        frames = read_index(source)  # checked against every entry: lint vouches for it
        source.seek(0)
    check = None if frames is None else IndexCheck(frames)
    if frames and all(frame.sha256 for frame in frames):
        source = cast(BinaryIO, FrameDigestCheck(source, frames))
    reader = BundleReader(source, limits)
    base = LayerInfo("base", None)
    layers: dict[str, LayerInfo] = {"base": base}
    for entry in reader.entries():
        name = entry.layer_dirname
        if check is not None:
            member = entry.member
            span = member.size if member.isreg() else 0
            folder = None if entry.layer is None else entry.layer.dirname
            check.entry(member.name, member.offset, member.offset_data + span, folder)
        info = layers.get(name)
        if info is None:
            info = layers[name] = LayerInfo(name, entry.layer)
        if not entry.path and entry.kind is Kind.DIR:
            continue  # the layer's own folder
        member = entry.member
        link = show(entry.link) if entry.kind is Kind.HARDLINK else member.linkname
        size = member.size if entry.kind is Kind.FILE else 0
        digest = ""
        if scratch is not None and entry.kind is Kind.FILE:
            digest = _sha256(reader, entry, scratch)
        info.entries.append(
            EntryInfo(
                show(entry.path),
                entry.kind,
                size,
                link,
                mode=member.mode,
                uid=member.uid,
                gid=member.gid,
                sha256=digest,
            )
        )
    named = sorted(
        ((info.layer, info) for info in layers.values() if info.layer is not None),
        key=lambda item: apply_order(item[0]),
    )
    return BundleInfo(
        reader.encoding,
        reader.manifest,
        [base, *(info for _, info in named)],
        reader.decoded_bytes,
        None if frames is None else len(frames),
    )
