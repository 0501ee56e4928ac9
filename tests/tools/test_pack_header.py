"""pack's header builder (on ovl.format.tarwrite) writes exactly the bytes tarfile's pax writer
writes, for plain entries and for every entry that needs pax records."""

from __future__ import annotations

import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from ovl.format.tarstream import header_block

TYPES = (
    tarfile.REGTYPE,
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
)
NAMES = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=110),
    st.text(min_size=1, max_size=110).filter(lambda n: "\0" not in n),
    st.binary(min_size=1, max_size=110)
    .filter(lambda n: b"\0" not in n)
    .map(lambda n: n.decode("utf-8", "surrogateescape")),
)


@st.composite
def entries(draw: st.DrawFn) -> tarfile.TarInfo:
    info = tarfile.TarInfo(draw(NAMES))
    info.type = draw(st.sampled_from(TYPES))
    info.mode = draw(st.integers(0, 0o177777))
    info.uid = draw(st.one_of(st.integers(0, 70000), st.integers(0, 1 << 40)))
    info.gid = draw(st.integers(0, 1 << 24))
    info.mtime = draw(
        st.one_of(
            st.integers(0, 1 << 34),
            st.integers(-(1 << 34), 1 << 40),
            st.floats(-1e9, 1e10, allow_nan=False),
        )
    )
    info.uname = info.gname = ""
    if info.type == tarfile.REGTYPE:
        info.size = draw(st.one_of(st.integers(0, 1 << 20), st.integers(0, 1 << 40)))
    if info.type in (tarfile.SYMTYPE, tarfile.LNKTYPE):
        info.linkname = draw(NAMES)
    if info.type in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = draw(st.integers(0, 255)), draw(st.integers(0, 255))
    if draw(st.booleans()):
        value = draw(st.binary(max_size=20)).decode("utf-8", "surrogateescape")
        info.pax_headers = {"SCHILY.xattr.user.k": value}
    return info


@settings(max_examples=1000, deadline=None)
@given(entries())
def test_header_is_byte_identical_to_tarfiles_pax_header(info: tarfile.TarInfo) -> None:
    assert header_block(info) == info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")


def test_plain_directory_header_gets_its_trailing_slash() -> None:
    info = tarfile.TarInfo("etc/ssh")
    info.type = tarfile.DIRTYPE
    block = header_block(info)
    assert len(block) == tarfile.BLOCKSIZE
    assert tarfile.TarInfo.frombuf(block, "utf-8", "strict").name == "etc/ssh"
    assert block.startswith(b"etc/ssh/\0")
