"""The reader's fast paths give exactly what tarfile gives: the header parser on any 512 bytes
(valid, damaged, base-256, GNU), the forward stream on any read/seek sequence."""

from __future__ import annotations

import io
import tarfile
from typing import Any

from hypothesis import given, reject, settings
from hypothesis import strategies as st

from ovl.format.codec import open_decoded
from ovl.format.reader import _ForwardStream, _HeaderProblem, _StrictTarInfo
from tests.format.bundle_build import ShortReads

FIELDS = [
    "name",
    "linkname",
    "uname",
    "gname",
    "mode",
    "uid",
    "gid",
    "size",
    "mtime",
    "chksum",
    "type",
    "devmajor",
    "devminor",
]
FORMATS = (tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT)
TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)


def parsed(parser: Any, block: bytes) -> tuple[object, ...]:
    """The TarInfo fields `parser.frombuf` reads from `block`, or the error it raises."""
    try:
        info = parser.frombuf(block, "utf-8", "surrogateescape")
    except (tarfile.HeaderError, _HeaderProblem) as exc:
        return ("error", type(exc).__name__)
    return tuple(getattr(info, field) for field in FIELDS)


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    info = tarfile.TarInfo(draw(st.text(min_size=1, max_size=120)).replace("\0", "x"))
    info.type = draw(st.sampled_from(TYPES))
    info.size = draw(st.integers(0, 8**11 - 1)) if info.type in (b"0", b"\0") else 0
    info.mode = draw(st.integers(0, 0o7777))
    info.uid = draw(st.integers(0, 8**7 - 1))
    info.gid = draw(st.integers(0, 8**7 - 1))
    info.mtime = draw(st.integers(0, 8**11 - 1))
    info.linkname = draw(st.text(max_size=40)).replace("\0", "x")
    info.uname = draw(st.sampled_from(["", "root", "daemon"]))
    if draw(st.booleans()):
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = draw(st.integers(0, 4095)), draw(st.integers(0, 4095))
    try:
        header = info.tobuf(draw(st.sampled_from(FORMATS)), "utf-8", "surrogateescape")
    except ValueError:  # ustar: a name whose UTF-8 form is too long to split into prefix/name
        reject()
    block = bytearray(header)
    block = block[:512] if len(block) == 512 else block[-512:]
    for _ in range(draw(st.integers(0, 3))):
        block[draw(st.integers(0, 511))] = draw(st.integers(0, 255))
    return bytes(block)


@settings(max_examples=400, deadline=None)
@given(header_blocks())
def test_fast_header_parse_matches_tarfile(block: bytes) -> None:
    ours, theirs = parsed(_StrictTarInfo, block), parsed(tarfile.TarInfo, block)
    assert ours[:1] == theirs[:1] if ours[0] == "error" else ours == theirs


def test_base256_and_blank_fields_still_read_by_tarfile() -> None:
    info = tarfile.TarInfo("big")
    info.size = 1 << 40
    info.uid = 8**8  # too large for octal: GNU tar writes base-256
    block = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "surrogateescape")[:512]
    assert parsed(_StrictTarInfo, block) == parsed(tarfile.TarInfo, block)
    assert tarfile.TarInfo.frombuf(block, "utf-8", "strict").uid == 8**8


@settings(max_examples=200, deadline=None)
@given(
    st.binary(max_size=5000),
    st.integers(1, 3000),
    st.lists(st.tuples(st.booleans(), st.integers(-1, 4000)), max_size=20),
)
def test_forward_stream_reads_and_skips_like_a_file(
    data: bytes, step: int, ops: list[tuple[bool, int]]
) -> None:
    stream = _ForwardStream(ShortReads(data, step))  # type: ignore[arg-type]
    plain = io.BytesIO(data)
    for is_seek, amount in ops:
        if is_seek:
            target = plain.tell() + max(amount, 0)
            plain.seek(min(target, len(data)))
            assert stream.seek(target) == plain.tell()
        else:
            assert stream.read(amount) == plain.read(amount)
        assert stream.tell() == plain.tell()


def test_forward_stream_refuses_to_seek_back() -> None:
    stream = _ForwardStream(open_decoded(io.BytesIO(tarfile_bytes())))
    stream.read(600)
    try:
        stream.seek(10)
    except tarfile.StreamError:
        return
    raise AssertionError("seeking back was allowed")


def tarfile_bytes() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("a")
        info.size = 700
        tar.addfile(info, io.BytesIO(b"a" * 700))
    return out.getvalue()


NUMBER_FIELDS = [(100, 8), (108, 8), (116, 8), (124, 12), (136, 12)]  # mode uid gid size mtime


@settings(max_examples=400, deadline=None)
@given(
    header_blocks(),
    st.lists(
        st.tuples(
            st.sampled_from(NUMBER_FIELDS),
            st.text(alphabet="0127 _\0x", max_size=12).map(lambda text: text.encode()),
        ),
        max_size=3,
    ),
)
def test_odd_number_fields_with_a_valid_checksum_parse_like_tarfile(
    block: bytes, fields: list[tuple[tuple[int, int], bytes]]
) -> None:
    """Short digits, spaces, underscores, NULs inside: the fast path agrees or gives way."""
    edited = bytearray(block)
    for (at, width), text in fields:
        edited[at : at + width] = text[:width].ljust(width, b"\0")
    edited[148:156] = b"%06o\0 " % (256 + sum(edited) - sum(edited[148:156]))
    ours, theirs = parsed(_StrictTarInfo, bytes(edited)), parsed(tarfile.TarInfo, bytes(edited))
    assert ours[:1] == theirs[:1] if ours[0] == "error" else ours == theirs
