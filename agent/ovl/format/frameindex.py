"""The frame index of a zstd bundle: which layers each zstd frame holds, so a machine decodes
only the frames of its own layers (docs/FORMAT.md, section 2.1).

`ovl pack` cuts its zstd stream into independent frames at entry boundaries and appends this
index as a zstd skippable frame, which every zstd decoder passes over (RFC 8878, 3.1.2): GNU
tar and `zstd -d` read the bundle as before. The compressed bytes of any subset of the frames,
concatenated in order, are again a valid zstd stream of whole tar entries.

The index also lists the sha256 of every frame's compressed bytes: a signature over the index
(its size and digest in the trusted comment, docs/TRUST.md) then vouches for every frame, so a
machine can fetch only its own frames and check each one before decoding it."""

from __future__ import annotations

import hashlib
import json
import re
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
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Frame:
    """One zstd frame: its compressed and decoded sizes, and what its tar entries belong to."""

    compressed: int
    decoded: int
    base: bool  # holds base entries or the end of the archive: every machine reads it
    layers: tuple[str, ...]  # layer folder names with entries in it, in stream order
    sha256: str = ""  # of its compressed bytes, hex; "" in an index written without digests

    def matches(self, data: bytes) -> bool:
        """Whether `data` are this frame's compressed bytes (by size and sha256)."""
        return len(data) == self.compressed and hashlib.sha256(data).hexdigest() == self.sha256


def encode_index(frames: Iterable[Frame]) -> bytes:
    """The skippable frame that ends an indexed bundle; it lists the frames' sha256 when every
    frame has one."""
    import zstandard

    listed = list(frames)
    document: dict[str, object] = {
        "format": FORMAT,
        "frames": [[f.compressed, f.decoded, f.base, list(f.layers)] for f in listed],
    }
    if listed and all(f.sha256 for f in listed):
        # A key of its own, beside "frames": readers that predate digests ignore it.
        document["sha256"] = [f.sha256 for f in listed]
    text = json.dumps(document, separators=(",", ":")).encode()
    body = zstandard.ZstdCompressor(level=9).compress(text)
    tail = _TAIL.pack(len(body) + _TAIL.size, TRAILER_MAGIC)
    return _HEAD.pack(SKIPPABLE_MAGIC, len(body) + len(tail)) + body + tail


def read_index(raw: BinaryIO) -> list[Frame] | None:
    """The frame index at the end of the seekable zstd bundle `raw`; None when it has none, or
    one too big to be worth its memory.

    The read position is left anywhere. BadInput when an index is there but damaged or does
    not describe this file."""
    data = index_bytes(raw)
    if data is None:
        return None
    frames = parse_index(data)
    if frames is None:
        return None
    start = raw.seek(0, 2) - len(data)
    if sum(frame.compressed for frame in frames) != start:
        raise BadInput("bundle: frame index does not describe this file (sizes do not add up)")
    return frames


def trailing_frame(raw: BinaryIO, magic: bytes) -> tuple[int, int] | None:
    """(payload size, file size) of the skippable frame that ends the seekable zstd file `raw`
    with a (payload size, `magic`) trailer, as the index and a partial bundle's table do; None
    when `raw` is not zstd or ends otherwise. The payload size is the file's word: unchecked."""
    raw.seek(0)
    if raw.read(len(ZSTD_MAGIC)) != ZSTD_MAGIC:
        return None
    end = raw.seek(0, 2)
    if end < _HEAD.size + _TAIL.size:
        return None
    raw.seek(end - _TAIL.size)
    payload_size, found = _TAIL.unpack(raw.read(_TAIL.size))
    return (payload_size, end) if found == magic else None


def index_bytes(raw: BinaryIO) -> bytes | None:
    """The whole skippable frame of the index at the end of the seekable zstd bundle `raw`
    (what a signature's index digest covers); None when it has no index trailer."""
    found = trailing_frame(raw, TRAILER_MAGIC)
    if found is None:
        return None
    payload_size, end = found
    if payload_size < _TAIL.size or end - _HEAD.size - payload_size < 0:
        raise BadInput("bundle: damaged frame index (its size points outside the file)")
    if payload_size > _MAX_INDEX_BYTES:
        raise BadInput(f"bundle: frame index of {payload_size} bytes, over {_MAX_INDEX_BYTES}")
    raw.seek(end - _HEAD.size - payload_size)
    return raw.read(_HEAD.size + payload_size)


def index_digest(raw: BinaryIO) -> tuple[int, str] | None:
    """(size, sha256 hex) of the index frame of the seekable bundle `raw`, None without one."""
    data = index_bytes(raw)
    return None if data is None else (len(data), hashlib.sha256(data).hexdigest())


def parse_index(data: bytes) -> list[Frame] | None:
    """The frames listed by `data`, a whole index frame (skippable header to trailer); None
    when it is too big to be worth its memory. BadInput when it is damaged."""
    if len(data) < _HEAD.size + _TAIL.size or len(data) > _HEAD.size + _MAX_INDEX_BYTES:
        raise BadInput("bundle: damaged frame index (impossible size)")
    payload_size = len(data) - _HEAD.size
    if _HEAD.unpack_from(data) != (SKIPPABLE_MAGIC, payload_size):
        raise BadInput("bundle: damaged frame index (no skippable frame where it should start)")
    if _TAIL.unpack_from(data, len(data) - _TAIL.size) != (payload_size, TRAILER_MAGIC):
        raise BadInput("bundle: damaged frame index (its trailer does not match its header)")
    return _parse(data[_HEAD.size : -_TAIL.size])


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
    digests = document.get("sha256")
    if digests is None:
        digests = [""] * len(frames)
    elif (
        not isinstance(digests, list)
        or len(digests) != len(frames)
        or not all(isinstance(d, str) and _SHA256.fullmatch(d) for d in digests)
    ):
        raise BadInput("bundle: damaged frame index (sha256 is not one digest per frame)")
    return [
        Frame(c, d, b, tuple(layers), digest)
        for (c, d, b, layers), digest in zip(frames, digests, strict=True)
    ]


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


def wanted_frames(frames: list[Frame], wanted: Callable[[str], bool]) -> list[int]:
    """The numbers of the frames a machine reads, ascending: base frames, and frames holding a
    layer `wanted` says yes to."""
    numbers: list[int] = []
    last: tuple[str, bool] | None = None  # a layer's frames come together: ask once per run
    for number, frame in enumerate(frames):
        read = frame.base
        for name in frame.layers:
            if last is None or last[0] != name:
                last = (name, wanted(name))
            read = read or last[1]
        if read:
            numbers.append(number)
    return numbers


def frame_ranges(frames: list[Frame], numbers: Iterable[int]) -> list[tuple[int, int]]:
    """(offset, length) in the bundle of the frames `numbers` (ascending), neighbours merged."""
    offsets = [0]
    for frame in frames:
        offsets.append(offsets[-1] + frame.compressed)
    ranges: list[tuple[int, int]] = []
    for number in numbers:
        offset, length = offsets[number], frames[number].compressed
        if ranges and sum(ranges[-1]) == offset:
            ranges[-1] = (ranges[-1][0], ranges[-1][1] + length)
        else:
            ranges.append((offset, length))
    return ranges


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


class FrameDigestCheck(ReadStream):
    """`raw`, a whole indexed bundle read from its start, passed through unchanged; BadInput
    as soon as a frame's bytes do not hash to the sha256 the index lists for it."""

    def __init__(self, raw: BinaryIO, frames: list[Frame]) -> None:
        super().__init__()
        self._raw = raw
        self._frames = frames
        self._number = 0  # the frame being read
        self._left = frames[0].compressed if frames else 0  # its bytes still to come
        self._offset = 0  # where it starts
        self._digest = hashlib.sha256()

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return self.readall()
        data = self._raw.read(size)
        view = memoryview(data)
        while view and self._number < len(self._frames):
            take = min(self._left, len(view))
            self._digest.update(view[:take])
            view, self._left = view[take:], self._left - take
            if not self._left:
                self._next_frame()
        return data

    def _next_frame(self) -> None:
        frame = self._frames[self._number]
        if self._digest.hexdigest() != frame.sha256:
            end = self._offset + frame.compressed - 1
            raise BadInput(
                f"bundle: frame {self._number} (bytes {self._offset}-{end}) does not match"
                " its sha256 in the frame index"
            )
        self._number += 1
        self._offset += frame.compressed
        following = self._frames[self._number :]
        self._left = following[0].compressed if following else 0
        self._digest = hashlib.sha256()
