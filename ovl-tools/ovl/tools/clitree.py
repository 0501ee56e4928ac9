"""The `ovl` argparse tree as plain data: every command with its options, arguments and
subcommands. Completion scripts (completion.py) and man pages (manpages.py) are generated
from it, so they list exactly what the parser accepts."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

from ovl.core.cli import input_dir, input_file, output_file, walk_parsers

FLAG, VALUE, FILE, DIR = "flag", "value", "file", "dir"


@dataclass(frozen=True)
class Argument:
    """An option (`flags` set) or a positional argument (`flags` empty)."""

    flags: tuple[str, ...]
    metavar: str
    help: str
    kind: str  # FLAG (takes no value), VALUE, FILE or DIR
    choices: tuple[str, ...] = ()
    many: bool = False  # takes several values (a positional with nargs * or +)
    optional: bool = False  # a positional that may be left out


@dataclass(frozen=True)
class Command:
    path: tuple[str, ...]  # () for `ovl` itself
    summary: str  # the line the parent's command list shows
    description: str
    usage: str
    options: tuple[Argument, ...]
    positionals: tuple[Argument, ...]
    commands: tuple[tuple[str, str], ...]  # (name, summary) of each subcommand

    @property
    def name(self) -> str:
        return " ".join(("ovl", *self.path))


def _kind(action: argparse.Action) -> str:
    if action.nargs == 0:
        return FLAG
    if action.type is input_dir:
        return DIR
    if action.type in (input_file, output_file, Path):
        return FILE
    return VALUE


def _argument(action: argparse.Action) -> Argument:
    metavar = action.metavar if isinstance(action.metavar, str) else None
    return Argument(
        flags=tuple(action.option_strings),
        metavar=metavar or action.dest.upper(),
        help=argparse.HelpFormatter("ovl")._expand_help(action) if action.help else "",
        kind=_kind(action),
        choices=tuple(str(c) for c in action.choices or ()),
        many=action.nargs in (argparse.ZERO_OR_MORE, argparse.ONE_OR_MORE),
        optional=action.nargs in (argparse.ZERO_OR_MORE, argparse.OPTIONAL),
    )


def _summaries(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {choice.dest: choice.help or "" for choice in action._choices_actions}
    return {}


def command_tree(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of the tree below `parser`, depth first, `ovl` itself first."""
    summaries: dict[tuple[str, ...], str] = {(): parser.description or ""}
    commands = []
    for path, each in walk_parsers(parser):
        subs = _summaries(each)
        summaries.update({(*path, name): text for name, text in subs.items()})
        visible = [a for a in each._actions if a.help != argparse.SUPPRESS]
        commands.append(
            Command(
                path=path,
                summary=summaries.get(path, ""),
                description=each.description or summaries.get(path, ""),
                usage=each.format_usage().removeprefix("usage: ").strip(),
                options=tuple(_argument(a) for a in visible if a.option_strings),
                positionals=tuple(
                    _argument(a)
                    for a in visible
                    if not a.option_strings and not isinstance(a, argparse._SubParsersAction)
                ),
                commands=tuple(subs.items()),
            )
        )
    return commands
