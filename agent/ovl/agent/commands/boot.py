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
    parser.add_argument(
        "--external-network",
        action="store_true",
        help="the initramfs (initramfs-tools, dracut) brings the network up, not the agent:"
        " ip=, BOOTIF= and nameserver= are left to it; downloads wait for any interface up",
    )
    parser.add_argument("--run-dir", type=Path, default=Path("/run/ovl"))
    parser.add_argument("--sysroot", type=Path, default=Path("/sysroot"))
    parser.add_argument("--keys-dir", type=Path, default=Path("/etc/ovl/keys"))
    parser.add_argument("--kmsg", type=Path, default=Path("/dev/kmsg"))
    parser.set_defaults(func=run_boot)


def run_boot(args: argparse.Namespace) -> int:
    import dataclasses
    import logging

    from ovl.agent.cmdline import emergency_setting, parse_cmdline, read_cmdline
    from ovl.agent.console import Console, Level

    console = Console(kmsg=args.kmsg)
    text = ""
    try:
        text = read_cmdline(args.cmdline, args.defaults)
        config = parse_cmdline(text, own_network=not args.external_network)
    except (OvlError, OSError) as exc:
        from ovl.agent.boot import Handover, write_handover

        line = error_line(exc)
        console.line("cmdline", line, Level.ERROR)
        on_emergency = emergency_setting(text)
        write_handover(
            args.run_dir / "handover", Handover(emergency=line, on_emergency=on_emergency)
        )
        return 1
    if args.no_break:
        config = dataclasses.replace(config, break_at=None)
    if config.debug:
        logging.basicConfig(level=logging.DEBUG, format="ovl: debug: %(message)s")
    # DHCP first, before the rest of the boot is even imported: the lease is on its way while
    # the agent loads.
    from ovl.agent.net.bringup import NetPaths, start_network

    network = start_network(config.network, NetPaths(run_dir=args.run_dir), console, config.timeout)
    from ovl.agent.boot import BootPaths, Handover, boot, write_handover

    paths = BootPaths(
        run_dir=args.run_dir, sysroot=args.sysroot, keys_dir=args.keys_dir, kmsg=args.kmsg
    )
    handover_path = paths.run_dir / "handover"
    # Until boot() writes its own: an agent that dies on the way still leaves the shim a
    # reason and ovl.emergency's action (an unattended machine must not wait in a shell).
    died = "the agent stopped before it wrote its hand-over (see the console)"
    write_handover(handover_path, Handover(emergency=died, on_emergency=config.emergency))
    handover = boot(config, paths, console, network)
    return 1 if handover.emergency else 0
