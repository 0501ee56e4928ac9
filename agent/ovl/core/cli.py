"""What `ovl` and `ovl-agent` share: which command module to import, and how a handler's
expected failures become one line and an exit code (0 ok, 1 failure, 2 bad input,
130 interrupted)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from ovl.core.errors import OvlError


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
