"""What `ovl` and `ovl-agent` share: the argument parser with ovl's conventions, which command
module to import, and how a handler's failures become one line and an exit code (0 ok,
1 failure, 2 bad input, 130 interrupted).

The conventions (docs/CLI.md): every error is one line `PROG: error: CAUSE`; a misspelt command
or option is named with the closest known one; an unknown option is named before any missing
one; a command group given without its command prints its help; global flags (`--debug`) are
accepted before or after the command.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

from ovl.core.errors import OvlError, error_line

_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")
_REQUIRED = "the following arguments are required"


def did_you_mean(word: str, known: Iterable[str]) -> str:
    """'; did you mean X?' for the known name closest to a misspelt `word`, or ''."""
    import difflib

    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f"; did you mean {close[0]}?" if close else ""


class CommandParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with ovl's conventions (module docstring). Subparsers made
    through `add_subparsers` are CommandParsers too."""

    def error(self, message: str) -> NoReturn:
        hint = f" (see '{self.prog} --help')" if message.startswith(_REQUIRED) else ""
        self.exit(2, f"{self.prog}: error: {message}{hint}\n")

    def add_subparsers(self, **kwargs: Any) -> Any:
        """Commands of a group; the group alone prints its help (exit 0), as `git`-style tools
        do, instead of an error."""
        kwargs["required"] = False
        action = super().add_subparsers(**kwargs)
        self.set_defaults(func=self._show_help)
        return action

    def _show_help(self, args: argparse.Namespace) -> int:
        self.print_help()
        return 0

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        tokens = list(sys.argv[1:] if args is None else args)
        unknown = self._unknown_option(tokens)
        if unknown is not None:
            self.error(f"unknown option {unknown}{did_you_mean(unknown, self._long_options())}")
        parsed, extras = super().parse_known_args(tokens, namespace)
        if extras:
            self.error(f"unexpected argument {extras[0]!r}")
        return parsed, extras

    def _check_value(self, action: argparse.Action, value: Any) -> None:
        if action.choices is None or value in action.choices:
            return
        names = [str(choice) for choice in action.choices]
        if isinstance(action, argparse._SubParsersAction):
            what, known = "command", "commands"
        else:
            what = f"{'/'.join(action.option_strings) or action.metavar or action.dest} value"
            known = "choices"
        raise argparse.ArgumentError(
            None,
            f"unknown {what} {value!r}{did_you_mean(str(value), names)}"
            f" ({known}: {', '.join(names)})",
        )

    def _long_options(self) -> list[str]:
        return [option for option in self._option_string_actions if option.startswith("--")]

    def _option(self, token: str) -> tuple[argparse.Action | None, bool]:
        """The action a token names (None: unknown) and whether its value is inline."""
        known = self._option_string_actions
        if token in known:
            return known[token], False
        name, equals, _ = token.partition("=")
        if equals and name in known:
            return known[name], True
        if token.startswith("--"):
            if self.allow_abbrev:
                matches = {known[o] for o in self._long_options() if o.startswith(name)}
                if len(matches) == 1:
                    return matches.pop(), bool(equals)
                if matches:  # ambiguous: argparse names the candidates
                    return next(iter(matches)), True
            return None, False
        if token[:2] in known:  # -ovalue, or flags run together
            return known[token[:2]], True
        return None, False

    def _unknown_option(self, tokens: list[str]) -> str | None:
        """The first option this parser does not know, among the tokens that are its own (a
        group's own end at its command's name)."""
        group = any(isinstance(a, argparse._SubParsersAction) for a in self._actions)
        index = 0
        while index < len(tokens):
            token = tokens[index]
            index += 1
            if token == "--":
                return None
            if not token.startswith("-") or token == "-" or _NUMBER.match(token):
                if group:
                    return None
                continue
            action, inline = self._option(token)
            if action is None:
                return token.partition("=")[0]
            if not inline:
                index += _values_taken(action, tokens[index:])
        return None


def _values_taken(action: argparse.Action, rest: list[str]) -> int:
    """How many of the following tokens an option given without an inline value consumes."""
    nargs = action.nargs
    if nargs is None:
        return 1
    if isinstance(nargs, int):
        return nargs
    if nargs == argparse.OPTIONAL:
        return 1 if rest and not rest[0].startswith("-") else 0
    if nargs in (argparse.ZERO_OR_MORE, argparse.ONE_OR_MORE):
        return next((i for i, token in enumerate(rest) if token.startswith("-")), len(rest))
    return len(rest)  # REMAINDER


def walk_parsers(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ()
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    """Every parser of the tree with its command path (() for the top), depth first, in the
    order the commands were added."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from walk_parsers(child, (*path, name))


def spread_global_flag(parser: argparse.ArgumentParser, *flags: str, **kwargs: Any) -> None:
    """Add a flag to the top parser and, so that it may also follow the command, to every
    parser below it (absent there, it leaves the top's value alone)."""
    for path, each in walk_parsers(parser):
        if path:
            each.add_argument(*flags, **{**kwargs, "default": argparse.SUPPRESS})
        else:
            each.add_argument(*flags, **kwargs)


def chosen_command(argv: Sequence[str], known: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if it is a known one."""
    for token in argv:
        if token == "--":
            return None
        if not token.startswith("-"):
            return token if token in known else None
    return None


def run_command(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str],
    prepare: Callable[[argparse.ArgumentParser, argparse.Namespace], None] | None = None,
) -> int:
    """Parse `argv` and run the chosen handler; returns the exit code (usage errors, --help and
    --version included, so that callers in process see a code, not SystemExit)."""
    try:
        args = parser.parse_args(argv)
        if prepare is not None:
            prepare(parser, args)
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return run_handler(prog, args)


def run_handler(prog: str, args: argparse.Namespace) -> int:
    """Run the chosen command's handler: any failure is one line on stderr, no traceback
    (unless --debug): an OvlError with its exit code, an unexpected system error exit 1, a bug
    exit 1 naming it; Ctrl-C 130."""
    func: Callable[[argparse.Namespace], int] = args.func
    debug = getattr(args, "debug", False)
    try:
        return func(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `... | head`: the reader left; not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception as exc:
        if debug:
            raise
        code = exc.exit_code if isinstance(exc, OvlError) else 1
        bug = "" if isinstance(exc, OvlError | OSError) else "internal error: "
        hint = " (--debug shows where)" if bug else ""
        print(f"{prog}: error: {bug}{error_line(exc)}{hint}", file=sys.stderr)
        return code


# -- argument types: check paths where they are parsed, so a handler sees usable ones ----------


def input_file(text: str) -> Path:
    """An existing regular file (or a device or pipe to read from)."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: is a directory, expected a file")
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such file")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"{text}: not readable (permission denied)")
    return path


def input_dir(text: str) -> Path:
    """An existing directory."""
    path = Path(text)
    if not path.exists():
        raise argparse.ArgumentTypeError(f"{text}: no such directory")
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    return path


def output_dir(text: str) -> Path:
    """A directory to write into: an existing one, or a new one whose parent exists."""
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    if not path.exists() and not path.parent.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: directory {path.parent} does not exist")
    return path


def output_problem(path: Path) -> str | None:
    """Why `path` cannot be (re)written as a file, or None: its directory must exist (nothing
    is created on the way), and it must not be a directory."""
    if path.is_dir():
        return f"{path}: is a directory, expected a file name"
    if not path.parent.is_dir():
        return f"{path}: directory {path.parent} does not exist"
    return None


def output_file(text: str) -> Path:
    """A file to (re)write (`output_problem`)."""
    problem = output_problem(Path(text))
    if problem is not None:
        raise argparse.ArgumentTypeError(problem)
    return Path(text)
