"""One validating pass over a bundle's tar stream: entries sorted into layers, hostile ones
refused with one line naming the entry and the reason. Nothing is written here.

Every entry gets the checks that need no memory (path syntax, type, sizes, header damage).
The checks across entries (paths through symlinks, hardlink targets, a path declared twice)
keep every path of a layer, so they run only for the layers the caller wants: all of them by
default (scan, lint), the written ones when applying (docs/FORMAT.md, section 7.1)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import BinaryIO, cast

from ovl.core.errors import BadInput
from ovl.format.codec import DecodedStream, Encoding, open_decoded
from ovl.format.favors import LayerName, parse_layer_name
from ovl.format.frameindex import FrameRanges, frame_ranges, read_index, wanted_frames
from ovl.format.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, parse_manifest
from ovl.format.paths import Parts, member_parts, show, symlink_climbs_out
from ovl.format.tarread import (
    AREGTYPE,
    BLKTYPE,
    CHRTYPE,
    CONTTYPE,
    DIRTYPE,
    FIFOTYPE,
    LNKTYPE,
    REGTYPE,
    SYMTYPE,
    Member,
    SparseMember,
    TarDamage,
    TarReader,
)
from ovl.format.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX

LAYERS_DIR = "layers"
# Written by ovl itself in split mode; a bundle must not smuggle overlayfs metadata in.
_RESERVED_XATTRS = ("trusted.overlay.", "user.overlay.")
_COPY_CHUNK = 1 << 20


class Kind(Enum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"
    HARDLINK = "hardlink"
    CHAR = "char"
    BLOCK = "block"
    FIFO = "fifo"
    WHITEOUT = "whiteout"  # `.wh.<name>`: path is the hidden name
    OPAQUE = "opaque"  # `.wh..wh..opq`: path is the directory made opaque


_KINDS = {
    REGTYPE: Kind.FILE,
    AREGTYPE: Kind.FILE,
    CONTTYPE: Kind.FILE,
    DIRTYPE: Kind.DIR,
    SYMTYPE: Kind.SYMLINK,
    LNKTYPE: Kind.HARDLINK,
    CHRTYPE: Kind.CHAR,
    BLKTYPE: Kind.BLOCK,
    FIFOTYPE: Kind.FIFO,
}


@dataclass(frozen=True)
class Limits:
    """Caps on what one bundle may hold; defaults suit a root-filesystem overlay."""

    max_entry_bytes: int = 1 << 30
    max_total_bytes: int = 4 << 30  # the decompressed tar stream, headers included
    max_entries: int = 1_000_000
    allow_devices: bool = False


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Entry:
    """A validated entry. `layer` None is the base; `path` is relative to the layer's root
    (empty for the layer folder itself); `link` is a hardlink's target in the same layer."""

    layer: LayerName | None
    path: Parts
    kind: Kind
    member: Member
    link: Parts = ()

    @property
    def layer_dirname(self) -> str:
        return "base" if self.layer is None else self.layer.dirname


@dataclass(slots=True)
class _LayerPaths:
    """Kinds of the paths one layer declared, to refuse paths through symlinks or files.

    Invariant: every path in `parents` has entries below it and is a directory so far, so a
    later symlink or file there is refused, and its ancestors need no second check."""

    kinds: dict[Parts, Kind] = field(default_factory=dict)
    parents: set[Parts] = field(default_factory=set)

    def declare(self, entry: Entry, name: str) -> None:
        path = entry.path
        if path[:-1] not in self.parents:
            for depth in range(1, len(path)):
                parent = path[:depth]
                kind = self.kinds.get(parent)
                if kind is Kind.SYMLINK:
                    raise BadInput(
                        f"bundle entry {name!r}: path passes through symlink {show(parent)}"
                    )
                if kind not in (None, Kind.DIR):
                    raise BadInput(f"bundle entry {name!r}: {show(parent)} is not a directory")
        own = Kind.DIR if entry.kind is Kind.OPAQUE else entry.kind
        if path and own is not Kind.DIR and path in self.parents:
            raise BadInput(f"bundle entry {name!r}: a {own.value} with entries below it")
        known = self.kinds.get(path)
        if known is not None and known is not own:
            raise BadInput(f"bundle entry {name!r}: declared both as {known.value} and {own.value}")
        self.kinds[path] = own
        parent = path[:-1]
        while parent and parent not in self.parents:
            self.parents.add(parent)
            parent = parent[:-1]


def folder_filter(
    wanted: Callable[[LayerName], bool], may_want: Callable[[str], bool]
) -> Callable[[str], bool]:
    """A frame index's layer folder name → whether `wanted` takes that layer; BadInput naming
    a malformed name."""

    def wanted_name(dirname: str) -> bool:
        if not may_want(dirname):
            return False
        try:
            layer = parse_layer_name(dirname)
        except BadInput as exc:
            raise BadInput(f"bundle frame index: layer {dirname!r}: {exc}") from None
        return wanted(layer)

    return wanted_name


class BundleReader:
    """Reads a bundle once, in stream order. Use `entries()`, and read an entry's data with
    `copy_data()` before asking for the next entry.

    `wanted`: the layers whose entries are yielded and fully checked (the base always is);
    other layers' entries get only the per-entry checks and nothing of them is kept.
    `may_want`: False for a folder name `wanted` is sure to refuse, so that a frame index's
    thousands of names need not all be parsed.
    """

    def __init__(
        self,
        source: BinaryIO,
        limits: Limits,
        wanted: Callable[[LayerName], bool] | None = None,
        may_want: Callable[[str], bool] = lambda dirname: True,
    ) -> None:
        # (frames decoded, frames in the bundle) when a frame index let this reader skip some.
        self.frames_read: tuple[int, int] | None = None
        if wanted is not None:
            source = self._only_wanted_frames(source, wanted, may_want)
        self._decoded: DecodedStream = open_decoded(source, max_bytes=limits.max_total_bytes)
        self.encoding: Encoding = self._decoded.encoding
        self.manifest: Manifest | None = None
        self._limits = limits
        self._wanted = wanted
        self._last_layer: LayerName | None = None
        self._last_wanted = True
        self._paths: dict[str, _LayerPaths] = {}
        self._tar: TarReader | None = None
        self._last = "(start of the archive)"
        self._count = 0

    def _only_wanted_frames(
        self, source: BinaryIO, wanted: Callable[[LayerName], bool], may_want: Callable[[str], bool]
    ) -> BinaryIO:
        """`source` cut down to its base frames and `wanted` layers' frames when it is a seekable
        bundle with a frame index; `source` itself otherwise. Layers not read this way get none of
        the per-entry checks: `ovl lint` and `ovl inspect` read every frame."""
        if not source.seekable() or source.tell() != 0:
            return source
        frames = read_index(source)
        source.seek(0)
        if frames is None:
            return source
        numbers = wanted_frames(frames, folder_filter(wanted, may_want))
        self.frames_read = (len(numbers), len(frames))
        return cast(BinaryIO, FrameRanges(source, frame_ranges(frames, numbers)))

    def entries(self) -> Iterator[Entry]:
        self._tar = TarReader(self._decoded)
        try:
            for member in self._tar.members():
                self._last = member.name
                entry = self._classify(member)
                if entry is not None:
                    yield entry
            # To the end of the stream, past the end-of-archive blocks: decoders notice a
            # stream cut short only there.
            while self._decoded.read(_COPY_CHUNK):
                pass
        except TarDamage as exc:
            raise BadInput(f"bundle: {exc} after entry {self._last!r}") from None
        except SparseMember as exc:
            raise BadInput(f"bundle entry {exc.name!r}: sparse files are not supported") from None
        finally:
            self._tar = None

    @property
    def decoded_bytes(self) -> int:
        """Bytes of tar stream decoded so far."""
        return self._decoded.decoded_bytes

    def copy_data(self, entry: Entry, fd: int) -> int:
        """Write a regular file's data to `fd`; returns the byte count."""
        member = entry.member
        remaining = member.size
        while remaining:
            chunk = self._read(member, min(remaining, _COPY_CHUNK))
            assert chunk, "copy_data() of an entry other than the one just yielded"
            remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        return member.size

    def _read(self, member: Member, size: int) -> bytes:
        assert self._tar is not None, "entry data read outside entries()"
        try:
            return self._tar.read_data(size)
        except TarDamage as exc:
            raise BadInput(f"bundle entry {member.name!r}: {exc}") from None

    def _classify(self, member: Member) -> Entry | None:
        name = member.name
        self._count += 1
        if self._count > self._limits.max_entries:
            raise BadInput(f"bundle entry {name!r}: more than {self._limits.max_entries} entries")
        parts = member_parts(name)
        layer: LayerName | None = None
        if parts[:1] == (LAYERS_DIR,):
            if len(parts) == 1:
                return self._folder(member, None)
            layer = self._layer(parts[1], name)
            parts = parts[2:]
            if not parts:  # the layer's own folder: yielded only when the layer is wanted
                return self._folder(member, layer if self._last_wanted else None)
        elif not parts:
            return self._folder(member, None)
        elif parts == (MANIFEST_NAME,):
            self._read_manifest(member)
            return None
        wanted = layer is None or self._last_wanted
        entry = self._entry(member, layer, parts, wanted)
        if not wanted:
            return None
        paths = self._paths.get(entry.layer_dirname)
        if paths is None:
            paths = self._paths[entry.layer_dirname] = _LayerPaths()
        paths.declare(entry, name)
        return entry

    def _folder(self, member: Member, layer: LayerName | None) -> Entry | None:
        if member.type != DIRTYPE:
            raise BadInput(f"bundle entry {member.name!r}: must be a directory")
        return None if layer is None else Entry(layer, (), Kind.DIR, member)

    def _layer(self, dirname: str, name: str) -> LayerName:
        # Only the latest layer is kept: a layer's entries come together, and a fleet bundle's
        # thousands of parsed names would otherwise stay in memory to the end.
        layer = self._last_layer
        if layer is None or layer.dirname != dirname:
            try:
                layer = parse_layer_name(dirname)
            except BadInput as exc:
                raise BadInput(f"bundle entry {name!r}: {exc}") from None
            self._last_layer = layer
            self._last_wanted = self._wanted is None or self._wanted(layer)
        return layer

    def _read_manifest(self, member: Member) -> None:
        name = member.name
        if not member.isreg():
            raise BadInput(f"bundle entry {name!r}: the manifest must be a regular file")
        if self.manifest is not None:
            raise BadInput(f"bundle entry {name!r}: a second manifest")
        if member.size > MAX_MANIFEST_BYTES:
            raise BadInput(f"bundle entry {name!r}: manifest over {MAX_MANIFEST_BYTES} bytes")
        self.manifest = parse_manifest(self._read(member, member.size), name)

    def _entry(self, member: Member, layer: LayerName | None, parts: Parts, wanted: bool) -> Entry:
        name = member.name
        for xattr in member.xattrs:
            if xattr.startswith(_RESERVED_XATTRS):
                raise BadInput(f"bundle entry {name!r}: reserved xattr {xattr}")
        kind = _KINDS.get(member.type)
        if parts[-1].startswith(WHITEOUT_PREFIX):
            return Entry(layer, *self._whiteout(member, kind, parts))
        if kind is None:
            raise BadInput(f"bundle entry {name!r}: unsupported entry type {member.type!r}")
        if kind is Kind.FILE and member.size > self._limits.max_entry_bytes:
            raise BadInput(
                f"bundle entry {name!r}: {member.size} bytes, over the per-entry limit "
                f"of {self._limits.max_entry_bytes}"
            )
        if kind is Kind.SYMLINK:
            if not member.linkname:
                raise BadInput(f"bundle entry {name!r}: symlink with an empty target")
            if symlink_climbs_out(parts, member.linkname):
                raise BadInput(
                    f"bundle entry {name!r}: symlink to {member.linkname!r} leads outside the root"
                )
        if kind is Kind.HARDLINK:
            return Entry(layer, parts, kind, member, self._hardlink_target(member, layer, wanted))
        if kind in (Kind.CHAR, Kind.BLOCK, Kind.FIFO) and not self._limits.allow_devices:
            raise BadInput(f"bundle entry {name!r}: {kind.value} device nodes are not allowed")
        return Entry(layer, parts, kind, member)

    def _whiteout(
        self, member: Member, kind: Kind | None, parts: Parts
    ) -> tuple[Parts, Kind, Member]:
        leaf = parts[-1]
        if kind is not Kind.FILE:
            raise BadInput(f"bundle entry {member.name!r}: a whiteout must be a regular file")
        if leaf == OPAQUE_MARKER:
            return parts[:-1], Kind.OPAQUE, member
        hidden = leaf[len(WHITEOUT_PREFIX) :]
        if hidden.startswith(WHITEOUT_PREFIX) or hidden in ("", ".", ".."):
            raise BadInput(f"bundle entry {member.name!r}: reserved whiteout name {leaf!r}")
        return (*parts[:-1], hidden), Kind.WHITEOUT, member

    def _hardlink_target(self, member: Member, layer: LayerName | None, wanted: bool) -> Parts:
        name, linkname = member.name, member.linkname
        try:
            target = member_parts(linkname)
        except BadInput:
            where = f"bundle entry {name!r}: hardlink to {linkname!r}"
            raise BadInput(f"{where} leads outside the bundle") from None
        if layer is not None:
            if target[:2] != (LAYERS_DIR, layer.dirname):
                raise BadInput(f"bundle entry {name!r}: hardlink to {linkname!r} outside its layer")
            target = target[2:]
        elif target[:1] == (LAYERS_DIR,):
            raise BadInput(f"bundle entry {name!r}: hardlink to {linkname!r} outside its layer")
        if not wanted:
            return target  # whether it names an earlier file needs the layer's paths
        paths = self._paths.get("base" if layer is None else layer.dirname)
        known = paths.kinds.get(target) if paths else None
        if known not in (Kind.FILE, Kind.HARDLINK):
            raise BadInput(
                f"bundle entry {name!r}: hardlink to {linkname!r}, "
                "which is not an earlier regular file of the same layer"
            )
        return target
