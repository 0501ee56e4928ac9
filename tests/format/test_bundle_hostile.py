"""Every bundle of the hostile corpus is refused with one line, and the target is untouched."""

from __future__ import annotations

import io
import os
import re
from pathlib import Path

import pytest

from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle
from ovl.format.scan import scan_bundle
from tests.format.bundle_build import Item, bundle, snapshot
from tests.format.hostile_corpus import Case, hostile_cases

FACTS = Facts(kernel="Linux", kernel_release="6.1.0-56-cloud-amd64", arch="x86_64")
CASES = list(hostile_cases())


def existing_target(parent: Path) -> Path:
    target = parent / "target"
    (target / "etc").mkdir(parents=True)
    (target / "etc" / "hostname").write_text("old\n")
    (target / "etc" / "motd").write_text("old motd\n")
    os.symlink("hostname", target / "etc" / "name")
    for path in (target / "etc", target):
        os.utime(path, ns=(1_600_000_000 * 10**9, 1_600_000_000 * 10**9))
    return target


def test_the_corpus_covers_every_kind_of_refusal() -> None:
    assert len(CASES) >= 50
    assert len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("split", [False, True], ids=["merged", "split"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_bundle_is_refused_and_target_unchanged(
    case: Case, split: bool, tmp_path: Path
) -> None:
    target = existing_target(tmp_path)
    before = snapshot(target)
    with pytest.raises(BadInput) as caught:
        apply_bundle(io.BytesIO(case.data), FACTS, target, split=split, limits=case.limits)
    message = str(caught.value)
    assert "\n" not in message
    assert re.search(case.reason, message), message
    assert snapshot(target) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["target"]  # no staging left behind


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_scan_refuses_the_same_bundles(case: Case) -> None:
    with pytest.raises(BadInput, match=case.reason):
        scan_bundle(io.BytesIO(case.data), case.limits)


def test_path_through_a_symlink_already_in_the_target_is_refused(tmp_path: Path) -> None:
    target = existing_target(tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, target / "srv")
    before = snapshot(target)
    data = bundle(
        [
            Item("etc", "dir", mode=0o750),  # changes an existing directory first
            Item("etc/new", data=b"new"),
            Item("etc/.wh.motd", data=b""),  # and deletes an existing file
            Item("srv", "dir"),
            Item("srv/evil", data=b"x"),
        ]
    )
    with pytest.raises(BadInput, match="srv passes through a symlink in the target"):
        apply_bundle(io.BytesIO(data), FACTS, target, split=False)
    assert snapshot(target) == before
    assert list(outside.iterdir()) == []


def test_later_layer_through_a_symlink_laid_by_an_earlier_one_is_refused(tmp_path: Path) -> None:
    target = existing_target(tmp_path)
    before = snapshot(target)
    data = bundle(
        [
            Item("opt", "symlink", link="/usr"),
            Item("layers/10-x86_64/opt/tool", data=b"x"),
        ]
    )
    with pytest.raises(BadInput, match="bundle layer 10-x86_64: opt passes through"):
        apply_bundle(io.BytesIO(data), FACTS, target, split=False)
    assert snapshot(target) == before
