"""A machine's node key among many in one directory: named by its MAC (dashes) or its UUID."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.core.errors import BadInput, OvlError
from ovl.core.facts import Facts
from ovl.trust.keynames import find_key, key_names, mac_key_name, uuid_key_name

UUID = "A1A1A1A1-0000-4000-8000-000000000001"


def test_names_are_each_mac_with_dashes_then_the_product_uuid_lower_case() -> None:
    facts = Facts(macs=("52:54:00:0a:00:01", "52:54:00:0a:00:02"), product_uuid=UUID)
    assert key_names(facts) == (
        "52-54-00-0a-00-01",
        "52-54-00-0a-00-02",
        "a1a1a1a1-0000-4000-8000-000000000001",
    )


@pytest.mark.parametrize("mac", ["52:54:00:0A:00:01", "52-54-00-0a-00-01", "5254000a0001"])
def test_a_mac_in_any_spelling_names_the_same_file(mac: str) -> None:
    assert mac_key_name(mac) == "52-54-00-0a-00-01"


@pytest.mark.parametrize(
    "placeholder", ["00000000-0000-0000-0000-000000000000", "FFFFFFFF-FFFF-FFFF-FFFF-FFFFFFFFFFFF"]
)
def test_a_firmware_placeholder_uuid_never_names_a_key(placeholder: str) -> None:
    assert uuid_key_name(placeholder) is None
    assert key_names(Facts(macs=("52:54:00:0a:00:01",), product_uuid=placeholder)) == (
        "52-54-00-0a-00-01",
    )


@given(st.lists(st.binary(min_size=6, max_size=6), max_size=3), st.uuids())
def test_names_are_safe_file_names(macs: list[bytes], uuid: object) -> None:
    facts = Facts(macs=tuple(":".join(f"{b:02x}" for b in m) for m in macs), product_uuid=str(uuid))
    for name in key_names(facts):
        assert "/" not in name and ":" not in name and name == name.lower() and name


def test_the_first_name_present_wins(tmp_path: Path) -> None:
    facts = Facts(macs=("52:54:00:0a:00:01",), product_uuid=UUID)
    (tmp_path / "a1a1a1a1-0000-4000-8000-000000000001").write_text("by uuid")
    assert find_key(tmp_path, facts, "keys/").name == "a1a1a1a1-0000-4000-8000-000000000001"
    (tmp_path / "52-54-00-0a-00-01").write_text("by mac")
    assert find_key(tmp_path, facts, "keys/").name == "52-54-00-0a-00-01"


def test_no_key_for_this_machine_is_one_line_naming_what_was_looked_for(tmp_path: Path) -> None:
    (tmp_path / "52-54-00-0a-00-09").write_text("someone else's")
    facts = Facts(macs=("52:54:00:0a:00:03",), product_uuid=UUID)
    with pytest.raises(OvlError) as caught:
        find_key(tmp_path, facts, "part:LABEL=OVLCIK:/keys/")
    assert caught.value.line == (
        "no key for this machine in part:LABEL=OVLCIK:/keys/ (looked for 52-54-00-0a-00-03, "
        "a1a1a1a1-0000-4000-8000-000000000001)"
    )
    with pytest.raises(BadInput, match="key directory /nowhere/: no such directory"):
        find_key(tmp_path / "missing", facts, "/nowhere/")
