"""Kernel modules for the image: the requested ones, everything they depend on, fresh indexes.

Dependencies come from modules.dep (hard, already transitive) and modules.softdep (pre/post,
resolved through modules.alias). A module tree unpacked from a kernel package has no indexes
yet; they are then generated with `depmod -b` into a scratch tree, never into the source.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.core.run import run

# Copied as they are; depmod reads them to build the subset's indexes.
_KEPT_FILES = ("modules.builtin", "modules.builtin.modinfo", "modules.order")


def module_name(path: str) -> str:
    """`kernel/fs/fat/vfat.ko.xz` -> `vfat`; dashes and underscores are the same to the kernel."""
    return path.rsplit("/", 1)[-1].split(".ko", 1)[0].replace("-", "_")


@dataclass(frozen=True)
class ModuleIndex:
    """What modules.dep, modules.softdep, modules.alias and modules.builtin say about a kernel."""

    deps: dict[str, tuple[str, ...]]
    by_name: dict[str, str]
    builtin: frozenset[str]
    aliases: dict[str, tuple[str, ...]]
    softdeps: dict[str, tuple[str, ...]]

    @classmethod
    def read(cls, index_dir: Path) -> ModuleIndex:
        deps: dict[str, tuple[str, ...]] = {}
        for line in _lines(index_dir / "modules.dep"):
            target, _, needed = line.partition(":")
            deps[target] = tuple(needed.split())
        aliases: dict[str, list[str]] = {}
        for line in _lines(index_dir / "modules.alias"):
            _, alias, name = line.split(maxsplit=2)
            aliases.setdefault(alias, []).append(name.replace("-", "_"))
        softdeps: dict[str, list[str]] = {}
        for line in _lines(index_dir / "modules.softdep"):
            words = line.split()
            if len(words) > 2 and words[0] == "softdep":
                names = [w for w in words[2:] if w not in ("pre:", "post:")]
                softdeps.setdefault(module_name(words[1]), []).extend(names)
        builtin = frozenset(module_name(line) for line in _lines(index_dir / "modules.builtin"))
        return cls(
            deps=deps,
            by_name={module_name(path): path for path in deps},
            builtin=builtin,
            aliases={k: tuple(v) for k, v in aliases.items()},
            softdeps={k: tuple(v) for k, v in softdeps.items()},
        )

    def resolve(self, name: str) -> tuple[str, ...]:
        """Module names that `name` (a module name or an exact alias) loads; () if none."""
        normal = name.replace("-", "_")
        if normal in self.by_name or normal in self.builtin:
            return (normal,)
        return self.aliases.get(name, ())


@dataclass(frozen=True)
class ModuleSelection:
    """Module files to copy (relative to the module dir) and what /init should modprobe."""

    files: tuple[str, ...]
    load: tuple[str, ...]
    builtin: tuple[str, ...]
    missing: tuple[str, ...]


def select_modules(index: ModuleIndex, requested: Sequence[str]) -> ModuleSelection:
    """The closure of `requested` over hard and soft dependencies."""
    load: list[str] = []
    builtin: list[str] = []
    missing: list[str] = []
    for name in requested:
        names = index.resolve(name)
        if not names:
            missing.append(name)
        elif all(n in index.builtin for n in names):
            builtin.append(name)
        else:
            load.append(name)
    files: set[str] = set()
    pending = [n for name in load for n in index.resolve(name)]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        path = index.by_name.get(name)
        if path is None:
            continue
        files.add(path)
        files.update(index.deps[path])
        pending.extend(module_name(dep) for dep in index.deps[path])
        for soft in index.softdeps.get(name, ()):
            pending.extend(index.resolve(soft))
    return ModuleSelection(tuple(sorted(files)), tuple(load), tuple(builtin), tuple(missing))


@contextmanager
def module_index(moddir: Path, version: str) -> Iterator[ModuleIndex]:
    """The index of the module tree `moddir`, generated in a scratch tree when it has none."""
    if (moddir / "modules.dep").is_file():
        yield ModuleIndex.read(moddir)
        return
    if not (moddir / "modules.order").is_file():
        raise OvlError(f"{moddir}: not a kernel module tree (no modules.order)")
    every = (str(p.relative_to(moddir)) for p in (moddir / "kernel").rglob("*.ko*"))
    with _depmod_tree(moddir, version, every) as generated:
        yield ModuleIndex.read(generated)


def subset_indexes(moddir: Path, version: str, files: Iterable[str]) -> dict[str, bytes]:
    """The modules.* files (name -> bytes) depmod writes for just `files`."""
    with _depmod_tree(moddir, version, files) as generated:
        return {
            p.name: p.read_bytes()
            for p in sorted(generated.iterdir())
            if p.is_file() and p.name.startswith("modules.")
        }


@contextmanager
def _depmod_tree(moddir: Path, version: str, files: Iterable[str]) -> Iterator[Path]:
    """A scratch module tree of symlinks to `files`, indexed by `depmod -b`."""
    with tempfile.TemporaryDirectory(prefix="ovl-depmod-") as scratch:
        tree = Path(scratch) / "lib" / "modules" / version
        for rel in [*files, *_KEPT_FILES]:
            source = moddir / rel
            if not source.exists():
                continue
            link = tree / rel
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source.resolve())
        tree.mkdir(parents=True, exist_ok=True)
        run(["depmod", "-b", scratch, version])
        yield tree


def _lines(path: Path) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in text.splitlines() if line and not line.startswith("#")]
