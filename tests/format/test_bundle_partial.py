"""Partial bundles (FORMAT.md 2.2): one machine's frames of an indexed bundle with the index they
are checked against. Stock zstd and tar read them; the agent applies them as it applies the
whole bundle; a frame that is not the index's, or a frame the machine needs that is missing,
is one line."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle, machine_frames
from ovl.format.frameindex import Frame, frame_ranges, index_bytes, read_index
from ovl.format.partial import partial_tail, read_partial
from ovl.tools.pack import PackOptions, pack_directory
from tests.format.bundle_build import snapshot

LAYERS = 12


def _mac(index: int) -> str:
    return f"52:54:00:00:02:{index:02x}"


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    (root / "etc").mkdir()
    (root / "etc/fleet.conf").write_text("fleet\n")
    (root / "ovl.json").write_text(json.dumps({"name": "p", "serial": 2}))
    for index in range(LAYERS):
        folder = root / "layers" / f"10-mac={_mac(index)}" / "etc"
        folder.mkdir(parents=True)
        (folder / "hostname").write_text(f"host-{index}\n")
        (folder / "key").write_bytes(os.urandom(150_000))  # about a frame each
    out = tmp_path_factory.mktemp("out") / "fleet.ovl"
    pack_directory(root, out, PackOptions())
    return out


def _partial(packed: Path, dest: Path, numbers: list[int]) -> Path:
    """What the agent writes after fetching frames `numbers` of `packed`."""
    with packed.open("rb") as raw:
        frames, index = read_index(raw), index_bytes(raw)
    assert frames is not None and index is not None
    data = packed.read_bytes()
    body = b"".join(data[o : o + n] for o, n in frame_ranges(frames, numbers))
    dest.write_bytes(body + partial_tail(index, numbers, len(data)))
    return dest


def _frames(packed: Path) -> list[Frame]:
    frames = read_index(packed.open("rb"))
    assert frames is not None
    return frames


def _wanted(packed: Path, machine: int) -> list[int]:
    return machine_frames(_frames(packed), Facts(macs=(_mac(machine),)))


@pytest.mark.subprocess
def test_a_partial_bundle_applies_as_the_whole_bundle_does_and_stock_tools_read_it(
    packed: Path, tmp_path: Path
) -> None:
    facts = Facts(macs=(_mac(5),))
    numbers = _wanted(packed, 5)
    assert 2 <= len(numbers) < len(_frames(packed)) / 2
    partial = _partial(packed, tmp_path / "partial.ovl", numbers)
    with partial.open("rb") as raw:
        found = read_partial(raw)
        assert found is not None
        found.check(raw, found.frames(), numbers)
    assert found.numbers == tuple(numbers) and found.size == packed.stat().st_size
    assert read_index(partial.open("rb")) is None  # applied by a full read of what it holds
    apply_bundle(partial.open("rb"), facts, tmp_path / "from-partial", split=False)
    apply_bundle(packed.open("rb"), facts, tmp_path / "from-whole", split=False)
    mine = snapshot(tmp_path / "from-partial", root_mtime=False)
    assert mine == snapshot(tmp_path / "from-whole", root_mtime=False)
    assert (tmp_path / "from-partial/etc/hostname").read_text() == "host-5\n"
    subprocess.run(["zstd", "-tq", str(partial)], check=True)
    listing = subprocess.run(
        ["tar", "-I", "zstd", "-tf", str(partial)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert f"layers/10-mac={_mac(5)}/etc/key" in listing and "ovl.json" in listing
    assert f"layers/10-mac={_mac(9)}/etc/key" not in listing


def test_a_whole_bundle_is_no_partial_one(packed: Path) -> None:
    with packed.open("rb") as raw:
        assert read_partial(raw) is None


def test_a_frame_changed_in_a_partial_bundle_is_named(packed: Path, tmp_path: Path) -> None:
    numbers = _wanted(packed, 3)
    partial = _partial(packed, tmp_path / "p.ovl", numbers)
    data = bytearray(partial.read_bytes())
    second = _frames(packed)[numbers[0]].compressed + 40  # inside the second frame held
    data[second] ^= 1
    partial.write_bytes(data)
    with partial.open("rb") as raw, pytest.raises(BadInput) as caught:
        found = read_partial(raw)
        assert found is not None
        found.check(raw, found.frames(), numbers)
    assert f"frame {numbers[1]} (bytes" in str(caught.value)
    assert "does not match its sha256 in the signed frame index" in str(caught.value)


def test_a_partial_bundle_fetched_for_other_facts_lacks_frames(
    packed: Path, tmp_path: Path
) -> None:
    """A machine whose facts changed (a new NIC) must not boot without its own layer."""
    partial = _partial(packed, tmp_path / "p.ovl", _wanted(packed, 3))
    with partial.open("rb") as raw, pytest.raises(BadInput, match="lacks 1 frame") as caught:
        found = read_partial(raw)
        assert found is not None
        found.check(raw, found.frames(), _wanted(packed, 8))
    assert "it was fetched for other facts" in str(caught.value)


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda n: n[::-1], "not its index's, in order"),
        (lambda n: [*n, 10_000], "not its index's, in order"),
        (lambda n: n[:-1], "do not add up to the file"),
    ],
    ids=["descending", "beyond-the-index", "one-less"],
)
def test_a_partial_table_that_does_not_fit_its_frames_is_refused(
    packed: Path, tmp_path: Path, edit: object, reason: str
) -> None:
    numbers = _wanted(packed, 1)
    partial = _partial(packed, tmp_path / "p.ovl", numbers)
    with packed.open("rb") as raw:
        index = index_bytes(raw)
    assert index is not None
    data = partial.read_bytes()
    frames_end = len(data) - len(partial_tail(index, numbers, packed.stat().st_size))
    bad = edit(numbers)  # type: ignore[operator]
    partial.write_bytes(data[:frames_end] + partial_tail(index, bad, packed.stat().st_size))
    with partial.open("rb") as raw, pytest.raises(BadInput, match=reason):
        found = read_partial(raw)
        assert found is not None
        found.check(raw, found.frames(), [])


def test_a_damaged_table_is_refused_with_one_line(packed: Path, tmp_path: Path) -> None:
    partial = _partial(packed, tmp_path / "p.ovl", _wanted(packed, 1))
    data = bytearray(partial.read_bytes())
    data[-20] ^= 0x55  # inside the table's JSON
    partial.write_bytes(data)
    with partial.open("rb") as raw, pytest.raises(BadInput, match="partial bundle") as caught:
        read_partial(raw)
    assert "\n" not in str(caught.value)
