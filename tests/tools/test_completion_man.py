"""Shell completion and man pages are generated from the argparse tree: every command and
every option appears, checked with real bash, zsh and man."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path

import pytest

from ovl.tools.cli import build_parser, main
from ovl.tools.clitree import FLAG, Command, command_tree

pytestmark = pytest.mark.subprocess

ZSH_COMPLETE = Path(__file__).with_name("zsh_complete.zsh")


@pytest.fixture(scope="module")
def tree() -> list[Command]:
    return command_tree(build_parser())


def script(shell: str, directory: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert main(["completion", shell]) == 0
    path = directory / ("ovl.bash" if shell == "bash" else "_ovl")
    path.write_text(capsys.readouterr().out)
    return path


def bash_complete(completion: Path, lines: list[str], cwd: Path) -> list[list[str]]:
    """What `_ovl` offers for each line (the last word is the one being completed), in one
    bash process: COMP_WORDS and COMP_CWORD set as readline sets them."""
    program = [f"source {shlex.quote(str(completion))}"]
    for line in lines:
        words = line.split(" ")
        program += [
            f"COMP_WORDS=({' '.join(shlex.quote(w) for w in words)}); COMP_CWORD={len(words) - 1}",
            "COMPREPLY=(); _ovl; printf '%s\\n' \"${COMPREPLY[@]}\"; echo '=='",
        ]
    done = subprocess.run(
        ["bash", "--norc", "-c", "\n".join(program)],
        capture_output=True,
        text=True,
        check=True,
        cwd=cwd,
    )
    answers = done.stdout.split("==\n")[: len(lines)]
    return [[word for word in answer.splitlines() if word] for answer in answers]


def test_bash_completes_every_command_and_every_option(
    tree: list[Command], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completion = script("bash", tmp_path, capsys)
    lines, expected = [], []
    for command in tree:
        prefix = " ".join(("ovl", *command.path))
        lines.append(f"{prefix} -")
        expected.append(sorted(f for o in command.options for f in o.flags))
        if command.commands:
            lines.append(f"{prefix} ")
            expected.append(sorted(name for name, _ in command.commands))
    got = [sorted(answer) for answer in bash_complete(completion, lines, tmp_path)]
    for line, want, have in zip(lines, expected, got, strict=True):
        assert have == want, line
    assert len(tree) > 30  # every command and action of ovl


def test_bash_completes_choices_files_and_skips_option_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completion = script("bash", tmp_path, capsys)
    (tmp_path / "fleet.ovl").write_text("")
    (tmp_path / "tree").mkdir()
    got = bash_complete(
        completion,
        [
            "ovl pack --compress ",
            "ovl pack tree -o fle",
            "ovl pack tr",
            "ovl lnt",
            "ovl server --root srv imp",  # --root's value is not taken for the action
            "ovl --debug server import --al",
            "ovl completion ",
        ],
        tmp_path,
    )
    assert got == [
        ["zstd", "gzip", "zlib", "xz", "none"],
        ["fleet.ovl"],
        ["tree"],
        [],
        ["import"],
        ["--allow-unsigned"],
        ["bash", "zsh"],
    ]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("ovl pa", ["pack"]),
        ("ovl pack --compress ", ["zstd", "gzip", "zlib", "xz", "none"]),
        ("ovl keys ", ["node-new", "signer-new", "root-new", "certify", "revoke", "list"]),
        ("ovl server --root x im", ["import"]),
        ("ovl server import --dr", ["--drop-baked"]),
    ],
)
def test_zsh_completes_commands_actions_options_and_choices(
    line: str, expected: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    completion = script("zsh", tmp_path, capsys)
    done = subprocess.run(
        ["zsh", "-f", str(ZSH_COMPLETE), str(completion.parent), line],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert done.stdout.split() == expected


def test_the_zsh_function_of_every_command_names_all_its_options(
    tree: list[Command], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = script("zsh", tmp_path, capsys).read_text()
    subprocess.run(["zsh", "-n", str(tmp_path / "_ovl")], check=True)
    functions = {
        block.split("()", 1)[0]: block for block in text.split("\n_ovl")[1:]
    }  # "_pack", "_server_import", ...
    functions[""] = text.split("\n_ovl_", 1)[0]
    for command in tree:
        key = "".join(f"_{part.replace('-', '_')}" for part in command.path)
        body = functions[key]
        for option in command.options:
            for flag in option.flags:
                assert flag in body, (command.name, flag)
        for name, _ in command.commands:
            assert f"'{name}:" in body, (command.name, name)


def test_man_pages_cover_every_command_and_option_and_render(
    tree: list[Command], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "man"
    assert main(["man", "-o", str(out)]) == 0
    assert (
        capsys.readouterr().out
        == f"{out}: {len(tree)} man pages (man -l {out / 'ovl.1'}, or MANPATH)\n"
    )
    for command in tree:
        page = out / f"{'-'.join(('ovl', *command.path))}.1"
        rendered = subprocess.run(
            ["man", "--warnings", "-E", "UTF-8", "-l", str(page)],
            capture_output=True,
            text=True,
            check=True,
            env={"MANWIDTH": "200", "PATH": "/usr/bin:/bin"},
        )
        assert rendered.stderr == "", (page, rendered.stderr)
        text = rendered.stdout.replace("\u2010", "-").replace("\u2212", "-")
        for option in command.options:
            for flag in option.flags:
                assert flag in text, (page, flag)
            if option.kind != FLAG:
                assert option.metavar in text, (page, option.metavar)
        for name, _ in command.commands:
            assert f"ovl-{'-'.join((*command.path, name))}(1)" in text.replace(" ", ""), name
        assert "EXIT STATUS" in text


def test_every_command_option_and_argument_says_what_it_is(tree: list[Command]) -> None:
    """The man pages and zsh's descriptions show these; an empty one would be a hole."""
    missing = [
        (command.name, argument.flags or argument.metavar)
        for command in tree
        for argument in (*command.options, *command.positionals)
        if not argument.help
    ]
    assert missing == []
    assert all(command.summary for command in tree[1:])
