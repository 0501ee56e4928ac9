"""The manifest reader agrees with the JSON schema shipped beside it, and names JSON paths."""

from __future__ import annotations

import json
import re
from importlib import resources
from typing import Any

import jsonschema
import pytest

from ovl.core.errors import BadInput
from ovl.format.manifest import Manifest, manifest_from_json, parse_manifest

SCHEMA = json.loads(resources.files("ovl.format").joinpath("manifest.schema.json").read_text())

DOCUMENTS: list[Any] = [
    {},
    {"name": "fleet", "serial": 7, "created": "2026-11-26T02:00:00Z", "description": "x"},
    {"serial": 0, "created": "2026-11-26t02:00:00.123456+01:00"},
    {"serial": 2**40, "future-key": [1, 2]},
    {"serial": -1},
    {"serial": 1.5},
    {"serial": "3"},
    {"serial": True},
    {"name": 3},
    {"name": "n" * 257},
    {"description": "d" * 4097},
    {"created": "2026-11-26"},
    {"created": "2026-11-26 02:00:00Z"},
    {"created": "2026-13-45T99:00:00Z"},
    [],
    "text",
    None,
]


@pytest.mark.parametrize("document", DOCUMENTS, ids=[str(i) for i in range(len(DOCUMENTS))])
def test_reader_and_schema_agree(document: Any) -> None:
    try:
        jsonschema.validate(document, SCHEMA)
        schema_ok = True
    except jsonschema.ValidationError:
        schema_ok = False
    try:
        manifest_from_json(document)
        reader_ok = True
    except BadInput:
        reader_ok = False
    if document == {"created": "2026-13-45T99:00:00Z"}:
        assert schema_ok and not reader_ok  # the reader also checks that the date exists
    else:
        assert schema_ok == reader_ok


def test_schema_documents_every_manifest_field() -> None:
    assert set(SCHEMA["properties"]) == set(Manifest.__dataclass_fields__)


def test_manifest_fields_and_defaults() -> None:
    assert parse_manifest(b"{}") == Manifest()
    text = b'{"name": "fleet", "serial": 7, "created": "2026-11-26T02:00:00Z", "description": "d"}'
    assert parse_manifest(text) == Manifest("fleet", 7, "2026-11-26T02:00:00Z", "d")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b'{"serial": "7"}', re.escape("ovl.json: $.serial: expected a non-negative integer")),
        (b'{"created": "now"}', re.escape("ovl.json: $.created: not an RFC 3339 date-time: 'now'")),
        (b'{"name": ["a"]}', re.escape("ovl.json: $.name: expected a string")),
        (b"[]", re.escape("ovl.json: $: expected a JSON object")),
        # The parser's own words for the fault vary between Python versions; the line does not.
        (b'{"name": "a",}', r"ovl\.json: not JSON \(.+ at line 1\)"),
        (b'{\n"name": oops}', r"ovl\.json: not JSON \(.+ at line 2\)"),
        (b"\xff{}", re.escape("ovl.json: not UTF-8 text")),
        (b" " * 70000, re.escape("ovl.json: larger than 65536 bytes")),
    ],
)
def test_errors_name_the_json_path(raw: bytes, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_manifest(raw)
    assert re.fullmatch(message, str(caught.value)), str(caught.value)
