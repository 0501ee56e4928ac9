"""Layer names and favor matching (docs/FORMAT.md section 3), table-driven and property-based."""

from __future__ import annotations

import itertools
import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.format.favors import (
    Favor,
    FavorKey,
    LayerName,
    layer_matches,
    match_layers,
    may_match,
    parse_layer_name,
    splits_into_values,
)

MACHINE = Facts(
    macs=("52:54:00:aa:bb:cc", "52:54:00:12:34:56"),
    product_uuid="8c9e6a2e-3f4b-4d5e-9a1b-0c2d3e4f5a6b",
    volume_uuids=("1b2c3d4e-aaaa-bbbb-cccc-0123456789ab", "ABCD-1234"),
    kernel="Linux",
    kernel_release="6.1.0-56-cloud-amd64",
    arch="x86_64",
)


@pytest.mark.parametrize(
    ("dirname", "applies"),
    [
        ("50", True),
        ("10-x86_64", True),
        ("10-aarch64", False),
        ("10-Linux", True),
        ("10-linux", False),  # kernel, release and arch compare exactly
        ("10-52:54:00:aa:bb:cc", True),
        ("10-52:54:00:AA:BB:CC", True),
        ("10-525400aabbcc", True),
        ("10-52-54-00-aa-bb-cc", True),
        ("10-525400aabbcd", False),
        ("10-8C9E6A2E-3F4B-4D5E-9A1B-0C2D3E4F5A6B", True),
        ("10-abcd-1234", True),
        ("10-6.1.0-56-cloud-amd64", True),
        ("10-6.1.0-56-cloud", False),
        ("10-Linux-6.1.0-56-cloud-amd64-x86_64", True),
        ("10-x86_64-525400123456-6.1.0-56-cloud-amd64", True),
        ("10-x86_64-aarch64", False),
        ("10-release=6.1.0-56-cloud-amd64", True),
        ("10-release=6.1.0-56", False),
        ("10-arch=x86_64-release=6.1.0-56-cloud-amd64", True),
        ("10-Linux-arch=x86_64", True),
        ("10-arch=x86_64-Linux", False),  # "Linux" belongs to the arch value
        ("10-mac=52-54-00-AA-BB-CC", True),
        ("10-mac=525400123456", True),
        ("10-machine=8C9E6A2E-3F4B-4D5E-9A1B-0C2D3E4F5A6B", True),
        ("10-volume=ABCD-1234", True),
        ("10-volume=x86_64", False),
        ("10-kernel=Linux", True),
        ("10-arch=Linux", False),
    ],
)
def test_layer_matching_table(dirname: str, applies: bool) -> None:
    assert layer_matches(parse_layer_name(dirname), MACHINE) is applies


def test_layer_with_dashed_kernel_release_matches() -> None:
    layer = parse_layer_name("20-release=6.1.0-56-cloud-amd64")
    assert layer == LayerName(
        "20-release=6.1.0-56-cloud-amd64", 20, (Favor(FavorKey.RELEASE, "6.1.0-56-cloud-amd64"),)
    )
    assert layer_matches(layer, MACHINE)


def test_typed_mac_is_normalized() -> None:
    layer = parse_layer_name("07-mac=52-54-00-AA-BB-CC")
    assert layer.favors == (Favor(FavorKey.MAC, "52:54:00:aa:bb:cc"),)
    assert layer.order == 7


@pytest.mark.parametrize(
    ("dirname", "reason"),
    [
        ("", "must start with a number"),
        ("x86_64", "must start with a number"),
        ("1234567890-x", "must start with a number"),
        ("10--x", "empty favor"),
        ("10-x-", "empty favor"),
        ("10-color=red", "unknown favor key 'color'"),
        ("10-arch=", "needs a value"),
        ("10-=x", "unknown favor key ''"),
        ("10-arch=a=b", "needs a value"),
        ("10-mac=zz", "not a MAC address"),
        ("10-a b", "may hold only"),
        ("10-ü", "may hold only"),
    ],
)
def test_malformed_layer_names_say_why(dirname: str, reason: str) -> None:
    with pytest.raises(BadInput, match=f"malformed layer name {dirname!r}: .*{reason}"):
        parse_layer_name(dirname)


def test_match_layers_orders_by_number_then_name() -> None:
    names = ["20-x86_64", "3-Linux", "20-Linux", "100", "20-aarch64", "003-x86_64"]
    assert [layer.dirname for layer in match_layers(MACHINE, names)] == [
        "003-x86_64",
        "3-Linux",
        "20-Linux",
        "20-x86_64",
        "100",
    ]


# --- properties ------------------------------------------------------------------------------

_piece = st.text("abcdef0123456789._:", min_size=1, max_size=4)
_value = st.lists(_piece, min_size=1, max_size=3).map("-".join)


@given(values=st.lists(_value, min_size=1, max_size=4, unique=True), data=st.data())
def test_any_sequence_of_fact_values_matches(values: list[str], data: st.DataObject) -> None:
    chosen = data.draw(st.lists(st.sampled_from(values), min_size=1, max_size=5))
    facts = Facts(volume_uuids=tuple(values))
    layer = parse_layer_name("10-" + "-".join(chosen))
    assert layer_matches(layer, facts)


@given(values=st.lists(_value, min_size=1, max_size=4), data=st.data())
def test_a_foreign_token_never_matches(values: list[str], data: st.DataObject) -> None:
    chosen = data.draw(st.lists(st.sampled_from(values), min_size=1, max_size=4))
    position = data.draw(st.integers(0, len(chosen)))
    chosen.insert(position, "~foreign~")  # '~' appears in no fact value here
    layer = parse_layer_name("10-" + "-".join(chosen))
    assert not layer_matches(layer, Facts(volume_uuids=tuple(values)))


def _brute_force(tokens: list[str], values: set[str]) -> bool:
    """Try every way of cutting the tokens into groups."""
    for cuts in itertools.product([False, True], repeat=len(tokens) - 1):
        groups, current = [], [tokens[0]]
        for token, cut in zip(tokens[1:], cuts, strict=True):
            if cut:
                groups.append(current)
                current = [token]
            else:
                current.append(token)
        groups.append(current)
        if all("-".join(group) in values for group in groups):
            return True
    return False


@given(
    tokens=st.lists(st.sampled_from(["a", "b", "ab", "c"]), min_size=1, max_size=8),
    values=st.sets(st.sampled_from(["a", "b", "a-b", "ab", "b-c", "a-b-c", "c-a", "ab-ab"])),
)
def test_splitting_agrees_with_brute_force(tokens: list[str], values: set[str]) -> None:
    assert splits_into_values(tokens, values.__contains__) == _brute_force(tokens, values)


_layer_names = st.lists(
    st.builds(
        lambda order, width, favor: f"{order:0{width}d}{favor}",
        st.integers(0, 120),
        st.integers(1, 3),
        st.sampled_from(["", "-x86_64", "-Linux", "-aarch64", "-arch=x86_64", "-b", "-a"]),
    ),
    unique=True,
    max_size=12,
)


@given(names=_layer_names, seed=st.integers())
def test_apply_order_is_numeric_then_by_name_whatever_the_input_order(
    names: list[str], seed: int
) -> None:
    shuffled = list(names)
    random.Random(seed).shuffle(shuffled)
    facts = Facts(kernel="Linux", arch="x86_64", kernel_release="6.1", extra={"x": ("a", "b")})
    ordered = match_layers(facts, shuffled)
    assert ordered == match_layers(facts, names)
    keys = [(layer.order, layer.dirname) for layer in ordered]
    assert keys == sorted(keys)
    assert {layer.dirname for layer in ordered} == {
        name for name in names if layer_matches(parse_layer_name(name), facts)
    }


@given(value=_value, key=st.sampled_from(["release", "kernel", "arch"]))
def test_a_typed_value_keeps_its_dashes(value: str, key: str) -> None:
    layer = parse_layer_name(f"10-{key}={value}")
    assert layer.favors == (Favor(FavorKey(key), value),)
    fact = {"release": "kernel_release", "kernel": "kernel", "arch": "arch"}[key]
    assert layer_matches(layer, Facts(**{fact: value}))  # type: ignore[arg-type]
    assert not layer_matches(layer, Facts(**{fact: value + "-x"}))  # type: ignore[arg-type]


def _spellings(facts: Facts) -> list[str]:
    """Favor texts this machine's facts may be written as, typed or not, in any case."""
    macs = [m.upper() for m in facts.macs] + [m.replace(":", "") for m in facts.macs]
    macs += [m.replace(":", "-") for m in facts.macs] + [f"mac={m[:8]}-{m[9:]}" for m in macs]
    uuids = [*facts.volume_uuids, facts.product_uuid or ""]
    return [
        *facts.macs,
        *macs,
        *uuids,
        *(u.upper() for u in uuids),
        f"machine={(facts.product_uuid or '').upper()}",
        facts.kernel,
        f"kernel={facts.kernel}",
        facts.kernel_release,
        f"release={facts.kernel_release}",
        facts.arch,
        f"arch={facts.arch}",
        "aarch64",
        "mac=52:54:00:00:00:01",
        "~foreign~",
    ]


@given(data=st.data())
def test_may_match_is_never_false_for_a_layer_that_matches(data: st.DataObject) -> None:
    """may_match lets a machine skip parsing folder names: a false "no" would drop a layer."""
    favors = data.draw(st.lists(st.sampled_from(_spellings(MACHINE)), max_size=4))
    dirname = "-".join([data.draw(st.sampled_from(["10", "0042"])), *favors])
    try:
        layer = parse_layer_name(dirname)
    except BadInput:
        return
    if layer_matches(layer, MACHINE):
        assert may_match(dirname, MACHINE), dirname


def test_may_match_says_no_to_other_machines_layers() -> None:
    assert not may_match("10-mac=52:54:00:00:00:01", MACHINE)
    assert not may_match("10-aarch64-525400000001", MACHINE)
    assert may_match("10-mac=52-54-00-AA-BB-CC", MACHINE) and may_match("20", MACHINE)
