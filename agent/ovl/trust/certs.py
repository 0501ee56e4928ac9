"""Signer certificates and the trust store they are checked against.

A certificate is a minisign signature, by a root key, over the signer's exact `.pub` file, with
the trusted comment `ovl-signer name=NAME expires=YYYY-MM-DDTHH:MM:SSZ`; stock
`minisign -V -p ROOT.pub -m SIGNER.pub -x SIGNER.cert` verifies it. The trust store is a
directory (`keys/` in the initramfs): every `*.pub` is a trusted root, and `revoked` (one key id
per line, `#` comments) with `revoked.minisig`, signed by a root, lists keys no longer trusted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.trust.minisign import (
    PublicKey,
    Signature,
    comment_bytes,
    parse_public_key,
    parse_signature,
    read_text_file,
    verify_bytes,
)

CERT_KIND = "ovl-signer"
REVOCATIONS_KIND = "ovl-revocations"
REVOKED_FILE = "revoked"


def comment_fields(comment: str, kind: str, where: str) -> dict[str, str]:
    """`KIND key=value key=value` → {key: value}; BadInput unless it starts with `kind`."""
    words = comment.split()
    if not words or words[0] != kind:
        raise BadInput(f"{where}: trusted comment is not an {kind} comment: {comment!r}")
    fields: dict[str, str] = {}
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep:
            raise BadInput(f"{where}: trusted comment word {word!r} is not key=value")
        fields[key] = value
    return fields


def format_expiry(when: datetime) -> str:
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def cert_comment(name: str, expires: datetime) -> str:
    if not name or any(c.isspace() or c == "=" for c in name):
        raise BadInput(f"signer name {name!r}: must be non-empty, without spaces or '='")
    return f"{CERT_KIND} name={name} expires={format_expiry(expires)}"


def cert_fields(comment: str, where: str) -> tuple[str, datetime]:
    """The signer name and expiry a certificate's trusted comment states; BadInput otherwise."""
    fields = comment_fields(comment, CERT_KIND, f"{where}: certificate")
    name = fields.get("name", "")
    try:
        expires = datetime.fromisoformat(fields.get("expires", ""))
    except ValueError as exc:
        raise BadInput(f"{where}: certificate of {name!r} has no valid expires=") from exc
    return name, expires if expires.tzinfo is not None else expires.replace(tzinfo=UTC)


@dataclass(frozen=True)
class SignerCert:
    name: str
    expires: datetime
    root_id: str


def parse_revoked(text: str) -> frozenset[str]:
    """Key ids (upper-case hex), one per line; `#` starts a comment."""
    ids = set()
    for raw in text.splitlines():
        word = raw.split("#", 1)[0].strip()
        if word:
            ids.add(word.upper())
    return frozenset(ids)


@dataclass(frozen=True)
class TrustStore:
    roots: tuple[PublicKey, ...]
    revoked: frozenset[str] = frozenset()

    @classmethod
    def load(cls, keys_dir: Path) -> TrustStore:
        """Roots and the (root-signed) revocation list from a keys directory."""
        roots = tuple(
            parse_public_key(read_text_file(p, str(p)), str(p))
            for p in sorted(keys_dir.glob("*.pub"))
        )
        store = cls(roots)
        revoked_path = keys_dir / REVOKED_FILE
        if not revoked_path.exists():
            return store
        sig_path = keys_dir / f"{REVOKED_FILE}.minisig"
        if not sig_path.exists():
            raise OvlError(f"{revoked_path}: revocation list has no signature {sig_path.name}")
        data = revoked_path.read_bytes()
        sig = parse_signature(read_text_file(sig_path, str(sig_path)), str(sig_path))
        store.verify_by_root(sig, data, str(revoked_path))
        comment_fields(sig.trusted_comment, REVOCATIONS_KIND, str(sig_path))
        return cls(roots, parse_revoked(data.decode("utf-8", "replace")))

    def verify_by_root(self, sig: Signature, message: bytes, where: str) -> PublicKey:
        """The trusted root that made `sig` over `message`; OvlError otherwise."""
        root = next((r for r in self.roots if r.key_id == sig.key_id), None)
        if root is None:
            trusted = ", ".join(r.id_hex for r in self.roots) or "none"
            raise OvlError(
                f"{where}: signed by key {sig.key_id_hex}, which is not a trusted root"
                f" (trusted roots: {trusted})"
            )
        if root.id_hex in self.revoked:
            raise OvlError(f"{where}: root key {root.id_hex} is revoked")
        verify_bytes(root, sig, message, where)
        return root

    def check_signer(
        self, signer_pub: str, cert: Signature, where: str, now: datetime | None = None
    ) -> SignerCert:
        """Check that a root certified the signer key in `signer_pub`, unexpired, unrevoked."""
        signer = parse_public_key(signer_pub, f"{where}: signer key")
        try:
            self.verify_by_root(cert, comment_bytes(signer_pub), "certificate")
        except OvlError as exc:
            # A signer's own .pub among the roots is a common mix-up: say so.
            mixup = any(r.key_id == signer.key_id for r in self.roots)
            hint = "; the signer's own public key is among the roots, not the root's" * mixup
            raise OvlError(
                f"{where}: signer key {signer.id_hex} is not certified by a trusted root"
                f" ({exc}){hint}"
            ) from exc
        name, expires = cert_fields(cert.trusted_comment, where)
        if signer.id_hex in self.revoked:
            raise OvlError(f"{where}: signer {name!r} (key {signer.id_hex}) is revoked")
        if (now or datetime.now(UTC)) >= expires:
            raise OvlError(
                f"{where}: certificate of signer {name!r} expired on {format_expiry(expires)}"
            )
        return SignerCert(name=name, expires=expires, root_id=cert.key_id_hex)
