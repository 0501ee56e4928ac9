"""`ovl-agent`: the boot-side command (boot, facts, delta). Imports stay lazy: boot time counts.

`chosen_command` and `run_handler` are shared with `ovl` (ovl_tools/cli.py): one way to pick
the command module to import and one way to turn expected failures into exit codes
(0 ok, 1 failure, 2 bad input, 130 interrupted).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from agent.errors import OvlError

# Modules under agent.commands; each exposes register(subparsers) like ovl_tools' commands.
COMMAND_MODULES: tuple[str, ...] = ("boot", "facts", "delta")


def chosen_command(argv: Sequence[str], known: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if it is a known one."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token if token in known else None
    return None


def run_handler(prog: str, args: argparse.Namespace) -> int:
    """Run the chosen command's handler: an OvlError is its one line on stderr, no traceback."""
    try:
        code: int = args.func(args)
        return code
    except OvlError as exc:
        if args.debug:
            raise
        print(f"{prog}: error: {exc.line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `... | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser; with `only`, just that command's module is imported."""
    parser = argparse.ArgumentParser(prog="ovl-agent", description="ovl boot agent")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES if only is None else (only,):
        importlib.import_module(f"agent.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(chosen_command(argv, COMMAND_MODULES)).parse_args(argv)
    return run_handler("ovl-agent", args)
