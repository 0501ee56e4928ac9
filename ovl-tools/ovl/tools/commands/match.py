"""`ovl match FILE (--facts FACTS.json | --here)`: the layers that apply to one machine."""

from __future__ import annotations

import argparse
import json

from ovl.core.cli import input_file
from ovl.format.favors import FavorKey, LayerName
from ovl.tools.bundlefile import scan_file
from ovl.tools.factsource import add_facts_source, facts_from_args
from ovl.tools.plan import layers_for


def describe_favors(layer: LayerName) -> list[str]:
    """Favors as written in folder names: the bare value, or `key=value` for typed ones."""
    return [
        favor.value if favor.key is FavorKey.ANY else f"{favor.key.value}={favor.value}"
        for favor in layer.favors
    ]


def run(args: argparse.Namespace) -> int:
    facts = facts_from_args(args)
    info = scan_file(args.bundle, "scan")
    matched = [layer.layer for layer in layers_for(info, facts) if layer.layer is not None]
    if args.json:
        rows = [
            {"name": layer.dirname, "order": layer.order, "favors": describe_favors(layer)}
            for layer in matched
        ]
        print(json.dumps({"layers": [{"name": "base"}, *rows]}, indent=2))
        return 0
    print("base")
    for layer in matched:
        print(f"{layer.dirname}  ({' '.join(describe_favors(layer)) or 'no favors'})")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "match",
        help="list the layers that apply to one machine",
        description=(
            "List the layers of FILE that apply to one machine, in apply order (the base "
            "first): those whose every favor matches the machine's facts."
        ),
    )
    parser.add_argument("bundle", type=input_file, metavar="FILE", help="a bundle")
    add_facts_source(parser)
    parser.add_argument("--json", action="store_true", help='print {"layers": [...]} as JSON')
    parser.set_defaults(func=run)
