"""atomic_write: the destination holds its old content or the whole new one, never a part;
nothing is left behind on failure; a full disk is an OSError, not a truncated file."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from ovl.core.errors import BadInput, OvlError, error_line
from ovl.core.fs import atomic_write, write_atomic
from tests.conftest import Mounts


def test_write_atomic_replaces_the_whole_file(tmp_path: Path) -> None:
    dest = tmp_path / "state.json"
    dest.write_text("old")
    write_atomic(dest, "new content")
    assert dest.read_text() == "new content"
    assert os.stat(dest).st_mode & 0o777 == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"]


def test_a_failing_block_keeps_the_old_file_and_leaves_no_temporary(tmp_path: Path) -> None:
    dest = tmp_path / "bundle.ovl"
    dest.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(dest) as staged:
        staged.path.write_bytes(b"half of it")
        raise RuntimeError("interrupted")
    assert dest.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["bundle.ovl"]


def test_the_temporary_file_is_hidden_beside_the_destination(tmp_path: Path) -> None:
    dest = tmp_path / "out" / "b.ovl"
    with atomic_write(dest) as staged:
        assert staged.path.parent == dest.parent
        assert staged.path.name.startswith(".b.ovl.") and staged.path.name.endswith(".tmp")
        assert not dest.exists()
        staged.path.write_bytes(b"x")
    assert dest.read_bytes() == b"x" and not staged.path.exists()


def test_the_block_may_name_the_result_or_drop_it(tmp_path: Path) -> None:
    with atomic_write(tmp_path / "incoming") as staged:
        staged.path.write_bytes(b"delta")
        staged.dest = tmp_path / "0001-abc.tar.zst"
    assert (tmp_path / "0001-abc.tar.zst").read_bytes() == b"delta"
    with atomic_write(tmp_path / "incoming") as staged:
        staged.path.write_bytes(b"duplicate")
        staged.keep = False
    assert sorted(p.name for p in tmp_path.iterdir()) == ["0001-abc.tar.zst"]


def test_scratch_directory_and_mode(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    dest = tmp_path / "machines" / "m1.json"
    with atomic_write(dest, scratch=scratch, mode=0o600) as staged:
        assert staged.path.parent == scratch
        staged.path.write_text("{}")
    assert dest.read_text() == "{}"
    assert os.stat(dest).st_mode & 0o777 == 0o600
    assert list(scratch.iterdir()) == []


@pytest.mark.root
@pytest.mark.subprocess
def test_a_full_disk_fails_and_keeps_the_old_file(tmp_path: Path, mounts: Mounts) -> None:
    small = mounts.mount("tmpfs", tmp_path / "small", "-t", "tmpfs", "-o", "size=64k")
    dest = small / "report.json"
    dest.write_text("old report")
    with pytest.raises(OSError) as raised:
        write_atomic(dest, b"x" * (256 << 10))
    assert raised.value.errno == errno.ENOSPC
    assert dest.read_text() == "old report"
    assert [p.name for p in small.iterdir()] == ["report.json"]


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (BadInput("bundle: truncated"), "bundle: truncated"),
        (OvlError("no network"), "no network"),
        (
            FileNotFoundError(errno.ENOENT, "No such file or directory", "/proc/cmdline"),
            "/proc/cmdline: No such file or directory",
        ),
        (OSError(errno.ENOSPC, "No space left on device"), "No space left on device"),
        (KeyError("x"), "KeyError: 'x'"),
    ],
)
def test_error_line_is_one_line_naming_the_cause(exc: BaseException, line: str) -> None:
    assert error_line(exc) == line
