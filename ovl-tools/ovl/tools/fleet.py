"""The facts documents an admin hands the tools: a fleet file, or one machine's facts file.

The fleet file names every machine an admin deploys to, with its facts.

Shape (schema: fleet.schema.json beside this module; docs/FACTS.md):
  {"version": 1,
   "defaults": {"arch": "x86_64", "kernel_release": "6.1.0-56-cloud-amd64"},
   "machines": {"web-1": {"macs": ["52:54:00:aa:bb:01"]}, ...}}
A machine's facts are `defaults` overlaid key by key with its own entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from ovl.core.errors import BadInput
from ovl.core.facts import Facts, normalize_mac

FACT_KEYS = frozenset(field.name for field in fields(Facts))
_TOP_KEYS = frozenset({"$schema", "version", "defaults", "machines"})


@dataclass(frozen=True)
class Fleet:
    """Machines by name, in name order."""

    machines: dict[str, Facts]


def _facts_object(data: Any, where: str) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadInput(f"{where}: expected an object of facts")
    unknown = sorted(set(data) - FACT_KEYS)
    if unknown:
        raise BadInput(
            f"{where}.{unknown[0]}: unknown fact (known: {', '.join(sorted(FACT_KEYS))})"
        )
    macs = data.get("macs", [])
    if isinstance(macs, list):
        for index, mac in enumerate(macs):
            try:
                normalize_mac(mac if isinstance(mac, str) else "")
            except BadInput:
                raise BadInput(f"{where}.macs[{index}]: not a MAC address: {mac!r}") from None
    return data


def parse_fleet(data: Any, where: str = "fleet") -> Fleet:
    """Check a decoded fleet document and turn it into Facts per machine; errors name the path."""
    if not isinstance(data, dict):
        raise BadInput(f"{where}: $: expected a JSON object")
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise BadInput(f"{where}: $.{unknown[0]}: unknown key (known: defaults, machines, version)")
    if data.get("version", 1) != 1:
        raise BadInput(f"{where}: $.version: only version 1 is understood")
    defaults = _facts_object(data.get("defaults", {}), f"{where}: $.defaults")
    machines_raw = data.get("machines")
    if not isinstance(machines_raw, dict) or not machines_raw:
        raise BadInput(f"{where}: $.machines: expected an object with at least one machine")
    machines: dict[str, Facts] = {}
    for name in sorted(machines_raw):
        path = f"{where}: $.machines.{name}"
        if not name or name != name.strip():
            raise BadInput(f"{path}: a machine name must be non-empty without outer spaces")
        own = _facts_object(machines_raw[name], path)
        machines[name] = Facts.from_json({**defaults, **own}, path)
    return Fleet(machines=machines)


def _read_json(path: Path, what: str) -> Any:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInput(f"{path}: cannot read {what} ({exc.strerror})") from exc
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a {what} (binary data, not JSON text)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc


def load_fleet(path: Path) -> Fleet:
    """Read and check a fleet file."""
    return parse_fleet(_read_json(path, "fleet file"), str(path))


def read_facts_file(path: Path) -> Facts:
    """Read one machine's facts (the shape `ovl facts --json` prints; ovl.core's
    facts.schema.json)."""
    where = f"{path}: $"
    return Facts.from_json(_facts_object(_read_json(path, "facts file"), where), where)
