"""The agent frozen with PyInstaller (onedir, stripped), cached by the hash of what went in.

Freezing takes seconds to tens of seconds; the cache key covers the agent's sources, the entry
script, the PyInstaller and Python versions and the freeze options, so a stale agent is never
reused. Each freeze is ~35 MB, so a new one prunes all but the few most recently used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.core.run import run

# The `ovl` packages under agent/ (docs/ARCHITECTURE.md): what is frozen, and nothing else.
AGENT_PACKAGES = ("ovl.core", "ovl.format", "ovl.trust", "ovl.delta", "ovl.agent")

# The agent imports its commands, channels and stackers by name (importlib), and heavy
# libraries only where used; PyInstaller cannot see those imports, so they are named here.
_HIDDEN = ("requests", "zstandard", "cryptography", "pyrage", "pyudev")
# Not used at boot, and worth leaving out (the agent must stay small): the admin tools and the
# initramfs's own files, GUI, test and packaging machinery, CJK codecs, asyncio and
# multiprocessing (the agent is synchronous), the pure-Python decimal twin of _decimal,
# zstandard's cffi twin.
_EXCLUDE = (
    "ovl.tools",
    "ovl.initramfs",
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
    *(f"--collect-submodules={m}" for m in AGENT_PACKAGES),
    *(f"--hidden-import={m}" for m in _HIDDEN),
    *(f"--exclude-module={m}" for m in _EXCLUDE),
)
EXECUTABLE = "ovl-agent"


def cache_root() -> Path:
    """$OVL_CACHE, else ~/.cache/ovl."""
    return Path(os.environ.get("OVL_CACHE") or Path.home() / ".cache" / "ovl")


def package_dir(name: str) -> Path:
    """Where an installed or checked-out package's files are."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise OvlError(f"{name}: not installed (pip install ovl)")
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def entry_script() -> Path:
    """`python -m ovl.agent`'s __main__.py, which PyInstaller freezes as ovl-agent."""
    return package_dir("ovl.agent") / "__main__.py"


def freeze_key() -> str:
    """Hash of the agent sources, PyInstaller/Python versions and options."""
    digest = hashlib.sha256()
    try:
        pyinstaller = importlib.metadata.version("pyinstaller")
    except importlib.metadata.PackageNotFoundError:
        raise OvlError("PyInstaller is not installed (pip install pyinstaller)") from None
    for part in (pyinstaller, sys.version, *FREEZE_OPTIONS):
        digest.update(part.encode() + b"\0")
    for package in AGENT_PACKAGES:
        sources = package_dir(package)
        for pattern in ("*.py", "*.json"):
            for source in sorted(sources.rglob(pattern)):
                digest.update(f"{package}/{source.relative_to(sources)}".encode() + b"\0")
                digest.update(source.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def frozen_agent(cache: Path | None = None) -> Path:
    """The frozen agent directory for the current sources, freezing it on a cache miss."""
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
                # The folder holding the agent's `ovl` (agent/ in a checkout, or site-packages).
                f"--paths={package_dir('ovl.core').parents[1]}",
                f"--distpath={work / 'dist'}",
                f"--workpath={work / 'build'}",
                f"--specpath={work}",
                entry_script(),
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
