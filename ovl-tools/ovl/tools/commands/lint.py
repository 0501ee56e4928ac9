"""`ovl lint FILE [--fleet FLEET.json]`: findings about a bundle before it ships."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.format.scan import scan_bundle
from ovl.tools.fleet import load_fleet
from ovl.tools.lint import (
    Finding,
    Severity,
    layer_folder_names,
    lint_bundle,
    malformed_layer_findings,
)
from ovl.tools.progress import open_with_progress


def _findings(args: argparse.Namespace) -> list[Finding]:
    fleet = load_fleet(args.fleet).machines if args.fleet else None
    try:
        with open_with_progress(args.bundle, f"lint {args.bundle.name}") as source:
            info = scan_bundle(source)
    except BadInput:
        # The agent refuses the bundle; say every malformed layer name at once when that is
        # why, else the one error the engine found.
        with args.bundle.open("rb") as source:
            malformed = malformed_layer_findings(layer_folder_names(source))
        if malformed:
            return malformed
        raise
    return lint_bundle(info, fleet)


def run(args: argparse.Namespace) -> int:
    findings = _findings(args)
    errors = sum(1 for f in findings if f.severity is Severity.ERROR)
    warnings = sum(1 for f in findings if f.severity is Severity.WARNING)
    if args.json:
        rows = [
            {
                "severity": f.severity.value,
                "code": f.code,
                "where": f.where,
                "message": f.message,
                "machines": list(f.machines),
            }
            for f in findings
        ]
        print(json.dumps({"findings": rows, "errors": errors, "warnings": warnings}, indent=2))
    else:
        for f in findings:
            machines = f" [{', '.join(f.machines)}]" if f.machines else ""
            print(f"{f.severity.value} {f.code}: {f.where}: {f.message}{machines}")
        print(f"{args.bundle}: {errors} errors, {warnings} warnings")
    return 1 if errors else 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "lint",
        help="check a bundle (and what a fleet would get from it)",
        description=(
            "Report malformed layer names (error), and with --fleet: layers no machine "
            "matches (warning) and paths written by two or more layers one machine gets "
            "(override: warning between layers, info over the base). Exit 1 on errors."
        ),
    )
    parser.add_argument("bundle", type=Path, metavar="FILE")
    parser.add_argument("--fleet", type=Path, metavar="FLEET.json", help="a fleet file (FACTS.md)")
    parser.add_argument("--json", action="store_true", help="print the findings as JSON")
    parser.set_defaults(func=run)
