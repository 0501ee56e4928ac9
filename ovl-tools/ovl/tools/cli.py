"""`ovl`: the admin's command line. Each subcommand lives in its own module.

A command module exposes `register(subparsers) -> None`, which adds its parser and sets
`func=handler`; the handler takes the parsed namespace and returns an exit code.
Exit codes: 0 ok, 1 failure, 2 bad input, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ovl.core.cli import chosen_command, run_handler

# Modules under ovl.tools.commands, in the order `ovl --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    # one name per ovl.tools/commands/<name>.py, added when the module lands
    "pack",
    "inspect",
    "facts",
    "match",
    "apply",
    "lint",
    "plan",
    "server",
    "netboot",
    "initramfs",
    "cik",
    "keys",
    "seal",
    "sign",
    "verify",
    "open",
)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's module is imported (start-up time)."""
    parser = argparse.ArgumentParser(
        prog="ovl", description="Author, check, seal and serve ovl bundles; build initramfs images."
    )
    parser.add_argument("--debug", action="store_true", help="log commands and show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES if only is None else (only,):
        module = importlib.import_module(f"ovl.tools.commands.{name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(chosen_command(argv, COMMAND_MODULES)).parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="ovl: %(message)s"
    )
    return run_handler("ovl", args)
