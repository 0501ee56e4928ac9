"""Streaming writers that compress and armour a bundle on its way to disk (see docs/FORMAT.md)."""

from __future__ import annotations

import base64
import zlib
from typing import BinaryIO, Protocol, cast

import zstandard

from agent.bundle.armour import BEGIN_LINE, END_LINE
from agent.bundle.codec import Compression
from agent.bundle.frameindex import Frame, encode_index
from agent.errors import BadInput

ARMOR_BEGIN = BEGIN_LINE + b"\n"
ARMOR_END = END_LINE + b"\n"
_JOB_SIZE = 2 << 20
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


class _Counted:
    """Counts the bytes written through it to `out`."""

    def __init__(self, out: Sink | BinaryIO) -> None:
        self._out = out
        self.count = 0

    def write(self, data: bytes | memoryview, /) -> int:
        self._out.write(data)
        self.count += len(data)
        return len(data)


class FramedZstdWriter:
    """zstd cut into independent frames where the writer says (`cut`), each labelled with what
    its entries belong to (`label`), and (`indexed`) the frame index after the last frame.
    Unindexed and never cut, it is plain zstd in one frame."""

    def __init__(self, out: Sink | BinaryIO, level: int, *, indexed: bool) -> None:
        self._out = _Counted(out)
        self.indexed = indexed
        # threads=-1: one worker per CPU, as `zstd -T0` does. Jobs of 2 MiB rather than zstd's
        # 8 MiB at level 3: a frame cut waits for the job in flight, and the workers get the
        # first jobs of a tree of small files sooner (bench/bundle.py: pack ~0.02 s faster).
        params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=-1, job_size=_JOB_SIZE
        )
        compressor = zstandard.ZstdCompressor(compression_params=params)
        self._stream = compressor.stream_writer(cast(BinaryIO, self._out), closefd=False)
        self._frames: list[Frame] = []
        self._frame_start = 0
        self.frame_bytes = 0  # decoded bytes written into the current frame
        self._base = False
        self._layers: list[str] = []

    def write(self, data: bytes | memoryview, /) -> int:
        self._stream.write(data)
        self.frame_bytes += len(data)
        return len(data)

    def label(self, layer: str | None) -> None:
        """What is written next belongs to `layer` (a folder name), or to the base (None)."""
        if layer is None:
            self._base = True
        elif not self._layers or self._layers[-1] != layer:
            self._layers.append(layer)

    def cut(self) -> None:
        """End the current frame here (a no-op when it is empty)."""
        if not self.frame_bytes:
            return
        self._stream.flush(zstandard.FLUSH_FRAME)
        size = self._out.count - self._frame_start
        base = self._base or not self._layers  # what nobody labelled, every machine reads
        self._frames.append(Frame(size, self.frame_bytes, base, tuple(self._layers)))
        self._frame_start, self.frame_bytes = self._out.count, 0
        self._base, self._layers = False, []

    def finish(self) -> None:
        self.cut()
        if self.indexed:
            self._out.write(encode_index(self._frames))


class _GzipWriter:
    def __init__(self, out: Sink | BinaryIO, level: int) -> None:
        # mtime=0 keeps the output reproducible.
        import gzip

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
        import lzma

        self._compressor = lzma.LZMACompressor(format=lzma.FORMAT_XZ, preset=level)

    def write(self, data: bytes | memoryview, /) -> int:
        self._out.write(self._compressor.compress(data))
        return len(data)

    def finish(self) -> None:
        self._out.write(self._compressor.flush())


def open_encoder(
    out: BinaryIO,
    compression: Compression,
    level: int | None,
    armor: bool,
    *,
    framed: bool = False,
) -> Encoder:
    """A writer that compresses (then optionally armours) everything written into `out`.

    `framed`: unarmoured zstd is written in frames the caller cuts and labels through
    `Encoder.framed`, with a frame index at the end. Call `finish()` on the returned writer to
    flush all trailers; `out` stays open.
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
            compressor = FramedZstdWriter(below, chosen, indexed=framed and armour is None)
        case Compression.GZIP:
            compressor = _GzipWriter(below, chosen)
        case Compression.ZLIB:
            compressor = _ZlibWriter(below, chosen)
        case Compression.XZ:
            compressor = _XzWriter(below, chosen)
        case Compression.NONE:
            compressor = _Passthrough(below)
    return Encoder(compressor, armour)


class Encoder:
    """The compressor, and the armour below it; finishing flushes them in that order."""

    def __init__(self, compressor: Sink, armour: ArmorWriter | None) -> None:
        self._compressor = compressor
        self._armour = armour
        self.framed = (
            compressor if isinstance(compressor, FramedZstdWriter) and compressor.indexed else None
        )

    def write(self, data: bytes | memoryview, /) -> int:
        return self._compressor.write(data)

    def finish(self) -> None:
        self._compressor.finish()
        if self._armour is not None:
            self._armour.finish()
