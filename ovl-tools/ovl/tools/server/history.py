"""Every published version is kept: list them, roll back to one, cherry-pick a delta.

A rollback republishes an old version's content under a new version number and serial, so
machines that refuse replayed (lower) serials still take it. A cherry-pick merges one
accepted delta into the base layer of another profile's current version.
"""

from __future__ import annotations

from ovl.core.errors import BadInput, OvlError
from ovl.tools.server.bake import (
    Signer,
    current_or_fail,
    publish_bundle,
    require_signer,
    scratch,
)
from ovl.tools.server.layers import BASE, merge_layers, read_bundle, read_layer
from ovl.tools.server.signing import SignedBy
from ovl.tools.server.store import Store, Version


def rollback(
    store: Store, profile: str, number: int, sign: Signer | None, allow_unsigned: bool = False
) -> Version:
    with store.profile_lock(profile):
        current = current_or_fail(store, profile)
        old = store.version(profile, number)
        if old.number == current.number:
            raise BadInput(f"profile {profile}: version {number} is already current")
        require_signer(store, profile, sign, allow_unsigned, f"rollback to version {number}")
        with scratch(store) as work:
            bundle = read_bundle(work.open(old.bundle), str(old.bundle))
            bundle.manifest["serial"] = max(
                int(bundle.manifest.get("serial", 0)), int(current.meta.get("serial", 0))
            )
            meta = {"action": "rollback", "parent": current.number, "of": old.number, "deltas": []}
            return publish_bundle(store, profile, bundle, meta, sign)


def cherry_pick(
    store: Store, ref: str, profile: str, sign: Signer | None, allow_unsigned: bool = False
) -> Version:
    delta = store.find_delta(ref)
    with store.profile_lock(profile):
        current = current_or_fail(store, profile)
        require_signer(store, profile, sign, allow_unsigned, "cherry-pick")
        with scratch(store) as work:
            try:
                bundle = read_bundle(work.open(current.bundle), str(current.bundle))
                bundle.layers[BASE] = merge_layers(
                    bundle.layers.get(BASE, {}), read_layer(work.open(delta.path))
                )
            except OSError as exc:
                raise OvlError(f"cherry-pick {ref}: {exc.strerror or exc}") from exc
            meta = {
                "action": "cherry-pick",
                "parent": current.number,
                "cherry_picked": delta.ref,
                "deltas": [],
            }
            return publish_bundle(store, profile, bundle, meta, sign)


def describe(version: Version, current: Version | None, signer: SignedBy | None) -> str:
    """One history line: current marker, number, serial, when, signer, what."""
    meta = version.meta
    marker = "*" if current is not None and current.number == version.number else " "
    action = str(meta.get("action", "?"))
    detail = {
        "bake": f"{len(meta.get('deltas', []))} delta(s)",
        "rollback": f"content of version {meta.get('of')}",
        "cherry-pick": str(meta.get("cherry_picked", "")),
        "import": str(meta.get("source", "")),
    }.get(action, "")
    signed = f"signed by {signer}" if signer is not None else "UNSIGNED"
    return (
        f"{marker} {version.number:>4}  serial {meta.get('serial', '-')!s:>4}  "
        f"{meta.get('published', '')}  {signed}  {action} {detail}".rstrip()
    )
