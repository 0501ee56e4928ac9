"""`ovl cik make|update|list`: the rescue/provisioning stick (docs/CIK.md)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ovl.core.errors import BadInput
from ovl.tools.cik import stick, update
from ovl.tools.cik.nodekeys import collect_node_keys
from ovl.tools.fleet import load_fleet
from ovl.tools.initramfs.build import source_date_epoch
from ovl.tools.initramfs.uki import DEFAULT_STUB, SecureBootKey


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cik", help="make or update a CIK: a bootable stick with bundles, images and node keys"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    make = actions.add_parser(
        "make",
        help="write a bootable stick image (GPT, ESP with a UKI, OVLCIK data partition)",
        description="Write a stick image that boots offline; SOURCE_DATE_EPOCH dates its files.",
    )
    make.add_argument("output", type=Path, metavar="OUT.img", help="the image to write")
    make.add_argument("--size", required=True, help="the image's size, e.g. 2G (binary units)")
    make.add_argument("--kernel", type=Path, required=True, help="the kernel (bzImage)")
    make.add_argument(
        "--initrd", type=Path, required=True, help="an ovl initramfs with USB storage modules"
    )
    make.add_argument("--stub", type=Path, default=DEFAULT_STUB, help="systemd EFI stub")
    make.add_argument("--sign-key", type=Path, help="PEM key: sign the UKIs for Secure Boot")
    make.add_argument("--sign-cert", type=Path, help="the key's PEM certificate")
    make.add_argument(
        "--cmdline", default="", help="more kernel arguments, after the stick's own (e.g. quiet)"
    )
    _content_options(make)
    make.set_defaults(func=run_make)

    update = actions.add_parser(
        "update", help="add or replace bundles, images and keys on a stick or stick image"
    )
    update.add_argument("target", type=Path, metavar="STICK", help="an image file or a device")
    _content_options(update)
    update.add_argument(
        "--remove", action="append", default=[], metavar="PATH", help="delete PATH on OVLCIK"
    )
    update.set_defaults(func=run_update)

    listing = actions.add_parser("list", help="what a stick holds and the command line it boots")
    listing.add_argument("target", type=Path, metavar="STICK", help="an image file or a device")
    listing.add_argument("--json", action="store_true", help="print JSON")
    listing.set_defaults(func=run_list)


def _content_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bundle",
        type=Path,
        action="append",
        default=[],
        help="a sealed bundle (its .minisig beside it goes along); the first one boots",
    )
    parser.add_argument(
        "--image",
        type=Path,
        action="append",
        default=[],
        help="a root image for /images/, bottom to top (its .minisig goes along)",
    )
    parser.add_argument(
        "--node-keys", type=Path, help="directory of node keys named by MAC, UUID or machine"
    )
    parser.add_argument("--fleet", type=Path, help="fleet file naming the machines of the keys")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _content(args: argparse.Namespace) -> stick.Content:
    if args.fleet is not None and args.node_keys is None:
        raise BadInput("--fleet names the machines of --node-keys; give both")
    fleet = load_fleet(args.fleet) if args.fleet is not None else None
    keys = collect_node_keys(args.node_keys, fleet) if args.node_keys is not None else {}
    return stick.plan_content(args.bundle, args.image, keys)


def run_make(args: argparse.Namespace) -> int:
    if (args.sign_key is None) != (args.sign_cert is None):
        raise BadInput("signing needs both a key and a certificate (--sign-key, --sign-cert)")
    size = stick.parse_size(args.size)
    content = _content(args)
    sign = SecureBootKey(args.sign_key, args.sign_cert) if args.sign_key else None
    boot = stick.BootFiles(args.kernel, args.initrd, args.stub, sign)
    cmdline = stick.stick_cmdline(content, args.cmdline)
    made = stick.make_stick(args.output, size, boot, content, cmdline, source_date_epoch())
    if args.json:
        data = asdict(made)
        data["output"] = str(made.output)
        print(json.dumps(data, indent=2))
        return 0
    counts = f"bundles {len(content.bundles)}, images {len(content.images)}, "
    counts += f"node keys {len(content.keys)}"
    print(
        f"{made.output}: CIK stick {_mib(made.size)}: {stick.ESP_LABEL} {_mib(made.esp.size)} "
        f"({', '.join(made.esp_files)}), {stick.DATA_LABEL} {_mib(made.data.size)} ({counts})"
    )
    print(f"  boots: {made.cmdline}")
    return 0


def run_update(args: argparse.Namespace) -> int:
    content = _content(args)
    if not content.files and not args.remove:
        raise BadInput("nothing to do: give --bundle, --image, --node-keys or --remove")
    removals = ["/" + path.strip("/") for path in args.remove]
    updated = update.update_stick(args.target, content, removals, source_date_epoch())
    if args.json:
        data = asdict(updated)
        data["target"] = str(updated.target)
        print(json.dumps(data, indent=2))
        return 0
    print(
        f"{updated.target}: {len(updated.written)} files written, {len(updated.removed)} "
        f"removed; {_mib(updated.free)} free on {stick.DATA_LABEL}"
    )
    return 0


def run_list(args: argparse.Namespace) -> int:
    if not args.target.exists():
        raise BadInput(f"{args.target}: no such stick or image")
    paths, cmdline = update.stick_listing(args.target)
    if args.json:
        print(json.dumps({"target": str(args.target), "cmdline": cmdline, "paths": paths}))
        return 0
    print(f"{args.target}: boots {cmdline}")
    for path in paths:
        print(f"  {path}")
    return 0


def _mib(size: int) -> str:
    return f"{size / (1 << 20):.0f}M"
