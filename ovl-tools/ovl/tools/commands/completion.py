"""`ovl completion bash|zsh`: the shell completion script, from the argparse tree."""

from __future__ import annotations

import argparse


def run(args: argparse.Namespace) -> int:
    from ovl.tools.cli import build_parser
    from ovl.tools.clitree import command_tree
    from ovl.tools.completion import bash_script, zsh_script

    tree = command_tree(build_parser())
    print(bash_script(tree) if args.shell == "bash" else zsh_script(tree), end="")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "completion",
        help="print the shell completion script (bash or zsh)",
        description=(
            "Print the completion script for SHELL, generated from ovl's own argument parser:"
            " commands, options, choices and file arguments. bash: save it as"
            " ~/.local/share/bash-completion/completions/ovl (or source it from ~/.bashrc);"
            " zsh: save it as _ovl in a directory of $fpath. `./dev` installs both."
        ),
    )
    parser.add_argument("shell", choices=["bash", "zsh"], metavar="SHELL", help="bash or zsh")
    parser.set_defaults(func=run)
