"""`ovl plan FILE --fleet FLEET.json`: what every machine would get (a dry run)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any

from ovl.core.cli import input_file
from ovl.core.errors import BadInput
from ovl.core.units import human_size
from ovl.tools.bundlefile import scan_file
from ovl.tools.fleet import load_fleet
from ovl.tools.plan import MachinePlan, plan_machine


def _print_text(plans: list[MachinePlan], with_paths: bool) -> None:
    for plan in plans:
        print(f"{plan.machine}: {plan.files} files, {human_size(plan.bytes)} after merging")
        width = max(len(layer.name) for layer in plan.layers)
        for layer in plan.layers:
            print(f"  {layer.name:<{width}}  {layer.files:>8} files  {human_size(layer.bytes):>10}")
        if with_paths:
            for path in plan.paths:
                print(f"    {path.path}  {path.kind} {human_size(path.size)}  from {path.layer}")


def _as_json(plan: MachinePlan, with_paths: bool) -> dict[str, Any]:
    data = asdict(plan)
    if not with_paths:
        del data["paths"]
    return data


def run(args: argparse.Namespace) -> int:
    machines = load_fleet(args.fleet).machines
    if args.machine is not None:
        if args.machine not in machines:
            raise BadInput(f"{args.fleet}: no machine named {args.machine!r}")
        machines = {args.machine: machines[args.machine]}
    info = scan_file(args.bundle, "plan")
    plans = [plan_machine(info, name, facts) for name, facts in machines.items()]
    if args.json:
        print(json.dumps({"machines": [_as_json(plan, args.files) for plan in plans]}, indent=2))
    else:
        _print_text(plans, args.files)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "plan",
        help="show what each machine of a fleet would get",
        description=(
            "A dry run for every machine of the fleet: the layers it gets (base first, in "
            "apply order) with their files and bytes, and the files and bytes left once they "
            "are merged (later layers replace earlier files, whiteouts delete)."
        ),
    )
    parser.add_argument("bundle", type=input_file, metavar="FILE", help="a bundle")
    parser.add_argument(
        "--fleet", type=input_file, required=True, metavar="FLEET.json", help="a fleet file"
    )
    parser.add_argument("--machine", metavar="NAME", help="only this machine")
    parser.add_argument(
        "--files", action="store_true", help="list every file each machine ends up with"
    )
    parser.add_argument("--json", action="store_true", help="print the plan as JSON")
    parser.set_defaults(func=run)
