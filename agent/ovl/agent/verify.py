"""Verify and decrypt a fetched bundle under the machine's policy (ovl.trust does the work).

The trust roots live in the initramfs (`/etc/ovl/keys/*.pub`), the node key wherever
`ovl.key=` says (age or SSH identities, else a passphrase file for passphrase-sealed and legacy
bundles; a directory holds many machines' keys, this one's named by its MAC or product UUID:
ovl.trust.keynames), the replay state (bundles' and downloaded root images' serials) beside the
last-known-good cache when there is one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from ovl.agent.context import BootContext
from ovl.agent.devices import PartPath, find_device
from ovl.agent.fetched import Fetched
from ovl.agent.mounts import mount_partition
from ovl.core.facts import Facts
from ovl.trust.policy import Policy

if TYPE_CHECKING:
    from ovl.agent.cmdline import Url
    from ovl.format.partial import Partial
    from ovl.trust.age import Identity
    from ovl.trust.certs import TrustStore
    from ovl.trust.open import IndexDigest, Opened, Signed
    from ovl.trust.replay import ReplayState


@dataclass
class Verifier:
    policy: Policy
    keys_dir: Path
    key: Path | PartPath | None
    replay: Path | None
    facts: Facts = field(default_factory=Facts)  # names this machine's key in a key directory
    images_recorded: bool = False  # a new highest image serial went into `replay` (to keep)
    _trust: TrustStore | None = field(default=None, repr=False)
    _identities: list[Identity] | None = field(default=None, repr=False)

    def open(self, fetched: Fetched, ctx: BootContext) -> Opened:
        """The plain bundle, or OvlError naming why it is refused. A partial bundle (this
        machine's frames of a bundle) is checked frame by frame against its signed index."""
        # Imported here: the crypto libraries cost start-up time a bare boot never needs.
        from ovl.format.partial import read_partial
        from ovl.trust.open import open_sealed

        with fetched.bundle.open("rb") as raw:
            found = read_partial(raw)
            if found is not None:
                return self._open_partial(fetched, found, raw)
        identities = self.load_key(ctx)
        trust = self._trust_store()
        return open_sealed(
            fetched.bundle, fetched.signature, self.policy, trust, identities, self._state()
        )

    def _open_partial(self, fetched: Fetched, found: Partial, raw: BinaryIO) -> Opened:
        from ovl.format.apply import machine_frames
        from ovl.trust.open import IndexDigest, open_partial

        def check_frames() -> None:
            frames = found.frames()
            found.check(raw, frames, machine_frames(frames, self.facts))

        index = IndexDigest(len(found.index), found.index_sha256)
        trust, state = self._trust_store(), self._state()
        return open_partial(
            fetched.bundle, fetched.signature, index, self.policy, trust, state, check_frames
        )

    def signed_index(self, signature: Path) -> IndexDigest | None:
        """The frame index the bundle signature at `signature` names, when the signature
        passes as it would for the whole bundle (serial included); None when it names none.
        OvlError when the bundle would be refused: no frame of it need be fetched."""
        from ovl.trust.open import signed_index

        where = f"bundle {signature.name.removesuffix('.minisig')}"
        trust, state = self._trust_store(), self._state()
        return signed_index(signature, self.policy, trust, state, where)

    def check_image(self, image: Path, signature: Path | None, url: Url) -> Signed:
        """A root image downloaded from `url`: its signer and warnings, or OvlError naming why
        it is refused (among others: signed under another name than the URL expects).

        Its serial is checked against, and recorded in, the bundles' replay state.
        """
        from ovl.trust.open import check_image

        state = self._state()
        trust, where = self._trust_store(), f"image {url}"
        signed = check_image(image, signature, self.policy, trust, where, url.name, state)
        self.images_recorded |= state is not None and state.written
        return signed

    def _state(self) -> ReplayState | None:
        from ovl.trust.replay import ReplayState

        return ReplayState(self.replay) if self.replay is not None else None

    def _trust_store(self) -> TrustStore:
        from ovl.trust.certs import TrustStore

        if self._trust is None:
            self._trust = (
                TrustStore.load(self.keys_dir) if self.keys_dir.is_dir() else TrustStore(())
            )
        return self._trust

    def load_key(self, ctx: BootContext) -> list[Identity]:
        """The node key's identities, read once; OvlError naming why there is none."""
        if self._identities is None:
            self._identities = self._load_identities(ctx)
        return self._identities

    def _load_identities(self, ctx: BootContext) -> list[Identity]:
        if self.key is None:
            return []
        if isinstance(self.key, Path):
            return self._load_from(self.key, str(self.key))
        device = find_device(self.key.device, timeout=ctx.timeout)
        point = ctx.work_dir / "key"
        mount_partition(ctx.mounts, device, point)
        try:
            return self._load_from(point / self.key.relative(), str(self.key))
        finally:
            ctx.mounts.unmount(point)

    def _load_from(self, location: Path, where: str) -> list[Identity]:
        from ovl.trust.age import load_machine_key
        from ovl.trust.keynames import find_key

        if where.endswith("/") or location.is_dir():
            location = find_key(location, self.facts, where)
        return load_machine_key(location)
