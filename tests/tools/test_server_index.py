"""Bundles the server writes carry the frame index: independent decoders read them, and one
machine applying from the file gets exactly what a full read of the same bytes gives."""

from __future__ import annotations

import io
import json
import random
import struct
import subprocess
import tarfile
from pathlib import Path

import pytest

from ovl.core.errors import OvlError
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle
from ovl.format.codec import Compression
from ovl.format.encode import open_encoder
from ovl.format.frameindex import SKIPPABLE_MAGIC, read_index
from ovl.format.tarstream import MIN_FRAME, TarWriter
from ovl.tools.server.layers import read_bundle, write_bundle
from tests.format.bundle_build import CountingFile, PipeLike, snapshot

MACHINES = 30
UNLINKED = 4  # this machine's hardlink target is dropped before writing: the link carries data


def _mac(index: int) -> str:
    return f"52:54:00:00:02:{index:02x}"


def _folder(index: int) -> str:
    return f"90-{_mac(index).replace(':', '')}"


def _source_tar(path: Path) -> None:
    """A bundle as a plain tar written by tarfile: a base, MACHINES one-machine layers of
    ~40 kB (noise, so about that much compressed) with a hardlink each, one big layer for every
    x86_64 machine, and a base symlink."""
    rng = random.Random(7)
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:

        def add(name: str, data: bytes | None = None, **fields: object) -> None:
            info = tarfile.TarInfo(name)
            info.mode, info.mtime = 0o644, 1_700_000_000
            for key, value in fields.items():
                setattr(info, key, value)
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)

        add("ovl.json", json.dumps({"name": "fleet", "serial": 4}).encode())
        add("etc", type=tarfile.DIRTYPE, mode=0o755)
        add("etc/fleet.conf", b"fleet = test\n")
        add("etc/localtime", type=tarfile.SYMTYPE, linkname="/usr/share/zoneinfo/UTC")
        add("layers", type=tarfile.DIRTYPE, mode=0o755)
        for index in range(MACHINES):
            top = f"layers/{_folder(index)}"
            add(top, type=tarfile.DIRTYPE, mode=0o755)
            add(f"{top}/etc", type=tarfile.DIRTYPE, mode=0o755)
            add(f"{top}/etc/hostname", f"host-{index}\n".encode(), uid=1000, gid=1000)
            add(f"{top}/etc/hostname.bak", type=tarfile.LNKTYPE, linkname=f"{top}/etc/hostname")
            add(f"{top}/etc/key", rng.randbytes(40_000), mode=0o600)
        add("layers/20-x86_64", type=tarfile.DIRTYPE, mode=0o755)
        add("layers/20-x86_64/opt", type=tarfile.DIRTYPE, mode=0o755)
        add("layers/20-x86_64/opt/blob", rng.randbytes(3 * MIN_FRAME))
        add("layers/20-x86_64/etc", type=tarfile.DIRTYPE, mode=0o755)
        add("layers/20-x86_64/etc/.wh.fleet.conf", b"")


@pytest.fixture(scope="module")
def baked(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("baked")
    _source_tar(work / "source.tar")
    out = work / "bundle.ovl"
    with tarfile.open(work / "source.tar") as source, out.open("wb") as raw:
        bundle = read_bundle(source, "source.tar")
        del bundle.layers[f"layers/{_folder(UNLINKED)}"]["etc/hostname"]
        write_bundle(bundle, raw)
    return out


def test_the_frames_tile_the_file_up_to_the_index(baked: Path) -> None:
    with baked.open("rb") as raw:
        frames = read_index(raw)
    assert frames is not None and len(frames) > 5
    indexed = sum(frame.compressed for frame in frames)
    with baked.open("rb") as raw:
        raw.seek(indexed)
        magic, size = struct.unpack("<II", raw.read(8))
    assert magic == SKIPPABLE_MAGIC and indexed + 8 + size == baked.stat().st_size
    assert frames[0].base and frames[-1].base  # the manifest first, the end-of-archive last
    own = [frame for frame in frames if _folder(9) in frame.layers]
    assert own and all(not frame.base for frame in own)
    assert any(frame.layers == ("20-x86_64",) and frame.decoded > MIN_FRAME for frame in frames)


@pytest.mark.subprocess
def test_zstd_and_gnu_tar_read_the_baked_bundle(baked: Path) -> None:
    subprocess.run(["zstd", "-tq", str(baked)], check=True)
    listing = subprocess.run(
        ["tar", "-I", "zstd", "-tvf", str(baked)], check=True, capture_output=True, text=True
    ).stdout.splitlines()
    names = [line.split()[-1] for line in listing if " -> " not in line and " link to " not in line]
    assert names[0] == "ovl.json" and f"layers/{_folder(7)}/etc/key" in names
    unlinked = f"layers/{_folder(UNLINKED)}/etc/hostname.bak"
    assert any(line.startswith("-") and line.endswith(unlinked) for line in listing)


@pytest.mark.parametrize("machine", [0, UNLINKED, MACHINES - 1, MACHINES + 3])
def test_one_machine_from_the_file_gets_what_a_full_read_gives(
    baked: Path, tmp_path: Path, machine: int
) -> None:
    facts = Facts(macs=(_mac(machine),), arch="x86_64")
    with CountingFile(baked) as raw:
        apply_bundle(raw, facts, tmp_path / "indexed", split=False)
    with baked.open("rb") as index:
        frames = read_index(index)
    assert frames is not None
    own = {_folder(machine), "20-x86_64"}
    needed = sum(frame.compressed for frame in frames if frame.base or own & set(frame.layers))
    index_frame = baked.stat().st_size - sum(frame.compressed for frame in frames)
    assert needed <= raw.read_bytes <= needed + index_frame + 4 * len(frames)
    assert sum(not (frame.base or own & set(frame.layers)) for frame in frames) >= 3
    full = PipeLike(baked.read_bytes())
    apply_bundle(full, facts, tmp_path / "full", split=False)  # type: ignore[arg-type]
    indexed = snapshot(tmp_path / "indexed", root_mtime=False)
    assert indexed == snapshot(tmp_path / "full", root_mtime=False)
    assert "opt/blob" in indexed and "etc/fleet.conf" not in indexed
    assert ("etc/key" in indexed) == (machine < MACHINES)
    assert ("etc/hostname" in indexed) == (machine < MACHINES and machine != UNLINKED)
    if machine == UNLINKED:
        assert (tmp_path / "indexed/etc/hostname.bak").read_text() == f"host-{machine}\n"


def test_a_source_that_ends_early_names_the_entry() -> None:
    tar = TarWriter(open_encoder(io.BytesIO(), Compression.ZSTD, None, False, framed=True))
    with pytest.raises(OvlError, match=r"^etc/short: its data ends 6 bytes short of 10$"):
        tar.copy_stream(io.BytesIO(b"1234"), 10, "etc/short")
