"""A machine validates what it applies; `ovl lint` (scan) validates the whole bundle.

Cross-entry refusals (paths through symlinks or files, a path declared twice, hardlink targets)
stop apply when they sit in a layer it writes, and only scan when they sit in a layer that does
not match; per-entry refusals stop both wherever they sit. Skipped layers cost no memory.
"""

from __future__ import annotations

import io
import tarfile
import tracemalloc
from pathlib import Path

import pytest
import zstandard

from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle
from ovl.format.reader import Limits
from ovl.format.scan import scan_bundle
from tests.format.bundle_build import Item, bundle, compress, snapshot, tar_bytes

FACTS = Facts(kernel="Linux", kernel_release="6.1.0-56-cloud-amd64", arch="x86_64")
BASE_AND_OWN_LAYER = [
    Item("etc", "dir"),
    Item("etc/hostname", data=b"fleet\n"),
    Item("layers/10-x86_64", "dir"),
    Item("layers/10-x86_64/etc/motd", data=b"x86\n"),
]
WRITTEN = {"base": "", "matched": "layers/10-x86_64/"}
OTHER = "layers/99-aarch64/"


def cross_entry_cases(root: str) -> dict[str, tuple[list[Item], str]]:
    """Entries under `root` (a layer's prefix) that only a check across entries refuses."""
    return {
        "through-symlink": (
            [Item(f"{root}lib", "symlink", link="/tmp"), Item(f"{root}lib/evil", data=b"x")],
            "path passes through symlink lib",
        ),
        "symlink-over-earlier-entries": (
            [Item(f"{root}opt/tool", data=b"x"), Item(f"{root}opt", "symlink", link="/usr")],
            "a symlink with entries below it",
        ),
        "through-file": (
            [Item(f"{root}f", data=b""), Item(f"{root}f/x", data=b"")],
            "f is not a directory",
        ),
        "two-types": (
            [Item(f"{root}d", data=b""), Item(f"{root}d", "dir")],
            "declared both as file and dir",
        ),
        "whiteout-and-entry": (
            [Item(f"{root}w", data=b""), Item(f"{root}.wh.w", data=b"")],
            "declared both as file and whiteout",
        ),
        "hardlink-to-unknown": (
            [Item(f"{root}h", "hardlink", link=f"{root}nothing")],
            "not an earlier regular file of the same layer",
        ),
        "hardlink-before-its-target": (
            [Item(f"{root}h", "hardlink", link=f"{root}t"), Item(f"{root}t", data=b"t")],
            "not an earlier regular file of the same layer",
        ),
        "hardlink-to-symlink": (
            [Item(f"{root}s", "symlink", link="x"), Item(f"{root}h", "hardlink", link=f"{root}s")],
            "not an earlier regular file",
        ),
    }


def per_entry_cases(root: str) -> dict[str, tuple[list[Item], str, Limits]]:
    """Entries under `root` that are refused on their own, wherever they sit."""
    plain = Limits()
    elsewhere = "etc/hostname" if root else "layers/10-x86_64/etc/motd"
    return {
        "dotdot": ([Item(f"{root}../../x", data=b"")], "'..' in path", plain),
        "symlink-climbs-out": (
            [Item(f"{root}up", "symlink", link="../x")],
            "leads outside the root",
            plain,
        ),
        "hardlink-across-layers": (
            [Item(f"{root}h", "hardlink", link=elsewhere)],
            "outside its layer",
            plain,
        ),
        "hardlink-out-of-bundle": (
            [Item(f"{root}h", "hardlink", link="/etc/shadow")],
            "leads outside the bundle",
            plain,
        ),
        "device": ([Item(f"{root}null", "char")], "char device nodes are not allowed", plain),
        "reserved-whiteout": ([Item(f"{root}.wh..wh.x", data=b"")], "reserved whiteout", plain),
        "overlay-xattr": (
            [Item(f"{root}d", "dir", xattrs={"trusted.overlay.redirect": b"/"})],
            "reserved xattr",
            plain,
        ),
        "entry-over-cap": (
            [Item(f"{root}big", data=b"x" * 5000)],
            "over the per-entry limit of 4096",
            Limits(max_entry_bytes=4096),
        ),
        "too-many-entries": (
            [Item(f"{root}e{i}", data=b"") for i in range(20)],
            "more than 10 entries",
            Limits(max_entries=10),
        ),
    }


def target_in(parent: Path) -> Path:
    target = parent / "target"
    (target / "etc").mkdir(parents=True)
    (target / "etc" / "hostname").write_text("old\n")
    return target


CROSS = sorted(cross_entry_cases(""))
PER_ENTRY = sorted(per_entry_cases(""))


@pytest.mark.parametrize("split", [False, True], ids=["merged", "split"])
@pytest.mark.parametrize("where", sorted(WRITTEN))
@pytest.mark.parametrize("case", CROSS)
def test_cross_entry_case_in_a_written_layer_stops_apply_and_scan(
    case: str, where: str, split: bool, tmp_path: Path
) -> None:
    items, reason = cross_entry_cases(WRITTEN[where])[case]
    data = bundle([*BASE_AND_OWN_LAYER, *items])
    target = target_in(tmp_path)
    before = snapshot(target)
    with pytest.raises(BadInput, match=reason):
        apply_bundle(io.BytesIO(data), FACTS, target, split=split)
    assert snapshot(target) == before
    with pytest.raises(BadInput, match=reason):
        scan_bundle(io.BytesIO(data))


@pytest.mark.parametrize("split", [False, True], ids=["merged", "split"])
@pytest.mark.parametrize("case", CROSS)
def test_cross_entry_case_in_another_machines_layer_is_left_to_scan(
    case: str, split: bool, tmp_path: Path
) -> None:
    items, reason = cross_entry_cases(OTHER)[case]
    data = bundle([*BASE_AND_OWN_LAYER, *items, Item("layers/10-x86_64/etc/issue", data=b"i")])
    with pytest.raises(BadInput, match=reason):
        scan_bundle(io.BytesIO(data))
    target = tmp_path / "target"
    result = apply_bundle(io.BytesIO(data), FACTS, target, split=split)
    assert [layer.name for layer in result.layers] == ["base", "10-x86_64"]
    merged = target / "10-x86_64" if split else target
    assert (merged / "etc" / "issue").read_bytes() == b"i"
    assert (target / "base" / "etc" / "hostname" if split else target / "etc" / "hostname").exists()
    assert not list(target.rglob("*99-aarch64*"))


@pytest.mark.parametrize("where", [*sorted(WRITTEN), "other"])
@pytest.mark.parametrize("case", PER_ENTRY)
def test_per_entry_case_stops_apply_in_any_layer(case: str, where: str, tmp_path: Path) -> None:
    root = WRITTEN.get(where, OTHER)
    items, reason, limits = per_entry_cases(root)[case]
    data = bundle([*BASE_AND_OWN_LAYER, *items])
    target = target_in(tmp_path)
    before = snapshot(target)
    with pytest.raises(BadInput, match=reason):
        apply_bundle(io.BytesIO(data), FACTS, target, split=False, limits=limits)
    assert snapshot(target) == before
    with pytest.raises(BadInput, match=reason):
        scan_bundle(io.BytesIO(data), limits)


@pytest.mark.parametrize("compression", ["zstd", "gzip", "none"])
def test_stream_cut_inside_another_machines_layer_stops_apply(
    compression: str, tmp_path: Path
) -> None:
    items = [Item(f"{OTHER}etc/f{i}", data=bytes([i]) * 3000) for i in range(8)]
    whole = compress(tar_bytes([*BASE_AND_OWN_LAYER, *items]), compression)
    with pytest.raises(BadInput, match="truncated"):
        apply_bundle(io.BytesIO(whole[: len(whole) * 3 // 4]), FACTS, tmp_path / "t", split=True)
    assert not (tmp_path / "t").exists()


def many_layers(count: int) -> bytes:
    """Base, this machine's layer, then `count` other machines' layers of a folder, a
    directory and a file each (uncompressed GNU headers keep it small and quick)."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for item in BASE_AND_OWN_LAYER:
            info = tarfile.TarInfo(item.name)
            info.type = tarfile.DIRTYPE if item.kind == "dir" else tarfile.REGTYPE
            info.size = len(item.data)
            tar.addfile(info, io.BytesIO(item.data))
        for index in range(count):
            folder = f"layers/20-mac=52:54:00:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:"
            folder += f"{index & 255:02x}"
            for name, kind in [(folder, tarfile.DIRTYPE), (f"{folder}/etc", tarfile.DIRTYPE)]:
                info = tarfile.TarInfo(name)
                info.type = kind
                tar.addfile(info)
            info = tarfile.TarInfo(f"{folder}/etc/host-{index}.conf")
            info.size = 4
            tar.addfile(info, io.BytesIO(b"conf"))
    return zstandard.ZstdCompressor().compress(out.getvalue())


def peak_traced_bytes(data: bytes, target: Path) -> int:
    tracemalloc.start()
    try:
        apply_bundle(io.BytesIO(data), FACTS, target, split=True)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_of_apply_does_not_grow_with_other_machines_layers(tmp_path: Path) -> None:
    # From about 5,000 layers on the peak is the decoder's and tarfile's buffers, and flat.
    small, large = many_layers(5_000), many_layers(25_000)
    peak_traced_bytes(small, tmp_path / "warm")  # imports and caches, once
    growth = peak_traced_bytes(large, tmp_path / "large") - peak_traced_bytes(
        small, tmp_path / "small"
    )
    # Keeping each skipped path would cost well over 50 bytes per entry (60,000 more).
    assert growth < 128 * 1024, f"peak grew by {growth} bytes"
