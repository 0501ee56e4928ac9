"""Bundle encodings: armour and compression, detected by their first bytes, decoded streaming."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from enum import Enum
from typing import BinaryIO, cast

from ovl.core.errors import BadInput
from ovl.format.armour import Base64Reader, Readable, ReadStream, looks_armoured
from ovl.format.zstdframes import ZSTD_MAGIC, ZstdFrameCheck

_HEAD = 512
_CHUNK = 1 << 16


class Compression(Enum):
    ZSTD = "zstd"
    GZIP = "gzip"
    ZLIB = "zlib"
    XZ = "xz"
    NONE = "none"


@dataclass(frozen=True)
class Encoding:
    compression: Compression
    armoured: bool


def _compression_of(head: bytes) -> Compression | None:
    # Tar first: a plain tar's first name may well begin with two bytes that pass for zlib.
    if _is_tar_header(head):
        return Compression.NONE
    if head.startswith(ZSTD_MAGIC):
        return Compression.ZSTD
    if head.startswith(b"\x1f\x8b"):
        return Compression.GZIP
    if head.startswith(b"\xfd7zXZ\x00"):
        return Compression.XZ
    # RFC 1950 header: deflate, window at most 32 KiB, no preset dictionary, multiple of 31.
    if len(head) < 2:
        return None
    method, flags = head[0], head[1]
    if (
        method & 0x0F == 8
        and method >> 4 <= 7
        and not flags & 0x20
        and (method << 8 | flags) % 31 == 0
    ):
        return Compression.ZLIB
    return None


def _is_tar_header(head: bytes) -> bool:
    """A ustar/pax/GNU header block: the magic, and a checksum that adds up."""
    if len(head) < 512 or head[257:262] != b"ustar":
        return False
    try:
        recorded = int(head[148:156].strip(b" \0") or b"-1", 8)
    except ValueError:
        return False
    return recorded == sum(head[:148]) + 8 * 0x20 + sum(head[156:512])


def _read_head(raw: Readable) -> bytes:
    head = b""
    while len(head) < _HEAD:
        chunk = raw.read(_HEAD - len(head))
        if not chunk:
            break
        head += chunk
    return head


def sniff(head: bytes) -> Compression | None:
    """The compression of a bundle beginning with `head` (or of the tar inside its armour),
    None when it is armour; BadInput when it is neither. A reader's first look, and a writer's
    check of what it writes."""
    if not head:
        raise BadInput("bundle: empty input")
    found = _compression_of(head)
    if found is None and not looks_armoured(head):
        raise BadInput(
            f"bundle: unknown encoding (first bytes {head[:8].hex()}); "
            "expected tar, zstd, gzip, zlib, xz or base64 armour"
        )
    return found


def detect(raw: BinaryIO) -> Encoding:
    """The encoding of a seekable bundle; the read position is restored."""
    start = raw.tell()
    try:
        compression = sniff(_read_head(raw))
        if compression is not None:
            return Encoding(compression, armoured=False)
        raw.seek(start)
        inner = sniff(_read_head(Base64Reader(raw)))
        if inner is None:
            raise BadInput("bundle: armour inside armour")
        return Encoding(inner, armoured=True)
    finally:
        raw.seek(start)


class _Prefixed(ReadStream):
    """`head` followed by the rest of `rest`: sniffing without needing a seekable source."""

    def __init__(self, head: bytes, rest: Readable) -> None:
        super().__init__()
        self._head = head
        self._rest = rest

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return self.readall()
        if not self._head:
            return self._rest.read(size)
        data, self._head = self._head[:size], self._head[size:]
        return data


class _ZlibReader(ReadStream):
    """A raw RFC 1950 stream, decompressed in bounded pieces; truncation is an error."""

    def __init__(self, source: Readable) -> None:
        super().__init__()
        self._source = source
        self._inflate = zlib.decompressobj()
        self._pending = b""

    def read(self, size: int = -1, /) -> bytes:
        if size <= 0:  # zlib takes a max_length of 0 to mean "no limit"
            return self.readall() if size < 0 else b""
        while not self._inflate.eof:
            if not self._pending:
                self._pending = self._source.read(_CHUNK)
                if not self._pending:
                    raise EOFError("zlib stream ended before its end marker")
            out = self._inflate.decompress(self._pending, size)
            self._pending = self._inflate.unconsumed_tail
            if out:
                return out
        return b""


def _decompressor(compression: Compression, source: Readable) -> Readable:
    if compression is Compression.ZSTD:
        import zstandard

        reader: Readable = zstandard.ZstdDecompressor().stream_reader(
            cast(BinaryIO, ZstdFrameCheck(source)), read_across_frames=True
        )
        return reader
    if compression is Compression.GZIP:
        import gzip

        return gzip.GzipFile(fileobj=cast(BinaryIO, source), mode="rb")
    if compression is Compression.XZ:
        import lzma

        return lzma.LZMAFile(cast(BinaryIO, source), mode="rb")
    if compression is Compression.ZLIB:
        return _ZlibReader(source)
    return source


def _corruption_errors(compression: Compression) -> tuple[type[Exception], ...]:
    """What the decompressor raises on corrupt input (truncation raises EOFError)."""
    if compression is Compression.ZSTD:
        import zstandard

        return (zstandard.ZstdError,)
    if compression is Compression.GZIP:
        import gzip

        return (gzip.BadGzipFile, zlib.error)
    if compression is Compression.XZ:
        import lzma

        return (lzma.LZMAError,)
    return (zlib.error,)


class DecodedStream(ReadStream):
    """The plain tar stream of a bundle, with its encoding; corrupt or oversized input raises
    BadInput naming the cause."""

    def __init__(self, raw: Readable, max_bytes: int | None) -> None:
        super().__init__()
        head = _read_head(raw)
        compression = sniff(head)
        source: Readable = _Prefixed(head, raw)
        armoured = compression is None
        if compression is None:
            armour = Base64Reader(source)
            head = _read_head(armour)
            compression = sniff(head)
            if compression is None:
                raise BadInput("bundle: armour inside armour")
            source = _Prefixed(head, armour)
        self.encoding = Encoding(compression, armoured)
        self._stream = _decompressor(compression, source)
        self._corruption = _corruption_errors(compression)
        self._max_bytes = max_bytes
        self.decoded_bytes = 0

    def read(self, size: int = -1, /) -> bytes:
        """Up to `size` decoded bytes (all that is left when negative); b"" at the end."""
        if size < 0:
            return self.readall()
        what = self.encoding.compression.value
        try:
            data = self._stream.read(size)
        except EOFError as exc:
            raise BadInput(f"bundle: truncated {what} stream ({exc})") from None
        except self._corruption as exc:
            raise BadInput(f"bundle: corrupt {what} stream ({exc})") from None
        self.decoded_bytes += len(data)
        if self._max_bytes is not None and self.decoded_bytes > self._max_bytes:
            raise decoded_size_refused(self._max_bytes)
        return data


def decoded_size_refused(max_bytes: int) -> BadInput:
    """The refusal of a tar stream over `max_bytes` (the decoder's, and a writer's check)."""
    return BadInput(f"bundle: more than {max_bytes} bytes once decompressed (limit reached)")


def open_decoded(raw: BinaryIO, *, max_bytes: int | None = None) -> DecodedStream:
    """Stream the plain tar inside `raw`, whatever its armour and compression.

    `max_bytes` caps the decompressed size (decompression bombs stop there).
    """
    return DecodedStream(raw, max_bytes)
