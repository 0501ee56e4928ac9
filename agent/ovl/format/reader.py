"""One validating pass over a bundle's tar stream: entries sorted into layers, hostile ones
refused with one line naming the entry and the reason. Nothing is written here.

Every entry gets the checks that need no memory (path syntax, type, sizes, header damage).
The checks across entries (paths through symlinks, hardlink targets, a path declared twice)
keep every path of a layer, so they run only for the layers the caller wants: all of them by
default (scan, lint), the written ones when applying (docs/FORMAT.md, section 7.1)."""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, BinaryIO, cast

from ovl.core.errors import BadInput
from ovl.format.codec import DecodedStream, Encoding, open_decoded
from ovl.format.favors import LayerName, parse_layer_name
from ovl.format.frameindex import FrameRanges, frames_to_read, read_index
from ovl.format.manifest import MANIFEST_NAME, MAX_MANIFEST_BYTES, Manifest, parse_manifest
from ovl.format.paths import Parts, member_parts, show, symlink_climbs_out
from ovl.format.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX

LAYERS_DIR = "layers"
XATTR_PAX_PREFIX = "SCHILY.xattr."
# Written by ovl itself in split mode; a bundle must not smuggle overlayfs metadata in.
_RESERVED_XATTRS = ("trusted.overlay.", "user.overlay.")
_MAX_HEADER_BYTES = 1 << 20
_COPY_CHUNK = 1 << 20
_DECODE_PIECE = 1 << 14


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
    info: tarfile.TarInfo
    link: Parts = ()

    @property
    def layer_dirname(self) -> str:
        return "base" if self.layer is None else self.layer.dirname

    def xattrs(self) -> dict[str, bytes]:
        return {
            key[len(XATTR_PAX_PREFIX) :]: value.encode("utf-8", "surrogateescape")
            for key, value in self.info.pax_headers.items()
            if key.startswith(XATTR_PAX_PREFIX)
        }

    def mtime_ns(self) -> int:
        """The exact modification time: pax `mtime` is a decimal with up to 9 fraction digits."""
        text = self.info.pax_headers.get("mtime")
        if text is None:
            return int(self.info.mtime) * 1_000_000_000
        whole, _, fraction = text.partition(".")
        sign = -1 if whole.startswith("-") else 1
        nanos = int((fraction + "000000000")[:9]) if fraction else 0
        return int(whole) * 1_000_000_000 + sign * nanos


class _ForwardStream:
    """The decoded tar stream as tarfile reads it (read, tell, forward-only seek): headers are
    sliced out of the current piece, and skipped data is never copied. Pieces are decoded 16 kB
    at a time, as tarfile's stream mode asked for them, so damaged input fails at the same
    point with the same message."""

    def __init__(self, source: DecodedStream) -> None:
        self._source = source
        self._chunk = b""
        self._at = 0  # read position inside _chunk
        self._position = 0  # read position in the stream

    def tell(self) -> int:
        return self._position

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all that is left when negative); short only at the end."""
        at, end = self._at, self._at + size
        if 0 <= size <= len(self._chunk) - at:
            self._at = end
            self._position += size
            return self._chunk[at:end]
        pieces = [self._chunk[at:]]
        wanted = size - len(pieces[0]) if size >= 0 else -1
        self._chunk, self._at = b"", 0
        while wanted:
            chunk = self._source.read(_DECODE_PIECE)
            if not chunk:
                break
            if 0 <= wanted < len(chunk):
                self._chunk, self._at = chunk, wanted
                chunk = chunk[:wanted]
            pieces.append(chunk)
            wanted = wanted - len(chunk) if wanted > 0 else wanted
        data = b"".join(pieces)
        self._position += len(data)
        return data

    def unread(self, data: bytes) -> None:
        """Put back `data`, the bytes just read, to be read again; what is decoded next and
        when stays as it was."""
        self._chunk = data + self._chunk[self._at :]
        self._at = 0
        self._position -= len(data)

    def seek(self, position: int) -> int:
        """Skip forward to `position`, or to the end of the stream when it comes first."""
        skip = position - self._position
        if skip < 0:
            raise tarfile.StreamError("seeking backwards is not allowed")
        while skip > len(self._chunk) - self._at:
            skip -= len(self._chunk) - self._at
            self._position += len(self._chunk) - self._at
            self._chunk, self._at = self._source.read(_DECODE_PIECE), 0
            if not self._chunk:
                return self._position
        self._at += skip
        self._position += skip
        return self._position


class _HeaderProblem(Exception):
    """Raised from inside tarfile, which would otherwise end the archive silently."""


_EMPTY_OWNERS_AND_DEVICE = bytes(32 + 32 + 8 + 8)


def _text(field: bytes, encoding: str, errors: str) -> str:
    return field.partition(b"\0")[0].decode(encoding, errors)


def _number(field: bytes) -> int:
    """An octal field as tarfile reads it (empty is 0); ValueError for anything else
    (base-256, blanks only), which tarfile then reads itself."""
    return int(field.partition(b"\0")[0] or b"0", 8)


# mode, uid, gid, size, mtime: (offset, digits). GNU tar and tarfile fill each field with
# digits but for its last byte, a NUL.
_NUMBER_FIELDS = ((100, 7), (108, 7), (116, 7), (124, 11), (136, 11))


def _numbers(buf: bytes) -> tuple[int, int, int, int, int]:
    """The five numbers of a header, read as `_number` reads each."""
    if buf[107] == buf[115] == buf[123] == buf[135] == buf[147] == 0:
        try:  # a NUL inside a field is a ValueError here, and cuts the field in `_number`
            return (
                int(buf[100:107], 8),
                int(buf[108:115], 8),
                int(buf[116:123], 8),
                int(buf[124:135], 8),
                int(buf[136:147], 8),
            )
        except ValueError:
            pass
    mode, uid, gid, size, mtime = (
        _number(buf[at : at + digits + 1]) for at, digits in _NUMBER_FIELDS
    )
    return mode, uid, gid, size, mtime


def _byte_sum(block: bytes) -> int:
    """`sum(block)` of a 512-byte header at a sixth of the cost: the low half of Adler-32 is
    1 + the byte sum modulo 65521, exact for 256 bytes (at most 65,280)."""
    return (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2


def _plain_header(
    cls: type[tarfile.TarInfo], buf: bytes, encoding: str, errors: str
) -> tarfile.TarInfo | None:
    """What `TarInfo.frombuf` gives for the common header (octal numbers, unsigned checksum,
    no GNU types), at a fraction of its cost; None sends anything else to tarfile itself."""
    kind = buf[156:157]
    if kind in tarfile.GNU_TYPES:
        return None
    try:
        chksum = _number(buf[148:156])
        if chksum != 256 + _byte_sum(buf) - sum(buf[148:156]):
            return None
        info = cls()
        info.mode, info.uid, info.gid, info.size, info.mtime = _numbers(buf)
        # Empty owner names and device numbers are TarInfo's defaults already.
        owners_and_device = buf[265:345]
        if owners_and_device != _EMPTY_OWNERS_AND_DEVICE:
            info.devmajor = _number(buf[329:337])
            info.devminor = _number(buf[337:345])
            info.uname = _text(owners_and_device[:32], encoding, errors)
            info.gname = _text(owners_and_device[32:64], encoding, errors)
    except ValueError:
        return None
    info.chksum = chksum
    info.type = kind
    name = _text(buf[0:100], encoding, errors)
    if buf[157]:
        info.linkname = _text(buf[157:257], encoding, errors)
    prefix = _text(buf[345:500], encoding, errors) if buf[345] else ""
    # Old V7 tar marks a directory as a regular file with a trailing slash.
    if kind == tarfile.AREGTYPE and name.endswith("/"):
        info.type = tarfile.DIRTYPE
    if info.type == tarfile.DIRTYPE:
        name = name.rstrip("/")
    info.name = prefix + "/" + name if prefix else name
    return info


class _StrictTarInfo(tarfile.TarInfo):
    """tarfile treats a missing end-of-archive marker or a corrupt header as the end of the
    archive; a truncated bundle must not pass for a shorter one."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Any:
        if not buf:
            raise _HeaderProblem("truncated (no end-of-archive marker)")
        if len(buf) != tarfile.BLOCKSIZE:
            raise _HeaderProblem("truncated inside a header")
        if buf.count(0) == tarfile.BLOCKSIZE:
            return super().frombuf(buf, encoding, errors)  # the end-of-archive marker
        info = _plain_header(cls, bytes(buf), encoding, errors)
        if info is None:
            try:
                info = super().frombuf(buf, encoding, errors)
            except tarfile.HeaderError as exc:
                raise _HeaderProblem(f"corrupt header ({exc})") from None
        extended = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME)
        if info.type in (*extended, tarfile.GNUTYPE_LONGLINK) and info.size > _MAX_HEADER_BYTES:
            raise _HeaderProblem(f"extended header of {info.size} bytes (limit 1 MiB)")
        return info

    def _proc_member(self, tar: tarfile.TarFile) -> Any:
        # A member whose header block was fine but whose pax records or GNU long name are not
        # would make tarfile end the archive there, silently, past the first member.
        try:
            return super()._proc_member(tar)  # type: ignore[misc]
        except tarfile.HeaderError as exc:
            raise _HeaderProblem(f"corrupt extended header ({exc})") from None


# Member types whose header tarfile's _proc_builtin handles; any other (GNU long names and
# sparse files, global and Solaris pax headers, ...) is left to tarfile itself.
_BUILTIN_TYPES = frozenset(
    (
        tarfile.REGTYPE,
        tarfile.AREGTYPE,
        tarfile.CONTTYPE,
        tarfile.DIRTYPE,
        tarfile.SYMTYPE,
        tarfile.LNKTYPE,
        tarfile.CHRTYPE,
        tarfile.BLKTYPE,
        tarfile.FIFOTYPE,
    )
)
_BLOCK = tarfile.BLOCKSIZE


def _whole_blocks(size: int) -> int:
    return -(-size // _BLOCK) * _BLOCK


def _pax_records(data: bytes) -> dict[str, str] | None:
    """The records of a pax 'x' header as tarfile decodes them, when they are plain UTF-8
    without hdrcharset or GNU sparse keys; None sends anything else to tarfile itself."""
    records: dict[str, str] = {}
    at, end = 0, len(data)
    while at < end and data[at]:
        space = data.find(b" ", at, at + 21)
        if space <= at or not data[at:space].isdigit():
            return None
        length = int(data[at:space])
        last = at + length - 1
        if length < 5 or at + length > end or data[last] != 0x0A:
            return None
        keyword, equals, value = data[space + 1 : last].partition(b"=")
        if not keyword or not equals:
            return None
        try:
            key, text = keyword.decode("utf-8"), value.decode("utf-8")
        except UnicodeDecodeError:
            return None
        if key == "hdrcharset" or key.startswith("GNU.sparse."):
            return None
        records[key] = text
        at += length
    return records


def tar_members(tar: tarfile.TarFile) -> Iterator[tarfile.TarInfo]:
    """`tar.next()` until the end, without keeping headers: the common members (ustar
    headers, alone or after one pax 'x' header) are read here, at a fraction of tarfile's
    cost, and anything else by tarfile itself from the same bytes, so members, offsets and
    errors are tarfile's own. `tar` reads a `_ForwardStream` (mode "r")."""
    stream = tar.fileobj
    assert isinstance(stream, _ForwardStream), "tar_members reads a _ForwardStream"
    info = tar.next()
    while info is not None:
        tar.members.clear()  # type: ignore[attr-defined]  # else tarfile keeps every header
        yield info
        info = _next_member(tar, stream)


def _next_member(tar: tarfile.TarFile, stream: _ForwardStream) -> tarfile.TarInfo | None:
    start = tar.offset
    if stream.seek(start) != start:  # tarfile's own words for data cut short
        raise tarfile.ReadError("unexpected end of data")
    consumed: list[bytes] = []
    info = _read_member(tar, stream, start, consumed)
    if info is None:
        stream.unread(b"".join(consumed))
        following: tarfile.TarInfo | None = tar.next()
        return following
    return info


def _header(
    tar: tarfile.TarFile, stream: _ForwardStream, consumed: list[bytes]
) -> tarfile.TarInfo | None:
    block = stream.read(_BLOCK)
    consumed.append(block)
    if len(block) != _BLOCK:
        return None
    return _plain_header(_StrictTarInfo, block, tar.encoding, tar.errors)


def _read_member(
    tar: tarfile.TarFile, stream: _ForwardStream, start: int, consumed: list[bytes]
) -> tarfile.TarInfo | None:
    """The member at `start` as tarfile's next() makes it, or None (all bytes it read are in
    `consumed`) when tarfile must read it."""
    if tar.pax_headers:  # a global header applies to every later member
        return None
    info = _header(tar, stream, consumed)
    if info is None:
        return None
    records: dict[str, str] | None = None
    if info.type == tarfile.XHDTYPE:
        if info.size > _MAX_HEADER_BYTES:
            return None
        size = _whole_blocks(info.size)
        data = stream.read(size)
        consumed.append(data)
        if len(data) != size or (records := _pax_records(data)) is None:
            return None
        info = _header(tar, stream, consumed)
        if info is None:
            return None
    if info.type not in _BUILTIN_TYPES:
        return None
    info.offset = start
    info.offset_data = stream.tell()
    if records is not None:
        info._apply_pax_info(records, tar.encoding, tar.errors)  # type: ignore[attr-defined]
    offset = info.offset_data
    if info.isreg():
        offset += _whole_blocks(info.size)
    tar.offset = offset
    return info


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


def _plain(exc: Exception) -> str:
    """tarfile's words for a stream that stops early, said plainly."""
    text = str(exc)
    return "truncated (data ends early)" if text == "unexpected end of data" else text


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
        self._tar: tarfile.TarFile | None = None
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

        def wanted_name(dirname: str) -> bool:
            if not may_want(dirname):
                return False
            try:
                layer = parse_layer_name(dirname)
            except BadInput as exc:
                raise BadInput(f"bundle frame index: layer {dirname!r}: {exc}") from None
            return wanted(layer)

        ranges, read = frames_to_read(frames, wanted_name)
        self.frames_read = (read, len(frames))
        return cast(BinaryIO, FrameRanges(source, ranges))

    def entries(self) -> Iterator[Entry]:
        try:
            # TarFile on a forward-only stream rather than tarfile's "r|" mode, whose buffer
            # is re-copied on every read and which skips data 16 kB at a time.
            with tarfile.TarFile(
                fileobj=_ForwardStream(self._decoded),  # type: ignore[arg-type]
                mode="r",
                tarinfo=_StrictTarInfo,
                errors="surrogateescape",
            ) as tar:
                self._tar = tar
                for info in tar_members(tar):
                    self._last = info.name
                    entry = self._classify(info)
                    if entry is not None:
                        yield entry
            # To the end of the stream, past the end-of-archive blocks: decoders notice a
            # stream cut short only there.
            while self._decoded.read(_COPY_CHUNK):
                pass
        except (_HeaderProblem, tarfile.TarError) as exc:
            raise BadInput(f"bundle: {_plain(exc)} after entry {self._last!r}") from None
        finally:
            self._tar = None

    @property
    def decoded_bytes(self) -> int:
        """Bytes of tar stream decoded so far."""
        return self._decoded.decoded_bytes

    def copy_data(self, entry: Entry, fd: int) -> int:
        """Write a regular file's data to `fd`; returns the byte count."""
        info = entry.info
        assert self._tar is not None and self._tar.fileobj is not None, "outside entries()"
        stream = self._tar.fileobj
        if stream.tell() != info.offset_data:  # never in stream mode; keep tarfile's own path
            stream = self._data(info)
        remaining = info.size
        while remaining:
            chunk = self._read(stream, min(remaining, _COPY_CHUNK))
            if not chunk:
                raise BadInput(f"bundle entry {info.name!r}: truncated (data ends early)")
            remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        return info.size

    def _data(self, info: tarfile.TarInfo) -> Any:
        assert self._tar is not None, "entry data read outside entries()"
        return self._tar.extractfile(info)

    def _read(self, stream: Any, size: int) -> bytes:
        try:
            data: bytes = stream.read(size)
        except tarfile.TarError as exc:
            raise BadInput(f"bundle entry {self._last!r}: {_plain(exc)}") from None
        return data

    def _classify(self, info: tarfile.TarInfo) -> Entry | None:
        name = info.name
        self._count += 1
        if self._count > self._limits.max_entries:
            raise BadInput(f"bundle entry {name!r}: more than {self._limits.max_entries} entries")
        if info.issparse():
            raise BadInput(f"bundle entry {name!r}: sparse files are not supported")
        parts = member_parts(name)
        layer: LayerName | None = None
        if parts[:1] == (LAYERS_DIR,):
            if len(parts) == 1:
                return self._folder(info, None)
            layer = self._layer(parts[1], name)
            parts = parts[2:]
            if not parts:  # the layer's own folder: yielded only when the layer is wanted
                return self._folder(info, layer if self._last_wanted else None)
        elif not parts:
            return self._folder(info, None)
        elif parts == (MANIFEST_NAME,):
            self._read_manifest(info)
            return None
        wanted = layer is None or self._last_wanted
        entry = self._entry(info, layer, parts, wanted)
        if not wanted:
            return None
        paths = self._paths.get(entry.layer_dirname)
        if paths is None:
            paths = self._paths[entry.layer_dirname] = _LayerPaths()
        paths.declare(entry, name)
        return entry

    def _folder(self, info: tarfile.TarInfo, layer: LayerName | None) -> Entry | None:
        if not info.isdir():
            raise BadInput(f"bundle entry {info.name!r}: must be a directory")
        return None if layer is None else Entry(layer, (), Kind.DIR, info)

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

    def _read_manifest(self, info: tarfile.TarInfo) -> None:
        if not info.isreg():
            raise BadInput(f"bundle entry {info.name!r}: the manifest must be a regular file")
        if self.manifest is not None:
            raise BadInput(f"bundle entry {info.name!r}: a second manifest")
        if info.size > MAX_MANIFEST_BYTES:
            raise BadInput(f"bundle entry {info.name!r}: manifest over {MAX_MANIFEST_BYTES} bytes")
        self.manifest = parse_manifest(self._read(self._data(info), info.size), info.name)

    def _entry(
        self, info: tarfile.TarInfo, layer: LayerName | None, parts: Parts, wanted: bool
    ) -> Entry:
        name = info.name
        for key in info.pax_headers:
            xattr = key[len(XATTR_PAX_PREFIX) :]
            if key.startswith(XATTR_PAX_PREFIX) and xattr.startswith(_RESERVED_XATTRS):
                raise BadInput(f"bundle entry {name!r}: reserved xattr {xattr}")
        leaf = parts[-1]
        if leaf.startswith(WHITEOUT_PREFIX):
            return Entry(layer, *self._whiteout(info, parts))
        if info.isdir():
            return Entry(layer, parts, Kind.DIR, info)
        if info.isreg():
            if info.size > self._limits.max_entry_bytes:
                raise BadInput(
                    f"bundle entry {name!r}: {info.size} bytes, over the per-entry limit "
                    f"of {self._limits.max_entry_bytes}"
                )
            return Entry(layer, parts, Kind.FILE, info)
        if info.issym():
            if not info.linkname:
                raise BadInput(f"bundle entry {name!r}: symlink with an empty target")
            if symlink_climbs_out(parts, info.linkname):
                raise BadInput(
                    f"bundle entry {name!r}: symlink to {info.linkname!r} leads outside the root"
                )
            return Entry(layer, parts, Kind.SYMLINK, info)
        if info.islnk():
            target = self._hardlink_target(info, layer, wanted)
            return Entry(layer, parts, Kind.HARDLINK, info, target)
        kind = {tarfile.CHRTYPE: Kind.CHAR, tarfile.BLKTYPE: Kind.BLOCK}.get(info.type)
        if info.isfifo():
            kind = Kind.FIFO
        if kind is None:
            raise BadInput(f"bundle entry {name!r}: unsupported entry type {info.type!r}")
        if not self._limits.allow_devices:
            raise BadInput(f"bundle entry {name!r}: {kind.value} device nodes are not allowed")
        return Entry(layer, parts, kind, info)

    def _whiteout(self, info: tarfile.TarInfo, parts: Parts) -> tuple[Parts, Kind, tarfile.TarInfo]:
        leaf = parts[-1]
        if not info.isreg():
            raise BadInput(f"bundle entry {info.name!r}: a whiteout must be a regular file")
        if leaf == OPAQUE_MARKER:
            return parts[:-1], Kind.OPAQUE, info
        hidden = leaf[len(WHITEOUT_PREFIX) :]
        if hidden.startswith(WHITEOUT_PREFIX) or hidden in ("", ".", ".."):
            raise BadInput(f"bundle entry {info.name!r}: reserved whiteout name {leaf!r}")
        return (*parts[:-1], hidden), Kind.WHITEOUT, info

    def _hardlink_target(
        self, info: tarfile.TarInfo, layer: LayerName | None, wanted: bool
    ) -> Parts:
        try:
            target = member_parts(info.linkname)
        except BadInput:
            where = f"bundle entry {info.name!r}: hardlink to {info.linkname!r}"
            raise BadInput(f"{where} leads outside the bundle") from None
        if layer is not None:
            if target[:2] != (LAYERS_DIR, layer.dirname):
                raise BadInput(
                    f"bundle entry {info.name!r}: hardlink to {info.linkname!r} outside its layer"
                )
            target = target[2:]
        elif target[:1] == (LAYERS_DIR,):
            raise BadInput(
                f"bundle entry {info.name!r}: hardlink to {info.linkname!r} outside its layer"
            )
        if not wanted:
            return target  # whether it names an earlier file needs the layer's paths
        paths = self._paths.get("base" if layer is None else layer.dirname)
        known = paths.kinds.get(target) if paths else None
        if known not in (Kind.FILE, Kind.HARDLINK):
            raise BadInput(
                f"bundle entry {info.name!r}: hardlink to {info.linkname!r}, "
                "which is not an earlier regular file of the same layer"
            )
        return target
