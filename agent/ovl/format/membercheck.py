"""The rules a bundle's tar members must follow, applied member by member in stream order:
entries sorted into layers, hostile ones refused with one line naming the entry and the reason.

One check for every side: the bundle reader feeds it what it parses (apply, scan, lint), and
`ovl pack` what it writes, so a bundle pack lets through is one machines read.

Every member gets the checks that need no memory (path syntax, type, sizes). The checks across
entries (paths through symlinks, hardlink targets, a path declared twice) keep every path of a
layer, so they run only for the layers the caller wants: all of them by default (scan, lint,
pack), the written ones when applying (docs/FORMAT.md, section 7.1)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

from ovl.core.errors import BadInput
from ovl.format.codec import decoded_size_refused
from ovl.format.favors import LayerName, parse_layer_name
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
)
from ovl.format.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX

LAYERS_DIR = "layers"
# Written by ovl itself in split mode; a bundle must not smuggle overlayfs metadata in.
_RESERVED_XATTRS = ("trusted.overlay.", "user.overlay.")


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


# For the checks run on every member: looking up an Enum member costs ~80 ns in Python 3.11,
# a module global ~15 (bench/bundle.py's pack makes eight lookups per entry).
_FILE, _DIR, _SYMLINK, _HARDLINK, _OPAQUE = (
    Kind.FILE,
    Kind.DIR,
    Kind.SYMLINK,
    Kind.HARDLINK,
    Kind.OPAQUE,
)

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


class Entry(NamedTuple):
    """A validated entry. `layer` None is the base; `path` is relative to the layer's root
    (empty for the layer folder itself); `link` is a hardlink's target in the same layer.
    (A NamedTuple: one is made per member, see tarread.Member.)"""

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
        parents = self.parents
        parent = path[:-1]
        new_parent = parent not in parents
        if new_parent:
            for depth in range(1, len(path)):
                ancestor = path[:depth]
                kind = self.kinds.get(ancestor)
                if kind is _SYMLINK:
                    raise BadInput(
                        f"bundle entry {name!r}: path passes through symlink {show(ancestor)}"
                    )
                if kind not in (None, _DIR):
                    raise BadInput(f"bundle entry {name!r}: {show(ancestor)} is not a directory")
        own = _DIR if entry.kind is _OPAQUE else entry.kind
        known = self.kinds.setdefault(path, own)  # a conflict is refused below
        if own is not _DIR and path and path in parents:
            raise BadInput(f"bundle entry {name!r}: a {own.value} with entries below it")
        if known is not own:
            raise BadInput(f"bundle entry {name!r}: declared both as {known.value} and {own.value}")
        if new_parent:
            while parent and parent not in parents:
                parents.add(parent)
                parent = parent[:-1]


class MemberCheck:
    """Every rule a bundle's members must follow, fed the members one by one in stream order
    (`entry`); the manifest ends up in `manifest`. A bundle is refused at its first problem,
    as machines refuse it: feed nothing more after a BadInput.

    `manifest_data`: the data of the member found to be the manifest, asked for at most once,
    after the manifest's own checks. `wanted`: the layers whose entries are returned and fully
    checked (the base always is); other layers' entries get only the per-member checks and
    nothing of them is kept.
    """

    def __init__(
        self,
        limits: Limits,
        manifest_data: Callable[[Member], bytes],
        wanted: Callable[[LayerName], bool] | None = None,
    ) -> None:
        self.manifest: Manifest | None = None
        self._limits = limits
        self._manifest_data = manifest_data
        self._wanted = wanted
        self._last_layer: LayerName | None = None
        self._last_wanted = True
        self._paths: dict[str, _LayerPaths] = {}
        self._count = 0
        self._max_entries = limits.max_entries  # read once per member: kept at hand
        self._max_entry_bytes = limits.max_entry_bytes
        self._last_paths: tuple[LayerName | None, _LayerPaths | None] = (None, None)

    def entry(self, member: Member) -> Entry | None:
        """The validated entry that `member` is, or None for a member that is no entry of a
        wanted layer (the manifest, the bundle's own folders, unwanted layers' entries);
        BadInput naming the member and the rule it breaks."""
        name = member.name
        self._count += 1
        if self._count > self._max_entries:
            raise BadInput(f"bundle entry {name!r}: more than {self._max_entries} entries")
        parts = member_parts(name)
        layer: LayerName | None = None
        if parts and parts[0] == LAYERS_DIR:
            if len(parts) == 1:
                return self._folder(member, None)
            layer = self._layer(parts[1], name)
            parts = parts[2:]
            if not parts:  # the layer's own folder: returned only when the layer is wanted
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
        self._layer_paths(layer).declare(entry, name)
        return entry

    def _layer_paths(self, layer: LayerName | None) -> _LayerPaths:
        last, paths = self._last_paths
        if paths is None or last is not layer:  # most members are in the last one's layer
            dirname = "base" if layer is None else layer.dirname
            paths = self._paths.get(dirname)
            if paths is None:
                paths = self._paths[dirname] = _LayerPaths()
            self._last_paths = (layer, paths)
        return paths

    def stream_bytes(self, count: int) -> None:
        """For a writer, which has no decoder to count for it: BadInput when `count` bytes of
        tar stream are over the limit, as a reader's decoder refuses them."""
        if count > self._limits.max_total_bytes:
            raise decoded_size_refused(self._limits.max_total_bytes)

    def _folder(self, member: Member, layer: LayerName | None) -> Entry | None:
        if member.type != DIRTYPE:
            raise BadInput(f"bundle entry {member.name!r}: must be a directory")
        return None if layer is None else Entry(layer, (), _DIR, member)

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
        self.manifest = parse_manifest(self._manifest_data(member), name)

    def _entry(self, member: Member, layer: LayerName | None, parts: Parts, wanted: bool) -> Entry:
        name = member.name
        if member.xattrs:
            for xattr in member.xattrs:
                if xattr.startswith(_RESERVED_XATTRS):
                    raise BadInput(f"bundle entry {name!r}: reserved xattr {xattr}")
        kind = _KINDS.get(member.type)
        if parts[-1].startswith(WHITEOUT_PREFIX):
            return Entry(layer, *self._whiteout(member, kind, parts))
        if kind is _FILE:  # most entries are files or directories: those first
            if member.size > self._max_entry_bytes:
                raise BadInput(
                    f"bundle entry {name!r}: {member.size} bytes, over the per-entry limit "
                    f"of {self._max_entry_bytes}"
                )
            return Entry(layer, parts, kind, member)
        if kind is _DIR:
            return Entry(layer, parts, kind, member)
        if kind is None:
            raise BadInput(f"bundle entry {name!r}: unsupported entry type {member.type!r}")
        if kind is _SYMLINK:
            if not member.linkname:
                raise BadInput(f"bundle entry {name!r}: symlink with an empty target")
            if symlink_climbs_out(parts, member.linkname):
                raise BadInput(
                    f"bundle entry {name!r}: symlink to {member.linkname!r} leads outside the root"
                )
        if kind is _HARDLINK:
            return Entry(layer, parts, kind, member, self._hardlink_target(member, layer, wanted))
        if kind in (Kind.CHAR, Kind.BLOCK, Kind.FIFO) and not self._limits.allow_devices:
            raise BadInput(f"bundle entry {name!r}: {kind.value} device nodes are not allowed")
        return Entry(layer, parts, kind, member)

    def _whiteout(
        self, member: Member, kind: Kind | None, parts: Parts
    ) -> tuple[Parts, Kind, Member]:
        leaf = parts[-1]
        if kind is not _FILE:
            raise BadInput(f"bundle entry {member.name!r}: a whiteout must be a regular file")
        if leaf == OPAQUE_MARKER:
            return parts[:-1], _OPAQUE, member
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
        if known not in (_FILE, _HARDLINK):
            raise BadInput(
                f"bundle entry {name!r}: hardlink to {linkname!r}, "
                "which is not an earlier regular file of the same layer"
            )
        return target
