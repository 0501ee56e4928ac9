"""What changes between two bundles: per machine (the trees it ends up with, merged as
`ovl plan` merges them) or per layer (the bundles' own entries). Pure functions over bundles
scanned with digests; nothing is written.

A path is added, removed or changed; a change names what differs: `kind`, `content` (size or
sha256), `target` (a link's), `mode`, `owner`, or `layer` alone when the same entry now comes
from another layer. Directories count only when they appear or disappear. mtimes are ignored:
a re-packed tree has new ones and means the same.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ovl.core.facts import Facts
from ovl.format.reader import Kind
from ovl.format.scan import BundleInfo, EntryInfo, LayerInfo
from ovl.format.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX
from ovl.tools.plan import layers_for, merged_tree

_DELETIONS = (Kind.WHITEOUT, Kind.OPAQUE)


@dataclass(frozen=True)
class Change:
    path: str
    old_layer: str | None  # None: added
    new_layer: str | None  # None: removed
    what: tuple[str, ...] = ()  # for a change: what differs

    def to_json(self) -> dict[str, object]:
        return {
            "path": self.path,
            "old_layer": self.old_layer,
            "new_layer": self.new_layer,
            "what": list(self.what),
        }


@dataclass(frozen=True)
class Diff:
    """The changes of one machine (or one layer) between two bundles, in path order."""

    name: str
    added: list[Change] = field(default_factory=list)
    removed: list[Change] = field(default_factory=list)
    changed: list[Change] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.added or self.removed or self.changed)

    def to_json(self, key: str) -> dict[str, object]:
        return {
            key: self.name,
            "added": [c.to_json() for c in self.added],
            "removed": [c.to_json() for c in self.removed],
            "changed": [c.to_json() for c in self.changed],
        }


def differences(old: EntryInfo, new: EntryInfo) -> tuple[str, ...]:
    """What differs between two entries for one path (mtimes aside)."""
    what = []
    if old.kind is not new.kind:
        return ("kind",)
    if old.size != new.size or old.sha256 != new.sha256:
        what.append("content")
    if old.link != new.link:
        what.append("target")
    if old.mode != new.mode:
        what.append("mode")
    if (old.uid, old.gid) != (new.uid, new.gid):
        what.append("owner")
    return tuple(what)


Tree = dict[str, tuple[str, EntryInfo]]  # path -> (layer name, entry)


def _compare(name: str, old: Tree, new: Tree) -> Diff:
    diff = Diff(name)
    for path in sorted(old.keys() | new.keys()):
        before, after = old.get(path), new.get(path)
        if before is None and after is not None:
            diff.added.append(Change(path, None, after[0]))
        elif after is None and before is not None:
            diff.removed.append(Change(path, before[0], None))
        elif before is not None and after is not None:
            what = differences(before[1], after[1])
            if before[1].kind is Kind.DIR and not what:
                continue
            if what or before[0] != after[0]:
                diff.changed.append(Change(path, before[0], after[0], what or ("layer",)))
    return diff


def machine_diff(old: BundleInfo, new: BundleInfo, machine: str, facts: Facts) -> Diff:
    """What changes in the tree `machine` ends up with (base and matching layers merged)."""
    return _compare(
        machine, merged_tree(layers_for(old, facts)), merged_tree(layers_for(new, facts))
    )


def _written_name(entry: EntryInfo) -> str:
    """The path as the layer's folder holds it: whiteouts by their `.wh.` names."""
    if entry.kind not in _DELETIONS:
        return entry.path
    head, _, name = entry.path.rpartition("/")
    marker = OPAQUE_MARKER if entry.kind is Kind.OPAQUE else WHITEOUT_PREFIX + name
    parent = entry.path if entry.kind is Kind.OPAQUE else head
    return f"{parent}/{marker}" if parent not in ("", ".") else marker


def _entries(layer: LayerInfo | None) -> Tree:
    if layer is None:
        return {}
    return {_written_name(entry): (layer.name, entry) for entry in layer.entries}


def layer_diffs(old: BundleInfo, new: BundleInfo) -> list[Diff]:
    """What changes in each layer (the base first, then layers by name), whatever machine
    gets it; layers that do not change are left out."""
    olds = {layer.name: layer for layer in old.layers}
    news = {layer.name: layer for layer in new.layers}
    names = ["base", *sorted((olds.keys() | news.keys()) - {"base"})]
    diffs = [_compare(name, _entries(olds.get(name)), _entries(news.get(name))) for name in names]
    return [diff for diff in diffs if not diff.empty]
