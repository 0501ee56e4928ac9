"""Layer folder names and favor matching: which `layers/<NN>-<favors>` apply to a machine.

The grammar and the matching rule are specified in docs/FORMAT.md ("Layers"); this module is
its only implementation, shared by the agent and the tools.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from enum import Enum

from ovl.core.errors import BadInput
from ovl.core.facts import Facts, normalize_mac


class FavorKey(Enum):
    """What a favor is compared with; ANY is the untyped form."""

    ANY = "any"
    MAC = "mac"
    MACHINE = "machine"
    VOLUME = "volume"
    KERNEL = "kernel"
    RELEASE = "release"
    ARCH = "arch"


@dataclass(frozen=True)
class Favor:
    """One condition of a layer.

    Typed (`arch=x86_64`): `value` must equal the named fact. Untyped (ANY): `value` is a run of
    dash-separated tokens that must split into consecutive groups, each one a fact value.
    """

    key: FavorKey
    value: str


@dataclass(frozen=True)
class LayerName:
    """A parsed `layers/` folder name; a layer without favors applies to every machine."""

    dirname: str
    order: int
    favors: tuple[Favor, ...]


_ORDER = re.compile(r"[0-9]{1,9}")
# The form fleets write most (`mac=52:54:00:aa:bb:cc`): normalising is lower-casing it.
_COLON_MAC = re.compile(r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}")
_VALUE_TOKEN = re.compile(r"[A-Za-z0-9._+:~]+")
_TYPED_KEYS = {key.value: key for key in FavorKey if key is not FavorKey.ANY}
# Facts whose values are hexadecimal identifiers: compared case-insensitively.
_FOLDED_KEYS = (FavorKey.MAC, FavorKey.MACHINE, FavorKey.VOLUME)


def parse_layer_name(dirname: str) -> LayerName:
    """Parse `<NN>[-<favor>...]`; raise BadInput naming the folder and what is wrong."""

    def bad(reason: str) -> BadInput:
        return BadInput(f"malformed layer name {dirname!r}: {reason}")

    order_text, *tokens = dirname.split("-")
    if not _ORDER.fullmatch(order_text):
        raise bad("must start with a number of 1 to 9 digits (layers/<NN>-<favor>...)")
    untyped: list[str] = []
    typed: list[tuple[str, list[str]]] = []
    for token in tokens:
        if not token:
            raise bad("empty favor (doubled or trailing '-')")
        key, equals, value = token.partition("=")
        if equals:
            if key not in _TYPED_KEYS:
                raise bad(f"unknown favor key {key!r} (one of {', '.join(_TYPED_KEYS)})")
            if not _VALUE_TOKEN.fullmatch(value):
                raise bad(f"favor {token!r} needs a value of letters, digits or . _ + : ~")
            typed.append((key, [value]))
        elif not _VALUE_TOKEN.fullmatch(token):
            raise bad(f"favor {token!r} may hold only letters, digits and . _ + : ~")
        elif typed:
            typed[-1][1].append(token)  # a typed value runs until the next `key=` token
        else:
            untyped.append(token)
    favors = [Favor(FavorKey.ANY, "-".join(untyped))] if untyped else []
    for key, pieces in typed:
        favors.append(_typed_favor(_TYPED_KEYS[key], "-".join(pieces), bad))
    return LayerName(dirname, int(order_text), tuple(favors))


def _typed_favor(key: FavorKey, value: str, bad: Callable[[str], BadInput]) -> Favor:
    if key is FavorKey.MAC:
        if _COLON_MAC.fullmatch(value):
            return Favor(key, value.lower())
        try:
            return Favor(key, normalize_mac(value))
        except BadInput:
            raise bad(f"mac={value} is not a MAC address") from None
    return Favor(key, value.lower() if key in _FOLDED_KEYS else value)


def splits_into_values(tokens: Sequence[str], is_value: Callable[[str], bool]) -> bool:
    """True when `tokens` split into consecutive groups, each '-'-joined group a value."""
    reachable = [True] + [False] * len(tokens)
    for end in range(1, len(tokens) + 1):
        reachable[end] = any(
            reachable[start] and is_value("-".join(tokens[start:end])) for start in range(end)
        )
    return reachable[-1]


@dataclass(frozen=True)
class _FactValues:
    exact: frozenset[str]
    folded: frozenset[str]
    by_key: dict[FavorKey, frozenset[str]]
    lowered: tuple[str, ...]  # every value, lower-cased: what may_match looks for
    mac_digits: tuple[str, ...]  # each MAC's 12 hex digits

    def has(self, value: str) -> bool:
        return value in self.exact or value.lower() in self.folded


def _fact_values(facts: Facts) -> _FactValues:
    """The machine's values, normalised once: a fleet bundle asks for them per layer."""
    return _values_of(
        facts.macs,
        facts.product_uuid,
        facts.volume_uuids,
        facts.kernel,
        facts.kernel_release,
        facts.arch,
    )


# Keyed on the facts matching reads (Facts itself is unhashable: `extra` is a dict).
@functools.lru_cache(maxsize=16)
def _values_of(
    mac_list: tuple[str, ...],
    product_uuid: str | None,
    volume_uuids: tuple[str, ...],
    kernel: str,
    kernel_release: str,
    arch: str,
) -> _FactValues:
    macs = {m.lower() for m in mac_list}
    mac_spellings = macs | {m.replace(":", "") for m in macs} | {m.replace(":", "-") for m in macs}
    machine = {product_uuid.lower()} if product_uuid else set()
    volumes = {v.lower() for v in volume_uuids}
    by_key = {
        FavorKey.MAC: frozenset(macs),
        FavorKey.MACHINE: frozenset(machine),
        FavorKey.VOLUME: frozenset(volumes),
        FavorKey.KERNEL: frozenset({kernel} - {""}),
        FavorKey.RELEASE: frozenset({kernel_release} - {""}),
        FavorKey.ARCH: frozenset({arch} - {""}),
    }
    exact = by_key[FavorKey.KERNEL] | by_key[FavorKey.RELEASE] | by_key[FavorKey.ARCH]
    folded = frozenset(mac_spellings | machine | volumes)
    lowered = tuple(sorted({value.lower() for value in exact | folded}))
    digits = tuple(sorted(m.replace(":", "") for m in macs))
    return _FactValues(exact, folded, by_key, lowered, digits)


def _favor_holds(favor: Favor, values: _FactValues) -> bool:
    if favor.key is FavorKey.ANY:
        return splits_into_values(favor.value.split("-"), values.has)
    return favor.value in values.by_key[favor.key]


def layer_matches(layer: LayerName, facts: Facts) -> bool:
    """True when every favor of `layer` holds for this machine (always, without favors)."""
    values = _fact_values(facts)
    return all(_favor_holds(favor, values) for favor in layer.favors)


def may_match(dirname: str, facts: Facts) -> bool:
    """False only when the layer folder `dirname` cannot match this machine, decided without
    parsing it: a folder with favors matches only if some fact value, in one of the spellings
    favors accept, is written in it. Fleet bundles name thousands of folders a machine skips."""
    _, dash, favors = dirname.partition("-")
    if not dash:
        return True
    text = favors.lower()
    values = _fact_values(facts)
    if any(value in text for value in values.lowered):
        return True
    digits = text.replace(":", "").replace("-", "")  # a MAC in any spelling normalize_mac takes
    return any(mac in digits for mac in values.mac_digits)


def apply_order(layer: LayerName) -> tuple[int, str]:
    """Sort key: NN ascending, ties by folder name."""
    return (layer.order, layer.dirname)


def match_layers(facts: Facts, dirnames: Iterable[str]) -> list[LayerName]:
    """The layers among `dirnames` that apply to this machine, in apply order."""
    values = _fact_values(facts)
    layers = (parse_layer_name(name) for name in dirnames)
    matching = [layer for layer in layers if all(_favor_holds(f, values) for f in layer.favors)]
    return sorted(matching, key=apply_order)
