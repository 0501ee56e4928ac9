"""No traceback from any `ovl` or `ovl-agent` command on bad input: every subcommand is run
with missing files, directories, garbage, swapped arguments and bad flags, and answers one
line `PROG: error: CAUSE` with exit 2 (1 for a refusal or a runtime failure)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from ovl.agent.cli import build_parser as agent_parser
from ovl.agent.cli import main as agent_main
from ovl.core.cli import walk_parsers
from ovl.tools.cli import build_parser, main
from tests.tools.server_fixtures import OVL, make_bundle
from tests.trust.trust_pki import Pki, make_pki

pytestmark = pytest.mark.subprocess  # `initramfs build` may look for tools before failing

ONE_ERROR = re.compile(r"^ovl(-agent)?( [a-z-]+)*: error: \S.*\n$")


@dataclass(frozen=True)
class World:
    """Files for the cases: good ones to get past the first check, and bad ones."""

    root: Path
    pki: Pki

    def __truediv__(self, name: str) -> str:
        return str(self.root / name)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> World:
    root = tmp_path_factory.mktemp("world")
    pki = make_pki(root / "pki")
    (root / "garbage.bin").write_bytes(bytes(range(256)) * 16)
    (root / "dir").mkdir()
    tree = root / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/motd").write_text("hi\n")
    (tree / "ovl.json").write_text(json.dumps({"name": "lab", "serial": 1}))
    assert main(["pack", str(tree), "-o", str(root / "bundle.ovl")]) == 0
    (root / "fleet.json").write_text(
        json.dumps({"machines": {"web-1": {"macs": ["52:54:00:aa:bb:01"]}}})
    )
    (root / "facts.json").write_text(json.dumps({"macs": ["52:54:00:aa:bb:01"]}))
    signer = ["--sign-key", str(pki.signer_key), "--cert", str(pki.cert)]
    assert main(["seal", str(root / "bundle.ovl"), *signer, "-o", str(root / "sealed.ovl")]) == 0
    assert main(["keys", "node-new", "web-1", "-d", str(root)]) == 0
    srv = str(root / "srv")
    assert (
        main(["server", "--root", srv, "import", "lab", str(make_bundle(root / "v1.ovl", {}))]) == 0
    )
    assert main(["keys", "signer-new", "node", "-d", str(root)]) == 0
    argv = ["add-machine", "alpha", "--profile", "lab", "--mac", "52:54:00:aa:bb:01"]
    assert main(["server", "--root", srv, *argv, "--key", str(root / "node.pub")]) == 0
    (root / "spool").mkdir()
    return World(root, pki)


# (argv, exit code) for every command: a refusal or runtime failure is 1, bad input 2.
def ovl_cases(w: World) -> list[tuple[list[str], int]]:
    srv = ["server", "--root", w / "srv"]
    signer = ["--sign-key", str(w.pki.signer_key), "--cert", str(w.pki.cert)]
    return [
        (["init", w / "garbage.bin"], 2),
        (["init", w / "nope/x"], 2),
        (["pack", w / "nope", "-o", w / "o.ovl"], 2),
        (["pack", w / "garbage.bin", "-o", w / "o.ovl"], 2),
        (["pack", w / "tree", "-o", w / "dir"], 2),
        (["pack", w / "tree", "-o", w / "nope/o.ovl"], 2),
        (["pack", "-o", w / "tree", w / "bundle.ovl"], 2),  # swapped
        (["pack", w / "tree"], 2),
        (["inspect", w / "nope"], 2),
        (["inspect", w / "dir"], 2),
        (["inspect", w / "garbage.bin"], 2),
        (["inspect", w / "fleet.json"], 2),
        (["facts", "--sysfs", w / "nope"], 2),
        (["facts", "--sysfs", w / "garbage.bin"], 2),
        (["match", w / "bundle.ovl", "--facts", w / "garbage.bin"], 2),
        (["match", w / "facts.json", "--facts", w / "bundle.ovl"], 2),  # swapped
        (["match", w / "bundle.ovl"], 2),
        (["apply", w / "garbage.bin", "--target", w / "t", "--facts", w / "facts.json"], 2),
        (
            ["apply", w / "bundle.ovl", "--target", w / "garbage.bin", "--facts", w / "facts.json"],
            2,
        ),
        (["lint", w / "nope"], 2),
        (["lint", w / "dir"], 2),
        (["lint", w / "bundle.ovl", "--fleet", w / "bundle.ovl"], 2),
        (["plan", w / "fleet.json", "--fleet", w / "bundle.ovl"], 2),  # swapped
        (["plan", w / "bundle.ovl", "--fleet", w / "garbage.bin"], 2),
        (["plan", w / "bundle.ovl", "--fleet", w / "fleet.json", "--machine", "web-9"], 2),
        (["diff", w / "bundle.ovl", w / "garbage.bin"], 2),
        (["diff", w / "bundle.ovl", w / "nope"], 2),
        (["diff", w / "bundle.ovl", w / "bundle.ovl", "--machine", "web-1"], 2),
        (["server", "--root", w / "nope", "serve"], 2),
        (["server", "serve"], 2),  # no --root, no OVL_SERVER_ROOT
        ([*srv, "serve", "--listen", "8470"], 2),
        ([*srv, "import", "lab", w / "garbage.bin"], 2),
        ([*srv, "import", "lab", w / "dir"], 2),
        ([*srv, "import", "bad name!", w / "bundle.ovl"], 2),
        ([*srv, "import", "lab", w / "bundle.ovl", "--signature", w / "garbage.bin"], 2),
        ([*srv, "import", "lab", w / "bundle.ovl", "--serial", "soon"], 2),
        ([*srv, "add-machine", "b", "--profile", "lab", "--mac", "x", "--key", w / "node.pub"], 2),
        (
            [
                *srv,
                "add-machine",
                "b",
                "--profile",
                "lab",
                "--mac",
                "52:54:00:aa:bb:09",
                "--key",
                w / "garbage.bin",
            ],
            2,
        ),
        (
            [
                *srv,
                "add-machine",
                "b",
                "--profile",
                "lba",
                "--mac",
                "52:54:00:aa:bb:09",
                "--key",
                w / "node.pub",
            ],
            2,
        ),
        ([*srv, "machines", "--profile", "nope"], 2),
        (["server", "--root", w / "nope", "nginx-conf"], 2),
        ([*srv, "bake", "--profile", "nope"], 2),
        (["server", "--root", w / "garbage.bin", "watch"], 2),
        ([*srv, "history", "--profile", "nope"], 2),
        ([*srv, "rollback", "99", "--profile", "lab"], 2),
        ([*srv, "rollback", "one", "--profile", "lab"], 2),
        ([*srv, "cherry-pick", "deadbeef", "--to", "lab"], 2),
        ([*srv, "bake", "--sign-key", w / "garbage.bin"], 2),
        (["initramfs", "build", "--kernel-version", "x", "-o", w / "nope/i.img"], 2),
        (
            ["initramfs", "build", "--kernel-version", "x", "-c", w / "garbage.bin", "-o", w / "i"],
            2,
        ),
        (["initramfs", "freeze", "-o", w / "garbage.bin"], 2),
        (["keys", "node-new", "x", "-d", w / "garbage.bin"], 2),
        (["keys", "node-new", "web-1", "-d", str(w.root)], 2),  # exists
        (["keys", "signer-new", "x", "-d", w / "nope/deeper"], 2),
        (["keys", "root-new", "x", "-d", w / "garbage.bin"], 2),
        (
            [
                "keys",
                "certify",
                str(w.pki.signer_pub),
                "--root",
                w / "garbage.bin",
                "--name",
                "a",
                "--expires",
                "2031-01-01",
                "-o",
                w / "c.cert",
            ],
            2,
        ),
        (
            [
                "keys",
                "certify",
                w / "web-1.age.pub",
                "--root",
                str(w.pki.root_key),
                "--name",
                "a",
                "--expires",
                "2031-01-01",
                "-o",
                w / "c.cert",
            ],
            2,
        ),
        (
            [
                "keys",
                "certify",
                str(w.pki.signer_pub),
                "--root",
                str(w.pki.root_key),
                "--name",
                "a",
                "--expires",
                "2020-01-01",
                "-o",
                w / "c.cert",
            ],
            2,
        ),
        (
            [
                "keys",
                "certify",
                str(w.pki.signer_pub),
                "--root",
                str(w.pki.root_key),
                "--name",
                "a",
                "--expires",
                "soon",
                "-o",
                w / "c.cert",
            ],
            2,
        ),
        (
            ["keys", "revoke", "--root", str(w.pki.signer_key), "--keys-dir", str(w.pki.keys), "x"],
            2,
        ),
        (
            ["keys", "revoke", "--root", str(w.pki.root_key), "--keys-dir", w / "garbage.bin", "x"],
            2,
        ),
        (["keys", "list", w / "nope"], 2),
        (["keys", "list", w / "garbage.bin"], 2),
        (["seal", w / "nope", *signer, "-o", w / "s.ovl"], 2),
        (["seal", w / "dir", *signer, "-o", w / "s.ovl"], 2),
        (
            [
                "seal",
                w / "bundle.ovl",
                "--sign-key",
                str(w.pki.cert),
                "--cert",
                str(w.pki.signer_key),
                "-o",
                w / "s.ovl",
            ],
            2,
        ),  # swapped
        (["seal", w / "bundle.ovl", "-o", w / "s.ovl"], 2),  # no signer
        (["seal", w / "bundle.ovl", *signer, "-r", w / "garbage.bin", "-o", w / "s.ovl"], 2),
        (["seal", w / "bundle.ovl", *signer, "-o", w / "nope/s.ovl"], 2),
        (["seal", w / "bundle.ovl", *signer, "--per-machine", w / "fleet.json", "-o", w / "pm"], 2),
        (["sign", w / "garbage.bin", "--sign-key", str(w.pki.signer_pub)], 2),
        (["sign", w / "dir", *signer], 2),
        (["verify", w / "bundle.ovl"], 2),  # no .minisig
        (["verify", w / "sealed.ovl", "--keys", w / "nope"], 2),
        (["verify", w / "sealed.ovl", "--keys", w / "web-1.age.pub"], 2),
        (["verify", w / "sealed.ovl", "--keys", str(w.pki.signer_pub)], 1),  # not a root
        (["open", w / "sealed.ovl", "-o", w / "o.ovl", "--keys", w / "nope"], 2),
        (["open", w / "sealed.ovl", "-o", w / "o.ovl", "-i", str(w.pki.signer_key)], 2),
        (["open", w / "garbage.bin", "-o", w / "o.ovl", "--keys", str(w.pki.keys)], 1),
        (
            [
                "cik",
                "make",
                w / "o.img",
                "--size",
                "2G",
                "--kernel",
                w / "garbage.bin",
                "--initrd",
                w / "garbage.bin",
            ],
            2,
        ),  # not a bzImage
        (
            [
                "cik",
                "make",
                w / "o.img",
                "--size",
                "lots",
                "--kernel",
                w / "garbage.bin",
                "--initrd",
                w / "garbage.bin",
            ],
            2,
        ),
        (["cik", "update", w / "nope.img", "--bundle", w / "bundle.ovl"], 2),
        (["cik", "update", w / "garbage.bin", "--bundle", w / "bundle.ovl"], 2),
        (["cik", "list", w / "dir"], 2),
        (
            [
                "netboot",
                "publish",
                "--root",
                w / "srv",
                "lab",
                "--kernel",
                w / "garbage.bin",
                "--initrd",
                w / "garbage.bin",
            ],
            2,
        ),
        (["netboot", "add-machine", "--root", w / "srv", "lab", "--mac", "zz"], 2),
        (["netboot", "script", "--root", w / "nope", "--mac", "52:54:00:aa:bb:01"], 2),
        (["netboot", "script", "--root", w / "srv", "--mac", "zz"], 2),
        (["netboot", "dnsmasq-conf", "--server", "10.0.0.1", "--network", "nonsense"], 2),
        (["completion", "fish"], 2),
        (["man", "-o", w / "garbage.bin"], 2),
        (["man", "-o", w / "nope/man"], 2),
        (["lnt", w / "bundle.ovl"], 2),
        (["--version", "extra"], 0),
    ]


def agent_cases(w: World) -> list[tuple[list[str], int]]:
    spool = ["delta", "--spool", w / "spool"]
    return [
        (["delta", "--spool", w / "garbage.bin", "spool-status"], 2),
        ([*spool, "pack", "--upper", w / "nope"], 2),
        ([*spool, "pack", "--upper", w / "dir", "--rules", w / "garbage.bin"], 2),
        (
            [
                *spool,
                "ship",
                "--server",
                "127.0.0.1:8470",
                "--machine-id",
                "m",
                "--key",
                w / "node.key",
            ],
            2,
        ),
        (
            [
                *spool,
                "ship",
                "--server",
                "http://127.0.0.1:9",
                "--machine-id",
                "m",
                "--key",
                w / "garbage.bin",
            ],
            2,
        ),
        ([*spool, "ship", "--machine-id", "m", "--key", w / "node.key"], 2),  # no server
        (["facts", "--json", "extra"], 2),
    ]


def _leaves(parser_of: Callable[[], object]) -> set[str]:
    parser = parser_of()
    found = set()
    for path, each in walk_parsers(parser):  # type: ignore[arg-type]
        groups = [a for a in each._actions if type(a).__name__ == "_SubParsersAction"]
        if path and not groups:
            found.add(" ".join(path))
    return found


def _covered(cases: Sequence[tuple[list[str], int]], leaves: set[str]) -> set[str]:
    covered = set()
    for argv, _ in cases:
        words = [a for a in argv if not a.startswith("-") and "/" not in a]
        for leaf in leaves:
            if all(part in words for part in leaf.split()):
                covered.add(leaf)
    return covered


def check(code: int, expected: int, err: str, argv: list[str]) -> None:
    assert code == expected, (argv, code, err)
    assert "Traceback" not in err and "internal error" not in err, (argv, err)
    if expected:
        assert ONE_ERROR.match(err), (argv, err)


def test_every_command_has_bad_input_cases(world: World) -> None:
    ovl_leaves, agent_leaves = _leaves(build_parser), _leaves(agent_parser)
    missing = ovl_leaves - _covered(ovl_cases(world), ovl_leaves)
    missing |= agent_leaves - {"boot"} - _covered(agent_cases(world), agent_leaves)
    assert missing == set()


def test_ovl_answers_bad_input_with_one_line(
    world: World, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("OVL_SERVER_ROOT", "OVL_SIGN_KEY", "OVL_SIGN_CERT", "OVL_KEYS"):
        monkeypatch.delenv(name, raising=False)
    for argv, expected in ovl_cases(world):
        code = main(argv)
        _, err = capsys.readouterr()
        check(code, expected, err, argv)


def test_ovl_agent_answers_bad_input_with_one_line(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv, expected in agent_cases(world):
        code = agent_main(argv)
        _, err = capsys.readouterr()
        check(code, expected, err, argv)


def test_every_command_names_a_misspelt_flag(capsys: pytest.CaptureFixture[str]) -> None:
    for parser_of, run, prog in (
        (build_parser, main, "ovl"),
        (agent_parser, agent_main, "ovl-agent"),
    ):
        for path, _ in walk_parsers(parser_of()):
            argv = [*path, "--no-such-flag"]
            assert run(argv) == 2, argv
            err = capsys.readouterr().err
            assert err == f"{' '.join((prog, *path))}: error: unknown option --no-such-flag\n", argv


def test_a_misspelt_flag_is_named_before_a_missing_one(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", "tree", "--outptu", "x.ovl"]) == 2
    assert (
        capsys.readouterr().err
        == "ovl pack: error: unknown option --outptu; did you mean --output?\n"
    )
    assert main(["lnt"]) == 2
    assert capsys.readouterr().err.startswith(
        "ovl: error: unknown command 'lnt'; did you mean lint? (commands: init, pack,"
    )


def test_global_flags_go_before_or_after_the_command(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (
        ["--debug", "inspect", world / "bundle.ovl"],
        ["inspect", world / "bundle.ovl", "--debug"],
    ):
        assert main(argv) == 0
    capsys.readouterr()
    assert main(["--json", "inspect", world / "bundle.ovl"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["name"] == "lab"
    assert main(["--json", "keys", "node-new", "x", "-d", world / "dir"]) == 2
    assert capsys.readouterr().err == "ovl: error: --json: this command has no JSON output\n"


def test_version_and_bare_ovl(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"ovl \d+\.\d+\.\d+\n", capsys.readouterr().out)
    assert main([]) == 0
    listing = capsys.readouterr().out
    assert listing.startswith("usage: ovl ") and "  pack " in listing and "  server " in listing
    assert main(["server"]) == 0
    assert "  import " in capsys.readouterr().out


def test_debug_shows_the_traceback(world: World) -> None:
    done = subprocess.run(
        [*OVL, "inspect", world / "garbage.bin", "--debug"], capture_output=True, text=True
    )
    assert done.returncode == 1 and "Traceback" in done.stderr and "BadInput" in done.stderr


def test_the_installed_commands_print_one_line(world: World) -> None:
    ovl = Path(sys.executable).parent / "ovl"
    for argv in (
        ["lint", world / "nope"],
        ["plan", world / "fleet.json", "--fleet", world / "bundle.ovl"],
    ):
        done = subprocess.run([ovl, *argv], capture_output=True, text=True)
        assert done.returncode == 2 and ONE_ERROR.match(done.stderr), done.stderr


def test_ctrl_c_stops_a_long_pack_with_130_and_leaves_nothing(tmp_path: Path) -> None:
    """A 64 GiB sparse file (zeros, packed with --force past the check's size cap) keeps pack
    busy long enough to be interrupted once its output has started."""
    tree = tmp_path / "tree"
    tree.mkdir()
    with (tree / "huge").open("wb") as huge:
        huge.truncate(64 << 30)
    out = tmp_path / "out"
    out.mkdir()
    proc = subprocess.Popen(
        [*OVL, "pack", str(tree), "-o", str(out / "b.ovl"), "--force"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not any(p.stat().st_size > 0 for p in out.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (proc.returncode, stdout) == (130, "")
    assert stderr.splitlines()[-1] == "ovl: interrupted"
    assert os.listdir(out) == []
