"""ovl.format.tarread against Python's stock tarfile: whole archives (every header format,
global headers, long names, base-256 numbers, any pax records) read alike, member by member
with their data; damaged ones are refused with one line, or read exactly as tarfile reads
them; and the edge cases one by one."""

from __future__ import annotations

import io
import tarfile
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovl.format.tarread import (
    AREGTYPE,
    DIRTYPE,
    REGTYPE,
    Member,
    SparseMember,
    TarDamage,
    TarReader,
)
from ovl.format.tarwrite import BLOCK, device_fields, padding, pax_record, ustar_block
from tests.format.bundle_build import ShortReads, damage

Read = list[tuple[Any, ...]]  # members, then ("error", kind, message) if reading stopped


def fields(member: Member, data: bytes | None) -> tuple[Any, ...]:
    return (
        member.name,
        member.type,
        member.size,
        member.mode,
        member.uid,
        member.gid,
        member.mtime_ns,
        member.linkname,
        member.devmajor,
        member.devminor,
        dict(member.xattrs),
        member.offset,
        member.offset_data,
        data,
    )


def read_ours(data: bytes, step: int = 1 << 14, read_data: tuple[bool, ...] = (True,)) -> Read:
    """Every member, each regular file's data read (in two goes) or left to be skipped as
    `read_data` says in turn; an error ends the list."""
    seen: Read = []
    reader = TarReader(ShortReads(data, step))
    try:
        for index, member in enumerate(reader.members()):
            content = None
            if member.isreg() and read_data[index % len(read_data)]:
                content = reader.read_data(member.size // 2)
                content += reader.read_data(member.size)
                assert reader.read_data(10) == b""
            seen.append(fields(member, content))
    except (TarDamage, SparseMember) as exc:
        seen.append(("error", type(exc).__name__, str(exc)))
    return seen


def stock_mtime_ns(info: tarfile.TarInfo) -> int:
    text = info.pax_headers.get("mtime")
    return int(info.mtime) * 10**9 if text is None else int(Decimal(text).scaleb(9))


def read_stock(data: bytes) -> Read:
    """The members as tarfile reads them; tarfile's own errors propagate."""
    seen: Read = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", errors="surrogateescape") as tar:
        for info in tar:
            content = tar.extractfile(info).read() if info.isreg() else None  # type: ignore[union-attr]
            xattrs = {
                key[len("SCHILY.xattr.") :]: value.encode("utf-8", "surrogateescape")
                for key, value in info.pax_headers.items()
                if key.startswith("SCHILY.xattr.")
            }
            seen.append(
                (
                    info.name,
                    info.type,
                    info.size,
                    info.mode,
                    info.uid,
                    info.gid,
                    stock_mtime_ns(info),
                    info.linkname,
                    info.devmajor,
                    info.devminor,
                    xattrs,
                    info.offset,
                    info.offset_data,
                    content,
                )
            )
    return seen


FORMATS = (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT)
NAME_PARTS = st.text(
    alphabet=st.sampled_from("ab-_.éß\udcff"), min_size=1, max_size=60
)  # \udcff: a byte that is not UTF-8, as surrogateescape reads it


@st.composite
def member(draw: st.DrawFn) -> tuple[tarfile.TarInfo, bytes]:
    name = "/".join(draw(st.lists(NAME_PARTS, min_size=1, max_size=4)))
    info = tarfile.TarInfo(name)
    kind = draw(st.sampled_from(["file", "file", "dir", "symlink", "hardlink", "fifo", "char"]))
    data = b""
    if kind == "file":
        data = draw(st.binary(max_size=1500))
        info.size = len(data)
    else:
        info.type = {
            "dir": tarfile.DIRTYPE,
            "symlink": tarfile.SYMTYPE,
            "hardlink": tarfile.LNKTYPE,
            "fifo": tarfile.FIFOTYPE,
            "char": tarfile.CHRTYPE,
        }[kind]
    if kind in ("symlink", "hardlink"):
        info.linkname = "/".join(draw(st.lists(NAME_PARTS, min_size=1, max_size=3)))
    if kind == "char":
        info.devmajor, info.devminor = draw(st.integers(0, 300)), draw(st.integers(0, 300))
    info.mode = draw(st.integers(0, 0o7777))
    info.uid = draw(st.sampled_from([0, 1000, 8**7 + 5]))  # the last: base-256 in GNU format
    info.uname = draw(st.sampled_from(["", "root", "ü"]))
    info.mtime = draw(st.one_of(st.integers(0, 8**11 - 1), st.floats(0, 2e9)))
    info.pax_headers = draw(
        st.dictionaries(
            st.sampled_from(["SCHILY.xattr.user.a", "SCHILY.xattr.user.\u00e9", "comment"]),
            st.text(max_size=30),
            max_size=2,
        )
    )
    return info, data


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    out = io.BytesIO()
    global_headers = draw(
        st.sampled_from([None, None, {"comment": "fleet"}, {"SCHILY.xattr.user.g": "all"}])
    )
    with tarfile.open(
        fileobj=out,
        mode="w",
        format=draw(st.sampled_from(FORMATS)),
        errors="surrogateescape",
        pax_headers=global_headers,
    ) as tar:
        for info, data in draw(st.lists(member(), min_size=1, max_size=8)):
            try:
                tar.addfile(info, io.BytesIO(data))
            except ValueError:  # ustar/gnu: a field this format cannot hold
                continue
    return out.getvalue()


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(archives(), st.integers(1, 5000), st.lists(st.booleans(), min_size=1, max_size=4))
def test_whole_archives_read_as_stock_tarfile_reads_them(
    data: bytes, step: int, read_data: list[bool]
) -> None:
    stock = read_stock(data)
    assert read_ours(data, step, (True,)) == stock
    skipped = [(*member[:-1], None) for member in stock]
    chosen = read_ours(data, step, tuple(read_data))
    assert [(*member[:-1], None) for member in chosen] == skipped


@st.composite
def damaged_archives(draw: st.DrawFn) -> bytes:
    return damage(draw, draw(archives()), draw(st.integers(0, 3)))


@SETTINGS
@given(damaged_archives())
def test_damaged_archives_are_refused_or_read_as_stock_tarfile_reads_them(data: bytes) -> None:
    ours = read_ours(data)
    if ours and ours[-1][0] == "error":
        assert ours[-1][1] in ("TarDamage", "SparseMember") and "\n" not in ours[-1][2]
    else:  # accepted: tarfile must see the very same members, and no damage either
        assert read_stock(data) == ours


TYPES = (tarfile.REGTYPE, tarfile.AREGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE)
NUMBER_FIELDS = [(100, 8), (108, 8), (116, 8), (124, 12), (136, 12), (329, 8), (337, 8)]


@st.composite
def header_blocks(draw: st.DrawFn) -> bytes:
    """A header as tarfile writes it, sometimes with odd number fields (blanks, signs, NULs
    inside, base-256) and a checksum made valid again, sometimes with bytes changed."""
    info = tarfile.TarInfo(draw(st.text(min_size=1, max_size=120)).replace("\0", "x"))
    info.type = draw(st.sampled_from(TYPES))
    info.size = draw(st.integers(0, 8**11 - 1)) if info.type in (b"0", b"\0") else 0
    info.mode = draw(st.integers(0, 0o7777))
    info.uid = draw(st.integers(0, 8**7 - 1))
    info.mtime = draw(st.integers(-(8**11), 8**11 - 1))
    info.linkname = draw(st.text(max_size=40)).replace("\0", "x")
    if draw(st.booleans()):
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = draw(st.integers(0, 4095)), draw(st.integers(0, 4095))
    try:
        header = info.tobuf(draw(st.sampled_from(FORMATS)), "utf-8", "surrogateescape")
    except ValueError:  # a name too long for ustar, a negative mtime outside GNU format
        header = tarfile.TarInfo("x").tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")
    block = bytearray(header[-BLOCK:])
    for (at, width), text in draw(
        st.lists(
            st.tuples(
                st.sampled_from(NUMBER_FIELDS),
                st.one_of(
                    st.text(alphabet="0127 _+-\0x", max_size=12).map(str.encode),
                    st.binary(min_size=12, max_size=12).map(lambda raw: b"\xff" + raw),
                ),
            ),
            max_size=3,
        )
    ):
        block[at : at + width] = text[:width].ljust(width, b"\0")
    block[148:156] = b"%06o\0 " % (256 + sum(block) - sum(block[148:156]))
    for _ in range(draw(st.integers(0, 2))):
        block[draw(st.integers(0, BLOCK - 1))] = draw(st.integers(0, 255))
    return bytes(block)


@settings(max_examples=600, deadline=None)
@given(header_blocks())
def test_header_blocks_read_as_tarfile_reads_them_or_are_refused_for_a_stated_reason(
    block: bytes,
) -> None:
    if block == bytes(BLOCK):
        assert read_ours(block) == []  # the end of the archive
        return
    try:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError:
        assert read_ours(block)[0][:2] == ("error", "TarDamage")
        return
    if info.type not in (*TYPES, tarfile.CHRTYPE):
        return  # a changed byte made it an extended header or a sparse file: not one block
    ours = read_ours(block + bytes(BLOCK), read_data=(False,))[0]
    if ours[0] == "error":  # stricter than tarfile, and only there
        numbers = (info.mode, info.uid, info.gid, info.size, info.devmajor, info.devminor)
        if ours[2] == "corrupt header (a negative number)":
            assert min(numbers) < 0
        else:
            assert ours[2] == "corrupt header (mtime out of range)"
            assert abs(info.mtime) > 2**63 // 10**9
        return
    assert ours[:10] == (
        info.name,
        info.type,
        info.size,
        info.mode,
        info.uid,
        info.gid,
        info.mtime * 10**9,
        info.linkname,
        info.devmajor,
        info.devminor,
    )


PAX_KEYS = (
    b"path",
    b"linkpath",
    b"size",
    b"mtime",
    b"uid",
    b"uname",
    b"hdrcharset",
    b"GNU.sparse.size",
    b"SCHILY.xattr.user.a",
    b"comment",
    b"",
)
PAX_VALUES = (b"", b"12", b"1.25", b"-3", b"x/y/", b"BINARY", b"\xff\xfe", b"a=b", b"\xc3\xa9")


def value_refused(key: bytes, value: bytes) -> bool:
    """Records this reader refuses and tarfile reads as 0 (or as a sparse file)."""
    if key in (b"size", b"uid"):
        return value != b"12"
    if key == b"mtime":
        return value not in (b"12", b"1.25", b"-3")
    return key.startswith(b"GNU.sparse.")


@st.composite
def pax_record_sets(draw: st.DrawFn) -> tuple[bytes, bool, bool]:
    """Records of a pax header, whether each is well framed, and whether one holds a value
    this reader refuses (of a keyword given twice, the last counts)."""
    records, framed, final = b"", True, {}
    for _ in range(draw(st.integers(0, 4))):
        key, value = draw(st.sampled_from(PAX_KEYS)), draw(st.sampled_from(PAX_VALUES))
        record = pax_record(key, value) if key else b"%d =%s\n" % (len(value) + 5, value)
        delta = draw(st.sampled_from([0, 0, 0, -1, 1, -50]))
        newline = draw(st.sampled_from([b"\n", b"\n", b"x"]))
        length, _, rest = record.partition(b" ")
        record = b"%d %s" % (int(length) + delta, rest[:-1] + newline)
        records += record
        # A length one too long can be right again: "9 uid=12\n" becomes "10 uid=12\n".
        framed &= bool(key) and len(record) == int(length) + delta and newline == b"\n"
        final[key] = value
    return records, framed, any(value_refused(key, value) for key, value in final.items())


def pax_archive(records: bytes, kind: bytes, content: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("first"))
        extended = tarfile.TarInfo("././@PaxHeader")
        extended.type, extended.size = tarfile.XHDTYPE, len(records)
        tar.addfile(extended, io.BytesIO(records))
        info = tarfile.TarInfo("dir/file")
        info.type, info.size = kind, len(content)
        tar.addfile(info, io.BytesIO(content))
        tar.addfile(tarfile.TarInfo("last"))
    return out.getvalue()


@SETTINGS
@given(
    pax_record_sets(),
    st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE]),
    st.integers(0, 700),
    st.integers(1, 5000),
)
def test_pax_records_right_or_wrong(
    records: tuple[bytes, bool, bool], kind: bytes, length: int, step: int
) -> None:
    raw, framed, refused = records
    data = pax_archive(raw, kind, b"d" * length if kind == tarfile.REGTYPE else b"")
    ours = read_ours(data, step)
    if not framed:
        assert ours[-1][:2] == ("error", "TarDamage")
        assert ours[-1][2].startswith("corrupt extended header"), ours[-1]
    elif refused:
        assert ours[-1][0] == "error" and ours[-1][1] in ("TarDamage", "SparseMember")
    else:
        try:
            stock = read_stock(data)
        except UnicodeDecodeError:
            # CPython 3.12.1's tarfile decodes a hdrcharset value as UTF-8 and crashes on other
            # bytes (3.11.2 and 3.13.0 read on): no oracle. Ours takes it as "not BINARY".
            assert ours[-1][0] == "last", ours[-1]
            return
        if stock[-1][0] == "last":
            assert ours == stock
        else:  # a size record that lies: tarfile takes what follows for the end, or eats it
            assert ours == stock or ours[-1][0] == "error"


# Edge cases, one by one, on archives made by hand.


def ustar(name: str, kind: bytes = REGTYPE, size: int = 0, devices: bytes = b"") -> bytes:
    return ustar_block(
        name.encode("utf-8", "surrogateescape"), 0o644, 0, 0, size, 0, kind, b"", devices
    )


def extended(kind: bytes, payload: bytes) -> bytes:
    return ustar("././@PaxHeader", kind, len(payload)) + payload + padding(len(payload))


def pax(**records: bytes | str) -> bytes:
    """A pax 'x' header; keywords are spelt with '_' for '.' (GNU_sparse_name)."""
    return extended(
        b"x",
        b"".join(
            pax_record(
                key.replace("_", ".").encode(),
                value if isinstance(value, bytes) else value.encode(),
            )
            for key, value in records.items()
        ),
    )


def file(name: str, content: bytes) -> bytes:
    return ustar(name, REGTYPE, len(content)) + content + padding(len(content))


END = bytes(2 * BLOCK)


def members(data: bytes) -> list[Member]:
    reader = TarReader(io.BytesIO(data))
    return list(reader.members())


def refusal(data: bytes) -> str:
    with pytest.raises((TarDamage, SparseMember)) as caught:
        for _ in TarReader(io.BytesIO(data)).members():
            pass
    return f"{type(caught.value).__name__}: {caught.value}"


def test_gnu_long_names_and_links_read_as_tarfile_reads_them() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        link = tarfile.TarInfo("d/" + "n" * 300)
        link.type, link.linkname = tarfile.SYMTYPE, "t/" + "l" * 300
        tar.addfile(link)
        folder = tarfile.TarInfo("e" * 150 + "/")
        folder.type = tarfile.DIRTYPE
        tar.addfile(folder)
    ours = members(out.getvalue())
    assert [(m.name, m.linkname, m.offset) for m in ours] == [
        ("d/" + "n" * 300, "t/" + "l" * 300, 0),  # offset: the 'K' header's
        ("e" * 150, "", ours[1].offset),
    ]
    assert read_ours(out.getvalue()) == read_stock(out.getvalue())


@pytest.mark.parametrize(
    ("headers", "name"),
    [
        (pax(path="from-pax") + extended(b"L", b"from-gnu\0"), "from-pax"),
        (extended(b"L", b"from-gnu\0") + pax(path="from-pax"), "from-gnu"),
        (extended(b"g", pax_record(b"path", b"from-global")) + pax(uid="1"), "from-global"),
        (extended(b"L", b"from-gnu\0") + extended(b"g", pax_record(b"path", b"g")), "from-gnu"),
    ],
)
def test_of_two_extended_headers_naming_a_member_the_first_wins_as_in_tarfile(
    headers: bytes, name: str
) -> None:
    data = headers + file("short", b"") + END
    assert [m.name for m in members(data)] == [name]
    assert read_ours(data) == read_stock(data)


def test_a_global_header_applies_to_every_later_member_and_an_x_header_wins() -> None:
    records = pax_record(b"uid", b"7") + pax_record(b"SCHILY.xattr.user.g", b"all")
    data = (
        file("a", b"1")
        + extended(b"g", records)
        + file("b", b"2")
        + pax(uid="9", SCHILY_xattr_user_x="own")
        + file("c", b"3")
        + END
    )
    ours = members(data)
    assert [(m.name, m.uid, dict(m.xattrs)) for m in ours] == [
        ("a", 0, {}),
        ("b", 7, {"user.g": b"all"}),
        ("c", 9, {"user.g": b"all", "user.x": b"own"}),
    ]
    assert ours[1].offset == 4 * BLOCK  # after a: the global header is no member's
    assert read_ours(data) == read_stock(data)


def test_global_headers_are_capped_together() -> None:
    records = pax_record(b"comment", b"x" * 600_000)
    data = extended(b"g", records) + extended(b"g", records) + file("a", b"") + END
    total = 2 * len(records)
    assert refusal(data) == f"TarDamage: global extended headers of {total} bytes (limit 1 MiB)"


def test_base256_numbers_read_as_gnu_tar_writes_them() -> None:
    info = tarfile.TarInfo("big")
    info.size, info.uid, info.mtime = 1 << 40, 8**8, -1
    block = info.tobuf(tarfile.GNU_FORMAT, "utf-8", "strict")
    assert block[124] == block[108] == 0x80 and block[136] == 0xFF
    member = next(TarReader(io.BytesIO(block)).members())
    assert (member.size, member.uid, member.mtime_ns) == (1 << 40, 8**8, -(10**9))


def test_a_negative_size_is_refused() -> None:
    block = bytearray(ustar("a"))
    block[124:136] = b"\xff" * 12  # base-256 -1
    block[148:156] = b"%06o\0 " % (256 + sum(block) - sum(block[148:156]))
    assert refusal(bytes(block) + END) == "TarDamage: corrupt header (a negative number)"


def test_a_signed_checksum_is_accepted() -> None:
    block = bytearray(ustar("caf\u00e9"))
    signed = 256 + sum(b - 256 if b > 127 else b for b in block) - sum(block[148:156])
    block[148:156] = b"%06o\0 " % signed
    assert [m.name for m in members(bytes(block) + END)] == ["caf\u00e9"]
    assert read_ours(bytes(block) + END) == read_stock(bytes(block) + END)


@pytest.mark.parametrize("charset", [b"", pax_record(b"hdrcharset", b"BINARY")])
def test_raw_bytes_in_pax_names_are_kept_as_surrogate_escapes(charset: bytes) -> None:
    records = charset + pax_record(b"path", b"caf\xe9") + pax_record(b"linkpath", b"\xff")
    data = extended(b"x", records) + ustar("x", b"2") + END
    assert [(m.name, m.linkname) for m in members(data)] == [("caf\udce9", "\udcff")]
    assert read_ours(data) == read_stock(data)


@pytest.mark.parametrize(
    ("records", "reason"),
    [
        (b"999 path=etc/x\n", "a record's length is wrong"),
        (b"0x1 path=etc/x\n", "a record without its length"),
        (b"000 path=etc/x\n", "a record's length is wrong"),
        (b"12 path=etc\nx", "a record without its length"),
        (b"11 path=etcx", "a record's length is wrong"),
        (b"9 =etc/x\n", "a record without a keyword"),
        (b"10 path-x\n", "a record without a keyword"),
        (b"11 pa\0th=x\n", "a record without a keyword"),
        (b" 9 path=x\n", "a record without its length"),
        (b"12 path=a\0b\n", "a NUL in path"),
        (b"9 uid=-1\n", "uid b'-1' is not a number"),
        (b"11 size=1 \n", "size b'1 ' is not a number"),
        (b"13 mtime=nan\n", "mtime b'nan' is not a number"),
        (b"14 mtime=1e30\n", "mtime out of range"),
    ],
)
def test_damaged_pax_records_are_refused_naming_why(records: bytes, reason: str) -> None:
    data = file("first", b"") + extended(b"x", records) + file("second", b"") + END
    assert refusal(data) == f"TarDamage: corrupt extended header ({reason})"


@pytest.mark.parametrize(
    ("text", "nanoseconds"),
    [
        (b"1700000000.123456789", 1_700_000_000_123_456_789),
        (b"1700000000.1234567899", 1_700_000_000_123_456_789),  # truncated to nanoseconds
        (b"12", 12 * 10**9),
        (b"12.", 12 * 10**9),
        (b"-1.5", -1_500_000_000),
        (b"1e-05", 10_000),  # how tarfile writes a small float
        (b"1.7e9", 1_700_000_000 * 10**9),
        (b"0.000000000999", 0),
    ],
)
def test_pax_times_are_read_to_the_nanosecond(text: bytes, nanoseconds: int) -> None:
    data = pax(mtime=text) + file("f", b"") + END
    assert members(data)[0].mtime_ns == nanoseconds


def test_a_pax_size_record_that_promises_more_than_the_stream_holds_is_truncation() -> None:
    data = pax(size="10000") + file("f", b"short") + END
    assert refusal(data) == "TarDamage: truncated (data ends early)"


def test_a_pax_size_record_that_hides_data_makes_the_data_a_corrupt_header() -> None:
    data = pax(size="0") + file("f", b"z" * 600) + file("g", b"") + END
    reader = TarReader(io.BytesIO(data))
    found = reader.members()
    assert next(found).size == 0
    with pytest.raises(TarDamage, match=r"^corrupt header \(bad checksum\)$"):
        next(found)


def test_data_read_past_what_the_stream_holds_is_truncation() -> None:
    data = file("f", b"x" * 1000)[: BLOCK + 600]
    reader = TarReader(io.BytesIO(data))
    next(reader.members())
    with pytest.raises(TarDamage, match=r"^truncated \(data ends early\)$"):
        reader.read_data(1000)


@pytest.mark.parametrize(
    ("data", "names"),
    [
        (file("a", b"1") + bytes(BLOCK), ["a"]),  # one zero block, then nothing: as tarfile
        (file("a", b"1") + END + b"anything at all", ["a"]),
        (file("a", b"1") + bytes(BLOCK) + file("b", b"2") + END, ["a"]),
    ],
)
def test_the_first_zero_block_ends_the_archive(data: bytes, names: list[str]) -> None:
    assert [m.name for m in members(data)] == names
    assert read_ours(data) == read_stock(data)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (file("a", b"1"), "TarDamage: truncated (no end-of-archive marker)"),
        (file("a", b"1") + bytes(300), "TarDamage: truncated inside a header"),
        (file("a", b"1" * 600)[:700], "TarDamage: truncated (data ends early)"),
        (file("a", b"1")[:600], "TarDamage: truncated (data ends early)"),  # padding cut
        (pax(path="long")[:600], "TarDamage: truncated inside an extended header"),
        (pax(path="long") + END, "TarDamage: corrupt extended header (no member follows it)"),
        (
            pax(uid="1") + pax(uid="2") + file("a", b"") + END,
            "TarDamage: corrupt extended header (a second b'x' for one member)",
        ),
        (
            extended(b"L", b"x" * (1 << 20) + b"y") + file("a", b"") + END,
            "TarDamage: extended header of 1048577 bytes (limit 1 MiB)",
        ),
    ],
)
def test_damage_and_truncation_are_refused_in_one_line(data: bytes, message: str) -> None:
    assert refusal(data) == message


def test_a_ustar_name_split_into_prefix_and_name_is_joined() -> None:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name in ("p" * 120 + "/file", "q" * 120 + "/dir/"):
            info = tarfile.TarInfo(name)
            info.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
            tar.addfile(info)
    data = out.getvalue()
    assert data[345:350] == b"ppppp"  # the prefix field holds the directories
    assert [m.name for m in members(data)] == ["p" * 120 + "/file", "q" * 120 + "/dir"]
    assert read_ours(data) == read_stock(data)


def test_an_old_v7_directory_is_a_regular_file_named_with_a_slash() -> None:
    data = ustar("olddir/", AREGTYPE) + file("olddir/f", b"x") + END
    assert [(m.name, m.type) for m in members(data)] == [("olddir", DIRTYPE), ("olddir/f", REGTYPE)]
    assert read_ours(data) == read_stock(data)


def test_sparse_files_are_refused_naming_them() -> None:
    old_gnu = extended(b"L", b"dir/sparse-file\0") + ustar("dir/sparse-f", b"S") + END
    assert refusal(old_gnu) == "SparseMember: dir/sparse-file"
    pax_sparse = pax(GNU_sparse_major="1", GNU_sparse_minor="0", GNU_sparse_name="./sp")
    assert refusal(pax_sparse + ustar("./GNUSparseFile.1/sp") + END) == "SparseMember: ./sp"


def test_a_member_of_an_unknown_type_has_its_data_skipped() -> None:
    data = ustar("volume", b"V", 700) + bytes(1024) + file("after", b"x") + END
    assert [(m.name, m.type) for m in members(data)] == [("volume", b"V"), ("after", REGTYPE)]
    assert read_ours(data) == read_stock(data)


def test_device_numbers_are_read() -> None:
    data = ustar("null", b"3", devices=device_fields(1, 3)) + END
    assert [(m.devmajor, m.devminor) for m in members(data)] == [(1, 3)]
