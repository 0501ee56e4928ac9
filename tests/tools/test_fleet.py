"""Fleet and facts files: parsed into Facts, errors name the JSON path, schema and code agree."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.tools.fleet import load_fleet, parse_fleet, read_facts_file

FLEET_SCHEMA = json.loads(resources.files("ovl.tools").joinpath("fleet.schema.json").read_text())
FACTS_SCHEMA = json.loads(resources.files("ovl.core").joinpath("facts.schema.json").read_text())

GOOD_FLEET: dict[str, Any] = {
    "version": 1,
    "defaults": {"arch": "x86_64", "kernel_release": "6.1.0-56-cloud-amd64"},
    "machines": {
        "web-2": {"macs": ["52-54-00-AA-BB-02"], "arch": "aarch64"},
        "web-1": {"macs": ["525400aabb01"], "product_uuid": "4c4c4544-0042"},
    },
}

# (document, JSON path the error must name)
BAD_FLEETS: list[tuple[Any, str]] = [
    ([], "fleet: $: expected a JSON object"),
    ({}, "fleet: $.machines: expected an object with at least one machine"),
    ({"machines": {}}, "fleet: $.machines: expected an object with at least one machine"),
    ({"machines": {"a": {}}, "machine": {}}, "fleet: $.machine: unknown key"),
    ({"machines": {"a": {}}, "version": 2}, "fleet: $.version: only version 1"),
    ({"machines": {"a": []}}, "fleet: $.machines.a: expected an object of facts"),
    ({"machines": {"a": {"mac": []}}}, "fleet: $.machines.a.mac: unknown fact"),
    ({"machines": {"a": {"macs": ["52:54"]}}}, "fleet: $.machines.a.macs[0]: not a MAC address"),
    ({"machines": {"a": {"macs": [7]}}}, "fleet: $.machines.a.macs[0]: not a MAC address"),
    (
        {"machines": {"a": {"macs": "52:54:00:aa:bb:cc"}}},
        "fleet: $.machines.a.macs: expected a list",
    ),
    ({"machines": {"a": {"arch": 64}}}, "fleet: $.machines.a.arch: expected a string"),
    (
        {"machines": {"a": {}}, "defaults": {"arch": 1}},
        "fleet: $.machines.a.arch: expected a string",
    ),
    ({"machines": {"a": {}}, "defaults": {"cpu": "x"}}, "fleet: $.defaults.cpu: unknown fact"),
    ({"machines": {" a": {}}}, "fleet: $.machines. a: a machine name must be non-empty"),
    (
        {"machines": {"a": {"extra": {"rack": "r1"}}}},
        "fleet: $.machines.a.extra.rack: expected a list of strings",
    ),
]


def test_machines_get_defaults_overlaid_by_their_own_facts() -> None:
    fleet = parse_fleet(GOOD_FLEET)
    assert list(fleet.machines) == ["web-1", "web-2"]
    assert fleet.machines["web-1"] == Facts(
        macs=("52:54:00:aa:bb:01",),
        product_uuid="4c4c4544-0042",
        kernel_release="6.1.0-56-cloud-amd64",
        arch="x86_64",
    )
    assert fleet.machines["web-2"].arch == "aarch64"
    assert fleet.machines["web-2"].macs == ("52:54:00:aa:bb:02",)


@pytest.mark.parametrize(("document", "message"), BAD_FLEETS)
def test_bad_fleet_error_names_the_json_path(document: Any, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_fleet(document)
    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(("document", "message"), BAD_FLEETS)
def test_schema_rejects_what_the_parser_rejects(document: Any, message: str) -> None:
    assert not jsonschema.Draft202012Validator(FLEET_SCHEMA).is_valid(document), message


def test_schema_accepts_the_documented_example() -> None:
    jsonschema.Draft202012Validator(FLEET_SCHEMA).validate(GOOD_FLEET)


def test_facts_json_round_trips_through_a_facts_file_and_obeys_its_schema(
    tmp_path: Path,
) -> None:
    facts = Facts(
        macs=("52:54:00:aa:bb:cc",),
        product_uuid="0fd2b1c9-7b4e-4d0b-8a3f-6f3b1c2d9e10",
        volume_uuids=("b3f5c0de-1111-2222-3333-444455556666",),
        kernel_release="6.1.0-56-cloud-amd64",
        arch="x86_64",
        extra={"rack": ("r7",)},
    )
    jsonschema.Draft202012Validator(FACTS_SCHEMA).validate(facts.to_json())
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(facts.to_json()))
    assert read_facts_file(path) == facts


def test_facts_schema_rejects_an_unknown_fact_as_the_reader_does(tmp_path: Path) -> None:
    document = {"macs": [], "hostname": "x"}
    assert not jsonschema.Draft202012Validator(FACTS_SCHEMA).is_valid(document)
    path = tmp_path / "facts.json"
    path.write_text(json.dumps(document))
    with pytest.raises(BadInput, match=r"facts.json: \$.hostname: unknown fact"):
        read_facts_file(path)


def test_fleet_file_that_is_not_json_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "fleet.json"
    path.write_text('{"machines":\n  {"a": {},}}')
    with pytest.raises(BadInput, match=r"fleet.json: not JSON \(.* at line 2\)"):
        load_fleet(path)


def test_missing_fleet_file_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read fleet file"):
        load_fleet(tmp_path / "absent.json")
