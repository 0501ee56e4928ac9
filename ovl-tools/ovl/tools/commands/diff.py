"""`ovl diff OLD NEW`: what changes between two bundles, per machine or per layer."""

from __future__ import annotations

import argparse
import json

from ovl.core.cli import input_file
from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.tools.bundlefile import scan_file
from ovl.tools.diff import Change, Diff, layer_diffs, machine_diff
from ovl.tools.fleet import load_fleet, read_facts_file


def _machines(args: argparse.Namespace) -> dict[str, Facts] | None:
    """The machines to compare for, by name; None for the per-layer view."""
    if args.machine is not None and args.fleet is None:
        raise BadInput("--machine NAME needs --fleet FLEET.json (where NAME is)")
    if args.fleet is not None:
        machines = load_fleet(args.fleet).machines
        if args.machine is None:
            return machines
        if args.machine not in machines:
            raise BadInput(f"{args.fleet}: no machine named {args.machine!r}")
        return {args.machine: machines[args.machine]}
    if args.facts is not None:
        return {args.facts.stem: read_facts_file(args.facts)}
    if args.here:
        from ovl.agent.facts import collect_facts

        return {"this machine": collect_facts()}
    return None


def _line(sign: str, change: Change) -> str:
    if sign == "+":
        return f"  + {change.path}  (from {change.new_layer})"
    if sign == "-":
        return f"  - {change.path}  (was from {change.old_layer})"
    layers = change.new_layer
    if change.old_layer != change.new_layer:
        layers = f"{change.old_layer} -> {change.new_layer}"
    return f"  ~ {change.path}  {', '.join(change.what)}  ({layers})"


def _print_text(diffs: list[Diff], what: str) -> None:
    for diff in diffs:
        counts = (
            f"{len(diff.added)} added, {len(diff.removed)} removed, {len(diff.changed)} changed"
        )
        print(f"{what}{diff.name}: {counts}" if not diff.empty else f"{what}{diff.name}: unchanged")
        for sign, changes in (("+", diff.added), ("-", diff.removed), ("~", diff.changed)):
            for change in changes:
                print(_line(sign, change))


def run(args: argparse.Namespace) -> int:
    machines = _machines(args)
    old = scan_file(args.old, "diff", digests=True)
    new = scan_file(args.new, "diff", digests=True)
    if machines is None:
        diffs, key, what = layer_diffs(old, new), "layer", "layer "
    else:
        diffs = [machine_diff(old, new, name, facts) for name, facts in machines.items()]
        key, what = "machine", ""
    if args.json:
        top = "layers" if machines is None else "machines"
        print(json.dumps({top: [diff.to_json(key) for diff in diffs]}, indent=2))
    elif machines is None and not diffs:
        print(f"{args.old} and {args.new} hold the same entries")
    else:
        _print_text(diffs, what)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "diff",
        help="what changes between two bundles, for which machine",
        description=(
            "Compare two bundles. With --fleet (every machine, or --machine NAME), --facts or "
            "--here: per machine, the files that appear, disappear or change in the tree it "
            "ends up with (base and its layers merged, whiteouts applied; directories only "
            "when they appear or disappear). Without: per layer, the entries each layer "
            "gains, loses or changes. A change names what differs (kind, content, target, "
            "mode, owner, or only the layer it comes from); mtimes are ignored."
        ),
    )
    parser.add_argument("old", type=input_file, metavar="OLD", help="the bundle before")
    parser.add_argument("new", type=input_file, metavar="NEW", help="the bundle after")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--fleet", type=input_file, metavar="FLEET.json", help="a fleet file")
    parser.add_argument("--machine", metavar="NAME", help="only this machine of the fleet")
    source.add_argument(
        "--facts", type=input_file, metavar="FACTS.json", help="one machine's facts"
    )
    source.add_argument("--here", action="store_true", help="this machine's facts")
    parser.add_argument("--json", action="store_true", help="print the changes as JSON")
    parser.set_defaults(func=run)
