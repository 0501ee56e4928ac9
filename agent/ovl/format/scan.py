"""scan_bundle: what a bundle holds, validated, without writing anything (inspect, lint, plan)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import BinaryIO

from ovl.format.codec import Encoding
from ovl.format.favors import LayerName, apply_order
from ovl.format.frameindex import IndexCheck, read_index
from ovl.format.manifest import Manifest
from ovl.format.paths import show
from ovl.format.reader import DEFAULT_LIMITS, BundleReader, Kind, Limits


@dataclass(frozen=True)
class EntryInfo:
    path: str  # relative to the layer's root
    kind: Kind
    size: int  # content bytes of regular files, 0 otherwise
    link: str = ""  # symlink target, or hardlink target relative to the layer's root


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


def scan_bundle(source: BinaryIO, limits: Limits = DEFAULT_LIMITS) -> BundleInfo:
    """Read the whole bundle once, with the same checks as apply_bundle, and check its frame
    index (if any) against what it holds; BadInput on the first problem."""
    frames = None
    if source.seekable() and source.tell() == 0:
        frames = read_index(source)  # checked against every entry: lint vouches for it
        source.seek(0)
    check = None if frames is None else IndexCheck(frames)
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
        link = show(entry.link) if entry.kind is Kind.HARDLINK else entry.member.linkname
        size = entry.member.size if entry.kind is Kind.FILE else 0
        info.entries.append(EntryInfo(show(entry.path), entry.kind, size, link))
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
