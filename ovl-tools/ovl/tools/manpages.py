"""Man pages for `ovl`, generated from its argparse tree (clitree.py): `ovl.1` lists the
commands, and each command has its page `ovl-COMMAND[-ACTION].1` (NAME, SYNOPSIS,
DESCRIPTION, OPTIONS, COMMANDS, SEE ALSO), in roff for man(1)."""

from __future__ import annotations

from ovl.tools.clitree import FLAG, Command

SECTION = "1"


def page_name(command: Command) -> str:
    """`ovl`, `ovl-pack`, `ovl-server-import`: the page's name (its file adds `.1`)."""
    return "-".join(("ovl", *command.path))


def _roff(text: str) -> str:
    """Text safe in a roff line: backslashes doubled, a leading dot or quote escaped."""
    escaped = text.replace("\\", "\\e").replace("-", "\\-")
    return "\\&" + escaped if escaped.startswith((".", "'")) else escaped


def _option_line(flags: tuple[str, ...], metavar: str, kind: str) -> str:
    names = ", ".join(f"\\fB{_roff(flag)}\\fR" for flag in flags)
    return names if kind == FLAG else f"{names} \\fI{_roff(metavar)}\\fR"


def render_page(command: Command, version: str) -> str:
    """One command's man page."""
    name = page_name(command)
    lines = [
        f'.TH "{name.upper()}" "{SECTION}" "" "ovl {version}" "ovl manual"',
        ".SH NAME",
        f"{_roff(name)} \\- {_roff(command.summary or command.description)}",
        ".SH SYNOPSIS",
        f".B {_roff(' '.join(command.usage.split()))}",
        ".SH DESCRIPTION",
        _roff(command.description),
    ]
    if command.positionals:
        lines.append(".SH ARGUMENTS")
        for argument in command.positionals:
            choices = f" (one of: {', '.join(argument.choices)})" if argument.choices else ""
            lines += [".TP", f"\\fI{_roff(argument.metavar)}\\fR", _roff(argument.help + choices)]
    if command.options:
        lines.append(".SH OPTIONS")
        for option in command.options:
            choices = f" (one of: {', '.join(option.choices)})" if option.choices else ""
            lines += [
                ".TP",
                _option_line(option.flags, option.metavar, option.kind),
                _roff(option.help + choices),
            ]
    if command.commands:
        lines.append(".SH COMMANDS")
        for sub, summary in command.commands:
            lines += [".TP", f"\\fB{_roff(sub)}\\fR", f"{_roff(summary)} (\\fB{name}-{sub}\\fR(1))"]
    lines += [
        ".SH EXIT STATUS",
        "0 success, 1 failure, 2 bad input (usage, malformed files), 130 interrupted.",
        ".SH SEE ALSO",
        "\\fBovl\\fR(1); docs/CLI.md, docs/SERVER.md, docs/TRUST.md in the ovl sources.",
    ]
    return "\n".join(lines) + "\n"


def render_pages(tree: list[Command], version: str) -> dict[str, str]:
    """File name (`ovl-pack.1`) → page, for every command of the tree."""
    return {f"{page_name(c)}.{SECTION}": render_page(c, version) for c in tree}
