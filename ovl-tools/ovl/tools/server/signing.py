"""The server signs what it publishes the way `ovl seal` does (a certified signer key), and
says who signed each version (`history`, the status page)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.tools.seal import load_certified
from ovl.tools.server.bake import Signer
from ovl.tools.server.store import Version
from ovl.trust.certs import cert_fields
from ovl.trust.minisign import parse_signature, read_text_file
from ovl.trust.open import split_chain


def certified_signer(key_path: Path, cert_path: Path) -> Signer:
    """A Signer whose signatures carry the certificate, so agents check them against a root."""
    signer = load_certified(key_path, cert_path)

    def sign(path: Path, comment: str) -> str:
        return signer.sign(path, comment, f"ovl server: {comment}, signer certificate follows")

    return sign


@dataclass(frozen=True)
class SignedBy:
    key_id: str  # the signing key's id, as minisign prints it (16 hex digits)
    name: str | None  # the signer's name from the certificate it carries, if any

    def __str__(self) -> str:
        return f"{self.name or '(no certificate)'} ({self.key_id})"

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "key_id": self.key_id}


def signed_by(version: Version) -> SignedBy | None:
    """Who signed a published version (from its `.minisig`), or None when it is unsigned.
    The signature itself was checked when the version was published."""
    path = version.signature
    if not version.signed:
        return None
    where = str(path)
    try:
        signature = parse_signature(read_text_file(path, where), where)
        chain = split_chain(signature, where)
        name = None if chain is None else cert_fields(chain[1].trusted_comment, where)[0]
    except OvlError as exc:
        raise OvlError(f"profile {version.profile} version {version.number}: {exc.line}") from exc
    return SignedBy(signature.key_id_hex, name)
