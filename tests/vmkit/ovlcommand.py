"""Run the `ovl` command installed beside this interpreter, as a user would."""

from __future__ import annotations

import sys
from pathlib import Path
from subprocess import CompletedProcess

from ovl.core.run import run

OVL = Path(sys.executable).parent / "ovl"


def ovl(*args: str | Path) -> CompletedProcess[bytes]:
    """`ovl ARGS...`; a failure raises OvlError with the command's last stderr line."""
    return run([OVL, *args])
