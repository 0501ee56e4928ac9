"""`ovl facts`: this machine's facts, the values layer favors are matched against."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ovl.agent.facts import collect_facts
from ovl.core.cli import input_dir


def run(args: argparse.Namespace) -> int:
    facts = collect_facts(sysfs_root=args.sysfs)
    if args.json:
        print(json.dumps(facts.to_json(), indent=2))
        return 0
    rows = [
        ("macs", " ".join(facts.macs)),
        ("product_uuid", facts.product_uuid or ""),
        ("volume_uuids", " ".join(facts.volume_uuids)),
        ("kernel", facts.kernel),
        ("kernel_release", facts.kernel_release),
        ("arch", facts.arch),
    ]
    rows += [(key, " ".join(values)) for key, values in sorted(facts.extra.items())]
    for key, value in rows:
        print(f"{key:<15} {value}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "facts",
        help="print this machine's facts",
        description=(
            "Print this machine's facts (NIC MACs, DMI product UUID, volume UUIDs, kernel, "
            "release, arch). `--json` prints the facts file that match/apply --facts read."
        ),
    )
    parser.add_argument(
        "--sysfs",
        type=input_dir,
        default=Path("/sys"),
        metavar="ROOT",
        help="sysfs root (default /sys)",
    )
    parser.add_argument("--json", action="store_true", help="print the facts as JSON")
    parser.set_defaults(func=run)
