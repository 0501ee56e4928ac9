"""`--facts FILE | --here`: whose facts `ovl match` and `ovl apply` match layers against."""

from __future__ import annotations

import argparse

from ovl.agent.facts import collect_facts
from ovl.core.cli import input_file
from ovl.core.facts import Facts
from ovl.tools.fleet import read_facts_file


def add_facts_source(parser: argparse.ArgumentParser) -> None:
    """--facts FILE | --here: whose facts the layers are matched against."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--facts", type=input_file, metavar="FACTS.json", help="a facts file (FACTS.md)"
    )
    source.add_argument("--here", action="store_true", help="this machine's facts")


def facts_from_args(args: argparse.Namespace) -> Facts:
    return collect_facts() if args.here else read_facts_file(args.facts)
