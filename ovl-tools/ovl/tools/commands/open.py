"""`ovl open`: verify and decrypt a sealed bundle exactly as a machine does at boot."""

from __future__ import annotations

import argparse
import json
import os
import shutil

from ovl.core.cli import input_file, output_file
from ovl.tools.keys import add_keys_option, load_trust
from ovl.trust.age import Identity, Passphrase, load_identity_file, passphrase_file
from ovl.trust.certs import TrustStore
from ovl.trust.open import open_sealed
from ovl.trust.policy import Require, parse_policy
from ovl.trust.replay import ReplayState


def run(args: argparse.Namespace) -> int:
    identities: list[Identity] = [i for path in args.identity for i in load_identity_file(path)]
    identities += [passphrase_file(path) for path in args.key_file]
    if "OVL_PASSPHRASE" in os.environ:
        identities.append(Passphrase(os.environ["OVL_PASSPHRASE"], "OVL_PASSPHRASE"))
    signature = args.bundle.with_name(args.bundle.name + ".minisig")
    policy = parse_policy(args.require)
    lax = policy.level is Require.NONE and not args.keys.exists()
    opened = open_sealed(
        args.bundle,
        signature if signature.exists() else None,
        policy,
        TrustStore(()) if lax else load_trust(args.keys),
        identities,
        ReplayState(args.state) if args.state else None,
    )
    if opened.encrypted:
        shutil.move(opened.path, args.out)
    else:
        shutil.copyfile(opened.path, args.out)
    if args.json:
        summary = {
            "out": str(args.out),
            "signer": opened.signer,
            "serial": opened.serial,
            "encrypted": opened.encrypted,
            "warnings": list(opened.warnings),
        }
        print(json.dumps(summary, indent=2))
        return 0
    signer = opened.signer or "nobody (unsigned or uncertified)"
    print(f"{args.out}: opened; signed by {signer}, serial {opened.serial}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "open",
        help="verify and decrypt a sealed bundle",
        description="Verify BUNDLE(.minisig) under a policy, decrypt it, write the plain bundle.",
    )
    parser.add_argument("bundle", type=input_file, metavar="BUNDLE", help="a sealed bundle")
    parser.add_argument(
        "-i",
        "--identity",
        type=input_file,
        action="append",
        default=[],
        help="age identity file or OpenSSH ed25519 key (repeatable)",
    )
    parser.add_argument(
        "-k",
        "--key-file",
        type=input_file,
        action="append",
        default=[],
        help="passphrase file (first line) for passphrase/legacy bundles",
    )
    add_keys_option(parser)
    parser.add_argument(
        "--require", default="signed", help="policy as in ovl.require= (default signed)"
    )
    parser.add_argument("--state", type=output_file, help="replay state file to check and update")
    parser.add_argument(
        "-o", "--out", type=output_file, required=True, metavar="PLAIN", help="the plain bundle"
    )
    parser.add_argument("--json", action="store_true", help="print what was opened as JSON")
    parser.set_defaults(func=run)
