"""`ovl netboot publish|add-machine|script|dnsmasq-conf`: iPXE boots from the ovl server
(docs/NETBOOT.md). `ovl server serve` answers `GET /boot.ipxe`."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from ovl.core.errors import BadInput
from ovl.tools.keys import env_path
from ovl.tools.netboot import dnsmasq
from ovl.tools.netboot.answer import answer
from ovl.tools.netboot.choose import parse_request
from ovl.tools.netboot.publish import add_machine, publish
from ovl.tools.server.store import Store


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "netboot", help="boot machines over the network with iPXE from the ovl server"
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    pub = actions.add_parser("publish", help="put a profile's kernel, initramfs and images")
    _root(pub)
    pub.add_argument("profile", help="the profile whose machines boot these files")
    pub.add_argument("--kernel", type=Path, required=True, help="the kernel (bzImage)")
    pub.add_argument("--initrd", type=Path, required=True, help="the ovl initramfs")
    pub.add_argument(
        "--image", type=Path, action="append", default=[], help="root image (.minisig along)"
    )
    pub.add_argument("--cmdline", default="", help="the profile's kernel command line")
    pub.add_argument("--json", action="store_true", help="print boot.json as written")
    pub.set_defaults(func=run_publish)

    machine = actions.add_parser("add-machine", help="make a machine (MAC or UUID) a profile's")
    _root(machine)
    machine.add_argument("profile", help="the profile the machine boots")
    machine.add_argument("--mac", help="the machine's MAC")
    machine.add_argument("--uuid", help="the machine's SMBIOS/DMI product UUID")
    machine.add_argument("--order", type=int, default=10, help="entry order (default 10)")
    machine.add_argument("--cmdline", default="", help="appended to the profile's command line")
    machine.set_defaults(func=run_add_machine)

    script = actions.add_parser(
        "script", help="print the iPXE script a machine gets (as GET /boot.ipxe answers)"
    )
    _root(script)
    script.add_argument("--mac", help="the machine's MAC")
    script.add_argument("--uuid", help="the machine's SMBIOS UUID")
    script.add_argument("--profile", help="as the fallback menu asks: this profile")
    script.add_argument(
        "--server-url", default="http://ovl-server", help="the server URL machines use"
    )
    script.set_defaults(func=run_script)

    conf = actions.add_parser(
        "dnsmasq-conf", help="print a dnsmasq proxy-DHCP + TFTP config chaining iPXE to the server"
    )
    conf.add_argument("--server", required=True, help="the ovl server as machines reach it")
    conf.add_argument("--network", required=True, help="the network's address, e.g. 192.168.1.0")
    conf.add_argument("--interface", help="listen only on this interface")
    conf.add_argument(
        "--tftp-root", type=Path, default=Path("/srv/ovl/tftp"), help="holds the iPXE loaders"
    )
    conf.set_defaults(func=run_dnsmasq_conf)


def _root(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--root",
        type=Path,
        default=env_path("OVL_SERVER_ROOT"),
        help="server directory (SERVER.md; default $OVL_SERVER_ROOT)",
    )


def _server_root(args: argparse.Namespace) -> Path:
    """The existing server root: a mistyped --root must not answer for an empty new one."""
    return Store.existing(Store.given(args.root)).root


def run_publish(args: argparse.Namespace) -> int:
    boot = publish(
        Store.given(args.root), args.profile, args.kernel, args.initrd, args.image, args.cmdline
    )
    current = args.root / "profiles" / args.profile / "current"
    if not current.exists():
        print(
            f"ovl: warning: profile {args.profile} has no published bundle yet "
            "(ovl server import): its machines will boot the bare image",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(boot, indent=2))
    else:
        print(f"{args.profile}: netboot {boot['kernel']} {boot['initrd']} {boot['images']}")
    return 0


def run_add_machine(args: argparse.Namespace) -> int:
    path = add_machine(
        Store.given(args.root), args.profile, mac=args.mac, uuid=args.uuid, order=args.order,
        cmdline=args.cmdline,
    )  # fmt: skip
    print(f"{args.profile}: {path.name}")
    return 0


def run_script(args: argparse.Namespace) -> int:
    pairs = {"mac": args.mac, "uuid": args.uuid, "profile": args.profile}
    query = urlencode({key: value for key, value in pairs.items() if value})
    parse_request(query)  # here a malformed MAC is bad input, not a reason for the menu
    if not args.server_url.startswith("http://"):
        raise BadInput(f"--server-url {args.server_url!r}: expected http://host[:port]")
    result = answer(_server_root(args), query, args.server_url.rstrip("/"))
    if result.note:
        print(f"ovl: warning: {result.note}", file=sys.stderr)
    print(result.script, end="")
    return 0


def run_dnsmasq_conf(args: argparse.Namespace) -> int:
    settings = dnsmasq.ProxySettings(args.server, args.network, args.interface, args.tftp_root)
    text = dnsmasq.render(settings)
    for name in dnsmasq.missing_loaders(args.tftp_root):
        print(
            f"ovl: warning: {args.tftp_root / name} missing: copy it from "
            f"{dnsmasq.IPXE_FILES / name} (Debian: apt install ipxe)",
            file=sys.stderr,
        )
    print(text, end="")
    return 0
