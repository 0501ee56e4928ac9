"""Streaming writers that compress and armour a bundle on its way to disk (see docs/FORMAT.md)."""

from __future__ import annotations

import base64
import gzip
import lzma
import zlib
from typing import BinaryIO, Protocol, cast

import zstandard

from agent.bundle.armour import BEGIN_LINE, END_LINE
from agent.bundle.codec import Compression
from agent.errors import BadInput

ARMOR_BEGIN = BEGIN_LINE + b"\n"
ARMOR_END = END_LINE + b"\n"
# 57 raw bytes encode to exactly one 76-character base64 line.
_ARMOR_CHUNK = 57


# Each compressor's level range, and the level used when none is asked for.
LEVELS: dict[Compression, tuple[int, int, int]] = {
    Compression.ZSTD: (1, 22, 3),
    Compression.GZIP: (0, 9, 6),
    Compression.ZLIB: (0, 9, 6),
    Compression.XZ: (0, 9, 6),
    Compression.NONE: (0, 0, 0),
}


class Sink(Protocol):
    """A byte stream a bundle is written into; `finish` flushes trailers but leaves `out` open."""

    def write(self, data: bytes | memoryview, /) -> int: ...

    def finish(self) -> None: ...


class ArmorWriter:
    """Base64 in 76-character lines between BEGIN/END OVL BUNDLE lines."""

    def __init__(self, out: BinaryIO) -> None:
        self._out = out
        self._pending = b""
        out.write(ARMOR_BEGIN)

    def write(self, data: bytes | memoryview, /) -> int:
        buffered = self._pending + data
        whole = len(buffered) - len(buffered) % _ARMOR_CHUNK
        if whole:
            self._out.write(base64.encodebytes(buffered[:whole]))
        self._pending = buffered[whole:]
        return len(data)

    def finish(self) -> None:
        if self._pending:
            self._out.write(base64.encodebytes(self._pending))
        self._out.write(ARMOR_END)


class _Passthrough:
    def __init__(self, out: Sink | BinaryIO) -> None:
        self._out = out

    def write(self, data: bytes | memoryview, /) -> int:
        self._out.write(data)
        return len(data)

    def finish(self) -> None:
        return None


class _ZstdWriter:
    def __init__(self, out: Sink | BinaryIO, level: int) -> None:
        # threads=-1: one worker per CPU, as `zstd -T0` does.
        compressor = zstandard.ZstdCompressor(level=level, threads=-1)
        self._stream = compressor.stream_writer(cast(BinaryIO, out), closefd=False)

    def write(self, data: bytes | memoryview, /) -> int:
        self._stream.write(data)
        return len(data)

    def finish(self) -> None:
        self._stream.flush(zstandard.FLUSH_FRAME)


class _GzipWriter:
    def __init__(self, out: Sink | BinaryIO, level: int) -> None:
        # mtime=0 keeps the output reproducible.
        self._stream = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=level, mtime=0)  # type: ignore[arg-type]

    def write(self, data: bytes | memoryview, /) -> int:
        return self._stream.write(data)

    def finish(self) -> None:
        self._stream.close()


class _ZlibWriter:
    def __init__(self, out: Sink | BinaryIO, level: int) -> None:
        self._out = out
        self._compressor = zlib.compressobj(level)

    def write(self, data: bytes | memoryview, /) -> int:
        self._out.write(self._compressor.compress(data))
        return len(data)

    def finish(self) -> None:
        self._out.write(self._compressor.flush())


class _XzWriter:
    def __init__(self, out: Sink | BinaryIO, level: int) -> None:
        self._out = out
        self._compressor = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=level)

    def write(self, data: bytes | memoryview, /) -> int:
        self._out.write(self._compressor.compress(data))
        return len(data)

    def finish(self) -> None:
        self._out.write(self._compressor.flush())


def open_encoder(out: BinaryIO, compression: Compression, level: int | None, armor: bool) -> Sink:
    """A writer that compresses (then optionally armours) everything written into `out`.

    Call `finish()` on the returned writer to flush all trailers; `out` stays open.
    """
    low, high, default = LEVELS[compression]
    chosen = default if level is None else level
    if not low <= chosen <= high:
        raise BadInput(f"--level {chosen}: {compression.value} takes {low}..{high}")
    armour = ArmorWriter(out) if armor else None
    below: Sink | BinaryIO = out if armour is None else armour
    compressor: Sink
    match compression:
        case Compression.ZSTD:
            compressor = _ZstdWriter(below, chosen)
        case Compression.GZIP:
            compressor = _GzipWriter(below, chosen)
        case Compression.ZLIB:
            compressor = _ZlibWriter(below, chosen)
        case Compression.XZ:
            compressor = _XzWriter(below, chosen)
        case Compression.NONE:
            compressor = _Passthrough(below)
    return _Encoder(compressor, armour)


class _Encoder:
    """The compressor, and the armour below it; finishing flushes them in that order."""

    def __init__(self, compressor: Sink, armour: ArmorWriter | None) -> None:
        self._compressor = compressor
        self._armour = armour

    def write(self, data: bytes | memoryview, /) -> int:
        return self._compressor.write(data)

    def finish(self) -> None:
        self._compressor.finish()
        if self._armour is not None:
            self._armour.finish()
