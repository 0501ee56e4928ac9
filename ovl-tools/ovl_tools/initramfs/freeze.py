"""The agent frozen with PyInstaller (onedir, stripped), cached by the hash of what went in.

Freezing takes seconds to tens of seconds; the cache key covers the agent's sources, the entry
script, the PyInstaller and Python versions and the freeze options, so a stale agent is never
reused. Each freeze is ~35 MB, so a new one prunes all but the few most recently used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import agent
from agent.errors import OvlError
from agent.run import run

AGENT_SOURCES = Path(agent.__file__).resolve().parent
ENTRY_SCRIPT = Path(__file__).resolve().parents[3] / "initramfs" / "ovl-agent-entry.py"

# The agent imports its commands, channels and stackers by name (importlib), and heavy
# libraries only where used; PyInstaller cannot see those imports, so they are named here.
_HIDDEN = ("requests", "zstandard", "cryptography", "pyrage", "pyudev")
_COLLECT = ("agent",)
# Not used at boot, and worth leaving out (the agent must stay small): the admin tools, GUI,
# test and packaging machinery, CJK codecs, asyncio and multiprocessing (the agent is
# synchronous), the pure-Python decimal twin of _decimal, zstandard's cffi twin.
_EXCLUDE = (
    "ovl_tools",
    "tkinter",
    "unittest",
    "pydoc",
    "doctest",
    "lib2to3",
    "setuptools",
    "pip",
    "pytest",
    "hypothesis",
    "_codecs_jp",
    "_codecs_kr",
    "_codecs_cn",
    "_codecs_hk",
    "_codecs_tw",
    "_codecs_iso2022",
    "asyncio",
    "multiprocessing",
    "_pydecimal",
    "zstandard.backend_cffi",
)
FREEZE_OPTIONS: tuple[str, ...] = (
    "--onedir",
    "--strip",
    "--optimize=2",
    "--noconfirm",
    "--log-level=WARN",
    "--name=ovl-agent",
    *(f"--collect-submodules={m}" for m in _COLLECT),
    *(f"--hidden-import={m}" for m in _HIDDEN),
    *(f"--exclude-module={m}" for m in _EXCLUDE),
)
EXECUTABLE = "ovl-agent"


def cache_root() -> Path:
    """$OVL_CACHE, else ~/.cache/ovl."""
    return Path(os.environ.get("OVL_CACHE") or Path.home() / ".cache" / "ovl")


def freeze_key() -> str:
    """Hash of the agent sources, entry script, PyInstaller/Python versions and options."""
    digest = hashlib.sha256()
    try:
        pyinstaller = importlib.metadata.version("pyinstaller")
    except importlib.metadata.PackageNotFoundError:
        raise OvlError("PyInstaller is not installed (pip install pyinstaller)") from None
    for part in (pyinstaller, sys.version, *FREEZE_OPTIONS):
        digest.update(part.encode() + b"\0")
    digest.update(ENTRY_SCRIPT.read_bytes() + b"\0")
    for pattern in ("*.py", "*.json"):
        for source in sorted(AGENT_SOURCES.rglob(pattern)):
            digest.update(str(source.relative_to(AGENT_SOURCES)).encode() + b"\0")
            digest.update(source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def frozen_agent(cache: Path | None = None) -> Path:
    """The frozen agent directory for the current sources, freezing it on a cache miss."""
    if not ENTRY_SCRIPT.is_file():
        raise OvlError(f"{ENTRY_SCRIPT}: agent entry script missing (run from an ovl checkout)")
    root = cache or cache_root()
    target = root / f"agent-{freeze_key()}"
    if (target / EXECUTABLE).is_file():
        os.utime(target)  # recently used: pruning keeps it
        return target
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="freeze-", dir=root) as scratch:
        work = Path(scratch)
        run(
            [
                sys.executable,
                "-m",
                "PyInstaller",
                *FREEZE_OPTIONS,
                f"--paths={AGENT_SOURCES.parent}",
                f"--distpath={work / 'dist'}",
                f"--workpath={work / 'build'}",
                f"--specpath={work}",
                ENTRY_SCRIPT,
            ],
            cwd=work,
            # Fixed hash seed and timestamps: the same sources freeze to the same bytes.
            env={**os.environ, "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "0"},
        )
        built = work / "dist" / EXECUTABLE
        if not (built / EXECUTABLE).is_file():
            raise OvlError(f"PyInstaller left no {EXECUTABLE} in {built}")
        try:
            built.rename(target)
        except OSError:
            # Another build froze the same sources meanwhile; theirs is as good as ours.
            if not (target / EXECUTABLE).is_file():
                raise
            shutil.rmtree(built, ignore_errors=True)
    prune_agents(root, keep=target)
    return target


def prune_agents(root: Path, *, keep: Path, spare: int = 3, grace: float = 3600) -> list[Path]:
    """Remove frozen agents beyond the `spare` most recently used besides `keep`, but none used
    within `grace` seconds (a build may still be copying it). Returns what was removed."""
    others = sorted(
        (p for p in root.glob("agent-*") if p.is_dir() and p != keep),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    cutoff = time.time() - grace
    removed = [p for p in others[spare:] if p.stat().st_mtime < cutoff]
    for old in removed:
        shutil.rmtree(old, ignore_errors=True)
    return removed
