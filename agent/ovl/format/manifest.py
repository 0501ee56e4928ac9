"""The optional bundle manifest `ovl.json` (schema: manifest.schema.json beside this file)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ovl.core.errors import BadInput

MANIFEST_NAME = "ovl.json"
MAX_MANIFEST_BYTES = 64 * 1024
_RFC3339 = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})"
)


@dataclass(frozen=True)
class Manifest:
    """What a bundle says about itself; unknown keys are ignored (newer writers may add some)."""

    name: str = ""
    serial: int = 0
    created: str | None = None
    description: str = ""


def _string(data: dict[str, Any], key: str, limit: int, where: str) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{where}: $.{key}: expected a string")
    if len(value) > limit:
        raise BadInput(f"{where}: $.{key}: longer than {limit} characters")
    return value


def manifest_from_json(data: Any, where: str = MANIFEST_NAME) -> Manifest:
    """Validate parsed JSON against the manifest schema; errors name the JSON path."""
    if not isinstance(data, dict):
        raise BadInput(f"{where}: $: expected a JSON object")
    serial = data.get("serial", 0)
    if isinstance(serial, bool) or not isinstance(serial, int) or serial < 0:
        raise BadInput(f"{where}: $.serial: expected a non-negative integer")
    created = _string(data, "created", 64, where)
    if created is not None:
        try:
            if not _RFC3339.fullmatch(created):
                raise ValueError(created)
            datetime.fromisoformat(created.upper().replace("Z", "+00:00"))
        except ValueError:
            raise BadInput(f"{where}: $.created: not an RFC 3339 date-time: {created!r}") from None
    return Manifest(
        name=_string(data, "name", 256, where) or "",
        serial=serial,
        created=created,
        description=_string(data, "description", 4096, where) or "",
    )


def parse_manifest(raw: bytes, where: str = MANIFEST_NAME) -> Manifest:
    """Parse the bytes of `ovl.json`."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise BadInput(f"{where}: larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise BadInput(f"{where}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"{where}: not JSON ({exc.msg} at line {exc.lineno})") from None
    return manifest_from_json(data, where)
