"""Encodings are found by content and decoded streaming (docs/FORMAT.md section 2)."""

from __future__ import annotations

import base64
import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovl.core.errors import BadInput
from ovl.format.codec import Compression, Encoding, detect, open_decoded
from tests.format.bundle_build import Item, armour, compress, tar_bytes

COMPRESSIONS = ["zstd", "gzip", "zlib", "xz", "none"]
TAR = tar_bytes([Item("etc", "dir"), Item("etc/motd", data=b"hello\n" * 5000)])


class Trickle(io.RawIOBase):
    """A non-seekable source that hands out at most `step` bytes per read, like a pipe."""

    def __init__(self, data: bytes, step: int) -> None:
        super().__init__()
        self._data, self._step = data, step

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        size = min(len(buffer), self._step, len(self._data))
        buffer[:size] = self._data[:size]
        self._data = self._data[size:]
        return size


def decode(data: bytes, step: int = 1 << 20, max_bytes: int | None = None) -> bytes:
    stream = open_decoded(Trickle(data, step), max_bytes=max_bytes)  # type: ignore[arg-type]
    return stream.read()


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("armoured", [None, "bare", "framed"])
def test_every_encoding_decodes_to_the_same_tar(compression: str, armoured: str | None) -> None:
    data = compress(TAR, compression)
    if armoured:
        data = armour(data, framed=armoured == "framed")
    stream = open_decoded(io.BytesIO(data))
    assert stream.read() == TAR
    expected = Encoding(Compression(compression), armoured is not None)
    assert stream.encoding == expected
    source = io.BytesIO(data)
    assert detect(source) == expected
    assert source.tell() == 0


@settings(max_examples=40, deadline=None)
@given(step=st.integers(1, 700), compression=st.sampled_from(COMPRESSIONS), framed=st.booleans())
def test_decoding_does_not_depend_on_read_sizes(step: int, compression: str, framed: bool) -> None:
    data = armour(compress(TAR[:6000], compression), framed=framed)
    assert decode(data, step) == TAR[:6000]


def test_armour_tolerates_crlf_blanks_and_one_long_line() -> None:
    body = base64.b64encode(compress(TAR, "zstd"))
    crlf = b"\r\n  -----BEGIN OVL BUNDLE-----\r\n" + body + b"\r\n-----END OVL BUNDLE-----\r\n\r\n"
    assert decode(crlf) == TAR
    assert decode(b"  " + body + b"\n") == TAR


def test_zstd_with_several_frames_reads_across_them() -> None:
    data = compress(TAR[:5120], "zstd") + compress(TAR[5120:], "zstd")
    assert decode(data) == TAR


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty input"),
        (b"\x00\x01\x02garbage" * 10, "unknown encoding"),
        (b"-----BEGIN OVL BUNDLE-----\n" + base64.b64encode(b"\x00\x01" * 300), "unknown encoding"),
        (b"-----BEGIN OVL BUNDLE-----\nKLUv/Q!!\n", "invalid base64 character"),
        (b"KLUv/QBY" * 100 + b"-AAA\n", "'-' in base64 text"),
        (
            b"-----BEGIN OVL BUNDLE-----\n" + base64.b64encode(compress(TAR, "xz")) + b"\n",
            "missing the -----END OVL BUNDLE----- line",
        ),
        (
            armour(compress(TAR, "gzip"), framed=True) + b"and more text\n",
            "text after the END OVL BUNDLE line",
        ),
        (base64.b64encode(compress(TAR, "gzip"))[:-3], "truncated"),
        (armour(armour(TAR, framed=False), framed=False), "armour inside armour"),
        (compress(TAR, "gzip")[:-20], "truncated gzip stream"),
        (compress(TAR, "xz")[:-20], "truncated xz stream"),
        (compress(TAR, "zlib")[:-20], "truncated zlib stream"),
        (compress(TAR, "gzip")[:30] + b"\xff" * 40, "corrupt gzip stream"),
        (compress(TAR, "xz")[:40] + b"\xff" * 40, "corrupt xz stream"),
        (compress(TAR, "zlib")[:30] + b"\xff" * 40, "corrupt zlib stream"),
    ],
)
def test_bad_encodings_are_refused_with_one_line(data: bytes, message: str) -> None:
    with pytest.raises(BadInput, match="^bundle.*" + re.escape(message)) as caught:
        decode(data)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("compression", COMPRESSIONS)
def test_decompressed_size_is_capped(compression: str) -> None:
    bomb = compress(tar_bytes([Item("zeros", data=bytes(8 << 20))]), compression)
    with pytest.raises(BadInput, match="more than 1048576 bytes once decompressed"):
        decode(bomb, max_bytes=1 << 20)


def test_a_plain_tar_whose_first_name_looks_like_a_zlib_header_is_still_tar() -> None:
    tar = tar_bytes([Item("x^notzlib", data=b"plain")])
    assert tar[:2] == b"x^"  # a valid RFC 1950 header (deflate, fastest level)
    stream = open_decoded(io.BytesIO(tar))
    assert stream.encoding == Encoding(Compression.NONE, armoured=False)
    assert stream.read() == tar
