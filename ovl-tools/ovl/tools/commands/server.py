"""`ovl server`: serve bundles and receive deltas; import, bake, history, rollback,
cherry-pick; register and list machines (docs/SERVER.md)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path
from typing import Any

from ovl.core.cli import input_file, spread_global_flag
from ovl.core.errors import BadInput, OvlError
from ovl.core.facts import normalize_mac
from ovl.tools.keys import env_path, signer_files, signer_option_specs
from ovl.tools.server import bake, history
from ovl.tools.server.bake import Signer
from ovl.tools.server.signing import SignedBy, certified_signer, signed_by
from ovl.tools.server.store import Machine, Store, Version, check_name


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "server",
        help="serve bundles, receive and bake node deltas",
        description="Publish bundle versions per profile, serve them, receive machines' deltas"
        " and bake them into new versions; every version is kept. See docs/SERVER.md.",
    )
    sub = parser.add_subparsers(dest="server_command", metavar="ACTION")

    serve = sub.add_parser(
        "serve", help="serve published bundles, a status page at /, and accept deltas over HTTP"
    )
    serve.add_argument("--listen", default="127.0.0.1:8470", help="HOST:PORT (default %(default)s)")
    serve.add_argument("--threads", type=int, default=16, help="worker threads")
    serve.add_argument("--max-delta", type=int, default=1 << 30, help="largest delta in bytes")
    serve.set_defaults(func=_serve)

    imp = sub.add_parser("import", help="publish an admin-made bundle as a profile's next version")
    imp.add_argument("profile", help="the profile to publish to (made by its first import)")
    imp.add_argument("bundle", type=input_file, help="the bundle, as ovl pack or ovl seal wrote it")
    imp.add_argument(
        "--signature", type=input_file, help="its .minisig (default: beside the bundle)"
    )
    imp.add_argument(
        "--serial",
        type=_serial,
        metavar="N|auto",
        help="publish with this serial instead of the bundle's (auto: the current one + 1);"
        " re-writes the bundle",
    )
    imp.add_argument(
        "--drop-baked",
        action="store_true",
        help="publish without the layers bakes made for machines (default: keep them)",
    )
    _allow_unsigned_option(imp)
    _json_option(imp)
    imp.set_defaults(func=_import)

    machine = sub.add_parser("add-machine", help="register a machine and its node public key")
    machine.add_argument("machine_id", metavar="ID", help="the id it ships deltas as")
    machine.add_argument("--profile", required=True, help="a published profile")
    machine.add_argument("--mac", required=True, help="its MAC: names its layer")
    machine.add_argument(
        "--key",
        type=input_file,
        required=True,
        metavar="NODE.pub",
        help="the node's minisign public key, which signs its deltas (ovl keys signer-new)",
    )
    machine.add_argument(
        "--replace", action="store_true", help="replace the machine if it is registered"
    )
    machine.add_argument("--json", action="store_true", help="print the record as JSON")
    machine.set_defaults(func=_add_machine)

    machines = sub.add_parser("machines", help="list registered machines and their deltas")
    machines.add_argument("--profile", help="only this profile's machines")
    machines.add_argument("--json", action="store_true", help="print the listing as JSON")
    machines.set_defaults(func=_machines)

    nginx = sub.add_parser("nginx-conf", help="print the nginx server block for this root")
    nginx.add_argument("--listen", default="80", help="nginx listen value (default %(default)s)")
    nginx.add_argument("--upstream", default="127.0.0.1:8470", help="where `serve` listens")
    nginx.set_defaults(func=_nginx_conf)

    bake_parser = sub.add_parser("bake", help="bake pending deltas into new versions")
    bake_parser.add_argument("--profile", help="only this profile (default: all)")
    bake_parser.add_argument(
        "--layer-order",
        type=int,
        default=bake.DEFAULT_LAYER_ORDER,
        help="NN of the machines' layers layers/NN-<mac> (default %(default)s)",
    )
    _allow_unsigned_option(bake_parser)
    _json_option(bake_parser)
    bake_parser.set_defaults(func=_bake)

    watch = sub.add_parser("watch", help="bake whenever new deltas land")
    watch.add_argument("--interval", type=float, default=5.0, help="seconds between polls")
    _allow_unsigned_option(watch)
    watch.set_defaults(func=_watch)

    hist = sub.add_parser("history", help="list published versions with serial and signer")
    hist.add_argument("--profile", help="only this profile")
    hist.add_argument("--json", action="store_true", help="machine-readable output")
    hist.set_defaults(func=_history)

    back = sub.add_parser("rollback", help="republish an old version as the newest")
    back.add_argument("version", type=int, help="the version whose content to republish")
    back.add_argument("--profile", required=True, help="the profile")
    _allow_unsigned_option(back)
    _json_option(back)
    back.set_defaults(func=_rollback)

    pick = sub.add_parser("cherry-pick", help="merge one delta into a profile's base layer")
    pick.add_argument("delta", help="<machine>/<sha256> or a unique sha256 prefix")
    pick.add_argument(
        "--to", dest="profile", required=True, metavar="PROFILE", help="the profile to merge into"
    )
    _allow_unsigned_option(pick)
    _json_option(pick)
    pick.set_defaults(func=_cherry_pick)
    _add_server_options(parser)


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    """The options every action shares, accepted before or after the action's name."""
    spread_global_flag(
        parser,
        "--root",
        type=Path,
        default=env_path("OVL_SERVER_ROOT"),
        help="server directory (default $OVL_SERVER_ROOT)",
    )
    for flags, options in signer_option_specs():
        spread_global_flag(parser, *flags, **options)
    spread_global_flag(
        parser,
        "--keys",
        type=Path,
        default=env_path("OVL_KEYS"),
        metavar="PATH",
        help="trusted roots (a keys/ directory or one root .pub) to check the certificate of an"
        " imported bundle's signature against, as machines do (default $OVL_KEYS)",
    )


def _serial(text: str) -> int | str:
    from ovl.tools.server.importing import AUTO

    if text == AUTO:
        return text
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: a serial is a whole number, or auto")
    return int(text)


def _allow_unsigned_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--allow-unsigned",
        action="store_true",
        help="publish unsigned into a signed profile (machines under ovl.require=signed refuse it)",
    )


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json",
        action="store_true",
        help='print {"published": [version...], "unchanged": [profile...]} as JSON',
    )


def _store(args: argparse.Namespace) -> Store:
    """The existing server root (a typo must not serve or change a new empty one)."""
    return Store.existing(Store.given(args.root))


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
    """The certified signer from --sign-key/--cert (or OVL_SIGN_KEY...), None without one."""
    files = signer_files(args)
    return None if files is None else certified_signer(*files)


def _announce(version: Version) -> None:
    serial = version.meta["serial"]
    signer = signed_by(version)
    signed = "unsigned" if signer is None else f"signed by {signer.name or signer.key_id}"
    # flush: `watch` runs for days with its output going to a journal or a pipe.
    line = f"{version.profile}: published version {version.number} (serial {serial}, {signed})"
    print(line, flush=True)


def _warn_unsigned(args: argparse.Namespace, versions: list[Version]) -> None:
    for version in versions:
        if not version.signed and args.allow_unsigned:
            print(
                f"ovl: warning: profile {version.profile}: version {version.number} is unsigned"
                " (--allow-unsigned); machines under ovl.require=signed refuse it",
                file=sys.stderr,
            )


def _serve(args: argparse.Namespace) -> int:
    from waitress.server import create_server

    from ovl.tools.server.app import ServerApp
    from ovl.tools.server.requestlog import RequestLog

    host, sep, port = args.listen.rpartition(":")
    if not sep or not port.isdigit():
        raise BadInput(f"--listen {args.listen!r}: expected HOST:PORT")
    store = _store(args)
    store.tmp.mkdir(parents=True, exist_ok=True)
    store.sweep_tmp()
    app = RequestLog(ServerApp(store, max_delta=args.max_delta))
    try:
        server = create_server(app, host=host, port=int(port), threads=args.threads, ident="ovl")
    except OSError as exc:
        raise OvlError(f"--listen {args.listen}: cannot listen ({exc.strerror or exc})") from exc
    interrupted = False

    def interrupt(signum: int, frame: object) -> None:
        nonlocal interrupted
        interrupted = True
        raise KeyboardInterrupt  # waitress stops its loop on it

    previous = signal.signal(signal.SIGINT, interrupt)
    print(f"ovl server: serving {store.root} on http://{host}:{port}/", file=sys.stderr, flush=True)
    try:
        server.run()
    finally:
        signal.signal(signal.SIGINT, previous)
        server.close()
    if interrupted:
        raise KeyboardInterrupt
    return 0


def _import(args: argparse.Namespace) -> int:
    from ovl.tools.keys import load_trust
    from ovl.tools.server.importing import ImportRequest, import_bundle

    check_name("profile", args.profile)
    root = Store.given(args.root)
    sign = _signer(args)
    signature = args.signature
    beside = args.bundle.with_name(args.bundle.name + ".minisig")
    if signature is None and beside.is_file():
        signature = beside
    request = ImportRequest(
        profile=args.profile,
        bundle=args.bundle,
        signature=signature,
        serial=args.serial,
        allow_unsigned=args.allow_unsigned,
        drop_baked=args.drop_baked,
        trust=None if args.keys is None else load_trust(args.keys),
    )
    if not (root / "profiles").is_dir():
        print(f"ovl server: a new server root at {root}", file=sys.stderr)
    imported = import_bundle(Store(root), request, sign)
    _warn_unsigned(args, [imported.version])
    _report(args, [imported.version], [])
    if not args.json:
        if imported.rebased:
            print(f"  kept the layers bakes made: {', '.join(imported.rebased)}")
        if imported.dropped:
            print(f"  dropped the layers bakes made: {', '.join(imported.dropped)}")
    return 0


def _node_key(path: Path) -> str:
    """The node's minisign public key text, or BadInput naming what the file is instead."""
    from ovl.trust.keykind import MINISIGN_PUBLIC, key_kind, wrong_kind
    from ovl.trust.minisign import parse_public_key, read_text_file

    text = read_text_file(path, f"--key {path}")
    if key_kind(text) != MINISIGN_PUBLIC:
        hint = (
            "a node signs its deltas with a minisign key (ovl keys signer-new NAME: NAME.pub);"
            " its age key (NAME.age.pub) is for sealing bundles to it (docs/TRUST.md)"
        )
        raise wrong_kind(f"--key {path}", MINISIGN_PUBLIC, text, hint)
    parse_public_key(text, f"--key {path}")
    return text


def _add_machine(args: argparse.Namespace) -> int:
    from ovl.trust.minisign import parse_public_key

    store = _store(args)
    check_name("machine", args.machine_id)
    profile = store.published_profile(args.profile)
    text = _node_key(args.key)
    mac = normalize_mac(args.mac)
    known = store.machine(args.machine_id)
    if known is not None and not args.replace:
        raise BadInput(
            f"machine {args.machine_id} is registered (profile {known.profile}, mac {known.mac});"
            " --replace replaces it"
        )
    same_mac = store.machine_with_mac(mac)
    if same_mac is not None and same_mac.id != args.machine_id:
        raise BadInput(f"mac {mac} is machine {same_mac.id}'s; a MAC names one machine's layer")
    machine = Machine(args.machine_id, profile, mac, text)
    store.add_machine(machine)
    key_id = parse_public_key(text).id_hex
    if args.json:
        print(json.dumps({"machine": machine.id, **machine.to_json(), "key_id": key_id}, indent=2))
        return 0
    action = "replaced" if known is not None else "registered"
    print(f"{machine.id}: {action}, profile {profile}, mac {mac}, node key {key_id}")
    return 0


def _machines(args: argparse.Namespace) -> int:
    from ovl.tools.server.status import machine_statuses

    store = _store(args)
    profile = None if args.profile is None else store.published_profile(args.profile)
    rows = machine_statuses(store, profile)
    if args.json:
        print(json.dumps({"machines": [row.to_json() for row in rows]}, indent=2))
        return 0
    heading = f"{'machine':<20} {'profile':<12} {'mac':<17}  {'node key':<16}"
    print(f"{heading}  deltas  pending  last delta")
    for row in rows:
        print(
            f"{row.id:<20} {row.profile:<12} {row.mac:<17}  {row.key_id:<16}  {row.deltas:>6}"
            f"  {row.pending:>7}  {row.last_delta or 'never'}"
        )
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
    print(render_nginx_conf(_store(args).root, args.listen, args.upstream), end="")
    return 0


def _bake(args: argparse.Namespace) -> int:
    store = _store(args)
    sign = _signer(args)
    profiles = [store.published_profile(args.profile)] if args.profile else store.profiles()
    published: list[Version] = []
    unchanged: list[str] = []
    for profile in profiles:
        version = bake.bake(store, profile, sign, args.layer_order, args.allow_unsigned)
        done, same = ([version], []) if version is not None else ([], [profile])
        _warn_unsigned(args, done)
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

    def published(version: Version) -> None:
        _announce(version)
        _warn_unsigned(args, [version])

    store = _store(args)
    bake.watch(store, _signer(args), args.interval, published, complain, args.allow_unsigned)
    return 0


def _history(args: argparse.Namespace) -> int:
    store = _store(args)
    profiles = [store.published_profile(args.profile)] if args.profile else store.profiles()
    if args.json:
        data = {
            profile: {
                "current": getattr(store.current(profile), "number", None),
                "versions": [
                    {**v.meta, "signer": _signer_json(signed_by(v))}
                    for v in store.versions(profile)
                ],
            }
            for profile in profiles
        }
        print(json.dumps(data, indent=2))
        return 0
    for profile in profiles:
        signed = "signed" if store.last_signed(profile) is not None else "unsigned"
        print(f"{profile} ({signed} profile):")
        current = store.current(profile)
        for version in store.versions(profile):
            print(history.describe(version, current, signed_by(version)))
    return 0


def _signer_json(signer: SignedBy | None) -> dict[str, str | None] | None:
    return None if signer is None else signer.to_json()


def _rollback(args: argparse.Namespace) -> int:
    store, sign = _store(args), _signer(args)
    profile = store.published_profile(args.profile)
    version = history.rollback(store, profile, args.version, sign, args.allow_unsigned)
    _warn_unsigned(args, [version])
    _report(args, [version], [])
    return 0


def _cherry_pick(args: argparse.Namespace) -> int:
    store, sign = _store(args), _signer(args)
    profile = store.published_profile(args.profile)
    version = history.cherry_pick(store, args.delta, profile, sign, args.allow_unsigned)
    _warn_unsigned(args, [version])
    _report(args, [version], [])
    return 0
