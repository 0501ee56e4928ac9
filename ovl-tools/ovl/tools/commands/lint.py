"""`ovl lint FILE [--fleet FLEET.json]`: findings about a bundle before it ships."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ovl.core.cli import input_file
from ovl.tools.fleet import load_fleet
from ovl.tools.lint import Finding, Severity, check_bundle, count, layer_folder_names
from ovl.tools.progress import open_with_progress


def findings_json(findings: list[Finding]) -> list[dict[str, object]]:
    return [
        {
            "severity": f.severity.value,
            "code": f.code,
            "where": f.where,
            "message": f.message,
            "machines": list(f.machines),
        }
        for f in findings
    ]


def finding_line(finding: Finding) -> str:
    machines = f" [{', '.join(finding.machines)}]" if finding.machines else ""
    return f"{finding.severity.value} {finding.code}: {finding.where}: {finding.message}{machines}"


def _layer_dirnames(bundle: Path) -> set[str]:
    with bundle.open("rb") as source:
        return layer_folder_names(source)


def run(args: argparse.Namespace) -> int:
    fleet = load_fleet(args.fleet).machines if args.fleet else None
    with open_with_progress(args.bundle, f"lint {args.bundle.name}") as source:
        findings = check_bundle(source, lambda: _layer_dirnames(args.bundle), fleet)
    errors, warnings = count(findings, Severity.ERROR), count(findings, Severity.WARNING)
    if args.json:
        report = {"findings": findings_json(findings), "errors": errors, "warnings": warnings}
        print(json.dumps(report, indent=2))
    else:
        for finding in findings:
            print(finding_line(finding))
        print(f"{args.bundle}: {errors} errors, {warnings} warnings")
    return 1 if errors else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "lint",
        help="check a bundle (and what a fleet would get from it)",
        description=(
            "Report what machines would refuse (error: the bundle engine's checks, every "
            "malformed layer name), names and favors that look like mistakes (warning), and "
            "with --fleet: layers no machine matches (warning) and paths written by two or "
            "more layers one machine gets (override: warning between layers, info over the "
            "base). Exit 1 on errors. `ovl pack` runs the same check."
        ),
    )
    parser.add_argument("bundle", type=input_file, metavar="FILE", help="a bundle")
    parser.add_argument(
        "--fleet", type=input_file, metavar="FLEET.json", help="a fleet file (FACTS.md)"
    )
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(func=run)
