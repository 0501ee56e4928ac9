"""The reader's own member loop (`tar_members`) gives exactly what tarfile's `next()` gives:
the same members (every header field, pax records, offsets), the same data, and on damaged
archives the same members up to the same error."""

from __future__ import annotations

import io
import tarfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovl.format.reader import _ForwardStream, _StrictTarInfo, tar_members
from tests.format.bundle_build import ShortReads, damage

FIELDS = (
    "name",
    "linkname",
    "type",
    "size",
    "mode",
    "uid",
    "gid",
    "uname",
    "gname",
    "mtime",
    "chksum",
    "devmajor",
    "devminor",
    "offset",
    "offset_data",
    "pax_headers",
    "sparse",
)
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
    info.mtime = draw(st.one_of(st.integers(0, 8**11 - 1), st.floats(0, 2e9).map(float)))
    records = draw(
        st.dictionaries(
            st.sampled_from(["SCHILY.xattr.user.a", "SCHILY.xattr.user.\u00e9", "comment"]),
            st.text(max_size=30),
            max_size=2,
        )
    )
    info.pax_headers = records
    return info, data


@st.composite
def archives(draw: st.DrawFn) -> bytes:
    out = io.BytesIO()
    fmt = draw(st.sampled_from(FORMATS))
    global_headers = {"comment": "fleet"} if draw(st.integers(0, 7)) == 0 else None
    with tarfile.open(
        fileobj=out,
        mode="w",
        format=fmt,
        errors="surrogateescape",
        pax_headers=global_headers,
    ) as tar:
        for info, data in draw(st.lists(member(), min_size=1, max_size=8)):
            try:
                tar.addfile(info, io.BytesIO(data))
            except ValueError:  # ustar/gnu: a field this format cannot hold
                continue
    return out.getvalue()


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    return damage(draw, draw(archives()), draw(st.integers(0, 3)))


def fields(info: tarfile.TarInfo) -> tuple[Any, ...]:
    return tuple(getattr(info, name) for name in FIELDS)


def read_members(
    data: bytes, step: int, read_data: list[bool], ours: bool
) -> list[tuple[Any, ...]]:
    """The members as our loop (or tarfile's next()) yields them, each regular file's data
    read or skipped as `read_data` says, ending with the error raised, if any."""
    seen: list[tuple[Any, ...]] = []
    stream = _ForwardStream(ShortReads(data, step))  # type: ignore[arg-type]
    try:
        with tarfile.TarFile(
            fileobj=stream,  # type: ignore[arg-type]
            mode="r",
            tarinfo=_StrictTarInfo,
            errors="surrogateescape",
        ) as tar:
            members = tar_members(tar) if ours else iter(tar.next, None)
            for index, info in enumerate(members):
                content = None
                if info.isreg() and read_data[index % len(read_data)]:
                    assert stream.tell() == info.offset_data
                    content = stream.read(info.size)
                seen.append((*fields(info), content))
    except Exception as exc:  # the error itself is what is compared
        seen.append(("error", type(exc).__name__, str(exc)))
    return seen


SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(archives(), st.integers(1, 5000), st.lists(st.booleans(), min_size=1, max_size=4))
def test_loop_yields_tarfiles_members_and_data(
    data: bytes, step: int, read_data: list[bool]
) -> None:
    ours = read_members(data, step, read_data, ours=True)
    assert ours == read_members(data, step, read_data, ours=False)
    assert not ours or ours[-1][0] != "error", ours[-1]


@SETTINGS
@given(archives())
def test_loop_matches_stock_tarfile_on_whole_archives(data: bytes) -> None:
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:", errors="surrogateescape") as tar:
        stock = [
            (*fields(info), tar.extractfile(info).read() if info.isreg() else None)  # type: ignore[union-attr]
            for info in tar
        ]
    assert read_members(data, 1 << 14, [True], ours=True) == stock


@SETTINGS
@given(damaged(), st.integers(1, 5000), st.lists(st.booleans(), min_size=1, max_size=4))
def test_loop_fails_on_damage_exactly_as_tarfile(
    data: bytes, step: int, read_data: list[bool]
) -> None:
    assert read_members(data, step, read_data, ours=True) == read_members(
        data, step, read_data, ours=False
    )


class CountingTarFile(tarfile.TarFile):
    calls = 0

    def next(self) -> tarfile.TarInfo | None:
        self.calls += 1
        return super().next()


def pax_archive(count: int) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for index in range(count):
            info = tarfile.TarInfo(f"d/{'long' * 30}/f{index}")  # a pax path record
            info.mtime = 1.5  # and a sub-second mtime
            info.pax_headers = {"SCHILY.xattr.user.a": "é"}
            info.size = index
            tar.addfile(info, io.BytesIO(b"x" * index))
    return out.getvalue()


def test_pax_members_are_read_by_our_loop_and_no_header_is_kept() -> None:
    stream = _ForwardStream(io.BytesIO(pax_archive(50)))  # type: ignore[arg-type]
    with CountingTarFile(fileobj=stream, mode="r", tarinfo=_StrictTarInfo) as tar:  # type: ignore[arg-type]
        members = list(tar_members(tar))
        assert [info.size for info in members] == list(range(50))
        assert members[7].name == f"d/{'long' * 30}/f7"
        assert members[7].pax_headers["SCHILY.xattr.user.a"] == "é"
        # TarFile reading the first member when opened, handing it over, the end marker
        assert tar.calls == 3
        assert tar.members == []  # type: ignore[attr-defined]


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


@st.composite
def pax_record(draw: st.DrawFn) -> bytes:
    body = b" " + draw(st.sampled_from(PAX_KEYS)) + b"=" + draw(st.sampled_from(PAX_VALUES))
    length = len(body) + 2  # the length counts its own digits, the body and the newline
    while length != len(str(length)) + len(body) + 1:
        length += 1
    length += draw(st.sampled_from([0, 0, 0, -1, 1, -50]))
    return str(length).encode() + body + draw(st.sampled_from([b"\n", b"\n", b"x"]))


@st.composite
def pax_archives(draw: st.DrawFn) -> bytes:
    """A hand-made pax 'x' header (records right or wrong) before an ordinary member."""
    records = b"".join(draw(st.lists(pax_record(), max_size=4)))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("first"))  # TarFile itself reads the first member
        extended = tarfile.TarInfo("././@PaxHeader")
        extended.type, extended.size = tarfile.XHDTYPE, len(records)
        tar.addfile(extended, io.BytesIO(records))
        info = tarfile.TarInfo("dir/file")
        info.type = draw(st.sampled_from([tarfile.REGTYPE, tarfile.DIRTYPE, tarfile.SYMTYPE]))
        data = b"d" * draw(st.integers(0, 700)) if info.type == tarfile.REGTYPE else b""
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
        tar.addfile(tarfile.TarInfo("last"))
    return out.getvalue()


@SETTINGS
@given(pax_archives(), st.integers(1, 5000), st.lists(st.booleans(), min_size=1, max_size=3))
def test_loop_reads_any_pax_records_as_tarfile(
    data: bytes, step: int, read_data: list[bool]
) -> None:
    assert read_members(data, step, read_data, ours=True) == read_members(
        data, step, read_data, ours=False
    )
