"""`ovl initramfs build`: assemble the boot image that runs the ovl agent."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ovl.core.cli import input_dir, input_file, output_file
from ovl.core.errors import BadInput
from ovl.tools.initramfs.build import BuildRequest, BuildResult, build_initramfs, source_date_epoch
from ovl.tools.initramfs.conf import default_config, load_config
from ovl.tools.initramfs.freeze import EXECUTABLE, frozen_agent


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("initramfs", help="build the initramfs that boots ovl")
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    build = actions.add_parser(
        "build",
        help="assemble /init, busybox, the frozen agent, libraries and kernel modules",
        description="Build a reproducible initramfs (SOURCE_DATE_EPOCH sets every mtime).",
    )
    build.add_argument(
        "-c",
        "--config",
        type=input_file,
        help="mkinitramfs.conf (default: every key at its default)",
    )
    build.add_argument(
        "--kernel-version", required=True, help="kernel release, e.g. 6.1.0-56-cloud-amd64"
    )
    build.add_argument(
        "--modules-dir",
        type=input_dir,
        help="module tree of that kernel (default /lib/modules/VERSION)",
    )
    build.add_argument("-o", "--output", type=output_file, required=True, help="image to write")
    build.add_argument("--report", action="store_true", help="print the size of each part")
    build.add_argument("--json", action="store_true", help="print the result as JSON")
    build.set_defaults(func=run_build)
    freeze = actions.add_parser(
        "freeze",
        help="write the frozen agent to a directory (for the initramfs-tools and dracut hooks)",
    )
    freeze.add_argument("-o", "--output", type=Path, required=True, help="e.g. /usr/lib/ovl/agent")
    freeze.set_defaults(func=run_freeze)


def run_build(args: argparse.Namespace) -> int:
    config = load_config(args.config) if args.config else default_config(Path.cwd())
    request = BuildRequest(
        config=config,
        kernel_version=args.kernel_version,
        modules_dir=args.modules_dir or Path("/lib/modules") / args.kernel_version,
        output=args.output,
        mtime=source_date_epoch(),
        measure_parts=args.report or args.json,
    )
    result = build_initramfs(request)
    for warning in result.warnings:
        print(f"ovl: warning: {warning}", file=sys.stderr)
    if args.json:
        print(json.dumps(_as_json(result), indent=2))
        return 0
    print(
        f"{result.output}: {_mb(result.compressed)} {config.compress.value}, "
        f"{_mb(result.uncompressed)} cpio, sha256 {result.sha256}"
    )
    if args.report:
        print(f"{'part':<10}{'files':>7}{'cpio':>12}{config.compress.value:>12}")
        for part in result.parts:
            packed = _mb(part.compressed) if part.compressed is not None else "-"
            print(f"{part.name:<10}{part.files:>7}{_mb(part.uncompressed):>12}{packed:>12}")
        print(f"{'total':<10}{'':>7}{_mb(result.uncompressed):>12}{_mb(result.compressed):>12}")
    return 0


def run_freeze(args: argparse.Namespace) -> int:
    output: Path = args.output
    if output.exists() and not (output / EXECUTABLE).is_file():
        raise BadInput(f"{output}: exists and is not a frozen agent; not replacing it")
    frozen = frozen_agent()
    staging = output.with_name(f".{output.name}.new")
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(frozen, staging, symlinks=True)
    shutil.rmtree(output, ignore_errors=True)
    staging.rename(output)
    print(f"{output}: agent {frozen.name.removeprefix('agent-')}")
    return 0


def _as_json(result: BuildResult) -> dict[str, Any]:
    data = asdict(result)
    data["output"] = str(result.output)
    return data


def _mb(size: int) -> str:
    return f"{size / 1e6:.2f} MB"
