"""The one wrapper through which every external command runs: run() waits for it, start()
leaves a daemon running."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
from collections.abc import Sequence
from pathlib import Path

from ovl.core.errors import OvlError

log = logging.getLogger("ovl.run")


def run(
    argv: Sequence[str | Path],
    *,
    check: bool = True,
    input: bytes | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run a command, capturing its output; a failure raises OvlError with its stderr attached."""
    args = [str(a) for a in argv]
    log.debug("run: %s", shlex.join(args))
    try:
        proc = subprocess.run(
            args, input=input, cwd=cwd, env=env, timeout=timeout, capture_output=True
        )
    except FileNotFoundError as exc:
        raise OvlError(f"{args[0]}: command not found") from exc
    except subprocess.TimeoutExpired as exc:
        raise OvlError(f"{shlex.join(args)}: timed out after {timeout} s") from exc
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace").strip().splitlines()
        tail = err[-1] if err else f"exit status {proc.returncode}"
        raise OvlError(f"{shlex.join(args)}: {tail}")
    return proc


def start(
    argv: Sequence[str | Path],
    *,
    env: dict[str, str] | None = None,
    output: Path | None = None,
) -> subprocess.Popen[bytes]:
    """Start a command that outlives the call (a daemon such as udhcpc), in a session of its own
    (so a shell's job control on the console never signals it); output appended to `output`,
    else discarded. The caller stops it; OvlError when it cannot be started."""
    args = [str(a) for a in argv]
    log.debug("start: %s", shlex.join(args))
    try:
        with open(output or os.devnull, "ab") as out:
            return subprocess.Popen(
                args,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
    except OSError as exc:
        raise OvlError(f"{args[0]}: {exc.strerror or exc}") from exc
