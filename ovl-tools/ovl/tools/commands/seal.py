"""`ovl seal`: sign (and encrypt) a bundle for shipping, whole or one per machine."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from pathlib import Path
from typing import Any

from ovl.core.cli import input_dir, input_file, output_problem
from ovl.core.errors import BadInput
from ovl.tools.keys import required_signer, signer_option_specs
from ovl.tools.seal import load_recipients, seal_bundle, seal_per_machine


def _passphrase() -> str:
    secret = os.environ.get("OVL_PASSPHRASE")
    if secret is not None:
        return secret
    if not sys.stdin.isatty():
        raise BadInput("-p: set OVL_PASSPHRASE or run on a terminal")
    first = getpass.getpass("passphrase: ")
    if first != getpass.getpass("passphrase again: "):
        raise BadInput("-p: the passphrases differ")
    return first


def _manifest(bundle: Path) -> tuple[str, int]:
    from ovl.format.scan import scan_bundle

    with bundle.open("rb") as source:
        manifest = scan_bundle(source).manifest
    if manifest is None or not manifest.name:
        raise BadInput(f"{bundle}: no ovl.json with a name; pass --name and --serial")
    return manifest.name, manifest.serial


def run(args: argparse.Namespace) -> int:
    key, cert = required_signer(args)
    if args.per_machine:
        if args.recipient or args.passphrase:
            raise BadInput("--per-machine takes recipients from --recipients-dir, not -r/-p")
        if args.name is not None or args.serial is not None:
            raise BadInput("--per-machine takes name and serial from the bundle's ovl.json")
        results = seal_per_machine(
            args.bundle,
            args.per_machine,
            args.recipients_dir,
            args.out,
            signer_key=key,
            certificate=cert,
            armor=args.armor,
        )
        if args.json:
            machines = [
                {
                    "machine": machine,
                    "out": str(done.out),
                    "signature": f"{done.out}.minisig",
                    "layers": done.layers,
                    "serial": done.serial,
                }
                for machine, done in results
            ]
            print(json.dumps({"machines": machines}, indent=2))
            return 0
        for machine, done in results:
            print(f"{machine}: {done.out} ({done.layers} layer(s), serial {done.serial})")
        return 0
    problem = output_problem(args.out)
    if problem is not None:
        raise BadInput(f"-o {problem}")
    name, serial = args.name, args.serial
    if name is None or serial is None:
        found_name, found_serial = _manifest(args.bundle)
        name = name or found_name
        serial = found_serial if serial is None else serial
    recipients: list[Any] = [r for spec in args.recipient for r in load_recipients(spec)]
    sealed = seal_bundle(
        args.bundle,
        args.out,
        signer_key=key,
        certificate=cert,
        name=name,
        serial=serial,
        recipients=recipients,
        passphrase=_passphrase() if args.passphrase else None,
        armor=args.armor,
    )
    if args.json:
        summary = {
            "out": str(sealed.out),
            "signature": str(sealed.signature),
            "name": sealed.name,
            "serial": sealed.serial,
            "encrypted": sealed.encrypted,
        }
        print(json.dumps(summary, indent=2))
        return 0
    state = "encrypted" if sealed.encrypted else "plaintext"
    print(f"{sealed.out}: {state}, {name} serial {serial}; signature {sealed.signature}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "seal",
        help="sign and encrypt a bundle for shipping",
        description=(
            "Write OUT (age-encrypted to -r recipients or a passphrase, else as is) and "
            "OUT.minisig: a minisign signature whose trusted comment binds name and serial, "
            "followed by the signer's certificate. See docs/TRUST.md."
        ),
    )
    parser.add_argument("bundle", type=input_file, metavar="BUNDLE", help="a bundle")
    for flags, options in signer_option_specs():
        parser.add_argument(*flags, **options)  # type: ignore[arg-type]
    parser.add_argument(
        "-r",
        "--recipient",
        action="append",
        default=[],
        metavar="RECIPIENT",
        help="age1..., 'ssh-ed25519 ...', or a file of them (repeatable)",
    )
    parser.add_argument(
        "-p",
        "--passphrase",
        action="store_true",
        help="encrypt to a passphrase (OVL_PASSPHRASE or a prompt)",
    )
    parser.add_argument("--armor", action="store_true", help="ASCII armour the output")
    parser.add_argument("--name", help="bundle name (default: from ovl.json)")
    parser.add_argument("--serial", type=int, help="serial (default: from ovl.json)")
    parser.add_argument(
        "--per-machine",
        type=input_file,
        metavar="FLEET.json",
        help="one output per machine in OUT (a directory), named by MAC",
    )
    parser.add_argument(
        "--recipients-dir",
        type=input_dir,
        default=Path("."),
        metavar="DIR",
        help="with --per-machine: DIR/MACHINE.age.pub (or .pub ssh-ed25519) per machine",
    )
    parser.add_argument(
        "-o",
        "--out",
        type=Path,
        required=True,
        metavar="OUT",
        help="the sealed bundle (OUT.minisig beside it); with --per-machine a directory",
    )
    parser.add_argument("--json", action="store_true", help="print what was written as JSON")
    parser.set_defaults(func=run)
