"""The one wrapper through which every external command runs."""

from __future__ import annotations

import logging
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
