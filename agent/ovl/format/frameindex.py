"""The frame index of a zstd bundle: which layers each zstd frame holds, so a machine decodes
only the frames of its own layers (docs/FORMAT.md, section 2.1).

`ovl pack` cuts its zstd stream into independent frames at entry boundaries and appends this
index as a zstd skippable frame, which every zstd decoder passes over (RFC 8878, 3.1.2): GNU
tar and `zstd -d` read the bundle as before. The compressed bytes of any subset of the frames,
concatenated in order, are again a valid zstd stream of whole tar entries."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from ovl.core.errors import BadInput
from ovl.format.armour import ReadStream
from ovl.format.zstdframes import ZSTD_MAGIC

SKIPPABLE_MAGIC = 0x184D2A5B
TRAILER_MAGIC = b"ovlindex"
FORMAT = "ovl-frame-index/1"
_HEAD = struct.Struct("<II")  # skippable magic, payload size
_TAIL = struct.Struct("<I8s")  # payload size again, TRAILER_MAGIC: found from the file's end
_MAX_INDEX_BYTES = 64 << 20  # compressed or not; a 150,000-layer index is ~6 MiB of JSON
# Parsed, an index costs ~3x its JSON in memory (150,000 layers: +17 MiB of peak RSS). Past
# this (~400,000 layers) it is not used: the bundle is read in full, in flat memory.
_MAX_USED_INDEX_BYTES = 16 << 20


@dataclass(frozen=True)
class Frame:
    """One zstd frame: its compressed and decoded sizes, and what its tar entries belong to."""

    compressed: int
    decoded: int
    base: bool  # holds base entries or the end of the archive: every machine reads it
    layers: tuple[str, ...]  # layer folder names with entries in it, in stream order


def encode_index(frames: Iterable[Frame]) -> bytes:
    """The skippable frame that ends an indexed bundle."""
    import zstandard

    document = {
        "format": FORMAT,
        "frames": [[f.compressed, f.decoded, f.base, list(f.layers)] for f in frames],
    }
    text = json.dumps(document, separators=(",", ":")).encode()
    body = zstandard.ZstdCompressor(level=9).compress(text)
    tail = _TAIL.pack(len(body) + _TAIL.size, TRAILER_MAGIC)
    return _HEAD.pack(SKIPPABLE_MAGIC, len(body) + len(tail)) + body + tail


def read_index(raw: BinaryIO) -> list[Frame] | None:
    """The frame index at the end of the seekable zstd bundle `raw`; None when it has none, or
    one too big to be worth its memory.

    The read position is left anywhere. BadInput when an index is there but damaged or does
    not describe this file."""
    raw.seek(0)
    if raw.read(len(ZSTD_MAGIC)) != ZSTD_MAGIC:
        return None
    end = raw.seek(0, 2)
    if end < _HEAD.size + _TAIL.size:
        return None
    raw.seek(end - _TAIL.size)
    payload_size, magic = _TAIL.unpack(raw.read(_TAIL.size))
    if magic != TRAILER_MAGIC:
        return None
    start = end - _HEAD.size - payload_size
    if start < 0 or payload_size < _TAIL.size:
        raise BadInput("bundle: damaged frame index (its size points outside the file)")
    if payload_size > _MAX_INDEX_BYTES:
        raise BadInput(f"bundle: frame index of {payload_size} bytes, over {_MAX_INDEX_BYTES}")
    raw.seek(start)
    if _HEAD.unpack(raw.read(_HEAD.size)) != (SKIPPABLE_MAGIC, payload_size):
        raise BadInput("bundle: damaged frame index (no skippable frame where it should start)")
    frames = _parse(raw.read(payload_size - _TAIL.size))
    if frames is None:
        return None
    if sum(frame.compressed for frame in frames) != start:
        raise BadInput("bundle: frame index does not describe this file (sizes do not add up)")
    return frames


def _parse(body: bytes) -> list[Frame] | None:
    import zstandard

    try:
        if zstandard.frame_content_size(body) > _MAX_USED_INDEX_BYTES:
            return None  # memory would grow with the layer count; a full read stays flat
        text = zstandard.ZstdDecompressor().decompress(body, max_output_size=_MAX_INDEX_BYTES)
        if len(text) > _MAX_USED_INDEX_BYTES:
            return None
        document = json.loads(text)
    except (zstandard.ZstdError, ValueError) as exc:
        raise BadInput(f"bundle: damaged frame index ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BadInput(f"bundle: frame index is not {FORMAT}")
    frames = document.get("frames")
    if not isinstance(frames, list) or not all(map(_frame_shaped, frames)):
        raise BadInput("bundle: damaged frame index (a frame is not [size, size, base, layers])")
    return [Frame(c, d, b, tuple(layers)) for c, d, b, layers in frames]


def _frame_shaped(item: object) -> bool:
    if not isinstance(item, list) or len(item) != 4:
        return False
    compressed, decoded, base, layers = item
    return (
        type(compressed) is int
        and compressed > 0
        and type(decoded) is int
        and decoded >= 0
        and type(base) is bool
        and isinstance(layers, list)
        and all(type(name) is str for name in layers)
    )


def frames_to_read(
    frames: list[Frame], wanted: Callable[[str], bool]
) -> tuple[list[tuple[int, int]], int]:
    """(offset, length) of the frames a machine reads, neighbours merged, and how many frames
    that is: base frames, and frames holding a layer `wanted` says yes to."""
    ranges: list[tuple[int, int]] = []
    count = offset = 0
    last: tuple[str, bool] | None = None  # a layer's frames come together: ask once per run
    for frame in frames:
        read = frame.base
        for name in frame.layers:
            if last is None or last[0] != name:
                last = (name, wanted(name))
            read = read or last[1]
        if read:
            count += 1
            if ranges and sum(ranges[-1]) == offset:
                ranges[-1] = (ranges[-1][0], ranges[-1][1] + frame.compressed)
            else:
                ranges.append((offset, frame.compressed))
        offset += frame.compressed
    return ranges, count


class FrameRanges(ReadStream):
    """The bytes of `ranges` of `raw`, one after the other, as one stream."""

    def __init__(self, raw: BinaryIO, ranges: list[tuple[int, int]]) -> None:
        super().__init__()
        self._raw = raw
        self._ranges = ranges[::-1]  # popped from the end
        self._left = 0

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return self.readall()
        while not self._left:
            if not self._ranges or not size:
                return b""
            offset, self._left = self._ranges.pop()
            self._raw.seek(offset)
            if self._raw.read(len(ZSTD_MAGIC)) != ZSTD_MAGIC:
                raise BadInput(
                    f"bundle: frame index does not describe this file (no frame at byte {offset})"
                )
            self._raw.seek(offset)
        data = self._raw.read(min(size, self._left))
        if not data:
            raise EOFError("the bundle file ends inside a frame its index lists")
        self._left -= len(data)
        return data


class IndexCheck:
    """Whether the index tells the truth about the entries a full read finds: each entry lies
    only in frames that list its layer (or are base, for base entries). Entries come in
    stream order, with their byte span in the decoded tar stream."""

    def __init__(self, frames: list[Frame]) -> None:
        self._frames = frames
        self._ends: list[int] = []
        end = 0
        for frame in frames:
            end += frame.decoded
            self._ends.append(end)
        self._at = 0  # the first frame that may hold the next entry

    def entry(self, name: str, start: int, end: int, folder: str | None) -> None:
        """BadInput when a frame holding bytes [start, end) of entry `name` does not list
        `folder` (None: the base)."""
        while self._at < len(self._ends) and self._ends[self._at] <= start:
            self._at += 1
        index = self._at
        while index < len(self._frames):
            frame = self._frames[index]
            if not (frame.base if folder is None else folder in frame.layers):
                owner = "the base" if folder is None else f"layer {folder!r}"
                raise BadInput(
                    f"bundle entry {name!r}: frame index lies (frame {index} holds this entry "
                    f"of {owner} but does not list it)"
                )
            if self._ends[index] >= end:
                return
            index += 1
