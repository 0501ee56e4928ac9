"""Tells whether a zstd stream stopped between frames or inside one.

python-zstandard's stream reader returns what it decoded so far when its input ends inside a
frame, without an error, so a bundle cut short at the right place would read as a shorter
one. This follows the frame layout of RFC 8878 (section 3.1: frame and skippable frame
headers, block headers, the optional checksum) over the compressed bytes as they pass, without
decoding anything; the decoder still checks everything inside the blocks."""

from __future__ import annotations

from ovl.format.armour import Readable, ReadStream

ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # how every zstd frame starts
_FRAME_MAGIC = int.from_bytes(ZSTD_MAGIC, "little")
_SKIPPABLE_MASK, _SKIPPABLE = 0xFFFFFFF0, 0x184D2A50
_DICT_ID_BYTES = (0, 1, 2, 4)
_CONTENT_SIZE_BYTES = (0, 2, 4, 8)  # Frame_Content_Size_flag 0 means 1 byte when single-segment
_RLE_BLOCK, _RESERVED_BLOCK = 1, 3


class ZstdFrameCheck(ReadStream):
    """`source` passed through unchanged; EOFError when it ends inside a frame."""

    def __init__(self, source: Readable) -> None:
        super().__init__()
        self._source = source
        self._skip = 0  # bytes to pass before the next header piece
        self._header = b""  # bytes of the header piece being gathered
        self._need = 4  # its full size
        self._state = "magic"
        self._checksum = False
        self._lost = False  # not zstd as we know it: the decoder says what is wrong

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return self.readall()
        data = self._source.read(size)
        if data:
            if not self._lost:
                self._follow(data)
        elif size and not self._between_frames():
            raise EOFError("the input ends inside a zstd frame")
        return data

    def _between_frames(self) -> bool:
        return self._lost or (self._state == "magic" and not self._header and not self._skip)

    def _follow(self, data: bytes) -> None:
        at, end = 0, len(data)
        while at < end and not self._lost:
            if self._skip:
                step = min(self._skip, end - at)
                self._skip -= step
                at += step
                continue
            take = min(self._need - len(self._header), end - at)
            self._header += data[at : at + take]
            at += take
            if len(self._header) == self._need:
                value, self._header = int.from_bytes(self._header, "little"), b""
                self._step(value)

    def _step(self, value: int) -> None:
        """Act on a complete header piece: what to pass next, and what to gather after it."""
        state = self._state
        if state == "magic":
            if value == _FRAME_MAGIC:
                self._state, self._need = "descriptor", 1
            elif value & _SKIPPABLE_MASK == _SKIPPABLE:
                self._state, self._need = "skippable", 4
            else:
                self._lost = True
        elif state == "skippable":
            self._skip, self._state, self._need = value, "magic", 4
        elif state == "descriptor":
            single_segment = bool(value & 0x20)
            size_flag = value >> 6
            self._checksum = bool(value & 0x04)
            self._skip = (
                (0 if single_segment else 1)  # window descriptor
                + _DICT_ID_BYTES[value & 0x03]
                + (1 if single_segment and not size_flag else _CONTENT_SIZE_BYTES[size_flag])
            )
            self._state, self._need = "block", 3
        else:  # a block header: last-block bit, type, size
            block_type, block_size = value >> 1 & 0x03, value >> 3
            if block_type == _RESERVED_BLOCK:
                self._lost = True
                return
            self._skip = 1 if block_type == _RLE_BLOCK else block_size
            if value & 1:  # the last block, then maybe the content checksum
                self._skip += 4 if self._checksum else 0
                self._state, self._need = "magic", 4
