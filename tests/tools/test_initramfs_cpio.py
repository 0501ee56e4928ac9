"""The newc writer, read back by GNU cpio (the independent peer)."""

from __future__ import annotations

import hashlib
import io
import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovl.tools.initramfs.cpio import Entry, char_device, directory, regular, symlink, write_newc


def sample(tmp_path: Path) -> list[Entry]:
    host_file = tmp_path / "host.bin"
    host_file.write_bytes(bytes(range(256)) * 41)
    return [
        regular("usr/bin/tool", host_file, 0o755),
        directory("usr"),
        directory("usr/bin"),
        symlink("bin", "usr/bin"),
        directory("dev"),
        char_device("dev/console", 5, 1),
        regular("init", b"#!/bin/sh\necho odd-length"),
        directory("etc"),
        regular("etc/empty", b""),
    ]


def archive(entries: list[Entry], mtime: int = 1_700_000_000) -> bytes:
    out = io.BytesIO()
    write_newc(entries, out, mtime=mtime)
    return out.getvalue()


def test_members_are_padded_and_the_archive_ends_with_a_trailer(tmp_path: Path) -> None:
    data = archive(sample(tmp_path))
    assert data.startswith(b"070701")
    assert len(data) % 4 == 0
    assert b"TRAILER!!!\0" in data[-128:]


def test_order_of_input_does_not_change_the_bytes(tmp_path: Path) -> None:
    entries = sample(tmp_path)
    first = archive(entries)
    assert archive(list(reversed(entries))) == first
    assert hashlib.sha256(archive(entries, mtime=1)).digest() != hashlib.sha256(first).digest()


@pytest.mark.subprocess
def test_gnu_cpio_lists_and_extracts_what_was_written(tmp_path: Path) -> None:
    image = tmp_path / "img.cpio"
    image.write_bytes(archive(sample(tmp_path)))
    listing = subprocess.run(
        ["cpio", "-t", "-v", "--quiet", "-F", str(image)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()
    names = [line.split()[-1] if "->" not in line else line.split()[-3] for line in listing]
    assert names == ["bin", "dev", "dev/console", "etc", "etc/empty", "init", "usr", "usr/bin",
                     "usr/bin/tool"]  # fmt: skip
    assert all(" root " in line or " 0 " in line for line in listing)
    out = tmp_path / "out"
    out.mkdir()
    subprocess.run(
        ["cpio", "-i", "-d", "--quiet", "--preserve-modification-time", "-F", str(image)],
        cwd=out,
        check=True,
    )
    assert (out / "usr/bin/tool").read_bytes() == (tmp_path / "host.bin").read_bytes()
    assert stat.S_IMODE((out / "usr/bin/tool").stat().st_mode) == 0o755
    assert (out / "usr/bin/tool").stat().st_mtime == 1_700_000_000
    assert (out / "init").read_bytes() == b"#!/bin/sh\necho odd-length"
    assert os.readlink(out / "bin") == "usr/bin"
    console = (out / "dev/console").lstat()
    assert stat.S_ISCHR(console.st_mode)
    assert (os.major(console.st_rdev), os.minor(console.st_rdev)) == (5, 1)


_names = st.text(alphabet="abcXYZ019._-", min_size=1, max_size=12).filter(
    lambda n: n not in (".", "..")
)


@pytest.mark.subprocess
@settings(max_examples=25, deadline=None)
@given(files=st.dictionaries(st.lists(_names, min_size=1, max_size=3).map("/".join),
                             st.binary(max_size=300), min_size=1, max_size=8))  # fmt: skip
def test_gnu_cpio_extracts_any_tree_byte_for_byte(files: dict[str, bytes]) -> None:
    # A path may not be both a file and a directory: keep files that are nobody's parent.
    leaves = {p: c for p, c in files.items() if not any(o.startswith(p + "/") for o in files)}
    entries = [regular(p, c) for p, c in leaves.items()]
    dirs = {"/".join(p.split("/")[:i]) for p in leaves for i in range(1, p.count("/") + 1)}
    entries += [directory(d) for d in dirs]
    with tempfile.TemporaryDirectory() as scratch:
        subprocess.run(
            ["cpio", "-i", "-d", "--quiet"], input=archive(entries), cwd=scratch, check=True
        )
        for path, content in leaves.items():
            assert (Path(scratch) / path).read_bytes() == content
