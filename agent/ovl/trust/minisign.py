"""minisign public keys and signatures: parse and verify (legacy 'Ed' and prehashed 'ED').

Formats (https://jedisct1.github.io/minisign/):
  public key  untrusted comment line, base64("Ed" || key_id[8] || ed25519_pk[32])
  signature   untrusted comment line, base64(alg[2] || key_id[8] || sig[64]),
              "trusted comment: " line, base64(global_sig[64])
  'Ed' signs the file itself, 'ED' signs BLAKE2b-512 of the file; global_sig signs
  sig || trusted comment. Lines after the fourth are ignored by stock minisign; ovl uses them
  to carry the signer's public key and certificate (docs/TRUST.md).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import mmap
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import BadInput, OvlError

UNTRUSTED = "untrusted comment: "
TRUSTED = "trusted comment: "
LEGACY = b"Ed"
PREHASHED = b"ED"
MAX_TEXT_BYTES = 64 << 10  # far above any key, signature or certificate; a fetched file is hostile


def key_id_hex(key_id: bytes) -> str:
    """The key id as minisign prints it: the little-endian 64-bit number in upper-case hex."""
    return key_id[::-1].hex().upper()


@dataclass(frozen=True)
class PublicKey:
    key_id: bytes
    key: bytes
    comment: str = ""

    @property
    def id_hex(self) -> str:
        return key_id_hex(self.key_id)

    def to_text(self) -> str:
        blob = base64.b64encode(LEGACY + self.key_id + self.key).decode()
        return f"{UNTRUSTED}{self.comment or 'minisign public key ' + self.id_hex}\n{blob}\n"


@dataclass(frozen=True)
class Signature:
    algorithm: bytes
    key_id: bytes
    signature: bytes
    trusted_comment: str
    global_signature: bytes
    untrusted_comment: str = ""
    trailer: tuple[str, ...] = ()

    @property
    def key_id_hex(self) -> str:
        return key_id_hex(self.key_id)

    def to_text(self) -> str:
        blob = base64.b64encode(self.algorithm + self.key_id + self.signature).decode()
        glob = base64.b64encode(self.global_signature).decode()
        lines = [UNTRUSTED + self.untrusted_comment, blob, TRUSTED + self.trusted_comment, glob]
        return "".join(line + "\n" for line in (*lines, *self.trailer))


def _b64(line: str, where: str) -> bytes:
    try:
        return base64.b64decode(line.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadInput(f"{where}: not base64") from exc


def _comment(line: str, prefix: str, where: str) -> str:
    if not line.startswith(prefix):
        raise BadInput(f"{where}: expected a line starting with {prefix.strip()!r}")
    return line[len(prefix) :]


def read_text_file(path: Path, where: str) -> str:
    """A key or signature file as text; bytes that are not UTF-8 survive (surrogateescape)."""
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_TEXT_BYTES + 1)
    except OSError as exc:
        raise BadInput(f"{where}: cannot read {path} ({exc.strerror})") from exc
    if len(data) > MAX_TEXT_BYTES:
        raise BadInput(f"{where}: {path.name} is larger than {MAX_TEXT_BYTES} bytes")
    return data.decode("utf-8", "surrogateescape")


def comment_bytes(comment: str) -> bytes:
    return comment.encode("utf-8", "surrogateescape")


def _lines(text: str) -> list[str]:
    """Lines as minisign reads them: split on LF only, a trailing CR dropped."""
    return [line.removesuffix("\r") for line in text.split("\n")]


def parse_public_key(text: str, where: str = "public key") -> PublicKey:
    """A minisign public key from its file text, or from the bare base64 line; BadInput
    naming what the text holds instead (an age recipient, a secret key...)."""
    try:
        return _parse_public_key(text, where)
    except BadInput:
        from ovl.trust.keykind import MINISIGN_PUBLIC, key_kind, wrong_kind

        if key_kind(text) in (MINISIGN_PUBLIC, "text that is no key ovl knows"):
            raise
        raise wrong_kind(where, MINISIGN_PUBLIC, text) from None


def _parse_public_key(text: str, where: str) -> PublicKey:
    lines = [line for line in _lines(text) if line.strip()]
    comment = ""
    if lines and lines[0].startswith(UNTRUSTED):
        comment = _comment(lines.pop(0), UNTRUSTED, where)
    if not lines:
        raise BadInput(f"{where}: empty")
    blob = _b64(lines[0], where)
    if len(blob) != 42 or blob[:2] != LEGACY:
        raise BadInput(f"{where}: not a minisign Ed25519 public key")
    return PublicKey(key_id=blob[2:10], key=blob[10:], comment=comment)


def parse_signature(text: str, where: str = "signature") -> Signature:
    """A minisign signature file; lines after the fourth are kept as `trailer`. BadInput
    naming what the text holds when it is another kind of file (a key, say)."""
    try:
        return _parse_signature(text, where)
    except BadInput:
        from ovl.trust.keykind import key_kind, wrong_kind

        found = key_kind(text)
        if "signature" in found or "certificate" in found or found.startswith("text that"):
            raise
        raise wrong_kind(where, "a minisign signature", text) from None


def _parse_signature(text: str, where: str) -> Signature:
    lines = _lines(text)
    if len(lines) < 4:
        raise BadInput(f"{where}: truncated (a minisign signature has 4 lines)")
    untrusted = _comment(lines[0], UNTRUSTED, where)
    blob = _b64(lines[1], where)
    if len(blob) != 74 or blob[:2] not in (LEGACY, PREHASHED):
        raise BadInput(f"{where}: not a minisign Ed25519 signature")
    trusted = _comment(lines[2], TRUSTED, where)
    global_sig = _b64(lines[3], where)
    if len(global_sig) != 64:
        raise BadInput(f"{where}: global signature has the wrong length")
    return Signature(
        algorithm=blob[:2],
        key_id=blob[2:10],
        signature=blob[10:],
        trusted_comment=trusted,
        global_signature=global_sig,
        untrusted_comment=untrusted,
        trailer=tuple(line for line in lines[4:] if line.strip()),
    )


def blake2b_file(path: Path) -> bytes:
    """BLAKE2b-512 of a file (minisign's prehash), hashed from a read-only map: no copies.

    OpenSSL's BLAKE2b (through cryptography) hashes ~20% faster than hashlib's here, and this
    hash is most of the cost of verifying a large bundle.
    """
    from cryptography.hazmat.primitives import hashes

    digest = hashes.Hash(hashes.BLAKE2b(64))
    if path.stat().st_size > 0:
        with (
            path.open("rb") as stream,
            mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            memoryview(mapped) as view,
        ):
            digest.update(view)
    return digest.finalize()


def _ed25519_ok(key: bytes, signature: bytes, message: bytes | memoryview) -> bool:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(key).verify(signature, message)
    except InvalidSignature:
        return False
    return True


def verify_comment(key: PublicKey, sig: Signature, where: str) -> None:
    """Check that `key` made `sig` and its trusted comment (the global signature covers the
    signature and the comment, not the file); OvlError names the failure."""
    if key.key_id != sig.key_id:
        raise OvlError(
            f"{where}: signed by key {sig.key_id_hex}, expected key {key.id_hex}",
        )
    if not _ed25519_ok(
        key.key, sig.global_signature, sig.signature + comment_bytes(sig.trusted_comment)
    ):
        raise OvlError(f"{where}: trusted comment does not match its signature (tampered)")


def verify_bytes(key: PublicKey, sig: Signature, message: bytes, where: str) -> None:
    """Verify a signature over a small in-memory message; OvlError names the failure."""
    verify_comment(key, sig, where)
    signed = (
        hashlib.blake2b(message, digest_size=64).digest() if sig.algorithm == PREHASHED else message
    )
    if not _ed25519_ok(key.key, sig.signature, signed):
        raise OvlError(f"{where}: signature does not match (tampered or truncated)")


def verify_file(key: PublicKey, sig: Signature, path: Path, where: str) -> None:
    """Verify a signature over a file without holding it in memory twice."""
    verify_comment(key, sig, where)
    if sig.algorithm == PREHASHED:
        ok = _ed25519_ok(key.key, sig.signature, blake2b_file(path))
    elif path.stat().st_size == 0:
        ok = _ed25519_ok(key.key, sig.signature, b"")
    else:
        # Legacy 'Ed' signs the whole message: map the file instead of reading a copy.
        with (
            path.open("rb") as stream,
            mmap.mmap(stream.fileno(), 0, access=mmap.ACCESS_READ) as mapped,
            memoryview(mapped) as view,
        ):
            ok = _ed25519_ok(key.key, sig.signature, view)
    if not ok:
        raise OvlError(f"{where}: signature does not match (tampered or truncated)")
