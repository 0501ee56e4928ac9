"""`ovl man -o DIR`: man pages for ovl and every command, from the argparse tree."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.core.fs import write_atomic


def run(args: argparse.Namespace) -> int:
    from ovl.tools.cli import build_parser, version
    from ovl.tools.clitree import command_tree
    from ovl.tools.manpages import render_pages

    out: Path = args.output
    if not out.parent.is_dir():
        raise BadInput(f"-o {out}: directory {out.parent} does not exist")
    if out.exists() and not out.is_dir():
        raise BadInput(f"-o {out}: not a directory")
    out.mkdir(exist_ok=True)
    pages = render_pages(command_tree(build_parser()), version())
    for name, text in pages.items():
        write_atomic(out / name, text)
    if args.json:
        print(json.dumps({"pages": [str(out / name) for name in pages]}, indent=2))
    else:
        print(f"{out}: {len(pages)} man pages (man -l {out / 'ovl.1'}, or MANPATH)")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "man",
        help="write man pages for ovl and every command",
        description=(
            "Write ovl.1 and one page per command (ovl-pack.1, ovl-server-import.1, ...) into "
            "DIR, generated from ovl's own argument parser. `./dev` writes them into "
            ".venv/share/man/man1, where man finds them when .venv/bin is on PATH."
        ),
    )
    parser.add_argument(
        "-o", "--output", type=Path, required=True, metavar="DIR", help="where to write the pages"
    )
    parser.add_argument("--json", action="store_true", help="print the pages written as JSON")
    parser.set_defaults(func=run)
