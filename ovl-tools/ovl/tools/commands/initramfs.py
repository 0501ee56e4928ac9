"""`ovl initramfs build`: assemble the boot image that runs the ovl agent."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from ovl.core.cli import input_dir, input_file, output_file
from ovl.core.errors import BadInput
from ovl.tools.initramfs import uki
from ovl.tools.initramfs.build import BuildRequest, BuildResult, build_initramfs, source_date_epoch
from ovl.tools.initramfs.conf import UkiConfig, default_config, load_config
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
    _uki_options(build)
    build.set_defaults(func=run_build)
    freeze = actions.add_parser(
        "freeze",
        help="write the frozen agent to a directory (for the initramfs-tools and dracut hooks)",
    )
    freeze.add_argument("-o", "--output", type=Path, required=True, help="e.g. /usr/lib/ovl/agent")
    freeze.set_defaults(func=run_freeze)


def _uki_options(build: argparse.ArgumentParser) -> None:
    group = build.add_argument_group(
        "Unified Kernel Image", "each flag overrides its UKI_* key of the config (docs/UKI.md)"
    )
    group.add_argument(
        "--uki", action="store_true", help="write a UKI (-o ovl.efi) instead of an initramfs"
    )
    group.add_argument("--kernel", type=Path, help="bzImage (default /boot/vmlinuz-VERSION)")
    group.add_argument("--cmdline", help="the UKI's built-in kernel command line")
    group.add_argument("--stub", type=Path, help=f"systemd EFI stub (default {uki.DEFAULT_STUB})")
    group.add_argument("--splash", type=Path, help="BMP image shown while booting")
    group.add_argument("--os-release", type=Path, help="os-release file for .osrel")
    group.add_argument("--sign-key", type=Path, help="PEM key: sign for Secure Boot (sbsign)")
    group.add_argument("--sign-cert", type=Path, help="the key's PEM certificate")


def uki_spec(settings: UkiConfig, args: argparse.Namespace, initrd: Path) -> uki.UkiSpec:
    """The UKI the config's UKI_* keys describe, each overridden by its flag when given."""
    kernel = args.kernel or settings.kernel or Path("/boot") / f"vmlinuz-{args.kernel_version}"
    key = args.sign_key or settings.sign_key
    cert = args.sign_cert or settings.sign_cert
    if (key is None) != (cert is None):
        raise BadInput("signing needs both a key and a certificate (--sign-key, --sign-cert)")
    os_release_file = args.os_release or settings.os_release
    try:
        os_release = (
            os_release_file.read_text()
            if os_release_file
            else uki.default_os_release(args.kernel_version)
        )
    except OSError as exc:
        raise BadInput(f"os-release {os_release_file}: {exc.strerror}") from exc
    return uki.UkiSpec(
        stub=args.stub or settings.stub,
        kernel=kernel,
        initrd=initrd,
        cmdline=args.cmdline if args.cmdline is not None else settings.cmdline,
        os_release=os_release,
        splash=args.splash or settings.splash,
        sign=uki.SecureBootKey(key, cert) if key and cert else None,
    )


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
    if args.uki or config.uki.enabled:
        return _build_uki(args, request)
    result = build_initramfs(request)
    _warn(result)
    if args.json:
        print(json.dumps(_as_json(result), indent=2))
        return 0
    print(
        f"{result.output}: {_mb(result.compressed)} {config.compress.value}, "
        f"{_mb(result.uncompressed)} cpio, sha256 {result.sha256}"
    )
    _print_report(args, result, config.compress.value)
    return 0


def _build_uki(args: argparse.Namespace, request: BuildRequest) -> int:
    """The initramfs goes into a scratch file beside the output, then into the UKI."""
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ovl-uki-", dir=args.output.parent) as scratch:
        initrd = Path(scratch) / "initrd.img"
        spec = uki_spec(request.config.uki, args, initrd)
        uki.check_spec(spec)  # before the initramfs is built: bad input fails fast
        result = build_initramfs(replace(request, output=initrd))
        made = uki.build_uki(spec, args.output)
    _warn(result)
    if args.json:
        data = _as_json(result)
        data["output"] = str(made.output)
        data["initramfs_sha256"] = data.pop("sha256")
        data["uki"] = _uki_json(made, spec)
        print(json.dumps(data, indent=2))
        return 0
    signed = f", signed, unsigned sha256 {made.unsigned_sha256}" if made.signed else ""
    print(
        f"{made.output}: UKI {_mb(made.size)} (kernel {spec.kernel}, initramfs "
        f"{_mb(result.compressed)} {request.config.compress.value}), sha256 {made.sha256}{signed}"
    )
    _print_report(args, result, request.config.compress.value)
    return 0


def _uki_json(made: uki.UkiResult, spec: uki.UkiSpec) -> dict[str, Any]:
    return {
        "sha256": made.sha256,
        "unsigned_sha256": made.unsigned_sha256,
        "size": made.size,
        "signed": made.signed,
        "stub": str(spec.stub),
        "kernel": str(spec.kernel),
        "cmdline": uki.check_cmdline(spec.cmdline),
        "sections": [asdict(section) for section in made.sections],
    }


def _warn(result: BuildResult) -> None:
    for warning in result.warnings:
        print(f"ovl: warning: {warning}", file=sys.stderr)


def _print_report(args: argparse.Namespace, result: BuildResult, compress: str) -> None:
    """--report: the size of each part of the initramfs."""
    if not args.report:
        return
    print(f"{'part':<10}{'files':>7}{'cpio':>12}{compress:>12}")
    for part in result.parts:
        packed = _mb(part.compressed) if part.compressed is not None else "-"
        print(f"{part.name:<10}{part.files:>7}{_mb(part.uncompressed):>12}{packed:>12}")
    print(f"{'total':<10}{'':>7}{_mb(result.uncompressed):>12}{_mb(result.compressed):>12}")


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
