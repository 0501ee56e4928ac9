"""The layering docs/ARCHITECTURE.md states is the layering the sources have."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
ARCHITECTURE = REPO / "docs" / "ARCHITECTURE.md"
PORTIONS = (REPO / "agent", REPO / "ovl-tools")


def _table(heading: str) -> dict[str, set[str]]:
    """The two-column table whose header row starts with `| heading |`: module -> names."""
    rows: dict[str, set[str]] = {}
    lines = iter(ARCHITECTURE.read_text().splitlines())
    for line in lines:
        if line.startswith(f"| {heading} |"):
            break
    else:
        raise AssertionError(f"no table headed {heading!r} in {ARCHITECTURE}")
    next(lines)  # | --- | --- |
    for line in lines:
        if not line.startswith("|"):
            break
        module, names = (cell.strip() for cell in line.strip("|").split("|"))
        rows[module.strip("`")] = set(re.findall(r"`([\w.]+)`", names))
    return rows


def _modules() -> Iterator[tuple[str, Path]]:
    for portion in PORTIONS:
        for path in sorted(portion.rglob("*.py")):
            parts = path.relative_to(portion).with_suffix("").parts
            yield ".".join(parts).removesuffix(".__init__"), path


def _imports(path: Path) -> Iterator[str]:
    """Every ovl module `path` imports, at the top or inside a function."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def test_the_sources_are_where_the_table_says() -> None:
    allowed = _table("package")
    modules = dict(_modules())
    assert modules, "no sources found"
    for module in modules:
        assert any(_within(module, package) for package in allowed), (
            f"{module} belongs to no package of the layering table"
        )


def test_every_package_imports_only_what_the_table_allows() -> None:
    allowed = _table("package")
    assert allowed["ovl.core"] == set() and "ovl.agent" in allowed["ovl.tools"]
    broken = []
    for module, path in _modules():
        own = next(p for p in allowed if _within(module, p))
        for imported in _imports(path):
            if not imported.startswith("ovl."):
                continue
            target = next((p for p in allowed if _within(imported, p)), None)
            if target is not None and target != own and target not in allowed[own]:
                broken.append(f"{path.relative_to(REPO)}: {own} imports {imported}")
    assert broken == []


def test_the_agents_inner_seams_hold() -> None:
    forbidden = _table("module")
    assert forbidden["ovl.agent.stack"] == {"ovl.agent.channels"}
    broken = []
    for module, path in _modules():
        for owner, targets in forbidden.items():
            if not _within(module, owner):
                continue
            for imported in _imports(path):
                if any(_within(imported, target) for target in targets):
                    broken.append(f"{path.relative_to(REPO)}: {module} imports {imported}")
    assert broken == []


def test_a_forbidden_import_would_be_caught(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from ovl.tools.cli import main\n")
    assert "ovl.tools.cli" in set(_imports(bad))


@pytest.mark.subprocess
def test_the_agent_loads_nothing_of_the_tools() -> None:
    """The agent's CLI and every module under agent/, imported for real in a fresh interpreter."""
    agent_modules = [
        m
        for m, path in _modules()
        if path.is_relative_to(REPO / "agent") and not m.endswith("__main__")
    ]
    probe = (
        "import importlib, sys\n"
        "from ovl.agent.cli import build_parser\n"
        "build_parser()\n"
        f"for name in {agent_modules!r}: importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ovl.tools', 'ovl.initramfs'))))\n"
        "print(len([m for m in sys.modules if m.startswith('ovl.')]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=REPO
    )
    tools, loaded = proc.stdout.splitlines()
    assert tools == "[]"
    assert int(loaded) >= len(agent_modules)  # the probe did import them
