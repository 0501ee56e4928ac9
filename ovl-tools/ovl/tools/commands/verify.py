"""`ovl verify`: check a sealed bundle's or signed image's signature as a machine would."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from ovl.core.cli import input_file
from ovl.core.errors import BadInput, OvlError
from ovl.tools.keys import add_keys_option, load_trust
from ovl.trust.age import describe_recipients, header_stanzas, is_age
from ovl.trust.legacy import is_legacy
from ovl.trust.minisign import parse_signature, read_text_file
from ovl.trust.open import BUNDLE_KIND, IMAGE_KIND, IndexDigest, check_signature, kind_name
from ovl.trust.policy import parse_policy


def run(args: argparse.Namespace) -> int:
    path: Path = args.file
    signature = args.signature or path.with_name(path.name + ".minisig")
    if not signature.exists():
        raise BadInput(f"{signature}: no signature beside {path}")
    # The comment only picks what to check it as: check_signature verifies it.
    comment = parse_signature(read_text_file(signature, str(path)), str(signature))
    kind = IMAGE_KIND if comment.trusted_comment.startswith(f"{IMAGE_KIND} ") else BUNDLE_KIND
    what = kind_name(kind)
    signed = check_signature(
        path, signature, parse_policy("signed"), load_trust(args.keys), f"{what} {path}", kind
    )
    report: dict[str, Any] = {
        "kind": what,
        what: str(path),
        "signature": str(signature),
        "signer": signed.signer,
        "name": signed.name,
        "serial": signed.serial,
    }
    line = f"{path}: good signature by {signed.signer}, {what} {signed.name} serial {signed.serial}"
    if kind == BUNDLE_KIND:
        report["encryption"] = _encryption(path)
        line += f", encryption: {report['encryption']}"
        report["frame_index"] = _frame_index(path, signed.index)
        index = report["frame_index"]
        line += (
            f", frame index signed ({index['frames']} frames: machines fetch only theirs)"
            if index
            else ", no signed frame index (machines download it whole)"
        )
    print(json.dumps(report, indent=2) if args.json else line)
    return 0


def _frame_index(bundle: Path, index: IndexDigest | None) -> dict[str, Any] | None:
    """The signed frame index, checked against the file's own; None when none is signed."""
    if index is None:
        return None
    from ovl.format.frameindex import index_bytes, parse_index

    with bundle.open("rb") as raw:
        data = index_bytes(raw)
    if data is None or IndexDigest(len(data), hashlib.sha256(data).hexdigest()) != index:
        raise OvlError(
            f"bundle {bundle}: its signature names another frame index than the file's;"
            " machines fetching only their frames would refuse it"
        )
    frames = parse_index(data)
    return {"bytes": index.size, "sha256": index.sha256, "frames": len(frames or [])}


def _encryption(bundle: Path) -> str:
    with bundle.open("rb") as stream:
        head = stream.read(64)
    if is_age(head):
        return f"age, to {describe_recipients(header_stanzas(bundle))}"
    if is_legacy(head):
        return "legacy openssl (unauthenticated)"
    return "none"


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify a sealed bundle's or signed root image's signature and signer certificate",
        description=(
            "Verify FILE.minisig (an `ovl seal` bundle signature or an `ovl sign` image"
            " signature) against the trusted roots (and revocations) in --keys."
        ),
    )
    parser.add_argument(
        "file", type=input_file, metavar="FILE", help="a sealed bundle or a signed image"
    )
    parser.add_argument("--signature", type=input_file, help="default FILE.minisig")
    add_keys_option(parser)
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.set_defaults(func=run)
