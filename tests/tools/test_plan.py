"""plan's merged view equals what apply_bundle really writes, for generated layer stacks."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle
from ovl.format.codec import Compression
from ovl.format.scan import scan_bundle
from ovl.tools.pack import PackOptions, pack_directory
from ovl.tools.plan import layers_for, merged_tree, plan_machine

FACTS = Facts(arch="x86_64")
# Three layers this machine gets (one without favors) and one it does not.
LAYER_DIRS = ("layers/10", "layers/15-aarch64", "layers/20-x86_64", "layers/30-arch=x86_64")

# A layer's tree: name -> ("file", size) | ("whiteout",) | ("dir", subtree) | ("opaque", subtree)
names = st.sampled_from(["a", "b", "x"])
leaf = st.one_of(
    st.tuples(st.just("file"), st.integers(0, 40)),
    st.tuples(st.just("whiteout")),
)
trees = st.recursive(
    st.dictionaries(names, leaf, max_size=3),
    lambda children: st.dictionaries(
        names,
        st.one_of(leaf, st.tuples(st.sampled_from(["dir", "opaque"]), children)),
        max_size=3,
    ),
    max_leaves=8,
)


def build(root: Path, tree: dict[str, Any], seed: int) -> None:
    root.mkdir(parents=True, exist_ok=True)
    for name, node in tree.items():
        if node[0] == "file":
            (root / name).write_bytes(bytes([seed % 256]) * node[1])
        elif node[0] == "whiteout":
            (root / f".wh.{name}").write_bytes(b"")
        else:
            build(root / name, node[1], seed + 1)
            if node[0] == "opaque":
                (root / name / ".wh..wh..opq").write_bytes(b"")


def applied_files(target: Path) -> dict[str, int]:
    found = {}
    for dirpath, dirnames, filenames in os.walk(target):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath, name)
            found[path.relative_to(target).as_posix()] = path.lstat().st_size
    return found


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
# A later layer's file replaces an earlier layer's directory, and everything below it.
@example(
    base={"a": ("file", 3)},
    layers=[{"a": ("dir", {"b": ("file", 2)})}, {}, {"a": ("file", 5)}, {}],
)
# An opaque directory hides what the base had below it, but keeps its own new entries.
@example(
    base={"a": ("file", 3)},
    layers=[{"x": ("opaque", {"b": ("file", 2)})}, {}, {}, {"x": ("dir", {"a": ("whiteout",)})}],
)
@given(
    base=st.dictionaries(names, st.tuples(st.just("file"), st.integers(0, 40)), max_size=3),
    layers=st.lists(trees, min_size=len(LAYER_DIRS), max_size=len(LAYER_DIRS)),
)
def test_plan_merge_equals_a_real_merged_apply(
    base: dict[str, Any], layers: list[dict[str, Any]]
) -> None:
    work = Path(tempfile.mkdtemp(prefix="ovl-plan-"))
    try:
        src = work / "src"
        build(src / "d", {**base, "x": ("dir", base)}, 0)
        for index, (layer_dir, tree) in enumerate(zip(LAYER_DIRS, layers, strict=True)):
            build(src / layer_dir / "d", tree, index + 1)
        bundle = work / "b.tar"
        pack_directory(src, bundle, PackOptions(compression=Compression.NONE))
        with bundle.open("rb") as source:
            info = scan_bundle(source)
        with bundle.open("rb") as source:
            apply_bundle(source, FACTS, work / "out", split=False)
        expected = applied_files(work / "out")
        tree = merged_tree(layers_for(info, FACTS))
        planned = {p: entry.size for p, (_, entry) in tree.items() if entry.kind.value != "dir"}
        assert planned == expected
        plan = plan_machine(info, "m", FACTS)
        assert (plan.files, plan.bytes) == (len(expected), sum(expected.values()))
        assert [layer.name for layer in plan.layers] == [
            "base",
            "10",
            "20-x86_64",
            "30-arch=x86_64",
        ]
    finally:
        shutil.rmtree(work)
