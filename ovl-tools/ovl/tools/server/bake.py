"""Baking: accepted deltas become per-machine layers of a new, signed bundle version.

Each machine of a profile owns the layer `layers/<NN>-<mac>/` (NN 90 unless told otherwise,
MAC without separators). Its pending deltas, oldest first, are merged onto that layer of the
current version (newer deltas override older ones); every other layer is copied as it was.
The result gets serial+1 in ovl.json, is signed when a signer is given, and is published as a
new version (store.publish: staged in ROOT/tmp, renamed in, `current` swapped).
"""

from __future__ import annotations

import contextlib
import re
import shutil
import tarfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovl.core.errors import BadInput, OvlError
from ovl.tools.progress import Progress
from ovl.tools.seal import sealing_comment
from ovl.tools.server.layers import Bundle, merge_layers, read_bundle, read_layer, write_bundle
from ovl.tools.server.store import Delta, Machine, Store, Version

Signer = Callable[[Path, str], str]  # (file, trusted comment) -> minisign signature text
DEFAULT_LAYER_ORDER = 90
_MACHINE_LAYER = re.compile(r"layers/[0-9]+-(?P<mac>[0-9a-f]{12})")
_COPY_CHUNK = 1 << 20


@dataclass
class Scratch:
    """Plain tars decoded for random access, removed together when the work is done."""

    store: Store
    directory: Path | None = None
    open_tars: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    decoded: int = 0

    def open(self, path: Path) -> tarfile.TarFile:
        """`path` (a bundle or delta in any encoding the engine reads) as a seekable tar."""
        from ovl.format.codec import open_decoded

        if self.directory is None:
            self.directory = self.store.temp_dir()
        self.decoded += 1
        plain = self.directory / f"{self.decoded}.tar"
        with path.open("rb") as raw, open_decoded(raw) as decoded, plain.open("wb") as out:
            shutil.copyfileobj(decoded, out, _COPY_CHUNK)
        try:
            return self.open_tars.enter_context(tarfile.open(plain, "r:"))
        except (tarfile.TarError, EOFError) as exc:
            raise OvlError(f"{path}: not a readable tar ({exc})") from exc

    def close(self) -> None:
        self.open_tars.close()
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def scratch(store: Store) -> Iterator[Scratch]:
    work = Scratch(store)
    try:
        yield work
    finally:
        work.close()


def machine_layer(machine: Machine, order: int = DEFAULT_LAYER_ORDER) -> str:
    return f"layers/{order:02d}-{machine.mac.replace(':', '')}"


def included_deltas(store: Store, profile: str) -> set[str]:
    """Deltas some version of the profile already baked (rolled-back ones stay included)."""
    return {ref for v in store.versions(profile) for ref in v.meta.get("deltas", [])}


def pending_deltas(store: Store, profile: str) -> dict[Machine, list[Delta]]:
    done = included_deltas(store, profile)
    pending: dict[Machine, list[Delta]] = {}
    for machine in store.machines():
        if machine.profile == profile:
            fresh = [d for d in store.deltas(machine.id) if d.ref not in done]
            if fresh:
                pending[machine] = fresh
    return pending


def require_signer(
    store: Store, profile: str, sign: Signer | None, allow_unsigned: bool, what: str
) -> None:
    """A signed profile (one that ever published a signed version) gets only signed versions,
    unless the admin says --allow-unsigned: machines under ovl.require=signed would refuse an
    unsigned one, and they would fall back to an older signed bundle without a word."""
    signed = store.last_signed(profile)
    if sign is None and signed is not None and not allow_unsigned:
        raise BadInput(
            f"profile {profile} is signed (version {signed.number} is): {what} needs --sign-key"
            " and --cert (or OVL_SIGN_KEY) to sign the new version; --allow-unsigned publishes"
            " it unsigned"
        )


def baked_layers(store: Store, profile: str, layer_keys: Iterable[str]) -> list[str]:
    """The layers among `layer_keys` (`layers/<dirname>`) that bakes made: a machine's layer
    (`<NN>-<mac without separators>`) of a machine of this profile with deltas baked in."""
    done = included_deltas(store, profile)
    macs = {
        m.mac.replace(":", "")
        for m in store.machines()
        if m.profile == profile and any(ref.startswith(f"{m.id}/") for ref in done)
    }
    return sorted(
        key
        for key in layer_keys
        if (found := _MACHINE_LAYER.fullmatch(key)) is not None and found["mac"] in macs
    )


def current_or_fail(store: Store, profile: str) -> Version:
    version = store.current(profile)
    if version is None:
        raise OvlError(
            f"profile {profile}: no published version; start one with `ovl server import`"
        )
    return version


def publish_bundle(
    store: Store,
    profile: str,
    bundle: Bundle,
    meta: dict[str, Any],
    sign: Signer | None,
    serial: int | None = None,
) -> Version:
    """Write, sign and publish `bundle` as the profile's next version, with `serial`, by
    default the bundle's bumped (at least the version number)."""
    number = store.next_version(profile)
    if serial is None:
        serial = max(int(bundle.manifest.get("serial", 0)) + 1, number)
    name = str(bundle.manifest.get("name") or profile)
    bundle.manifest = {
        **bundle.manifest,
        "name": name,
        "serial": serial,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    staged = store.temp_dir()
    try:
        progress = Progress(f"ovl server: writing {profile} version {number}")
        with (staged / "bundle.ovl").open("wb") as out:
            write_bundle(bundle, out, advance=progress.advance)
        progress.close()
        if sign is not None:
            text = sign(staged / "bundle.ovl", sealing_comment(staged / "bundle.ovl", name, serial))
            (staged / "bundle.ovl.minisig").write_text(text)
        return store.publish(profile, number, staged, {**meta, "serial": serial})
    except OSError as exc:
        raise store.os_error(exc, f"profile {profile}: publishing version {number}") from exc
    finally:
        shutil.rmtree(staged, ignore_errors=True)


def bake(
    store: Store,
    profile: str,
    sign: Signer | None,
    order: int = DEFAULT_LAYER_ORDER,
    allow_unsigned: bool = False,
) -> Version | None:
    """Bake the profile's pending deltas into a new version; None when nothing is pending."""
    with store.profile_lock(profile):
        pending = pending_deltas(store, profile)
        if not pending:
            return None
        require_signer(store, profile, sign, allow_unsigned, "bake")
        current = current_or_fail(store, profile)
        with scratch(store) as work:
            try:
                bundle = read_bundle(work.open(current.bundle), str(current.bundle))
                for machine, deltas in sorted(pending.items(), key=lambda p: p[0].id):
                    key = machine_layer(machine, order)
                    layer = bundle.layers.get(key, {})
                    for delta in deltas:
                        layer = merge_layers(layer, read_layer(work.open(delta.path)))
                    bundle.layers[key] = layer
            except OSError as exc:
                raise store.os_error(exc, f"profile {profile}: baking") from exc
            refs = [d.ref for deltas in pending.values() for d in deltas]
            meta = {"action": "bake", "parent": current.number, "deltas": refs}
            return publish_bundle(store, profile, bundle, meta, sign)


def watch(
    store: Store,
    sign: Signer | None,
    interval: float,
    on_publish: Callable[[Version], None],
    on_error: Callable[[OvlError], None],
    allow_unsigned: bool = False,
    keep_going: Callable[[], bool] = lambda: True,
) -> None:
    """Bake every profile whenever new deltas have landed, polling every `interval` seconds.

    A profile that fails to bake (a full disk, say) is reported and tried again next round;
    the other profiles go on being baked.
    """
    while keep_going():
        for profile in store.profiles():
            try:
                if store.current(profile) is not None and pending_deltas(store, profile):
                    version = bake(store, profile, sign, allow_unsigned=allow_unsigned)
                    if version is not None:
                        on_publish(version)
            except OvlError as exc:
                on_error(exc)
        time.sleep(interval)
