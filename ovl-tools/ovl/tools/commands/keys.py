"""`ovl keys`: node identities, root and signer key pairs, certificates, revocations."""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

from ovl.core.cli import input_dir, input_file, output_dir, output_file
from ovl.core.errors import BadInput
from ovl.tools.keys import (
    KeyFile,
    certify,
    describe_key_file,
    new_node_identity,
    new_signing_pair,
    revoke,
)
from ovl.trust.certs import REVOKED_FILE, TrustStore


def parse_expiry(text: str) -> datetime:
    """YYYY-MM-DD (midnight UTC) or an ISO 8601 time; a time without zone is UTC."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise BadInput(f"--expires {text!r}: expected YYYY-MM-DD or an ISO 8601 time") from exc
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _node_new(args: argparse.Namespace) -> int:
    key, pub = new_node_identity(args.dir, args.name)
    print(f"{key}: age identity (secret; install on the machine)")
    print(f"{pub}: {pub.read_text().strip()}")
    return 0


def _new_password() -> bytes:
    password = os.environ.get("OVL_KEY_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            raise BadInput("--password: set OVL_KEY_PASSWORD or run on a terminal")
        password = getpass.getpass("password for the new key: ")
        if password != getpass.getpass("password again: "):
            raise BadInput("--password: the passwords differ")
    if not password:
        raise BadInput("--password: empty password")
    return password.encode()


def _pair_new(role: str) -> object:
    def handler(args: argparse.Namespace) -> int:
        password = _new_password() if args.password else None
        key, pub = new_signing_pair(args.dir, args.name, role, password)
        state = "password-protected" if password else "unencrypted"
        print(f"{key}: {role} secret key (minisign format, {state}; keep it offline)")
        print(f"{pub}: {role} public key")
        return 0

    return handler


def _certify(args: argparse.Namespace) -> int:
    expires = parse_expiry(args.expires)
    if expires <= datetime.now(UTC):
        raise BadInput(
            f"--expires {args.expires}: already past; machines would refuse the signer at once"
        )
    comment = certify(args.root, args.signer_pub, args.name, expires, args.out)
    print(f"{args.out}: {comment}")
    return 0


def _revoke(args: argparse.Namespace) -> int:
    revoked = revoke(args.root, args.keys_dir, args.targets, args.reason)
    print(f"{args.keys_dir / REVOKED_FILE}: {len(revoked)} key(s) revoked, signed")
    return 0


def _list(args: argparse.Namespace) -> int:
    files: list[KeyFile] = []
    revoked: list[tuple[Path, str]] = []
    for directory in args.dirs:
        if not directory.is_dir():
            raise BadInput(f"{directory}: not a directory")
        described = (describe_key_file(path) for path in sorted(directory.iterdir()))
        files += [key_file for key_file in described if key_file is not None]
        if (directory / REVOKED_FILE).exists():
            ids = sorted(TrustStore.load(directory).revoked)
            revoked += [(directory / REVOKED_FILE, key_id) for key_id in ids]
    if args.json:
        listing = {
            "files": [key_file.to_json() for key_file in files],
            "revoked": [{"key_id": key_id, "list": str(where)} for where, key_id in revoked],
        }
        print(json.dumps(listing, indent=2))
        return 0
    for key_file in files:
        print(key_file.line())
    for _, key_id in revoked:
        print(f"{key_id}  revoked      {REVOKED_FILE}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "keys",
        help="make and certify keys (see keys/README.md)",
        description="Make node identities, root and signer key pairs; certify and revoke signers.",
    )
    sub = parser.add_subparsers(dest="keys_command", metavar="ACTION")

    def named(name: str, help_text: str) -> argparse.ArgumentParser:
        action = sub.add_parser(name, help=help_text, description=help_text)
        action.add_argument("name", metavar="NAME", help="the key's name: NAME.key, NAME.pub...")
        action.add_argument(
            "-d",
            "--dir",
            type=output_dir,
            default=Path("."),
            help="write the files here (default .; a new directory is made)",
        )
        return action

    named("node-new", "a machine's age X25519 identity: NAME.age and NAME.age.pub").set_defaults(
        func=_node_new
    )
    for role in ("signer", "root"):
        pair = named(f"{role}-new", f"a {role}'s minisign key pair: NAME.key and NAME.pub")
        pair.add_argument(
            "--password",
            action="store_true",
            help="encrypt the secret key as minisign does (OVL_KEY_PASSWORD or a prompt)",
        )
        pair.set_defaults(func=_pair_new(role))

    cert = sub.add_parser(
        "certify",
        help="a root certifies a signer's public key",
        description="Sign SIGNER.pub with a root key; the trusted comment holds name and expiry.",
    )
    cert.add_argument(
        "signer_pub", type=input_file, metavar="SIGNER.pub", help="the signer's public key"
    )
    cert.add_argument(
        "--root", type=input_file, required=True, metavar="ROOT.key", help="the root's secret key"
    )
    cert.add_argument("--name", required=True, help="the signer's name, shown on every boot")
    cert.add_argument("--expires", required=True, metavar="DATE", help="YYYY-MM-DD or ISO time")
    cert.add_argument(
        "-o",
        "--out",
        type=output_file,
        required=True,
        metavar="SIGNER.cert",
        help="the certificate to write",
    )
    cert.set_defaults(func=_certify)

    rev = sub.add_parser(
        "revoke",
        help="add keys to the root-signed revocation list",
        description="Add key ids (or .pub files) to KEYS_DIR/revoked and sign it with a root.",
    )
    rev.add_argument(
        "targets", nargs="+", metavar="KEYID|SIGNER.pub", help="key ids or .pub files to revoke"
    )
    rev.add_argument(
        "--root",
        type=input_file,
        required=True,
        metavar="ROOT.key",
        help="a trusted root's secret key",
    )
    rev.add_argument("--keys-dir", type=input_dir, default=Path("keys"), help="default keys/")
    rev.add_argument("--reason", default="", help="a comment kept in the list")
    rev.set_defaults(func=_revoke)

    lst = sub.add_parser("list", help="list key files and revocations", description="List keys.")
    lst.add_argument(
        "dirs",
        nargs="*",
        type=input_dir,
        default=[Path("keys")],
        metavar="DIR",
        help="directories of key files (default keys)",
    )
    lst.add_argument("--json", action="store_true", help="print the listing as JSON")
    lst.set_defaults(func=_list)
