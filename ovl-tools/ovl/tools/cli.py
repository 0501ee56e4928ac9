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

from ovl.core.cli import CommandParser, chosen_command, run_command, spread_global_flag

# Modules under ovl.tools.commands, in the order `ovl --help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "init",
    "pack",
    "inspect",
    "facts",
    "match",
    "apply",
    "lint",
    "plan",
    "diff",
    "server",
    "netboot",
    "initramfs",
    "cik",
    "keys",
    "seal",
    "sign",
    "verify",
    "open",
    "completion",
    "man",
)


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("ovl")
    except PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


class _PrintVersion(argparse.Action):
    """--version, the installed version looked up only when asked: importlib.metadata costs
    ~20 ms, a fifth of every command's start-up."""

    def __init__(self, option_strings: list[str], dest: str, help: str | None = None) -> None:
        super().__init__(option_strings, argparse.SUPPRESS, nargs=0, help=help)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: object,
        option_string: str | None = None,
    ) -> None:
        print(f"ovl {version()}")
        parser.exit()


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's module is imported (start-up time)."""
    parser = CommandParser(
        prog="ovl",
        description="Author, check, seal and serve ovl bundles; build initramfs images.",
        epilog="Run `ovl COMMAND --help` for a command's options; docs/CLI.md has them all.",
    )
    parser.add_argument("--version", action=_PrintVersion, help="show the version and exit")
    parser.add_argument(
        "--json",
        dest="global_json",
        action="store_true",
        help="JSON output, for the commands that have it (as their own --json)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if only is None else (only,):
        module = importlib.import_module(f"ovl.tools.commands.{name}")
        module.register(sub)
    spread_global_flag(parser, "--debug", action="store_true", help="show tracebacks on errors")
    return parser


def _prepare(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """`ovl --json COMMAND` means `ovl COMMAND --json`; logging as --debug says."""
    if args.global_json:
        if "json" not in args:
            parser.error("--json: this command has no JSON output")
        args.json = True
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.WARNING, format="ovl: %(message)s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(chosen_command(argv, COMMAND_MODULES))
    return run_command("ovl", parser, argv, _prepare)
