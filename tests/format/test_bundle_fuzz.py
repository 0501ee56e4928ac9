"""Damaged bundles (bytes flipped, cut short, spliced) either apply or fail with one line;
nothing else escapes, and a failure leaves the target as it was."""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovl.core.errors import OvlError
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle
from ovl.format.reader import Limits
from tests.format.bundle_build import (
    Item,
    armour,
    compress,
    damage,
    snapshot,
    tar_bytes,
    tree,
)

FACTS = Facts(arch="x86_64")
TAR = tar_bytes(
    [
        *tree({"etc/hostname": b"h", "etc/lib/a.so": b"a" * 3000, "usr/bin/x": "../lib/y"}),
        Item("etc/hard", "hardlink", link="etc/hostname"),
        Item("layers/10-x86_64/etc/.wh.hostname", data=b""),
        Item("layers/10-x86_64/etc/lib/.wh..wh..opq", data=b""),
        Item("layers/20-arch=x86_64/opt/tool", data=b"t" * 700, xattrs={"user.a": b"\x00\xff"}),
        Item("ovl.json", data=b'{"serial": 1}'),
    ]
)
ENCODED = {
    "none": TAR,
    "zstd": compress(TAR, "zstd"),
    "gzip": compress(TAR, "gzip"),
    "armour": armour(compress(TAR, "xz"), framed=True),
}


@st.composite
def damaged(draw: st.DrawFn) -> bytes:
    encoded = ENCODED[draw(st.sampled_from(sorted(ENCODED)))]
    return damage(draw, encoded, draw(st.integers(1, 4)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=damaged(), split=st.booleans())
def test_damaged_bundles_fail_cleanly(data: bytes, split: bool) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "target"
        (target / "etc").mkdir(parents=True)
        (target / "etc/hostname").write_text("old")
        before = snapshot(target)
        limits = Limits(max_total_bytes=1 << 20, max_entry_bytes=1 << 16)
        try:
            apply_bundle(io.BytesIO(data), FACTS, target, split=split, limits=limits)
        except OvlError as exc:
            assert "\n" not in str(exc)
            assert snapshot(target) == before
        assert os.listdir(scratch) == ["target"]
