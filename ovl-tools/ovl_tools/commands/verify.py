"""`ovl verify`: check a sealed bundle's signature and certificate as a machine would."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from agent.errors import BadInput
from agent.trust.age import describe_recipients, header_stanzas, is_age
from agent.trust.certs import TrustStore
from agent.trust.legacy import is_legacy
from agent.trust.open import check_signature
from agent.trust.policy import parse_policy


def run(args: argparse.Namespace) -> int:
    signature = args.signature or args.bundle.with_name(args.bundle.name + ".minisig")
    if not signature.exists():
        raise BadInput(f"{signature}: no signature beside the bundle")
    signed = check_signature(
        args.bundle,
        signature,
        parse_policy("signed"),
        TrustStore.load(args.keys),
        f"bundle {args.bundle}",
    )
    with args.bundle.open("rb") as stream:
        head = stream.read(64)
    if is_age(head):
        encryption = f"age, to {describe_recipients(header_stanzas(args.bundle))}"
    elif is_legacy(head):
        encryption = "legacy openssl (unauthenticated)"
    else:
        encryption = "none"
    report = {
        "bundle": str(args.bundle),
        "signature": str(signature),
        "signer": signed.signer,
        "name": signed.name,
        "serial": signed.serial,
        "encryption": encryption,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(
            f"{args.bundle}: good signature by {signed.signer}, bundle {signed.name}"
            f" serial {signed.serial}, encryption: {encryption}"
        )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify a sealed bundle's signature and signer certificate",
        description="Verify BUNDLE.minisig against the trusted roots (and revocations) in --keys.",
    )
    parser.add_argument("bundle", type=Path, metavar="BUNDLE")
    parser.add_argument("--signature", type=Path, help="default BUNDLE.minisig")
    parser.add_argument("--keys", type=Path, default=Path("keys"), help="trusted roots (keys/)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)
