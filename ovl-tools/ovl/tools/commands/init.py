"""`ovl init DIR`: a commented example fleet to start from."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ovl.tools.example import write_example


def run(args: argparse.Namespace) -> int:
    written = write_example(args.directory)
    if args.json:
        print(json.dumps({"directory": str(args.directory), "files": [str(p) for p in written]}))
        return 0
    directory = args.directory
    print(f"{directory}: an example fleet ({len(written)} files; {directory / 'README.md'})")
    print(f"  ovl pack {directory / 'bundle'} -o fleet.ovl")
    print(f"  ovl lint fleet.ovl --fleet {directory / 'fleet.json'}")
    print(f"  ovl plan fleet.ovl --fleet {directory / 'fleet.json'}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "init",
        help="write a commented example fleet to start from",
        description=(
            "Write into DIR (new or empty) an example fleet: bundle/ (a base and layers for a "
            "MAC, a kernel release and a DMI product UUID), fleet.json naming its machines, "
            "keys/ with the trust layout explained, and a README saying what each part is. "
            "`ovl pack DIR/bundle` of it lints clean."
        ),
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="a new or empty directory")
    parser.add_argument("--json", action="store_true", help="print the files written as JSON")
    parser.set_defaults(func=run)
