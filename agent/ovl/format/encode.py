"""Streaming writers that compress and armour a bundle on its way to disk (see docs/FORMAT.md)."""

from __future__ import annotations

import base64
import hashlib
import threading
import zlib
from dataclasses import replace
from typing import BinaryIO, Protocol, cast

import zstandard

from ovl.core.errors import BadInput
from ovl.format.armour import BEGIN_LINE, END_LINE
from ovl.format.codec import Compression
from ovl.format.frameindex import Frame, encode_index

ARMOR_BEGIN = BEGIN_LINE + b"\n"
ARMOR_END = END_LINE + b"\n"
_JOB_SIZE = 2 << 20
_ASYNC_CUT = 1 << 20  # frames this big are ended on a thread of their own
_MAX_HELD = 16 << 20  # compressed bytes held for the next frame before waiting for the last
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


class _FrameOutput:
    """One compressor's output: straight into the bundle, or held in memory while the frame
    before it is still being finished on another thread."""

    def __init__(self, out: Sink | BinaryIO) -> None:
        self._out = out
        self._held: bytearray | None = None
        self.count = 0  # bytes written since the compressor's current frame began
        self.digest = hashlib.sha256()  # of those bytes: the frame index lists it

    def hold(self) -> None:
        self._held = bytearray()

    @property
    def held(self) -> int:
        return 0 if self._held is None else len(self._held)

    def release(self) -> None:
        held, self._held = self._held, None
        if held:
            self._out.write(memoryview(held))

    def write(self, data: bytes | memoryview, /) -> int:
        if self._held is None:
            self._out.write(data)
        else:
            self._held += data
        self.count += len(data)
        self.digest.update(data)
        return len(data)


class _Compressor:
    """A zstd stream writer and where its output goes."""

    def __init__(self, out: Sink | BinaryIO, params: zstandard.ZstdCompressionParameters) -> None:
        self.output = _FrameOutput(out)
        compressor = zstandard.ZstdCompressor(compression_params=params)
        self.stream = compressor.stream_writer(cast(BinaryIO, self.output), closefd=False)


class _Finishing:
    """A frame being ended on a thread of its own, and what the index will say of it."""

    def __init__(self, compressor: _Compressor, frame: Frame) -> None:
        self.compressor, self.frame = compressor, frame
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="ovl-zstd-frame-end")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.compressor.stream.flush(zstandard.FLUSH_FRAME)
        except BaseException as exc:  # raised again on the writing thread
            self.failure = exc


class FramedZstdWriter:
    """zstd cut into independent frames where the writer says (`cut`), each labelled with what
    its entries belong to (`label`), and (`indexed`) the frame index after the last frame.
    Unindexed and never cut, it is plain zstd in one frame.

    Ending a frame waits for zstd's workers to compress what they hold (~5 ms a cut). A frame
    of _ASYNC_CUT bytes or more is therefore ended on another thread while the next frame goes
    into a second compressor, whose output is held in memory until the first is done."""

    def __init__(self, out: Sink | BinaryIO, level: int, *, indexed: bool) -> None:
        self._out = out
        self.indexed = indexed
        # threads=-1: one worker per CPU, as `zstd -T0` does. Jobs of 2 MiB rather than zstd's
        # 8 MiB at level 3: a frame cut waits for the job in flight, and the workers get the
        # first jobs of a tree of small files sooner (bench/bundle.py: pack ~0.02 s faster).
        self._params = zstandard.ZstdCompressionParameters.from_level(
            level, threads=-1, job_size=_JOB_SIZE
        )
        self._compressors = [_Compressor(out, self._params)]  # a second one once needed
        self._current = 0
        self._finishing: _Finishing | None = None
        self._frames: list[Frame] = []
        self.frame_bytes = 0  # decoded bytes written into the current frame
        self._base = False
        self._layers: list[str] = []

    def write(self, data: bytes | memoryview, /) -> int:
        finishing = self._finishing
        if finishing is not None and (
            not finishing.thread.is_alive() or self._current_output().held > _MAX_HELD
        ):
            self._land()
        self._compressors[self._current].stream.write(data)
        self.frame_bytes += len(data)
        return len(data)

    def label(self, layer: str | None) -> None:
        """What is written next belongs to `layer` (a folder name), or to the base (None)."""
        if layer is None:
            self._base = True
        elif not self._layers or self._layers[-1] != layer:
            self._layers.append(layer)

    def cut(self, *, wait: bool = False) -> None:
        """End the current frame here (a no-op when it is empty); `wait`: before returning."""
        if not self.frame_bytes:
            return
        self._land()
        base = self._base or not self._layers  # what nobody labelled, every machine reads
        frame = Frame(0, self.frame_bytes, base, tuple(self._layers))
        self.frame_bytes, self._base, self._layers = 0, False, []
        compressor = self._compressors[self._current]
        if wait or frame.decoded < _ASYNC_CUT:
            compressor.stream.flush(zstandard.FLUSH_FRAME)
            self._record(compressor, frame)
            return
        if len(self._compressors) == 1:
            self._compressors.append(_Compressor(self._out, self._params))
        self._finishing = _Finishing(compressor, frame)
        self._current ^= 1
        self._current_output().hold()

    def finish(self) -> None:
        self.cut(wait=True)
        self._land()
        if self.indexed:
            self._out.write(encode_index(self._frames))

    def _current_output(self) -> _FrameOutput:
        return self._compressors[self._current].output

    def _land(self) -> None:
        """Wait for the frame being ended elsewhere, index it, let the next one's output out."""
        finishing, self._finishing = self._finishing, None
        if finishing is None:
            return
        finishing.thread.join()
        if finishing.failure is not None:
            raise finishing.failure
        self._record(finishing.compressor, finishing.frame)
        self._current_output().release()

    def _record(self, compressor: _Compressor, frame: Frame) -> None:
        output = compressor.output
        self._frames.append(
            replace(frame, compressed=output.count, sha256=output.digest.hexdigest())
        )
        output.count, output.digest = 0, hashlib.sha256()


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
