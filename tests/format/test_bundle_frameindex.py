"""The frame index of packed zstd bundles: independent decoders ignore it, a machine reads only
its own layers' frames and gets exactly what a full read gives, damage fails with one line."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import subprocess
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ovl.core.errors import BadInput, OvlError
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle
from ovl.format.frameindex import (
    SKIPPABLE_MAGIC,
    Frame,
    encode_index,
    index_digest,
    parse_index,
    read_index,
)
from ovl.format.reader import Limits
from ovl.format.scan import scan_bundle
from ovl.tools.pack import MIN_FRAME, PackOptions, pack_directory
from tests.format.bundle_build import CountingFile, PipeLike, damage, snapshot

LAYERS = 40


def _mac(index: int) -> str:
    return f"52:54:00:00:01:{index:02x}"


def _write_tree(root: Path) -> None:
    """A base, LAYERS one-machine layers of ~40 kB (noise: about that much compressed), two
    big layers for every machine, and base entries after the layers."""
    rng = __import__("random").Random(5)
    (root / "etc").mkdir(parents=True)
    (root / "etc/fleet.conf").write_text("fleet = test\n")
    (root / "ovl.json").write_text(json.dumps({"name": "t", "serial": 3}))
    for index in range(LAYERS):
        folder = root / "layers" / f"10-mac={_mac(index)}" / "etc"
        folder.mkdir(parents=True)
        (folder / "hostname").write_text(f"host-{index}\n")
        (folder / "key").write_bytes(rng.randbytes(40_000))
        os.link(folder / "hostname", folder / "hostname.bak")
    # Frames of 1 MiB or more are ended on a thread of their own while the next one is
    # written (ovl.format.encode): two such layers in a row, then base entries.
    for layer, size in (("20-x86_64", 5 * MIN_FRAME), ("30-x86_64", 5 * MIN_FRAME)):
        big = root / "layers" / layer / "opt"
        big.mkdir(parents=True)
        (big / "blob").write_bytes(rng.randbytes(size))
    (root / "layers/20-x86_64/etc").mkdir()
    (root / "layers/20-x86_64/etc/.wh.fleet.conf").touch()
    (root / "usr/lib").mkdir(parents=True)
    (root / "usr/lib/tail.so").write_bytes(b"\x7fELF" + bytes(5000))


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    _write_tree(root)
    out = tmp_path_factory.mktemp("out") / "fleet.ovl"
    pack_directory(root, out, PackOptions())
    return out


def _apply(source: BinaryIO, facts: Facts, target: Path) -> dict[str, tuple[object, ...]]:
    apply_bundle(source, facts, target, split=False)
    return snapshot(target, root_mtime=False)


@pytest.mark.subprocess
def test_independent_decoders_read_the_indexed_bundle(packed: Path, tmp_path: Path) -> None:
    frames = read_index(packed.open("rb"))
    assert frames is not None and len(frames) > 5
    subprocess.run(["zstd", "-tq", str(packed)], check=True)
    listing = subprocess.run(
        ["tar", "-I", "zstd", "-tf", str(packed)], check=True, capture_output=True, text=True
    ).stdout.split()
    assert f"layers/10-mac={_mac(7)}/etc/key" in listing and "usr/lib/tail.so" in listing
    plain = subprocess.run(["zstd", "-dc", str(packed)], check=True, capture_output=True).stdout
    assert len(plain) == sum(frame.decoded for frame in frames)


def test_frames_tile_the_file_and_big_layers_get_their_own(packed: Path) -> None:
    frames = read_index(packed.open("rb"))
    assert frames is not None
    end = packed.stat().st_size
    index_frame = end - sum(frame.compressed for frame in frames)
    with packed.open("rb") as raw:
        raw.seek(end - index_frame)
        assert struct.unpack("<I", raw.read(4))[0] == SKIPPABLE_MAGIC
    holding_big = [frame for frame in frames if "20-x86_64" in frame.layers]
    # The big layer's small entries may share a frame with others; its blob has its own.
    assert holding_big[-1].layers == ("20-x86_64",) and holding_big[-1].decoded > MIN_FRAME
    assert all(frame.decoded < 2 * MIN_FRAME for frame in holding_big[:-1])
    assert frames[0].base and frames[-1].base  # the start, and the end-of-archive blocks
    assert all(frame.layers or frame.base for frame in frames)


@pytest.mark.parametrize("machine", [0, 17, LAYERS - 1, LAYERS + 5])
def test_one_machine_reads_its_frames_and_gets_what_a_full_read_gives(
    packed: Path, tmp_path: Path, machine: int
) -> None:
    facts = Facts(macs=(_mac(machine),), arch="x86_64")
    with CountingFile(packed) as raw:
        indexed = _apply(raw, facts, tmp_path / "indexed")  # type: ignore[arg-type]
        read = raw.read_bytes
    full = _apply(PipeLike(packed.read_bytes()), facts, tmp_path / "full")  # type: ignore[arg-type]
    assert indexed == full
    assert ("etc/hostname" in indexed) == (machine < LAYERS)
    assert "etc/fleet.conf" not in indexed and "usr/lib/tail.so" in indexed
    frames = read_index(packed.open("rb"))
    assert frames is not None
    own = {f"10-mac={_mac(machine)}", "20-x86_64", "30-x86_64"}
    needed = sum(frame.compressed for frame in frames if frame.base or own & set(frame.layers))
    index_frame = packed.stat().st_size - sum(frame.compressed for frame in frames)
    assert needed <= read <= needed + index_frame + 4 * len(frames)
    others = [frame for frame in frames if not (frame.base or own & set(frame.layers))]
    assert len(others) >= 3  # other machines' frames, never read


def test_a_machine_without_a_wanted_layer_reads_the_base_frames_only(
    packed: Path, tmp_path: Path
) -> None:
    with CountingFile(packed) as raw:
        tree = _apply(raw, Facts(arch="aarch64"), tmp_path / "t")  # type: ignore[arg-type]
        read = raw.read_bytes
    assert set(tree) == {".", "etc", "etc/fleet.conf", "usr", "usr/lib", "usr/lib/tail.so"}
    assert read < packed.stat().st_size / 8


def _rewrite_index(packed: Path, dest: Path, edit: object) -> Path:
    """`packed` with its frame index replaced by `edit(frames)`'s (a callable)."""
    frames = read_index(packed.open("rb"))
    assert frames is not None
    data = packed.read_bytes()[: sum(frame.compressed for frame in frames)]
    dest.write_bytes(data + encode_index(edit(frames)))  # type: ignore[operator]
    return dest


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (lambda f: f[:-1], "sizes do not add up"),
        (lambda f: [Frame(f[0].compressed + 1, f[0].decoded, True, ()), *f[1:]], "do not add up"),
        (
            lambda f: (
                [
                    Frame(1, 0, False, ("10-x86_64",)),
                    Frame(f[0].compressed - 1, 0, True, ()),
                    *f[1:],
                ]
            ),
            "no frame at byte 1",
        ),
        (lambda f: [Frame(f[0].compressed, 0, True, ("../x",)), *f[1:]], "layer '../x'"),
    ],
    ids=["frame-missing", "size-off-by-one", "frame-split-mid-frame", "bad-layer-name"],
)
def test_a_damaged_index_is_refused_with_one_line(
    packed: Path, tmp_path: Path, edit: object, reason: str
) -> None:
    bad = _rewrite_index(packed, tmp_path / "bad.ovl", edit)
    target = tmp_path / "target"
    target.mkdir()
    with pytest.raises(BadInput, match=reason) as caught, bad.open("rb") as raw:
        apply_bundle(raw, Facts(macs=(_mac(3),)), target, split=False)
    assert "\n" not in str(caught.value)
    assert os.listdir(target) == []


@pytest.mark.parametrize(
    ("tail", "reason"),
    [
        (struct.pack("<I8s", 0xFFFFFFF0, b"ovlindex"), "outside the file"),
        (b"junk" + struct.pack("<I8s", 16, b"ovlindex"), "no skippable frame"),
    ],
    ids=["size-beyond-start", "no-frame-header"],
)
def test_a_damaged_trailer_is_refused(
    packed: Path, tmp_path: Path, tail: bytes, reason: str
) -> None:
    bad = tmp_path / "bad.ovl"
    bad.write_bytes(packed.read_bytes() + tail)
    with pytest.raises(BadInput, match=reason), bad.open("rb") as raw:
        read_index(raw)


def test_an_oversized_index_is_refused_before_it_is_read(tmp_path: Path) -> None:
    big = tmp_path / "big.ovl"  # sparse: 80 MiB of holes after a zstd frame
    with big.open("wb") as out:
        out.write(b"\x28\xb5\x2f\xfd" + bytes(16))
        out.seek(80 << 20)
        out.write(struct.pack("<I8s", 70 << 20, b"ovlindex"))
    with pytest.raises(BadInput, match="over 67108864"), big.open("rb") as raw:
        read_index(raw)


def test_an_index_too_big_to_be_worth_its_memory_is_not_used(packed: Path, tmp_path: Path) -> None:
    """Past 16 MiB of JSON (~400,000 layers) the bundle is read in full, in flat memory."""

    def swell(frames: list[Frame]) -> list[Frame]:
        names = tuple(
            f"10-mac=52:54:00:ff:{i >> 8 & 255:02x}:{i & 255:02x}" for i in range(1 << 16)
        )
        first = frames[0]
        return [
            Frame(first.compressed, first.decoded, True, first.layers + names * 10),
            *frames[1:],
        ]

    swollen = _rewrite_index(packed, tmp_path / "swollen.ovl", swell)
    with swollen.open("rb") as raw:
        assert read_index(raw) is None
    result = apply_bundle(swollen.open("rb"), Facts(macs=(_mac(2),)), tmp_path / "t", split=False)
    assert result.frames_read is None and (tmp_path / "t/etc/hostname").read_text() == "host-2\n"


def test_a_bundle_cut_inside_its_index_is_truncated(packed: Path, tmp_path: Path) -> None:
    data = packed.read_bytes()
    for cut in (1, 12, 13, 100):
        target = tmp_path / f"t{cut}"
        target.mkdir()
        with pytest.raises(BadInput, match="truncated zstd stream"):
            apply_bundle(io.BytesIO(data[:-cut]), Facts(macs=(_mac(1),)), target, split=False)


@st.composite
def _damaged(draw: st.DrawFn, data: bytes) -> bytes:
    return damage(draw, data, draw(st.integers(1, 3)))


@pytest.fixture(scope="module")
def small_packed(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = tmp_path_factory.mktemp("small")
    for index in range(6):
        folder = root / "layers" / f"10-mac={_mac(index)}"
        folder.mkdir(parents=True)
        (folder / "f").write_bytes(os.urandom(MIN_FRAME // 2))
    (root / "etc").mkdir()
    (root / "etc/base").write_text("base\n")
    out = tmp_path_factory.mktemp("o") / "s.ovl"
    pack_directory(root, out, PackOptions())
    return out.read_bytes()


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), machine=st.integers(0, 7))
def test_damaged_indexed_bundles_apply_as_a_full_read_does_or_fail_cleanly(
    small_packed: bytes, data: st.DataObject, machine: int
) -> None:
    damaged = data.draw(_damaged(small_packed))
    facts = Facts(macs=(_mac(machine),))
    limits = Limits(max_total_bytes=16 << 20)
    results = []
    for source in (io.BytesIO(damaged), PipeLike(damaged)):
        with tempfile.TemporaryDirectory() as scratch:
            target = Path(scratch) / "target"
            target.mkdir()
            try:
                apply_bundle(source, facts, target, split=False, limits=limits)  # type: ignore[arg-type]
                results.append(snapshot(target, root_mtime=False))
            except OvlError as exc:
                assert "\n" not in str(exc)
                assert os.listdir(target) == []
                results.append(None)
    # Either may fail where the other does not (damage in a frame the machine skips, or in
    # the index, which a full read passes over); when both apply, they agree.
    assert None in results or results[0] == results[1]


def test_scan_refuses_an_index_that_would_hide_a_layer(packed: Path, tmp_path: Path) -> None:
    """A frame index whose labels lie (a layer's frame listed under another layer) is what
    inspect and lint catch: a machine trusting it would skip its own layer."""

    def relabel(frames: list[Frame]) -> list[Frame]:
        second = frames[1]
        return [
            frames[0],
            Frame(second.compressed, second.decoded, second.base, ("99",)),
            *frames[2:],
        ]

    liar = _rewrite_index(packed, tmp_path / "liar.ovl", relabel)
    lies = r"frame index lies \(frame 1 holds"
    with pytest.raises(BadInput, match=lies) as caught, liar.open("rb") as raw:
        scan_bundle(raw)
    assert "\n" not in str(caught.value)
    with packed.open("rb") as raw:
        assert scan_bundle(raw).frames == len(read_index(packed.open("rb")) or [])


def test_the_index_lists_every_frames_sha256_and_its_own_digest_is_its_bytes(
    packed: Path,
) -> None:
    with packed.open("rb") as raw:
        frames = read_index(raw)
        digest = index_digest(raw)
    assert frames is not None and digest is not None
    data = packed.read_bytes()
    offset = 0
    for frame in frames:
        assert frame.matches(data[offset : offset + frame.compressed])
        offset += frame.compressed
    size, sha256 = digest
    assert size == len(data) - offset and sha256 == hashlib.sha256(data[offset:]).hexdigest()
    assert parse_index(data[offset:]) == frames


def test_an_index_written_without_digests_is_read_as_before(packed: Path, tmp_path: Path) -> None:
    """Bundles packed before the index listed digests: read, applied and scanned the same."""
    plain = _rewrite_index(
        packed, tmp_path / "old.ovl", lambda frames: [replace(f, sha256="") for f in frames]
    )
    with plain.open("rb") as raw:
        frames = read_index(raw)
        assert frames is not None and not any(frame.sha256 for frame in frames)
        raw.seek(0)
        assert scan_bundle(raw).frames == len(frames)
    result = apply_bundle(plain.open("rb"), Facts(macs=(_mac(4),)), tmp_path / "t", split=False)
    assert result.frames_read is not None and (tmp_path / "t/etc/hostname").exists()


def test_scan_refuses_a_frame_that_does_not_match_its_digest(packed: Path, tmp_path: Path) -> None:
    """What `ovl lint` and `ovl seal` check before an index is signed: every frame's bytes."""

    def misdigest(frames: list[Frame]) -> list[Frame]:
        return [*frames[:3], replace(frames[3], sha256="0" * 64), *frames[4:]]

    liar = _rewrite_index(packed, tmp_path / "liar.ovl", misdigest)
    start = sum(frame.compressed for frame in read_index(packed.open("rb"))[:3])  # type: ignore[index]
    reason = rf"frame 3 \(bytes {start}-\d+\) does not match its sha256 in the frame index"
    with pytest.raises(BadInput, match=reason) as caught, liar.open("rb") as raw:
        scan_bundle(raw)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    "digests",
    [["0" * 64], "not a list", ["0" * 63] * 1000, ["G" * 64] * 1000],
    ids=["too-few", "not-a-list", "short", "not-hex"],
)
def test_a_damaged_digest_list_is_refused(packed: Path, tmp_path: Path, digests: object) -> None:
    frames = read_index(packed.open("rb"))
    assert frames is not None
    if isinstance(digests, list) and len(digests) == 1000:
        digests = digests[: len(frames)]
    document = {
        "format": "ovl-frame-index/1",
        "frames": [[f.compressed, f.decoded, f.base, list(f.layers)] for f in frames],
        "sha256": digests,
    }
    body = zstandard.ZstdCompressor().compress(json.dumps(document).encode())
    tail = struct.pack("<I8s", len(body) + 12, b"ovlindex")
    index = struct.pack("<II", SKIPPABLE_MAGIC, len(body) + 12) + body + tail
    with pytest.raises(BadInput, match="sha256 is not one digest per frame"):
        parse_index(index)
