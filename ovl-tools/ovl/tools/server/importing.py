"""`ovl server import`: an admin-made bundle becomes a profile's next version.

Checked before anything is published: machines must accept the bundle (the engine's
scan_bundle), its serial must be above the current one, and a signature given with it must be
a good signature of these very bytes whose trusted comment names the bundle's serial (and, with
trusted roots, a certified signer's). It is published byte for byte unless it has to be
re-written:

- `--serial N|auto` gives it another serial (auto: the current one + 1);
- the current version holds layers that bakes made from the profile's machines' deltas, which
  the new bundle lacks: they are carried over (a rebase), unless `drop_baked`.

A re-written bundle is written like a baked one and signed by the server's signer. A signed
profile (or a signed bundle) gets no unsigned version unless `allow_unsigned`.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.format.scan import BundleInfo, scan_bundle
from ovl.tools.seal import sealing_comment
from ovl.tools.server.bake import (
    Signer,
    baked_layers,
    included_deltas,
    publish_bundle,
    require_signer,
    scratch,
)
from ovl.tools.server.layers import read_bundle
from ovl.tools.server.store import Store, Version
from ovl.trust.certs import TrustStore
from ovl.trust.open import check_signature
from ovl.trust.policy import parse_policy

AUTO = "auto"


@dataclass(frozen=True)
class ImportRequest:
    profile: str
    bundle: Path
    signature: Path | None  # the bundle's .minisig, if it comes signed
    serial: int | str | None = None  # another serial, or AUTO; None keeps the bundle's
    allow_unsigned: bool = False
    drop_baked: bool = False
    trust: TrustStore | None = None  # roots to check a signature's certificate against


@dataclass(frozen=True)
class Imported:
    version: Version
    rebased: tuple[str, ...]  # baked layers carried over from the previous version
    dropped: tuple[str, ...]  # baked layers left behind (drop_baked)


def _scan(bundle: Path) -> BundleInfo:
    try:
        with bundle.open("rb") as source:
            info = scan_bundle(source)
    except BadInput as exc:
        raise BadInput(f"{bundle}: machines would refuse it: {exc.line}") from exc
    return info


def _check_signature(request: ImportRequest, name: str, serial: int) -> None:
    """The signature must be of these bytes and name this serial: a stale .minisig beside a
    re-packed bundle would make every machine refuse the new version."""
    assert request.signature is not None
    trust = request.trust
    where = f"bundle {request.bundle}"
    policy = parse_policy("signed" if trust is not None else "none")
    signed = check_signature(
        request.bundle, request.signature, policy, trust or TrustStore(()), where
    )
    if signed.serial is None:
        raise BadInput(
            f"{request.signature}: no signer certificate or no bundle serial in its trusted"
            " comment; machines would refuse it (sign with `ovl seal`)"
        )
    if signed.serial != serial or (name and signed.name != name):
        raise BadInput(
            f"{request.signature}: signs bundle {signed.name!r} serial {signed.serial}, but"
            f" {request.bundle} is {name!r} serial {serial} (a signature of another bundle?)"
        )


def _target_serial(request: ImportRequest, own: int, current: Version | None) -> int:
    current_serial = int(current.meta.get("serial", 0)) if current is not None else None
    if request.serial == AUTO:
        return 1 if current_serial is None else current_serial + 1
    serial = own if request.serial is None else int(request.serial)
    if current_serial is not None and serial <= current_serial:
        given = "its serial" if request.serial is None else "--serial"
        raise BadInput(
            f"{request.bundle}: {given} {serial} is not above the current {current_serial};"
            " machines would refuse it as a replay (--serial auto takes the next one)"
        )
    return serial


def import_bundle(store: Store, request: ImportRequest, sign: Signer | None) -> Imported:
    """Publish the bundle as the profile's next version (module docstring)."""
    profile, bundle = request.profile, request.bundle
    info = _scan(bundle)
    name = info.manifest.name if info.manifest is not None else ""
    own_serial = info.manifest.serial if info.manifest is not None else 0
    if request.signature is not None:
        _check_signature(request, name, own_serial)
    with store.profile_lock(profile):
        current = store.current(profile)
        serial = _target_serial(request, own_serial, current)
        ours = {f"layers/{layer.name}" for layer in info.layers[1:]}
        missing: list[str] = []
        if current is not None and included_deltas(store, profile):
            current_layers = {f"layers/{layer.name}" for layer in _scan(current.bundle).layers}
            missing = [k for k in baked_layers(store, profile, current_layers) if k not in ours]
        rebased = () if request.drop_baked else tuple(missing)
        dropped = tuple(missing) if request.drop_baked else ()
        meta = {
            "action": "import",
            "source": str(bundle),
            "serial": serial,
            "deltas": [],
            "rebased": list(rebased),
            "dropped": list(dropped),
        }
        if rebased or serial != own_serial:
            why = (
                f"keeping the layers bakes made ({', '.join(rebased)}), which it lacks,"
                if rebased
                else f"--serial {serial}"
            )
            _require_signer_to_rewrite(store, request, sign, why)
            with scratch(store) as work:
                rewritten = read_bundle(work.open(bundle), str(bundle))
                if rebased and current is not None:
                    old = read_bundle(work.open(current.bundle), str(current.bundle))
                    rewritten.layers.update({key: old.layers[key] for key in rebased})
                rewritten.manifest["serial"] = serial
                version = publish_bundle(store, profile, rewritten, meta, sign, serial)
            return Imported(version, rebased, dropped)
        if request.signature is None:
            require_signer(
                store, profile, sign, request.allow_unsigned, "importing an unsigned bundle"
            )
        version = _publish_as_is(store, request, sign, meta, name or profile, serial)
        return Imported(version, rebased, dropped)


def _require_signer_to_rewrite(
    store: Store, request: ImportRequest, sign: Signer | None, why: str
) -> None:
    signed = request.signature is not None or store.last_signed(request.profile) is not None
    if sign is None and signed and not request.allow_unsigned:
        drop = "; or --drop-baked to publish it as it is" if "layers" in why else ""
        raise BadInput(
            f"profile {request.profile}: {why} re-writes {request.bundle}, and the new version"
            " must be signed again: give --sign-key and --cert (or OVL_SIGN_KEY)"
            f"{drop}; or --allow-unsigned"
        )


def _publish_as_is(
    store: Store,
    request: ImportRequest,
    sign: Signer | None,
    meta: dict[str, object],
    name: str,
    serial: int,
) -> Version:
    number = store.next_version(request.profile)
    staged = store.temp_dir()
    try:
        shutil.copyfile(request.bundle, staged / "bundle.ovl")
        if request.signature is not None:
            shutil.copyfile(request.signature, staged / "bundle.ovl.minisig")
        elif sign is not None:
            comment = sealing_comment(staged / "bundle.ovl", name, serial)
            signature = sign(staged / "bundle.ovl", comment)
            (staged / "bundle.ovl.minisig").write_text(signature)
        return store.publish(request.profile, number, staged, meta)
    except OSError as exc:
        raise store.os_error(exc, f"profile {request.profile}: importing {request.bundle}") from exc
    finally:
        shutil.rmtree(staged, ignore_errors=True)
