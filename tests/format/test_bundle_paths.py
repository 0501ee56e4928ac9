"""Path safety rules are pure functions: checked against posixpath as an oracle."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.core.errors import BadInput
from ovl.format.paths import member_parts, symlink_climbs_out

_segment = st.sampled_from(["a", "b", "..", ".", "", "etc", "x y"])
_relative = st.lists(_segment, min_size=1, max_size=7).map("/".join)


@given(name=st.one_of(_relative, _relative.map(lambda p: "/" + p)))
def test_member_names_stay_inside_or_are_refused(name: str) -> None:
    try:
        parts = member_parts(name)
    except BadInput as exc:
        assert name.startswith("/") or ".." in name.split("/")
        assert str(exc).startswith(f"bundle entry {name!r}: ")
        return
    assert not name.startswith("/")
    assert all(part not in ("", ".", "..") for part in parts)
    assert "/".join(parts) == posixpath.normpath(name).lstrip("./") or parts == ()


@given(
    link=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=4).map(tuple),
    target=_relative.filter(lambda t: not t.startswith("/")),
)
def test_relative_symlink_climbs_out_exactly_when_normpath_says_so(
    link: tuple[str, ...], target: str
) -> None:
    # Lexically, a path that ever climbs above the root cannot come back inside it unseen:
    # check each prefix of the target, as a reader resolving it step by step would.
    base = "/".join(link[:-1])
    pieces = target.split("/")
    climbs = any(
        posixpath.normpath(posixpath.join(base, *pieces[:end])).split("/")[0] == ".."
        for end in range(1, len(pieces) + 1)
    )
    assert symlink_climbs_out(link, target) is climbs


@pytest.mark.parametrize(
    ("link", "target", "climbs"),
    [
        (("etc", "localtime"), "/usr/share/zoneinfo/UTC", False),
        (("usr", "lib", "libx.so"), "../../lib/libx.so", False),
        (("usr", "lib", "libx.so"), "../../../lib/libx.so", True),
        (("top",), "..", True),
        (("top",), "a/../../b", True),
        (("a", "b"), "./../c", False),
    ],
)
def test_symlink_examples(link: tuple[str, ...], target: str, climbs: bool) -> None:
    assert symlink_climbs_out(link, target) is climbs
