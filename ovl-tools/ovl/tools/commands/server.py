"""`ovl server`: serve bundles and receive deltas; bake, history, rollback, cherry-pick."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from ovl.core.cli import input_file
from ovl.core.errors import BadInput, OvlError
from ovl.core.facts import normalize_mac
from ovl.tools.server import bake, history
from ovl.tools.server.bake import Signer
from ovl.tools.server.store import Machine, Store, Version, check_name
from ovl.trust.minisign import parse_public_key


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("server", help="serve bundles, receive and bake node deltas")
    parser.add_argument("--root", type=Path, required=True, help="server directory (SERVER.md)")
    parser.add_argument("--sign-key", type=Path, help="signer secret key for published versions")
    parser.add_argument("--cert", type=Path, help="the signer's certificate (ovl keys certify)")
    sub = parser.add_subparsers(dest="server_command", metavar="ACTION")

    serve = sub.add_parser("serve", help="serve published bundles and accept deltas over HTTP")
    serve.add_argument("--listen", default="127.0.0.1:8470", help="HOST:PORT (default %(default)s)")
    serve.add_argument("--threads", type=int, default=16, help="worker threads")
    serve.add_argument("--max-delta", type=int, default=1 << 30, help="largest delta in bytes")
    serve.set_defaults(func=_serve)

    imp = sub.add_parser("import", help="publish an admin-made bundle as a profile's next version")
    imp.add_argument("profile")
    imp.add_argument("bundle", type=input_file)
    imp.add_argument(
        "--signature", type=input_file, help="its .minisig (default: beside the bundle)"
    )
    _json_option(imp)
    imp.set_defaults(func=_import)

    machine = sub.add_parser("add-machine", help="register a machine and its node public key")
    machine.add_argument("machine_id")
    machine.add_argument("--profile", required=True)
    machine.add_argument("--mac", required=True)
    machine.add_argument(
        "--key", type=input_file, required=True, help="node minisign public key file"
    )
    machine.set_defaults(func=_add_machine)

    nginx = sub.add_parser("nginx-conf", help="print the nginx server block for this root")
    nginx.add_argument("--listen", default="80", help="nginx listen value (default %(default)s)")
    nginx.add_argument("--upstream", default="127.0.0.1:8470", help="where `serve` listens")
    nginx.set_defaults(func=_nginx_conf)

    bake_parser = sub.add_parser("bake", help="bake pending deltas into new versions")
    bake_parser.add_argument("--profile", help="only this profile (default: all)")
    bake_parser.add_argument("--layer-order", type=int, default=bake.DEFAULT_LAYER_ORDER)
    _json_option(bake_parser)
    bake_parser.set_defaults(func=_bake)

    watch = sub.add_parser("watch", help="bake whenever new deltas land")
    watch.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    watch.set_defaults(func=_watch)

    hist = sub.add_parser("history", help="list published versions")
    hist.add_argument("--profile", help="only this profile")
    hist.add_argument("--json", action="store_true", help="machine-readable output")
    hist.set_defaults(func=_history)

    back = sub.add_parser("rollback", help="republish an old version as the newest")
    back.add_argument("version", type=int)
    back.add_argument("--profile", required=True)
    _json_option(back)
    back.set_defaults(func=_rollback)

    pick = sub.add_parser("cherry-pick", help="merge one delta into a profile's base layer")
    pick.add_argument("delta", help="<machine>/<sha256> or a unique sha256 prefix")
    pick.add_argument("--to", dest="profile", required=True, metavar="PROFILE")
    _json_option(pick)
    pick.set_defaults(func=_cherry_pick)


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"published": [version...], "unchanged": [profile...]} as JSON',
    )


def _report(args: argparse.Namespace, published: list[Version], unchanged: list[str]) -> None:
    """What a publishing action did: one line a profile, or one JSON document."""
    if args.json:
        versions = [{"profile": v.profile, **v.meta} for v in published]
        print(json.dumps({"published": versions, "unchanged": unchanged}, indent=2))
        return
    for version in published:
        _announce(version)
    for profile in unchanged:
        print(f"{profile}: nothing to bake")


def _signer(args: argparse.Namespace) -> Signer | None:
    if args.sign_key is None and args.cert is None:
        return None
    if args.sign_key is None or args.cert is None:
        raise BadInput("--sign-key and --cert go together")
    from ovl.tools.server.signing import certified_signer

    return certified_signer(args.sign_key, args.cert)


def _announce(version: Version) -> None:
    serial = version.meta["serial"]
    # flush: `watch` runs for days with its output going to a journal or a pipe.
    print(f"{version.profile}: published version {version.number} (serial {serial})", flush=True)


def _serve(args: argparse.Namespace) -> int:
    import waitress

    from ovl.tools.server.app import ServerApp

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise BadInput(f"--listen {args.listen!r}: expected HOST:PORT")
    store = Store(args.root)
    store.tmp.mkdir(parents=True, exist_ok=True)
    store.sweep_tmp()
    print(f"ovl server: serving {args.root} on http://{host}:{port}/", file=sys.stderr, flush=True)
    waitress.serve(
        ServerApp(store, max_delta=args.max_delta),
        host=host,
        port=int(port),
        threads=args.threads,
        ident="ovl",
        _quiet=True,
    )
    return 0


def _import(args: argparse.Namespace) -> int:
    check_name("profile", args.profile)
    signature = args.signature
    beside = args.bundle.with_name(args.bundle.name + ".minisig")
    if signature is None and beside.is_file():
        signature = beside
    imported = history.import_bundle(Store(args.root), args.profile, args.bundle, signature)
    _report(args, [imported], [])
    return 0


def _add_machine(args: argparse.Namespace) -> int:
    text = args.key.read_text()
    parse_public_key(text, str(args.key))
    check_name("machine", args.machine_id)
    machine = Machine(
        args.machine_id, check_name("profile", args.profile), normalize_mac(args.mac), text
    )
    Store(args.root).add_machine(machine)
    return 0


def render_nginx_conf(root: Path, listen: str, upstream: str) -> str:
    """The shipped nginx server block with this server's root, listen and upstream filled in."""
    from importlib.resources import files

    for value in (str(root), listen, upstream):
        if any(c in value for c in ";{}\n\"' "):
            raise BadInput(f"{value!r}: not usable in an nginx config")
    template = files("ovl.tools.server").joinpath("nginx.conf").read_text()
    return (
        template.replace("@ROOT@", str(root.resolve()))
        .replace("@LISTEN@", listen)
        .replace("@UPSTREAM@", upstream)
    )


def _nginx_conf(args: argparse.Namespace) -> int:
    print(render_nginx_conf(args.root, args.listen, args.upstream), end="")
    return 0


def _bake(args: argparse.Namespace) -> int:
    store = Store(args.root)
    sign = _signer(args)
    profiles = [check_name("profile", args.profile)] if args.profile else store.profiles()
    published: list[Version] = []
    unchanged: list[str] = []
    for profile in profiles:
        version = bake.bake(store, profile, sign, args.layer_order)
        done, same = ([version], []) if version is not None else ([], [profile])
        if not args.json:  # each profile as it is baked: a bake can take a while
            _report(args, done, same)
        published += done
        unchanged += same
    if args.json:
        _report(args, published, unchanged)
    return 0


def _watch(args: argparse.Namespace) -> int:
    def complain(exc: OvlError) -> None:
        print(f"ovl: error: {exc.line}", file=sys.stderr, flush=True)

    bake.watch(Store(args.root), _signer(args), args.interval, _announce, complain)
    return 0


def _history(args: argparse.Namespace) -> int:
    store = Store(args.root)
    profiles = [check_name("profile", args.profile)] if args.profile else store.profiles()
    if args.json:
        data = {
            profile: {
                "current": getattr(store.current(profile), "number", None),
                "versions": [v.meta for v in store.versions(profile)],
            }
            for profile in profiles
        }
        print(json.dumps(data, indent=2))
        return 0
    for profile in profiles:
        print(f"{profile}:")
        current = store.current(profile)
        for version in store.versions(profile):
            print(history.describe(version, current))
    return 0


def _rollback(args: argparse.Namespace) -> int:
    version = history.rollback(Store(args.root), args.profile, args.version, _signer(args))
    _report(args, [version], [])
    return 0


def _cherry_pick(args: argparse.Namespace) -> int:
    version = history.cherry_pick(Store(args.root), args.delta, args.profile, _signer(args))
    _report(args, [version], [])
    return 0
