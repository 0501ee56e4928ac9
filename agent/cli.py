"""`ovl-agent`: the boot-side command (boot, facts, delta). Imports stay lazy: boot time counts."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from agent.errors import OvlError

# Modules under agent.commands; each exposes register(subparsers) like ovl_tools' commands.
COMMAND_MODULES: tuple[str, ...] = ("boot", "facts", "delta")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ovl-agent", description="ovl boot agent")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"agent.commands.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
        return code
    except OvlError as exc:
        if args.debug:
            raise
        print(f"ovl-agent: error: {exc.line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
