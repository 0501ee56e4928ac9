"""scan_bundle: what a bundle holds, validated, without writing anything (inspect, lint, plan)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import BinaryIO, NamedTuple, cast

from ovl.format.codec import Encoding
from ovl.format.favors import LayerName, apply_order
from ovl.format.frameindex import FrameDigestCheck, IndexCheck, read_index
from ovl.format.manifest import Manifest
from ovl.format.paths import show
from ovl.format.reader import DEFAULT_LIMITS, BundleReader, Entry, Kind, Limits

# Bound once: an Enum member lookup costs ~80 ns in Python 3.11 (see BundleContents.add).
_FILE, _DIR, _HARDLINK = Kind.FILE, Kind.DIR, Kind.HARDLINK


class EntryInfo(NamedTuple):
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


class BundleContents:
    """Validated entries, in stream order (`add`), turned into what a bundle holds (`info`):
    for scan_bundle, which reads them, and `ovl pack`, which writes them."""

    def __init__(self) -> None:
        self._base = LayerInfo("base", None)
        self._layers: dict[str, LayerInfo] = {"base": self._base}
        self._last = self._base  # most entries are in the last one's layer

    def add(self, entry: Entry, sha256: str = "") -> None:
        """One entry, with its content's digest when known."""
        layer, path, kind, member, link = entry
        info = self._last
        if info.layer is not layer:
            name = "base" if layer is None else layer.dirname
            known = self._layers.get(name)
            if known is None:
                known = self._layers[name] = LayerInfo(name, layer)
            info = self._last = known
        if not path and kind is _DIR:
            return  # the layer's own folder
        info.entries.append(
            EntryInfo(
                show(path),
                kind,
                member.size if kind is _FILE else 0,
                show(link) if kind is _HARDLINK else member.linkname,
                member.mode,
                member.uid,
                member.gid,
                sha256,
            )
        )

    def info(
        self, encoding: Encoding, manifest: Manifest | None, decoded_bytes: int, frames: int | None
    ) -> BundleInfo:
        """The bundle of the entries added, with what the stream says of itself."""
        named = sorted(
            ((info.layer, info) for info in self._layers.values() if info.layer is not None),
            key=lambda item: apply_order(item[0]),
        )
        return BundleInfo(
            encoding, manifest, [self._base, *(info for _, info in named)], decoded_bytes, frames
        )


def scan_bundle(
    source: BinaryIO, limits: Limits = DEFAULT_LIMITS, *, digests: bool = False
) -> BundleInfo:
    """Read the whole bundle once, with the same checks as apply_bundle, and check its frame
    index (if any) against what it holds, each frame against its sha256; BadInput on the first
    problem. With `digests`, every regular file's content is hashed (`EntryInfo.sha256`),
    through a temporary file so that memory stays bounded whatever the file's size."""
    if digests:
        import tempfile  # here, as hashlib below: only digests need them (pack's start-up)

        with tempfile.TemporaryFile() as scratch:
            return _scan(source, limits, scratch.fileno())
    return _scan(source, limits, None)


def _sha256(reader: BundleReader, entry: Entry, scratch: int) -> str:
    import hashlib

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
    contents = BundleContents()
    for entry in reader.entries():
        if check is not None:
            member = entry.member
            span = member.size if member.isreg() else 0
            folder = None if entry.layer is None else entry.layer.dirname
            check.entry(member.name, member.offset, member.offset_data + span, folder)
        digest = ""
        if scratch is not None and entry.kind is Kind.FILE:
            digest = _sha256(reader, entry, scratch)
        contents.add(entry, digest)
    return contents.info(
        reader.encoding,
        reader.manifest,
        reader.decoded_bytes,
        None if frames is None else len(frames),
    )
