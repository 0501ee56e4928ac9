"""`ovl-agent facts`: this machine's facts, as layer favors see them (docs/FACTS.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("facts", help="print this machine's facts")
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.add_argument("--sysfs", type=Path, default=Path("/sys"), help=argparse.SUPPRESS)
    parser.set_defaults(func=run_facts)


def run_facts(args: argparse.Namespace) -> int:
    import json

    from ovl.agent.facts import collect_facts

    facts = collect_facts(args.sysfs)
    if args.json:
        print(json.dumps(facts.to_json(), indent=1))
        return 0
    for key, value in facts.to_json().items():
        if isinstance(value, list):
            value = " ".join(value) or "-"
        elif isinstance(value, dict):
            value = " ".join(f"{k}={','.join(v)}" for k, v in value.items()) or "-"
        print(f"{key}: {value if value is not None else '-'}")
    return 0
