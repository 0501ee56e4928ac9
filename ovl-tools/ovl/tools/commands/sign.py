"""`ovl sign`: sign a root image (or any file) the way `ovl seal` signs bundles."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ovl.core.cli import input_file, output_file
from ovl.core.errors import BadInput
from ovl.core.fs import write_atomic
from ovl.tools.keys import required_signer, signer_option_specs
from ovl.tools.seal import load_certified
from ovl.trust.open import image_comment


def run(args: argparse.Namespace) -> int:
    image: Path = args.file
    if not image.is_file():
        raise BadInput(f"{image}: not a file")
    name = args.name if args.name is not None else image.name
    serial: int = args.serial if args.serial is not None else int(time.time())
    comment = image_comment(name, serial)
    signer = load_certified(*required_signer(args))
    out: Path = args.out or image.with_name(image.name + ".minisig")
    write_atomic(out, signer.sign(image, comment, f"ovl image {name}, signer certificate follows"))
    if args.json:
        report = {"signer": signer.name, "name": name, "serial": serial, "signature": str(out)}
        print(json.dumps(report, indent=2))
    else:
        print(f"{image}: image {name} serial {serial} signed by {signer.name}; signature {out}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "sign",
        help="sign a root image for ovl.root=http(s)://...",
        description=(
            "Write FILE.minisig: a prehashed minisign signature over FILE whose trusted comment "
            "is 'ovl-image name=NAME serial=SERIAL', followed by the signer's certificate. "
            "Machines check it before they mount an image downloaded over http(s), and refuse "
            "a lower serial than the highest they accepted for NAME. See docs/TRUST.md."
        ),
    )
    parser.add_argument("file", type=input_file, metavar="FILE", help="the image to sign")
    for flags, options in signer_option_specs():
        parser.add_argument(*flags, **options)  # type: ignore[arg-type]
    parser.add_argument("--name", help="image name (default: FILE's base name)")
    parser.add_argument(
        "--serial",
        type=int,
        help="replay serial; sign each new image with a higher one (default: the current time"
        " in whole seconds since the epoch, which only grows as long as the signing clock does)",
    )
    parser.add_argument("-o", "--out", type=output_file, metavar="SIG", help="default FILE.minisig")
    parser.add_argument(
        "--json", action="store_true", help="print signer, name, serial, signature path"
    )
    parser.set_defaults(func=run)
