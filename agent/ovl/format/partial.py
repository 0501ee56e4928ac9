"""A partial bundle: the frames one machine fetched of an indexed bundle, with the index they
were checked against (docs/FORMAT.md, section 2.2).

    [frame a][frame b]...   the fetched frames' compressed bytes, in bundle order
    [index frame]           the bundle's index frame, byte for byte (what its signature covers)
    [table frame]           a skippable frame: JSON {"format": "ovl-partial/1", "size": S,
                            "frames": [a, b, ...]}, then its size and `ovlparts`

Every zstd decoder reads it as the tar of the fetched frames (the two skippable frames are
passed over), so the agent applies it like any bundle; its signature is the whole bundle's,
whose trusted comment names the index, whose digests name every frame held here.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import struct
from dataclasses import dataclass
from typing import BinaryIO

from ovl.core.errors import BadInput
from ovl.format.frameindex import TRAILER_MAGIC as INDEX_TRAILER
from ovl.format.frameindex import Frame, parse_index, trailing_frame

TABLE_MAGIC = 0x184D2A5C  # a zstd skippable frame, another nibble than the index's
TRAILER_MAGIC = b"ovlparts"
FORMAT = "ovl-partial/1"
_HEAD = struct.Struct("<II")
_TAIL = struct.Struct("<I8s")
_MAX_TABLE_BYTES = 16 << 20
_CHUNK = 1 << 20


def partial_tail(index: bytes, numbers: list[int], size: int) -> bytes:
    """What follows the fetched frames `numbers` of a bundle of `size` bytes whose index frame
    is `index`."""
    text = json.dumps({"format": FORMAT, "size": size, "frames": numbers}, separators=(",", ":"))
    body = text.encode()
    payload = len(body) + _TAIL.size
    return index + _HEAD.pack(TABLE_MAGIC, payload) + body + _TAIL.pack(payload, TRAILER_MAGIC)


@dataclass(frozen=True)
class Partial:
    """Where a partial bundle keeps what: frames in [0, frames_end), then the index frame."""

    frames_end: int
    index: bytes  # the whole index frame, as the signature names it
    numbers: tuple[int, ...]  # the frames held, ascending
    size: int  # bytes of the whole bundle

    @property
    def index_sha256(self) -> str:
        return hashlib.sha256(self.index).hexdigest()

    def frames(self) -> list[Frame]:
        """The index's frames (parse it only once its digest is trusted)."""
        frames = parse_index(self.index)
        if frames is None:
            raise BadInput("partial bundle: its frame index is too big to use")
        return frames

    def check(self, raw: BinaryIO, frames: list[Frame], needed: list[int]) -> None:
        """Every frame held hashes to its digest in `frames`, the frames fill the file, and the
        `needed` frames are all there; BadInput naming the first problem."""
        if not all(frame.sha256 for frame in frames):
            raise BadInput("partial bundle: its frame index lists no frame digests")
        if sum(f.compressed for f in frames) + len(self.index) != self.size:
            raise BadInput("partial bundle: its frame index does not describe the bundle size")
        numbers = self.numbers
        if any(b <= a for a, b in itertools.pairwise(numbers)) or (
            numbers and not 0 <= numbers[0] <= numbers[-1] < len(frames)
        ):
            raise BadInput("partial bundle: its frame numbers are not its index's, in order")
        if sum(frames[n].compressed for n in numbers) != self.frames_end:
            raise BadInput("partial bundle: its frames do not add up to the file")
        missing = sorted(set(needed) - set(numbers))
        if missing:
            shown = ", ".join(map(str, missing[:5])) + (", ..." if len(missing) > 5 else "")
            raise BadInput(
                f"partial bundle: lacks {len(missing)} frame(s) this machine reads ({shown});"
                " it was fetched for other facts"
            )
        raw.seek(0)
        offset = 0
        for number in numbers:
            frame = frames[number]
            if not _hashes_to(raw, frame):
                raise BadInput(
                    f"partial bundle: frame {number} (bytes {offset}-"
                    f"{offset + frame.compressed - 1} here) does not match its sha256 in the"
                    " signed frame index"
                )
            offset += frame.compressed


def _hashes_to(raw: BinaryIO, frame: Frame) -> bool:
    digest, left = hashlib.sha256(), frame.compressed
    while left:
        data = raw.read(min(left, _CHUNK))
        if not data:
            return False
        digest.update(data)
        left -= len(data)
    return digest.hexdigest() == frame.sha256


def read_partial(raw: BinaryIO) -> Partial | None:
    """The layout of the seekable partial bundle `raw`; None when it is not one (no
    `ovlparts` trailer). BadInput when the trailer is there but the rest is damaged."""
    found = trailing_frame(raw, TRAILER_MAGIC)
    if found is None:
        return None
    payload, end = found
    table_start = end - _HEAD.size - payload
    if payload < _TAIL.size or payload > _MAX_TABLE_BYTES or table_start < _TAIL.size:
        raise BadInput("partial bundle: damaged frame table (its size points outside the file)")
    raw.seek(table_start)
    if _HEAD.unpack(raw.read(_HEAD.size)) != (TABLE_MAGIC, payload):
        raise BadInput("partial bundle: damaged frame table (no skippable frame where it starts)")
    numbers, size = _parse_table(raw.read(payload - _TAIL.size))
    raw.seek(table_start - _TAIL.size)
    index_payload, index_magic = _TAIL.unpack(raw.read(_TAIL.size))
    index_start = table_start - _HEAD.size - index_payload
    if index_magic != INDEX_TRAILER or index_start < 0:
        raise BadInput("partial bundle: no frame index before its frame table")
    raw.seek(index_start)
    return Partial(index_start, raw.read(table_start - index_start), numbers, size)


def _parse_table(body: bytes) -> tuple[tuple[int, ...], int]:
    try:
        document = json.loads(body)
    except ValueError as exc:
        raise BadInput(f"partial bundle: damaged frame table ({exc})") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BadInput(f"partial bundle: frame table is not {FORMAT}")
    numbers, size = document.get("frames"), document.get("size")
    if (
        not isinstance(numbers, list)
        or not all(type(n) is int for n in numbers)
        or type(size) is not int
    ):
        raise BadInput("partial bundle: damaged frame table (frames or size)")
    return tuple(numbers), size
