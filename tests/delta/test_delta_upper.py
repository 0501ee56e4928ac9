"""Delta packing on a real overlayfs: the packed upper, stacked again, equals the merged view."""

from __future__ import annotations

import io
import os
import stat
import subprocess
import tarfile
from fnmatch import fnmatchcase
from pathlib import Path

import pytest
import zstandard
from hypothesis import given
from hypothesis import strategies as st

from ovl.core.errors import OvlError
from ovl.delta.pack import write_delta
from ovl.delta.rules import Action, Rule, Rules, load_rules
from ovl.delta.upper import walk_upper
from ovl.format.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX

pytestmark = [pytest.mark.subprocess, pytest.mark.root]


def tree(root: Path) -> dict[str, tuple[object, ...]]:
    """Everything observable about a tree: type, mode, owner, mtime, content/target, xattrs."""
    seen: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            xattrs = tuple(
                sorted(
                    (x, os.getxattr(path, x, follow_symlinks=False))
                    for x in os.listxattr(path, follow_symlinks=False)
                    if not x.startswith("trusted.overlay.")
                )
            )
            if stat.S_ISREG(st.st_mode):
                body: object = path.read_bytes()
            elif stat.S_ISLNK(st.st_mode):
                body = os.readlink(path)
            else:
                body = None
            mtime = st.st_mtime_ns if not stat.S_ISDIR(st.st_mode) else None
            seen[str(path.relative_to(root))] = (
                stat.S_IFMT(st.st_mode),
                stat.S_IMODE(st.st_mode),
                st.st_uid,
                st.st_gid,
                mtime,
                body,
                xattrs,
            )
    return seen


def overlay(mounts: object, lowers: list[Path], upper: Path, work: Path, at: Path) -> Path:
    upper.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    opts = f"lowerdir={':'.join(map(str, lowers))},upperdir={upper},workdir={work}"
    return mounts.mount("overlay", at, "-t", "overlay", "-o", opts)  # type: ignore[attr-defined,no-any-return]


def make_lower(lower: Path) -> None:
    (lower / "etc/app").mkdir(parents=True)
    (lower / "etc/hostname").write_text("base\n")
    (lower / "etc/gone").write_text("delete me\n")
    (lower / "etc/app/a.conf").write_text("a\n")
    (lower / "etc/app/b.conf").write_text("b\n")
    (lower / "srv/data").mkdir(parents=True)
    (lower / "srv/data/old").write_text("old\n")
    (lower / "tmp").mkdir()
    (lower / "var/cache").mkdir(parents=True)


def change_merged(merged: Path) -> None:
    (merged / "etc/hostname").write_text("node-1\n")
    os.chown(merged / "etc/hostname", 123, 456)
    os.chmod(merged / "etc/hostname", 0o600)
    (merged / "etc/gone").unlink()
    (merged / "etc/app/a.conf").rename(merged / "etc/app/renamed.conf")
    subprocess.run(["rm", "-rf", str(merged / "srv/data")], check=True)
    (merged / "srv/data").mkdir()  # rmdir + mkdir: overlayfs makes it opaque
    (merged / "srv/data/new").write_text("new\n")
    (merged / "srv/link").symlink_to("data/new")
    (merged / "srv/data/hard").hardlink_to(merged / "srv/data/new")
    os.setxattr(merged / "srv/data/new", "user.origin", b"\xffbinary\x00")
    os.utime(merged / "srv/data/new", ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    (merged / "tmp/scratch").write_text("not shipped\n")
    (merged / "var/cache/junk").write_text("not shipped\n")


def unpack_as_overlay_layer(delta: bytes, layer: Path) -> None:
    """GNU tar extracts the delta; OCI whiteouts become overlayfs's forms again."""
    layer.mkdir()
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(delta)).read()
    subprocess.run(
        ["tar", "--xattrs", "--xattrs-include=*", "--numeric-owner", "-xpf", "-", "-C", layer],
        input=plain,
        check=True,
    )
    for dirpath, _dirs, files in os.walk(layer):
        for name in files:
            path = Path(dirpath) / name
            if name == OPAQUE_MARKER:
                path.unlink()
                os.setxattr(dirpath, "trusted.overlay.opaque", b"y")
            elif name.startswith(WHITEOUT_PREFIX):
                path.unlink()
                os.mknod(Path(dirpath) / name[len(WHITEOUT_PREFIX) :], stat.S_IFCHR, 0)


def pack(upper: Path, rules: Rules) -> bytes:
    out = io.BytesIO()
    write_delta(walk_upper(upper, rules.wanted), out)
    return out.getvalue()


def test_packed_upper_stacked_on_the_lower_equals_the_merged_view(
    tmp_path: Path, mounts: object
) -> None:
    lower = tmp_path / "lower"
    make_lower(lower)
    merged = overlay(mounts, [lower], tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
    change_merged(merged)
    expected = tree(merged)
    delta = pack(tmp_path / "upper", Rules())
    unpack_as_overlay_layer(delta, tmp_path / "layer")
    again = overlay(
        mounts, [tmp_path / "layer", lower], tmp_path / "u2", tmp_path / "w2", tmp_path / "m2"
    )
    got = tree(again)
    del expected["tmp/scratch"], expected["var/cache/junk"]
    assert got == expected
    assert "etc/gone" not in got and "srv/data/old" not in got
    assert "etc/app/b.conf" in got and "etc/app/a.conf" not in got


def test_whiteouts_and_opaque_dirs_become_oci_markers(tmp_path: Path, mounts: object) -> None:
    lower = tmp_path / "lower"
    make_lower(lower)
    merged = overlay(mounts, [lower], tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
    change_merged(merged)
    os.mkfifo(merged / "srv/pipe")
    os.mknod(merged / "srv/null", 0o666 | stat.S_IFCHR, os.makedev(1, 3))
    delta = pack(tmp_path / "upper", Rules())
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(delta)).read()
    with tarfile.open(fileobj=io.BytesIO(plain), mode="r:") as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert members["etc/.wh.gone"].isfile() and members["etc/.wh.gone"].size == 0
    assert members["etc/app/.wh.a.conf"].isfile()
    assert members["srv/data/.wh..wh..opq"].isfile()
    assert members["srv/data/hard"].islnk() or members["srv/data/new"].islnk()
    assert members["etc/hostname"].uid == 123 and members["etc/hostname"].mode == 0o600
    assert not any(n.startswith(("tmp/", "var/cache/")) for n in members)
    assert "srv/pipe" not in members and "srv/null" not in members  # runtime objects stay
    assert not any("trusted.overlay" in k for m in members.values() for k in m.pax_headers)


def test_gnu_tar_reads_our_delta_and_packing_twice_gives_the_same_hash(
    tmp_path: Path, mounts: object
) -> None:
    lower = tmp_path / "lower"
    make_lower(lower)
    merged = overlay(mounts, [lower], tmp_path / "upper", tmp_path / "work", tmp_path / "merged")
    change_merged(merged)
    first, second = io.BytesIO(), io.BytesIO()
    a = write_delta(walk_upper(tmp_path / "upper", Rules().wanted), first)
    b = write_delta(walk_upper(tmp_path / "upper", Rules().wanted), second)
    assert a.sha256 == b.sha256 and first.getvalue() == second.getvalue()
    listing = subprocess.run(
        ["tar", "--zstd", "-tvf", "-"], input=first.getvalue(), capture_output=True, check=True
    ).stdout.decode()
    assert "srv/data/.wh..wh..opq" in listing and "srv/link -> data/new" in listing


def test_config_file_reinstates_a_subtree_of_an_excluded_dir(tmp_path: Path) -> None:
    conf = tmp_path / "delta.conf"
    conf.write_text("# keep the app cache\ninclude /var/cache/app\nexclude /etc/secret*\n")
    rules = load_rules(conf)
    assert rules.wanted("var/cache/app/x", False)
    assert not rules.wanted("var/cache/other", False)
    assert rules.wanted("var/cache/", True) and not rules.wanted("tmp/", True)
    assert not rules.wanted("etc/secrets", False) and rules.wanted("etc/hosts", False)
    assert load_rules(tmp_path / "missing.conf") == Rules()


def test_entropy_seed_and_login_records_are_never_shipped_by_default() -> None:
    rules = Rules()
    for path in ("var/lib/systemd/random-seed", "var/log/wtmp", "var/log/btmp"):
        assert not rules.wanted(path, False), path
    assert rules.wanted("var/lib/systemd/linger", True) and rules.wanted("var/log/syslog", False)


def test_bad_config_line_names_file_and_line(tmp_path: Path) -> None:
    conf = tmp_path / "delta.conf"
    conf.write_text("include /ok\nskip /var\n")
    with pytest.raises(OvlError, match=r"delta.conf:2: expected 'include PATH'"):
        load_rules(conf)


def test_redirected_dir_in_upper_is_refused_not_half_shipped(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "moved").mkdir(parents=True)
    os.setxattr(upper / "moved", "trusted.overlay.redirect", b"/orig")
    with pytest.raises(OvlError, match="redirect_dir=off"):
        pack(upper, Rules())


_PART = st.sampled_from(["a", "b", "ab", "*", "a*", "?", "[ab]"])
_NAME = st.sampled_from(["a", "b", "ab", "ba", "c"])


def _reference_wanted(rules: tuple[Rule, ...], relpath: str) -> bool:
    """The rule semantics spelled out: the last rule whose pattern names the path or one of
    its ancestors (part by part, same depth) decides; no such rule means shipped."""
    parts = relpath.split("/")
    deciding = None
    for rule in rules:
        pattern = rule.pattern.split("/")
        for depth in range(1, len(parts) + 1):
            if len(pattern) == depth and all(map(fnmatchcase, parts[:depth], pattern)):
                deciding = rule
    return deciding is None or deciding.action is Action.INCLUDE


@given(
    patterns=st.lists(
        st.tuples(st.sampled_from(list(Action)), st.lists(_PART, min_size=1, max_size=3)),
        max_size=6,
    ),
    paths=st.lists(st.lists(_NAME, min_size=1, max_size=4).map("/".join), max_size=12),
)
def test_rules_decide_as_the_last_matching_rule_for_the_path_or_an_ancestor(
    patterns: list[tuple[Action, list[str]]], paths: list[str]
) -> None:
    rules = tuple(Rule(action, "/".join(parts)) for action, parts in patterns)
    decide = Rules(rules)  # one instance for all paths: its per-directory caches are exercised
    for path in paths:
        assert decide.wanted(path, False) == _reference_wanted(rules, path), path
