"""`ovl pack DIR -o FILE`: write a directory tree as a bundle."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ovl.core.cli import input_dir, output_file
from ovl.core.errors import BadInput
from ovl.core.units import human_size
from ovl.format.codec import Compression
from ovl.tools.commands.lint import findings_json
from ovl.tools.lint import Severity
from ovl.tools.pack import PackOptions, pack_directory, tree_bytes
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
    if progress.enabled:
        progress.total = tree_bytes(args.directory)
    result = pack_directory(args.directory, args.output, options, progress, force=args.force)
    progress.close()
    for finding in result.findings:
        forced = " (written anyway: --force)" if finding.severity is Severity.ERROR else ""
        where = f"{finding.code}: {finding.where}: {finding.message}"
        print(f"ovl: warning: {where}{forced}", file=sys.stderr)
    summary: dict[str, Any] = {
        "output": str(args.output),
        "entries": result.entries,
        "content_bytes": result.content_bytes,
        "output_bytes": result.output_bytes,
        "compression": options.compression.value,
        "armor": options.armor,
        "findings": findings_json(list(result.findings)),
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(
            f"{args.output}: {result.entries} entries, {human_size(result.content_bytes)} of "
            f"content, {human_size(result.output_bytes)} written ({options.compression.value}"
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
            "to SOURCE_DATE_EPOCH when it is set. The output appears only once complete, and "
            "only when `ovl lint`'s check passes (run on every entry as it is written)."
        ),
    )
    parser.add_argument("directory", type=input_dir, metavar="DIR", help="tree to pack")
    parser.add_argument(
        "-o",
        "--output",
        type=output_file,
        required=True,
        metavar="FILE",
        help="the bundle to write",
    )
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
    parser.add_argument(
        "--force",
        action="store_true",
        help="write the bundle even when machines would refuse it (the errors become warnings)",
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)
