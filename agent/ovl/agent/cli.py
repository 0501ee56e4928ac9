"""`ovl-agent`: the boot-side command (boot, facts, delta). Imports stay lazy: boot time counts."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from ovl.core.cli import CommandParser, chosen_command, run_command, spread_global_flag

# Modules under ovl.agent.commands; each exposes register(subparsers) like ovl.tools' commands.
COMMAND_MODULES: tuple[str, ...] = ("boot", "facts", "delta")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's module is imported."""
    parser = CommandParser(prog="ovl-agent", description="ovl boot agent")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES if only is None else (only,):
        importlib.import_module(f"ovl.agent.commands.{name}").register(sub)
    spread_global_flag(parser, "--debug", action="store_true", help="show tracebacks on errors")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return run_command("ovl-agent", build_parser(chosen_command(argv, COMMAND_MODULES)), argv)
