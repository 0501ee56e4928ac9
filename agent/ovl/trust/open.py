"""open_sealed: signature and certificate first, then replay, then decryption.

Nothing of the bundle is parsed or decompressed before its signature has been checked. A
partial bundle (open_partial: the frames one machine fetched) is checked through the signed
trusted comment, which names the bundle's frame index, whose digests name every frame.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.trust.age import Identity, Passphrase, decrypt_age, is_age
from ovl.trust.certs import TrustStore, comment_fields
from ovl.trust.legacy import decrypt_legacy, is_legacy
from ovl.trust.minisign import (
    Signature,
    parse_public_key,
    parse_signature,
    read_text_file,
    verify_comment,
    verify_file,
)
from ovl.trust.policy import Policy
from ovl.trust.replay import ReplayState

log = logging.getLogger("ovl.trust")

BUNDLE_KIND = "ovl-bundle"
IMAGE_KIND = "ovl-image"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class IndexDigest:
    """A bundle's frame index as its signature names it: the size and sha256 of the index
    frame at the end of the bundle (docs/TRUST.md, "Fetching only a machine's frames")."""

    size: int
    sha256: str

    def words(self) -> str:
        return f"index-bytes={self.size} index-sha256={self.sha256}"


@dataclass(frozen=True)
class Opened:
    """The plain bundle. When `encrypted`, `path` is a new file the caller removes."""

    path: Path
    signer: str | None
    serial: int | None
    encrypted: bool
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Signed:
    signer: str | None
    name: str | None
    serial: int | None
    warnings: tuple[str, ...]
    index: IndexDigest | None = None  # the frame index the trusted comment names, if any


def bundle_comment(name: str, serial: int, index: IndexDigest | None = None) -> str:
    """The trusted comment a sealed bundle's signature carries; `index` names its frame index
    (only for a plain bundle whose index was checked against its content)."""
    comment = f"{BUNDLE_KIND} name={_checked_name('bundle', name)} serial={serial}"
    return comment if index is None else f"{comment} {index.words()}"


def image_comment(name: str, serial: int) -> str:
    """The trusted comment a signed root image's signature carries."""
    return f"{IMAGE_KIND} name={_checked_name('image', name)} serial={serial}"


def _checked_name(what: str, name: str) -> str:
    if not name or any(c.isspace() or c == "=" for c in name):
        raise BadInput(f"{what} name {name!r}: must be non-empty, without spaces or '='")
    return name


def split_chain(sig: Signature, where: str) -> tuple[str, Signature] | None:
    """The signer's `.pub` text and certificate carried after the signature, if any.

    The trailer is the signer's certificate file: 4 certificate lines, then 2 `.pub` lines.
    """
    if not sig.trailer:
        return None
    if len(sig.trailer) != 6:
        raise BadInput(f"{where}: expected a certificate (4 lines) and signer key (2 lines)")
    pub_text = "".join(line + "\n" for line in sig.trailer[4:])
    return pub_text, parse_signature("\n".join(sig.trailer[:4]), f"{where}: certificate")


def check_signature(
    bundle: Path,
    signature: Path,
    policy: Policy,
    trust: TrustStore,
    where: str,
    kind: str = BUNDLE_KIND,
) -> Signed:
    """Verify the file's signature and the signer's certificate.

    The trusted comment must be of `kind` (`ovl-bundle`, `ovl-image`) and carry a name and a
    serial. Under ovl.require=none a signature that does not match still refuses the file
    (that is tampering), but certification problems and a comment without name and serial
    only warn, and a signature without a certificate (so without a key to check it with) is
    ignored with a warning.
    """
    return _checked(signature, policy, trust, where, kind, bundle)


def check_comment(signature: Path, policy: Policy, trust: TrustStore, where: str) -> Signed:
    """A bundle signature's signer and trusted comment, checked as check_signature checks them
    but without the file: minisign's global signature covers the signature and the comment
    alone. What a machine fetching only its frames trusts the comment's frame index by."""
    return _checked(signature, policy, trust, where, BUNDLE_KIND, None)


def _checked(
    signature: Path, policy: Policy, trust: TrustStore, where: str, kind: str, file: Path | None
) -> Signed:
    sig = parse_signature(read_text_file(signature, where), f"{where}: {signature.name}")
    chain = split_chain(sig, where)
    if chain is None:
        problem = f"{where}: signature by key {sig.key_id_hex} carries no signer certificate"
        if policy.needs_signature:
            raise OvlError(f"{problem}; signer not certified")
        return Signed(None, None, None, (f"{problem}; not checked (ovl.require={policy})",))
    pub_text, cert = chain
    signer_key = parse_public_key(pub_text, f"{where}: signer key")
    warnings: list[str] = []
    signer: str | None = None
    try:
        signer = trust.check_signer(pub_text, cert, where).name
    except OvlError as exc:
        if policy.needs_signature:
            raise
        warnings.append(f"{exc.line} (accepted: ovl.require={policy})")
    if file is None:
        verify_comment(signer_key, sig, where)
    else:
        verify_file(signer_key, sig, file, where)
    try:
        fields = comment_fields(sig.trusted_comment, kind, where)
        serial = int(fields["serial"])
        name = fields["name"]
    except (BadInput, KeyError, ValueError) as exc:
        problem = f"{where}: signed trusted comment carries no {kind_name(kind)} name and serial"
        if policy.needs_signature:
            raise OvlError(problem) from exc
        warnings.append(f"{problem}; no replay check (ovl.require={policy})")
        return Signed(signer, None, None, tuple(warnings))
    return Signed(signer, name, serial, tuple(warnings), _index_digest(fields))


def _index_digest(fields: dict[str, str]) -> IndexDigest | None:
    """The frame index a comment names; None unless both words are there and well-formed."""
    size, digest = fields.get("index-bytes", ""), fields.get("index-sha256", "")
    if not size.isdigit() or not int(size) or not _SHA256.fullmatch(digest):
        return None
    return IndexDigest(int(size), digest)


def kind_name(kind: str) -> str:
    """`ovl-image` → `image`: the word for a comment kind in messages and replay keys."""
    return kind.removeprefix("ovl-")


def check_image(
    image: Path,
    signature: Path | None,
    policy: Policy,
    trust: TrustStore,
    where: str,
    expected: str,
    state: ReplayState | None,
) -> Signed:
    """A root image from the network, checked like a bundle (`ovl-image` comment), replay too.

    Unsigned, or signed under another name than `expected`, is refused when the policy needs a
    signature, else accepted with a warning. An accepted serial is recorded in `state` (as
    `image <signed name>`, beside the bundles' serials).
    """
    if signature is None:
        _refuse_unsigned(policy, where)
        return Signed(None, None, None, (f"{where}: unsigned, accepted (ovl.require={policy})",))
    signed = check_signature(image, signature, policy, trust, where, IMAGE_KIND)
    if signed.name is None or signed.serial is None:
        return signed
    warnings = [*signed.warnings]
    if signed.name != expected:
        problem = f"{where}: signed as image {signed.name!r}, expected {expected!r}"
        if policy.needs_signature:
            raise OvlError(
                f"{problem}; refused (ovl.require={policy}; the URL's fragment"
                f" #name={signed.name} expects that name)"
            )
        warnings.append(f"{problem}, accepted (ovl.require={policy})")
    if state is not None:
        what = kind_name(IMAGE_KIND)
        warnings += _check_replay(state, signed.name, signed.serial, policy, where, what)
        state.accept(signed.name, signed.serial, what)
    return replace(signed, warnings=tuple(warnings))


def _refuse_unsigned(policy: Policy, where: str) -> None:
    if policy.needs_signature:
        raise OvlError(f"{where}: unsigned, refused (ovl.require={policy})")


def open_sealed(
    bundle: Path,
    signature: Path | None,
    policy: Policy,
    trust: TrustStore,
    identities: list[Identity],
    state: ReplayState | None,
) -> Opened:
    """Verify, check replay, decrypt. OvlError with the cause; no file left behind on error."""
    where = f"bundle {bundle.name}"
    if signature is None:
        _refuse_unsigned(policy, where)
        signed = Signed(None, None, None, ())
    else:
        signed = check_signature(bundle, signature, policy, trust, where)
    warnings = list(signed.warnings)
    if state is not None and signed.name is not None and signed.serial is not None:
        warnings += _check_replay(state, signed.name, signed.serial, policy, where)
    with bundle.open("rb") as stream:
        head = stream.read(64)
    plain, encrypted = bundle, False
    if is_age(head):
        plain, encrypted = _decrypt_to_temp(bundle, identities, where, legacy=False), True
    elif is_legacy(head):
        if not policy.allow_legacy:
            raise OvlError(
                f"{where}: legacy openssl-encrypted bundle refused (unauthenticated;"
                " ovl.require=...,allow-legacy accepts it)"
            )
        integrity = "the signature" if signed.signer else "nothing"
        warnings.append(f"{where}: legacy openssl format (AES-CBC); authenticated by {integrity}")
        plain, encrypted = _decrypt_to_temp(bundle, identities, where, legacy=True), True
    elif policy.needs_encryption:
        raise OvlError(f"{where}: plaintext bundle refused (ovl.require={policy})")
    for line in warnings:
        log.warning("%s", line)
    if state is not None and signed.name is not None and signed.serial is not None:
        state.accept(signed.name, signed.serial)
    return Opened(plain, signed.signer, signed.serial, encrypted, tuple(warnings))


def signed_index(
    signature: Path, policy: Policy, trust: TrustStore, state: ReplayState | None, where: str
) -> IndexDigest | None:
    """The frame index a bundle's signature names, once its signer and trusted comment pass as
    they would for the whole bundle and its serial is no replay (nothing is recorded: the
    frames are yet to come); None when it names none, or cannot vouch for it (ovl.require=none
    and no certified signer). OvlError when the bundle would be refused."""
    signed = check_comment(signature, policy, trust, where)
    if state is not None and signed.name is not None and signed.serial is not None:
        _check_replay(state, signed.name, signed.serial, policy, where)
    if signed.index is not None and policy.needs_encryption:
        # Only a plain bundle's index is signed (an encrypted one shows none).
        raise OvlError(f"{where}: plaintext bundle refused (ovl.require={policy})")
    return signed.index if signed.signer is not None else None


def open_partial(
    bundle: Path,
    signature: Path | None,
    index: IndexDigest,
    policy: Policy,
    trust: TrustStore,
    state: ReplayState | None,
    check_frames: Callable[[], None],
) -> Opened:
    """A partial bundle: some frames of a signed bundle, with its index frame (`index` is that
    frame's size and digest, computed from the partial). The signature's signer and trusted
    comment are checked as check_comment does, and the comment must name `index`; then the
    replay check; then `check_frames()` (every frame held against the index's digests, and
    none this machine reads missing) runs before the serial is recorded. A partial bundle is
    never encrypted (an encrypted bundle has no frames to fetch). OvlError with the cause."""
    where = f"bundle {bundle.name}"
    if signature is None:
        _refuse_unsigned(policy, where)
        signed = Signed(None, None, None, (f"{where}: unsigned, accepted (ovl.require={policy})",))
    else:
        signed = check_comment(signature, policy, trust, where)
    warnings = list(signed.warnings)
    if signed.index is None and signature is not None:
        problem = f"{where}: partial bundle, but its signature names no frame index"
        if policy.needs_signature:
            raise OvlError(problem)
        warnings.append(f"{problem}; frames checked against their own index only")
    elif signed.index is not None and signed.index != index:
        raise OvlError(f"{where}: frame index does not match its signature (tampered)")
    if policy.needs_encryption:
        raise OvlError(f"{where}: plaintext bundle refused (ovl.require={policy})")
    if state is not None and signed.name is not None and signed.serial is not None:
        warnings += _check_replay(state, signed.name, signed.serial, policy, where)
    check_frames()
    for line in warnings:
        log.warning("%s", line)
    if state is not None and signed.name is not None and signed.serial is not None:
        state.accept(signed.name, signed.serial)
    return Opened(bundle, signed.signer, signed.serial, False, tuple(warnings))


def _check_replay(
    state: ReplayState, name: str, serial: int, policy: Policy, where: str, what: str = "bundle"
) -> list[str]:
    """Refuse an older serial, or with allow-rollback accept it with a warning."""
    if not policy.allow_rollback:
        state.check(name, serial, where, what)
        return []
    last = state.highest(name, what)
    if last is not None and serial < last:
        return [f"{where}: serial {serial} older than {last}, accepted (allow-rollback)"]
    return []


def _decrypt_to_temp(bundle: Path, identities: list[Identity], where: str, *, legacy: bool) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{bundle.name}.", suffix=".plain", dir=bundle.parent)
    os.close(fd)
    plain = Path(name)
    try:
        if legacy:
            passphrases = [i for i in identities if isinstance(i, Passphrase)]
            decrypt_legacy(bundle, plain, passphrases, where)
        else:
            decrypt_age(bundle, plain, identities, where)
    except BaseException:
        plain.unlink(missing_ok=True)
        raise
    return plain
