"""`ovl-agent boot`: run by the initramfs /init shim; assembles /sysroot and writes the
hand-over file. Exit 0 when the hand-over says ROOT or BREAK, 1 when it says EMERGENCY."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from ovl.core.errors import OvlError, error_line

if TYPE_CHECKING:
    from typing import Any


def register(sub: Any) -> None:
    parser = sub.add_parser("boot", help="assemble the root from image(s) and bundle (initramfs)")
    parser.add_argument(
        "--cmdline",
        type=Path,
        default=Path("/proc/cmdline"),
        help="kernel command line to read (default /proc/cmdline)",
    )
    parser.add_argument(
        "--defaults",
        type=Path,
        default=Path("/etc/ovl/cmdline"),
        help="ovl settings used when the command line has none",
    )
    parser.add_argument(
        "--no-break",
        action="store_true",
        help="ignore ovl.break= (the shim reruns the agent so after the shell)",
    )
    parser.add_argument("--run-dir", type=Path, default=Path("/run/ovl"))
    parser.add_argument("--sysroot", type=Path, default=Path("/sysroot"))
    parser.add_argument("--keys-dir", type=Path, default=Path("/etc/ovl/keys"))
    parser.add_argument("--kmsg", type=Path, default=Path("/dev/kmsg"))
    parser.set_defaults(func=run_boot)


def run_boot(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from ovl.agent.boot import BootPaths, Handover, boot, write_handover
    from ovl.agent.cmdline import parse_cmdline, read_cmdline
    from ovl.agent.console import Console

    paths = BootPaths(
        run_dir=args.run_dir, sysroot=args.sysroot, keys_dir=args.keys_dir, kmsg=args.kmsg
    )
    console = Console(kmsg=paths.kmsg)
    try:
        config = parse_cmdline(read_cmdline(args.cmdline, args.defaults))
    except (OvlError, OSError) as exc:
        line = error_line(exc)
        console.line("cmdline", line)
        write_handover(paths.run_dir / "handover", Handover(emergency=line))
        return 1
    if args.no_break:
        config = dataclasses.replace(config, break_at=None)
    if config.debug:
        logging.basicConfig(level=logging.DEBUG, format="ovl: debug: %(message)s")
    handover = boot(config, paths, console)
    return 1 if handover.emergency else 0
