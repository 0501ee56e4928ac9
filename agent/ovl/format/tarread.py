"""Reading a tar stream forward, member by member: ustar headers, GNU long names and pax
extended headers are parsed here, without tarfile (docs/FORMAT.md, section 1).

A valid archive reads as Python's tarfile reads it (tests compare the two on whole archives).
Damage that tarfile takes for the end of the archive (or, in some versions, reads past) is
TarDamage here, one line saying what is wrong; so is nonsense that tarfile reads quietly:
negative sizes, owners and device numbers, pax numbers that are not decimal, a NUL in a pax
name or keyword, two extended headers of one kind for one member.

Text is UTF-8 with undecodable bytes kept as surrogate escapes, as tarfile reads it with
errors="surrogateescape"; a pax `hdrcharset=BINARY` record (raw bytes) therefore changes
nothing. `uname` and `gname` are not read: ovl sets owners by number.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import NamedTuple

from ovl.format.armour import Readable

_BLOCK = 512
REGTYPE = b"0"
AREGTYPE = b"\0"  # a regular file, in old V7 archives
LNKTYPE = b"1"
SYMTYPE = b"2"
CHRTYPE = b"3"
BLKTYPE = b"4"
DIRTYPE = b"5"
FIFOTYPE = b"6"
CONTTYPE = b"7"  # contiguous file: a regular file everywhere that matters
_PAX = b"x"
_SOLARIS_PAX = b"X"
_GLOBAL_PAX = b"g"
_LONG_NAME = b"L"
_LONG_LINK = b"K"
_GNU_SPARSE = b"S"
_EXTENDED = frozenset((_PAX, _SOLARIS_PAX, _GLOBAL_PAX, _LONG_NAME, _LONG_LINK))
_REGULAR = frozenset((REGTYPE, AREGTYPE, CONTTYPE))
# Members without data blocks; every other type (regular files, and types this reader does not
# know) is followed by `size` bytes of data, as tarfile has it.
_NO_DATA = frozenset((LNKTYPE, SYMTYPE, CHRTYPE, BLKTYPE, DIRTYPE, FIFOTYPE))
_MAX_EXTENDED = 1 << 20  # one pax or GNU long-name header; all global headers together
_XATTR_PREFIX = "SCHILY.xattr."
_SPARSE_PREFIX = "GNU.sparse."
# An mtime must fit os.utime's nanoseconds (int64).
_MAX_SECONDS = (1 << 63) // 1_000_000_000
_ZERO_BLOCK = bytes(_BLOCK)
_NO_DEVICES = bytes(16)
_LOW_BYTES = bytes(range(128))
# Decoded at once for headers and skipped data: zstd decodes larger pieces more slowly.
_PIECE = 16 << 10
_NO_XATTRS: Mapping[str, bytes] = MappingProxyType({})


class TarDamage(Exception):
    """The archive cannot be read on from here: one line saying why."""


class SparseMember(Exception):
    """A sparse file (old GNU or pax form), which this reader does not read; `name` is its own."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class Member(NamedTuple):
    """One archive member, its headers resolved (a NamedTuple: made once per member, where a
    frozen dataclass would cost about three times as much).

    `offset` is where its first header starts (extended headers included, global ones not),
    `offset_data` where its data starts; `type` is a typeflag (REGTYPE, DIRTYPE, ...)."""

    name: str
    type: bytes
    size: int
    mode: int
    uid: int
    gid: int
    mtime_ns: int
    linkname: str
    devmajor: int
    devminor: int
    xattrs: Mapping[str, bytes]  # pax SCHILY.xattr.<name> records, values byte for byte
    offset: int
    offset_data: int

    def isreg(self) -> bool:
        return self.type in _REGULAR


def _text(field: bytes) -> str:
    return field.partition(b"\0")[0].decode("utf-8", "surrogateescape")


def _number(field: bytes) -> int:
    """A number field as tarfile reads it: octal digits up to a NUL, blanks around them
    (none is 0), or GNU base-256 (first byte 0x80, or 0xFF for a negative number);
    ValueError for anything else."""
    if field[0] in (0x80, 0xFF):
        value = int.from_bytes(field[1:], "big")
        return value - (1 << 8 * (len(field) - 1)) if field[0] == 0xFF else value
    digits = field.partition(b"\0")[0]
    try:
        return int(digits, 8)
    except ValueError:  # none, or blanks int() does not strip from bytes
        return int(digits.decode("ascii").strip() or "0", 8)


def _numbers(block: bytes) -> tuple[int, int, int, int, int]:
    """mode, uid, gid, size and mtime, each read as `_number` reads it."""
    # GNU tar and tarfile fill each field with digits but for a NUL at its end: int() alone
    # reads those (and gives way to `_number` on a NUL inside, base-256 or anything else).
    if block[107] == block[115] == block[123] == block[135] == block[147] == 0:
        try:
            return (
                int(block[100:107], 8),
                int(block[108:115], 8),
                int(block[116:123], 8),
                int(block[124:135], 8),
                int(block[136:147], 8),
            )
        except ValueError:
            pass
    return (
        _number(block[100:108]),
        _number(block[108:116]),
        _number(block[116:124]),
        _number(block[124:136]),
        _number(block[136:148]),
    )


def _checksum_matches(block: bytes) -> bool:
    """The checksum field against the header's byte sum, unsigned or signed (some old tars
    summed signed chars), the field itself counted as eight spaces."""
    field = block[148:156]
    try:
        recorded = _number(field)
    except ValueError:
        return False
    # The low half of Adler-32 is 1 + the byte sum modulo 65521: exact for 256 bytes.
    total = (zlib.adler32(block[:256]) & 0xFFFF) + (zlib.adler32(block[256:]) & 0xFFFF) - 2
    unsigned = total - sum(field) + 8 * 0x20
    if recorded == unsigned:
        return True
    high = len(block.translate(None, _LOW_BYTES)) - len(field.translate(None, _LOW_BYTES))
    return recorded == unsigned - 256 * high


def _header(block: bytes, offset: int, offset_data: int) -> Member | None:
    """The member one header block describes, read as tarfile's TarInfo.frombuf reads it;
    None for a zero block (the end of the archive)."""
    if block == _ZERO_BLOCK:
        return None
    if not _checksum_matches(block):
        raise TarDamage("corrupt header (bad checksum)")
    try:
        mode, uid, gid, size, mtime = _numbers(block)
        devmajor = devminor = 0
        if block[329:345] != _NO_DEVICES:
            devmajor, devminor = _number(block[329:337]), _number(block[337:345])
    except ValueError:
        raise TarDamage("corrupt header (a number field is not octal)") from None
    if min(mode, uid, gid, size, devmajor, devminor) < 0:
        raise TarDamage("corrupt header (a negative number)")
    if not -_MAX_SECONDS <= mtime <= _MAX_SECONDS:
        raise TarDamage("corrupt header (mtime out of range)")
    kind = block[156:157]
    name = _text(block[:100])
    # Old V7 tar marks a directory as a regular file with a trailing slash.
    if kind == AREGTYPE and name.endswith("/"):
        kind = DIRTYPE
    if kind == DIRTYPE:
        name = name.rstrip("/")
    if block[345] and kind not in (_LONG_NAME, _LONG_LINK, _GNU_SPARSE):
        name = _text(block[345:500]) + "/" + name
    linkname = _text(block[157:257]) if block[157] else ""
    return Member(
        name,
        kind,
        size,
        mode,
        uid,
        gid,
        mtime * 1_000_000_000,
        linkname,
        devmajor,
        devminor,
        _NO_XATTRS,
        offset,
        offset_data,
    )


def _pax_records(data: bytes) -> dict[str, bytes]:
    """The records of a pax header's data blocks, `<length> <keyword>=<value>\\n` each, up to
    a NUL where a record would start; refused as tarfile (since 3.13) refuses them."""
    records: dict[str, bytes] = {}
    at, end = 0, len(data)
    while at < end and data[at]:
        space = data.find(b" ", at, at + 21)
        if space <= at or not data[at:space].isdigit():
            raise TarDamage("corrupt extended header (a record without its length)")
        length = int(data[at:space])
        last = at + length - 1
        if length < 5 or last >= end or data[last] != 0x0A:
            raise TarDamage("corrupt extended header (a record's length is wrong)")
        keyword, equals, value = data[space + 1 : last].partition(b"=")
        if not keyword or not equals or 0 in keyword:
            raise TarDamage("corrupt extended header (a record without a keyword)")
        records[keyword.decode("utf-8", "surrogateescape")] = value
        at += length
    return records


def _decimal(value: bytes, keyword: str) -> int:
    if not value.isdigit():
        raise TarDamage(f"corrupt extended header ({keyword} {value!r} is not a number)")
    return int(value)


def _pax_time(value: bytes) -> int:
    """Nanoseconds (truncated) from a pax time: "1700000000.123456789", or any decimal number
    as Python's tarfile writes a float ("1e-05")."""
    whole, _, fraction = value.partition(b".")
    negative = whole[:1] == b"-"
    if len(value) > 40:
        raise TarDamage("corrupt extended header (mtime out of range)")
    if (whole[1:] if negative else whole).isdigit() and (fraction.isdigit() or not fraction):
        seconds = int(whole)
        nanos = int(fraction[:9].ljust(9, b"0")) if fraction else 0
        if abs(seconds) <= _MAX_SECONDS:
            return seconds * 1_000_000_000 + (-nanos if negative else nanos)
    else:
        # Imported here: boots meet only the plain form above.
        from decimal import Context, Decimal, InvalidOperation

        try:
            exact = Decimal(value.decode("ascii"))
        except (UnicodeDecodeError, InvalidOperation):
            exact = Decimal("NaN")
        if not exact.is_finite():
            raise TarDamage(f"corrupt extended header (mtime {value!r} is not a number)")
        if abs(exact) <= _MAX_SECONDS:
            # 40 characters hold fewer significant digits than 60: the scaling is exact.
            return int(exact.scaleb(9, Context(prec=60)))
    raise TarDamage("corrupt extended header (mtime out of range)")


def _name(value: bytes, keyword: str) -> str:
    if 0 in value:
        raise TarDamage(f"corrupt extended header (a NUL in {keyword})")
    return value.decode("utf-8", "surrogateescape")


def _with_records(member: Member, records: Mapping[str, bytes]) -> Member:
    """`member` with the fields pax records replace, as tarfile applies them."""
    name, linkname, mtime_ns = member.name, member.linkname, member.mtime_ns
    size, uid, gid = member.size, member.uid, member.gid
    xattrs: dict[str, bytes] | None = None
    for keyword, value in records.items():
        if keyword == "path":
            name = _name(value, keyword).rstrip("/")
        elif keyword == "mtime":
            mtime_ns = _pax_time(value)
        elif keyword == "size":
            size = _decimal(value, keyword)
        elif keyword == "uid":
            uid = _decimal(value, keyword)
        elif keyword == "gid":
            gid = _decimal(value, keyword)
        elif keyword == "linkpath":
            linkname = _name(value, keyword)
        elif keyword.startswith(_XATTR_PREFIX):
            if xattrs is None:
                xattrs = dict(member.xattrs)
            xattrs[keyword[len(_XATTR_PREFIX) :]] = value
        elif keyword.startswith(_SPARSE_PREFIX):
            sparse_name = records.get("GNU.sparse.name")
            raise SparseMember(name if sparse_name is None else _text(sparse_name))
    return Member(
        name,
        member.type,
        size,
        member.mode,
        uid,
        gid,
        mtime_ns,
        linkname,
        member.devmajor,
        member.devminor,
        member.xattrs if xattrs is None else xattrs,
        member.offset,
        member.offset_data,
    )


class _Extension(NamedTuple):
    """A pax 'x' or GNU 'L'/'K' header read before the member it describes."""

    type: bytes
    records: dict[str, bytes]  # of a pax header
    text: str  # of a GNU long name or link


def _resolved(
    header: Member, extensions: list[_Extension], global_records: dict[str, bytes]
) -> Member:
    """The member that `header` and the extended headers before it describe."""
    member = header
    if global_records:
        member = _with_records(member, global_records)
        if member.type == DIRTYPE:
            member = member._replace(name=member.name.rstrip("/"))
    # tarfile reads extended headers recursively, so the first one read is applied last.
    for extension in reversed(extensions):
        if extension.type == _PAX:
            records = extension.records
            member = _with_records(
                member, {**global_records, **records} if global_records else records
            )
        elif extension.type == _LONG_NAME:
            name = extension.text
            member = member._replace(
                name=name.removesuffix("/") if member.type == DIRTYPE else name
            )
        else:
            member = member._replace(linkname=extension.text)
    if member.type == _GNU_SPARSE:
        raise SparseMember(member.name)
    return member


class TarReader:
    """The members of a tar stream, read once, forward. Iterate `members()`; the data of the
    member just yielded is read with `read_data()` (what is not read is skipped)."""

    def __init__(self, source: Readable) -> None:
        self._source = source
        self._chunk = b""  # decoded, not yet consumed from `_at` on
        self._at = 0
        self._decoded = 0  # bytes read from `source`
        self._left = 0  # data bytes of the current member not read yet
        self._padding = 0  # after them, to the end of its last block
        self._global: dict[str, bytes] = {}
        self._global_bytes = 0

    def _position(self) -> int:
        return self._decoded - len(self._chunk) + self._at

    def _refill(self, wanted: int) -> bytes:
        piece = self._source.read(max(wanted, _PIECE))
        self._decoded += len(piece)
        return piece

    def _take(self, size: int) -> bytes:
        """The next `size` bytes, fewer only where the stream ends."""
        at, end = self._at, self._at + size
        if end <= len(self._chunk):
            self._at = end
            return self._chunk[at:end]
        rest = self._chunk[at:]
        pieces = [rest] if rest else []
        missing = size - len(rest)
        self._chunk, self._at = b"", 0
        while missing:
            piece = self._refill(missing)
            if not piece:
                break
            if len(piece) > missing:
                self._chunk, self._at = piece, missing
                piece = piece[:missing]
            pieces.append(piece)
            missing -= len(piece)
        return b"".join(pieces)

    def _skip(self, size: int) -> bool:
        """Pass over `size` bytes; False when the stream ends first."""
        available = len(self._chunk) - self._at
        if size <= available:
            self._at += size
            return True
        size -= available
        self._chunk, self._at = b"", 0
        while size:
            piece = self._refill(0)
            if not piece:
                return False
            if len(piece) > size:
                self._chunk, self._at = piece, size
                return True
            size -= len(piece)
        return True

    def read_data(self, size: int) -> bytes:
        """The next `size` bytes of the current member's data, fewer at its end (b"" after)."""
        size = min(size, self._left)
        data = self._take(size)
        if len(data) != size:
            raise TarDamage("truncated (data ends early)")
        self._left -= size
        return data

    def members(self) -> Iterator[Member]:
        """Every member up to the end-of-archive marker (a zero block; what follows it is not
        read); TarDamage where the stream is damaged or ends before the marker."""
        while True:
            if self._left or self._padding:
                if not self._skip(self._left + self._padding):
                    raise TarDamage("truncated (data ends early)")
                self._left = self._padding = 0
            member = self._next_member()
            if member is None:
                return
            if member.type not in _NO_DATA:
                self._left, self._padding = member.size, -member.size % _BLOCK
            yield member

    def _next_member(self) -> Member | None:
        extensions: list[_Extension] = []
        start = -1  # of the first extended header
        while True:
            offset = self._position()
            block = self._take(_BLOCK)
            if len(block) != _BLOCK:
                raise TarDamage(
                    "truncated inside a header" if block else "truncated (no end-of-archive marker)"
                )
            header = _header(block, offset if start < 0 else start, offset + _BLOCK)
            if header is None:
                if extensions:
                    raise TarDamage("corrupt extended header (no member follows it)")
                return None
            if header.type not in _EXTENDED:
                break
            data = self._extension_data(header.size)
            kind = _PAX if header.type == _SOLARIS_PAX else header.type
            if kind == _GLOBAL_PAX:
                self._global_bytes += header.size
                if self._global_bytes > _MAX_EXTENDED:
                    raise TarDamage(
                        f"global extended headers of {self._global_bytes} bytes (limit 1 MiB)"
                    )
                self._global.update(_pax_records(data))
                continue
            if any(extension.type == kind for extension in extensions):
                raise TarDamage(f"corrupt extended header (a second {kind!r} for one member)")
            if kind == _PAX:
                extensions.append(_Extension(kind, _pax_records(data), ""))
            else:
                extensions.append(_Extension(kind, {}, _text(data)))
            if start < 0:
                start = offset
        if not extensions and not self._global:
            if header.type == _GNU_SPARSE:
                raise SparseMember(header.name)
            return header
        return _resolved(header, extensions, self._global)

    def _extension_data(self, size: int) -> bytes:
        if size > _MAX_EXTENDED:
            raise TarDamage(f"extended header of {size} bytes (limit 1 MiB)")
        padded = size + -size % _BLOCK
        data = self._take(padded)
        if len(data) != padded:
            raise TarDamage("truncated inside an extended header")
        return data
