"""`ovl-agent delta pack|ship|spool-status`: ship this machine's changes to the server.

pack  the overlay upper (default /run/ovl/upper) into the durable spool as tar.zst
ship  upload spooled deltas (PUT, signed by the node key), retrying with backoff
spool-status  what is waiting to be shipped

Settings come from flags, else the environment (OVL_DELTA_SERVER, OVL_MACHINE_ID,
OVL_NODE_KEY; the systemd units read them from /etc/ovl/delta.env).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ovl.core.errors import BadInput

if TYPE_CHECKING:
    from typing import Any

# ovl.delta's modules are imported by the handlers: `ovl-agent boot` builds this parser too.
DEFAULT_UPPER = Path("/run/ovl/upper")
DEFAULT_SPOOL = Path("/var/lib/ovl/spool")  # under /var/lib/ovl, which deltas never carry
DEFAULT_RULES = Path("/etc/ovl/delta.conf")


def register(sub: Any) -> None:
    parser = sub.add_parser("delta", help="pack and ship this machine's changes (the upper dir)")
    parser.add_argument(
        "--spool", type=_spool_dir, default=DEFAULT_SPOOL, help="default %(default)s"
    )
    actions = parser.add_subparsers(dest="delta_command", metavar="ACTION")

    pack = actions.add_parser("pack", help="pack the upper dir into the spool")
    pack.add_argument("--upper", type=Path, default=DEFAULT_UPPER, help="default %(default)s")
    pack.add_argument("--rules", type=Path, default=DEFAULT_RULES, help="default %(default)s")
    pack.add_argument("--json", action="store_true", help="print what was spooled as JSON")
    pack.set_defaults(func=_pack)

    ship = actions.add_parser("ship", help="upload spooled deltas to the server")
    ship.add_argument("--server", default=os.environ.get("OVL_DELTA_SERVER"), help="base URL")
    ship.add_argument("--machine-id", default=os.environ.get("OVL_MACHINE_ID"))
    ship.add_argument(
        "--key", type=Path, default=Path(os.environ.get("OVL_NODE_KEY", "/etc/ovl/node.key"))
    )
    ship.add_argument("--tries", type=int, default=8, help="attempts per delta (default 8)")
    ship.add_argument("--timeout", type=float, default=60.0, help="seconds per request")
    ship.add_argument("--json", action="store_true", help="print how many were shipped as JSON")
    ship.set_defaults(func=_ship)

    status = actions.add_parser("spool-status", help="list deltas waiting to be shipped")
    status.add_argument("--json", action="store_true", help="print the listing as JSON")
    status.set_defaults(func=_status)


def _spool_dir(text: str) -> Path:
    path = Path(text)
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{text}: not a directory")
    return path


def _pack(args: argparse.Namespace) -> int:
    from ovl.delta.pack import write_delta
    from ovl.delta.rules import load_rules
    from ovl.delta.spool import Spool
    from ovl.delta.upper import walk_upper

    if not args.upper.is_dir():
        raise BadInput(f"{args.upper}: no upper dir to pack (not booted by ovl with an overlay?)")
    rules = load_rules(args.rules)
    spool = Spool(args.spool)
    with spool.locked():
        added = spool.add(lambda out: write_delta(walk_upper(args.upper, rules.wanted), out))
    if args.json:
        import json

        spooled = None if added is None else {"sha256": added.sha256, "size": added.size}
        print(json.dumps({"spooled": spooled}))
    elif added is None:
        print("ovl-agent: delta unchanged since the last one; nothing spooled")
    else:
        from ovl.core.units import human_size

        print(f"ovl-agent: spooled delta {added.sha256} ({human_size(added.size)})")
    return 0


def _machine_id(value: str | None) -> str:
    if value:
        return value
    try:
        return Path("/etc/machine-id").read_text().strip()
    except OSError as exc:
        raise BadInput("no --machine-id, OVL_MACHINE_ID or /etc/machine-id") from exc


def _ship(args: argparse.Namespace) -> int:
    from ovl.delta.ship import Backoff, Shipper, node_signer
    from ovl.delta.spool import Spool

    if not args.server:
        raise BadInput("no --server or OVL_DELTA_SERVER to ship to")
    from urllib.parse import urlsplit

    url = urlsplit(args.server)
    if url.scheme not in ("http", "https") or not url.netloc:
        raise BadInput(f"--server {args.server!r}: expected http://HOST[:PORT] or https://...")
    shipper = Shipper(
        server=args.server,
        machine_id=_machine_id(args.machine_id),
        sign=node_signer(args.key),
        timeout=args.timeout,
        backoff=Backoff(tries=args.tries),
    )
    spool = Spool(args.spool)
    with spool.locked():
        shipped = shipper.ship_all(spool)
    if args.json:
        import json

        print(json.dumps({"shipped": shipped}))
    else:
        print(f"ovl-agent: shipped {shipped} delta(s)")
    return 0


def _status(args: argparse.Namespace) -> int:
    import json
    import time

    from ovl.core.units import human_size
    from ovl.delta.spool import Spool

    spool = Spool(args.spool)
    pending = spool.pending()
    if args.json:
        rows = [{"sha256": d.sha256, "created_ns": d.created_ns, "size": d.size} for d in pending]
        print(json.dumps({"pending": rows, "last_shipped": spool.last_shipped() or None}))
        return 0
    for delta in pending:
        created = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(delta.created_ns / 1e9))
        print(f"{delta.sha256}  {human_size(delta.size):>10}  created {created}")
    print(f"{len(pending)} delta(s) waiting; last shipped: {spool.last_shipped() or '-'}")
    return 0
