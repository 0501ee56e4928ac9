"""ovl.format.tarwrite's blocks read back through Python's tarfile field by field."""

from __future__ import annotations

import tarfile

from hypothesis import given, settings
from hypothesis import strategies as st

from ovl.format.tarwrite import BLOCK, MAX_ID, MAX_NUMBER, device_fields, pax_record, ustar_block

ascii_names = st.text(
    st.characters(min_codepoint=1, max_codepoint=127), min_size=1, max_size=100
).map(str.encode)


@settings(max_examples=300, deadline=None)
@given(
    name=ascii_names,
    link=ascii_names,
    mode=st.integers(0, 0o7777),
    uid=st.integers(0, MAX_ID),
    gid=st.integers(0, MAX_ID),
    size=st.integers(0, MAX_NUMBER),
    mtime=st.integers(0, MAX_NUMBER),
    devices=st.tuples(st.integers(0, 4095), st.integers(0, 1 << 20)),
)
def test_ustar_block_fields_read_back_through_tarfile(
    name: bytes,
    link: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    devices: tuple[int, int],
) -> None:
    block = ustar_block(name, mode, uid, gid, size, mtime, b"3", link, device_fields(*devices))
    assert len(block) == BLOCK
    info = tarfile.TarInfo.frombuf(block, "ascii", "strict")  # also checks the checksum
    assert (info.name, info.linkname) == (name.decode(), link.decode())
    assert (info.mode, info.uid, info.gid, info.size, info.mtime) == (mode, uid, gid, size, mtime)
    assert (info.devmajor, info.devminor, info.type) == (*devices, tarfile.CHRTYPE)


@given(key=st.binary(min_size=1, max_size=30), value=st.binary(max_size=2000))
def test_pax_record_length_counts_the_whole_record(key: bytes, value: bytes) -> None:
    record = pax_record(key, value)
    length, rest = record.split(b" ", 1)
    assert int(length) == len(record)
    assert rest == key + b"=" + value + b"\n"
