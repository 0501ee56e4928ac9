"""`ovl apply FILE --target DIR (--facts FACTS.json | --here)`: merge a bundle into a tree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ovl.core.cli import input_file
from ovl.core.units import human_size
from ovl.format.apply import apply_bundle
from ovl.tools.factsource import add_facts_source, facts_from_args
from ovl.tools.progress import open_with_progress


def run(args: argparse.Namespace) -> int:
    facts = facts_from_args(args)
    with open_with_progress(args.bundle, f"apply {args.bundle.name}") as source:
        result = apply_bundle(source, facts, args.target, split=False)
    if args.json:
        layers = [{"name": x.name, "files": x.files, "bytes": x.bytes} for x in result.layers]
        frames = None
        if result.frames_read is not None:
            frames = dict(zip(("read", "total"), result.frames_read, strict=True))
        print(
            json.dumps(
                {
                    "target": str(args.target),
                    "layers": layers,
                    "tar_bytes_read": result.decoded_bytes,
                    "frames": frames,
                },
                indent=2,
            )
        )
        return 0
    for layer in result.layers:
        print(f"{layer.name}: {layer.files} files, {human_size(layer.bytes)}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "apply",
        help="merge a bundle into a directory for one machine",
        description=(
            "Merge the base and every layer of FILE that matches the machine into DIR, in "
            "order, whiteouts applied as deletions: the agent's own engine, with its checks. "
            "On any error DIR is left as it was."
        ),
    )
    parser.add_argument("bundle", type=input_file, metavar="FILE", help="a bundle")
    parser.add_argument(
        "--target", type=Path, required=True, metavar="DIR", help="the tree to merge into"
    )
    add_facts_source(parser)
    parser.add_argument("--json", action="store_true", help="print the layers applied as JSON")
    parser.set_defaults(func=run)
