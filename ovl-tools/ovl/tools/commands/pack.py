"""`ovl pack DIR -o FILE`: write a directory tree as a bundle."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from ovl.core.errors import BadInput
from ovl.format.codec import Compression
from ovl.tools.pack import PackOptions, pack_directory
from ovl.tools.progress import Progress


def _clamp_from_environment() -> int | None:
    value = os.environ.get("SOURCE_DATE_EPOCH")
    if value is None:
        return None
    if not value.isdigit():
        raise BadInput(f"SOURCE_DATE_EPOCH={value!r}: expected whole seconds since 1970")
    return int(value)


def run(args: argparse.Namespace) -> int:
    options = PackOptions(
        compression=Compression(args.compress),
        level=args.level,
        armor=args.armor,
        clamp_mtime=_clamp_from_environment(),
    )
    progress = Progress(f"pack {args.output.name}")
    result = pack_directory(args.directory, args.output, options, progress)
    progress.close()
    summary: dict[str, Any] = {
        "output": str(args.output),
        "entries": result.entries,
        "content_bytes": result.content_bytes,
        "output_bytes": result.output_bytes,
        "compression": options.compression.value,
        "armor": options.armor,
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.output}: {result.entries} entries, {result.content_bytes} bytes of content, "
            f"{result.output_bytes} bytes written ({options.compression.value}"
            f"{', armoured' if options.armor else ''})"
        )
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "pack",
        help="write a directory tree as a bundle",
        description=(
            "Write DIR as a bundle: a POSIX pax tar in a fixed order with modes, numeric owners, "
            "mtimes, xattrs, symlinks and hardlinks. Files outside layers/ go to every machine; "
            "layers/NN-FAVOR[-FAVOR...]/ only to machines whose facts match. mtimes are clamped "
            "to SOURCE_DATE_EPOCH when it is set. The output appears only once complete."
        ),
    )
    parser.add_argument("directory", type=Path, metavar="DIR", help="tree to pack")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="FILE")
    parser.add_argument(
        "--compress",
        choices=[c.value for c in Compression],
        default=Compression.ZSTD.value,
        help="compression (default: zstd, multithreaded)",
    )
    parser.add_argument(
        "--level", type=int, help="compression level (zstd 1-22, default 3; others 0-9, default 6)"
    )
    parser.add_argument(
        "--armor",
        "--armour",
        action="store_true",
        help="base64 text between BEGIN/END OVL BUNDLE lines, pasteable into a gist",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)
