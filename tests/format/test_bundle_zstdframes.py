"""ZstdFrameCheck against the zstd CLI as the oracle: a stream cut anywhere is complete exactly
when `zstd -t` says so."""

from __future__ import annotations

import io
import random
import subprocess
from pathlib import Path

import pytest

from ovl.format.frameindex import Frame, encode_index
from ovl.format.zstdframes import ZstdFrameCheck

pytestmark = pytest.mark.subprocess


def _zstd(data: bytes, *flags: str) -> bytes:
    return subprocess.run(
        ["zstd", "-c", *flags], input=data, capture_output=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def frames() -> list[bytes]:
    rng = random.Random(3)
    noise = rng.randbytes(300_000)  # raw blocks, a multi-block frame with a window descriptor
    text = b"".join(b"key%d = %d\n" % (i, rng.randrange(99)) for i in range(20_000))
    return [
        _zstd(b"small", "--no-check"),  # single segment, one-byte content size
        _zstd(noise, "--check"),  # checksum after the last block
        _zstd(bytes(400_000), "--no-check"),  # RLE blocks
        _zstd(text, "--check", "-19"),  # compressed blocks
        encode_index([Frame(1, 2, True, ("10-x86_64",))]),  # a skippable frame
        _zstd(b"", "--no-check"),  # an empty frame
    ]


def _complete_by_us(data: bytes) -> bool:
    check = ZstdFrameCheck(io.BytesIO(data))
    try:
        while check.read(7919):
            pass
    except EOFError:
        return False
    return True


def _complete_by_zstd(path: Path) -> bool:
    return subprocess.run(["zstd", "-tq", str(path)], capture_output=True).returncode == 0


def test_cuts_are_judged_as_the_zstd_cli_judges_them(frames: list[bytes], tmp_path: Path) -> None:
    stream = b"".join(frames)
    boundaries, at = [], 0
    for frame in frames:
        at += len(frame)
        boundaries.append(at)
    rng = random.Random(9)
    cuts = {c + d for c in boundaries for d in (-4, -3, -1, 0, 1, 3)} | {1, 4, 5, 6, 8}
    cuts |= {rng.randrange(1, len(stream)) for _ in range(40)}
    path = tmp_path / "cut.zst"
    for cut in sorted(c for c in cuts if 0 < c <= len(stream)):
        path.write_bytes(stream[:cut])
        assert _complete_by_us(stream[:cut]) == _complete_by_zstd(path), f"cut at {cut}"
    assert _complete_by_us(stream) and _complete_by_zstd(tmp_path / "cut.zst")


def test_the_bytes_pass_through_unchanged(frames: list[bytes]) -> None:
    stream = b"".join(frames)
    assert ZstdFrameCheck(io.BytesIO(stream)).read() == stream
