"""What each machine would get from a bundle: its layers, and the tree once they are merged.

Pure functions over a scanned bundle (ovl.format.scan) and facts; nothing is written. The
merge follows apply_bundle's merge mode: layers in order, a layer's whiteouts delete what the
layers before it wrote, later entries replace earlier ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from ovl.core.facts import Facts
from ovl.format.favors import layer_matches
from ovl.format.reader import Kind
from ovl.format.scan import BundleInfo, EntryInfo, LayerInfo

_DELETIONS = (Kind.WHITEOUT, Kind.OPAQUE)


@dataclass(frozen=True)
class LayerPlan:
    name: str  # "base" or the layer's folder name
    files: int  # entries other than directories and whiteouts
    bytes: int  # regular file content


@dataclass(frozen=True)
class PlannedPath:
    path: str
    kind: str  # ovl.format.reader.Kind value
    size: int
    layer: str  # the layer whose entry wins


@dataclass(frozen=True)
class MachinePlan:
    machine: str
    layers: tuple[LayerPlan, ...]  # base first, in apply order
    files: int  # non-directories left once every layer is merged
    bytes: int  # their regular file content
    paths: tuple[PlannedPath, ...]  # those non-directories, in path order


def layers_for(info: BundleInfo, facts: Facts) -> list[LayerInfo]:
    """The base and every layer that matches `facts`, in apply order."""
    return [
        layer for layer in info.layers if layer.layer is None or layer_matches(layer.layer, facts)
    ]


def _below(path: str) -> str:
    return "" if path == "." else path + "/"


def _delete(tree: dict[str, tuple[str, EntryInfo]], path: str, keep_top: bool) -> None:
    """Remove `path` and everything below it (only what is below, with keep_top)."""
    prefix = _below(path)
    doomed = [p for p in tree if p.startswith(prefix)]
    if not keep_top:
        doomed.append(path)
    for p in doomed:
        tree.pop(p, None)


def merged_tree(layers: list[LayerInfo]) -> dict[str, tuple[str, EntryInfo]]:
    """Path → (layer name, entry) that wins once `layers` are merged in order, whiteouts
    applied."""
    tree: dict[str, tuple[str, EntryInfo]] = {}
    for layer in layers:
        # A layer's whiteouts hide only what the layers before it wrote.
        for entry in layer.entries:
            if entry.kind in _DELETIONS:
                _delete(tree, entry.path, keep_top=entry.kind is Kind.OPAQUE)
        for entry in layer.entries:
            if entry.kind in _DELETIONS:
                continue
            earlier = tree.get(entry.path)
            earlier_dir = earlier is not None and earlier[1].kind is Kind.DIR
            if earlier_dir and entry.kind is not Kind.DIR:
                _delete(tree, entry.path, keep_top=True)
            if entry.kind is not Kind.DIR or not earlier_dir:
                tree[entry.path] = (layer.name, entry)
    return tree


def layer_plan(layer: LayerInfo) -> LayerPlan:
    written = [e for e in layer.entries if e.kind is not Kind.DIR and e.kind not in _DELETIONS]
    return LayerPlan(layer.name, len(written), sum(e.size for e in written))


def plan_machine(info: BundleInfo, machine: str, facts: Facts) -> MachinePlan:
    layers = layers_for(info, facts)
    paths = tuple(
        PlannedPath(path, entry.kind.value, entry.size, layer)
        for path, (layer, entry) in sorted(merged_tree(layers).items())
        if entry.kind is not Kind.DIR
    )
    return MachinePlan(
        machine=machine,
        layers=tuple(layer_plan(layer) for layer in layers),
        files=len(paths),
        bytes=sum(p.size for p in paths),
        paths=paths,
    )
