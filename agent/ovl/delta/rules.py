"""Which paths of the upper dir a delta carries: lbu-like include/exclude rules.

Config file (`/etc/ovl/delta.conf`), one rule a line, `#` starts a comment:

    exclude /var/log/journal
    include /var/cache/myapp

A pattern is an absolute path with shell wildcards (`*`, `?`, `[...]`; `*` does not cross '/');
it matches that path and everything below it. Rules are read after the defaults and the last
matching rule wins, so `include /var/cache/myapp` re-admits a subtree of an excluded one.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from pathlib import Path

from ovl.core.errors import BadInput


class Action(enum.Enum):
    INCLUDE = "include"
    EXCLUDE = "exclude"


@dataclass(frozen=True)
class Rule:
    action: Action
    pattern: str  # relative, no leading '/', no trailing '/'


def _rule(action: Action, pattern: str) -> Rule:
    return Rule(action, pattern.strip("/"))


# Runtime state and caches (what Alpine's lbu leaves out too), plus our own spool so a delta
# never contains the deltas waiting to be shipped. A machine's entropy seed and login records
# must not become part of a bundle that other machines (or anyone) can download.
DEFAULT_RULES: tuple[Rule, ...] = tuple(
    _rule(Action.EXCLUDE, p)
    for p in (
        "/tmp",
        "/var/tmp",
        "/var/cache",
        "/run",
        "/proc",
        "/sys",
        "/dev",
        "/var/lib/ovl",
        "/var/lib/systemd/random-seed",
        "/var/log/wtmp",
        "/var/log/btmp",
        "/var/log/lastlog",
    )
)


@dataclass(frozen=True)
class Rules:
    rules: tuple[Rule, ...] = DEFAULT_RULES
    # Verdict of the ancestors of a path, per directory: a walk asks about every file, and
    # files of one directory share their ancestors (index of the last rule matching one).
    _dir_cache: dict[str, int] = field(default_factory=dict, compare=False, repr=False)
    _by_depth: dict[int, list[tuple[int, list[str]]]] = field(
        default_factory=dict, compare=False, repr=False
    )
    # Per directory: the rules whose pattern names a child of it, with the pattern's last part.
    _leaf_cache: dict[str, list[tuple[int, str]]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        for index, rule in enumerate(self.rules):
            parts = rule.pattern.split("/")
            self._by_depth.setdefault(len(parts), []).append((index, parts))

    def wanted(self, relpath: str, is_dir: bool) -> bool:
        """Whether `relpath` is shipped; `dir/` (trailing slash) asks if anything below may be."""
        if relpath.endswith("/"):
            return self._anything_below(relpath.rstrip("/"))
        head = relpath.rpartition("/")[0]
        last = max(self._ancestors_match(head), self._exact_match(relpath))
        return last < 0 or self.rules[last].action is Action.INCLUDE

    def _ancestors_match(self, dirpath: str) -> int:
        if not dirpath:
            return -1
        cached = self._dir_cache.get(dirpath)
        if cached is None:
            parent = dirpath.rpartition("/")[0]
            cached = max(self._ancestors_match(parent), self._exact_match(dirpath))
            self._dir_cache[dirpath] = cached
        return cached

    def _exact_match(self, relpath: str) -> int:
        """Index of the last rule whose pattern names exactly this path (not an ancestor)."""
        head, _, name = relpath.rpartition("/")
        last = -1
        for index, leaf in self._leaf_rules(head):
            if fnmatchcase(name, leaf):
                last = index
        return last

    def _leaf_rules(self, dirpath: str) -> list[tuple[int, str]]:
        cached = self._leaf_cache.get(dirpath)
        if cached is None:
            parts = dirpath.split("/") if dirpath else []
            cached = [
                (index, pattern[-1])
                for index, pattern in self._by_depth.get(len(parts) + 1, ())
                if all(fnmatchcase(p, q) for p, q in zip(parts, pattern, strict=False))
            ]
            self._leaf_cache[dirpath] = cached
        return cached

    def _anything_below(self, dirpath: str) -> bool:
        depth = dirpath.count("/") + 1
        for rule in self.rules:
            if rule.action is not Action.INCLUDE:
                continue
            parts = rule.pattern.split("/")
            if len(parts) > depth and fnmatchcase(dirpath, "/".join(parts[:depth])):
                return True
        return False


def parse_rules(text: str, where: str) -> tuple[Rule, ...]:
    """Rules from the config file text; a bad line raises BadInput naming the line."""
    rules: list[Rule] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        word, _, pattern = line.partition(" ")
        pattern = pattern.strip()
        try:
            action = Action(word)
        except ValueError:
            raise BadInput(f"{where}:{number}: expected 'include PATH' or 'exclude PATH'") from None
        if not pattern.startswith("/") or ".." in pattern.split("/"):
            raise BadInput(f"{where}:{number}: path must be absolute without '..': {pattern!r}")
        rules.append(_rule(action, pattern))
    return tuple(rules)


def load_rules(config: Path) -> Rules:
    """Defaults, then the rules of `config` when it exists."""
    try:
        text = config.read_text()
    except FileNotFoundError:
        return Rules()
    except OSError as exc:
        raise BadInput(f"{config}: cannot read ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise BadInput(f"{config}: not a rules file (binary data, not text)") from None
    return Rules(DEFAULT_RULES + parse_rules(text, str(config)))
