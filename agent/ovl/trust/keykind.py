"""What kind of key (or other file) a text holds, so that an error can say what was expected
and what was found: `alpha.age.pub: expected a minisign public key, found an age recipient
(age1...)` instead of `not base64`. docs/TRUST.md, "Which key is which", lists the kinds."""

from __future__ import annotations

import base64
import binascii

from ovl.core.errors import BadInput

MINISIGN_PUBLIC = "a minisign public key"
MINISIGN_SECRET = "a minisign secret key"
AGE_RECIPIENT = "an age recipient (age1...)"
AGE_IDENTITY = "an age identity (AGE-SECRET-KEY-1...)"
CERTIFICATE = "an ovl signer certificate"


def _minisign_kind(lines: list[str]) -> str | None:
    blob_line = lines[1] if lines[0].startswith("untrusted comment:") and len(lines) > 1 else None
    if blob_line is None:
        return None
    try:
        blob = base64.b64decode(blob_line.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(blob) == 42 and blob[:2] == b"Ed":
        return MINISIGN_PUBLIC
    if len(blob) == 158 and blob[:2] == b"Ed":
        return MINISIGN_SECRET
    if len(blob) == 74 and blob[:2] in (b"Ed", b"ED"):
        trusted = lines[2] if len(lines) > 2 else ""
        if trusted.startswith("trusted comment: ovl-signer "):
            return CERTIFICATE
        if trusted.startswith("trusted comment: ovl-bundle "):
            return "a bundle's signature (.minisig)"
        return "a minisign signature"
    return None


def key_kind(data: bytes | str) -> str:
    """A short description of what `data` holds, for error messages (never raises)."""
    raw = data.encode("utf-8", "surrogateescape") if isinstance(data, str) else data
    if b"\0" in raw[:4096] or raw.startswith(b"\x28\xb5\x2f\xfd"):
        return "binary data (a bundle or image?)"
    text = raw.decode("utf-8", "replace")
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    if not lines:
        return "an empty file"
    first = lines[0]
    if first.startswith("age-encryption.org/") or "BEGIN AGE ENCRYPTED FILE" in first:
        return "an age-encrypted file"
    if "BEGIN OVL BUNDLE" in first:
        return "an armoured bundle"
    if "BEGIN OPENSSH PRIVATE KEY" in first:
        return "an OpenSSH private key"
    if any(line.startswith("AGE-SECRET-KEY-1") for line in lines):
        return AGE_IDENTITY
    if first.startswith("age1"):
        return AGE_RECIPIENT
    if first.startswith(("ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-")):
        return f"an OpenSSH public key ({first.split()[0]})"
    found = _minisign_kind(lines)
    if found is not None:
        return found
    if first.startswith(("{", "[")):
        return "JSON"
    return "text that is no key ovl knows"


def wrong_kind(where: str, expected: str, data: bytes | str, hint: str = "") -> BadInput:
    """`WHERE: expected EXPECTED, found KIND[; HINT]`, for the caller to raise."""
    found = key_kind(data)
    return BadInput(f"{where}: expected {expected}, found {found}{'; ' + hint if hint else ''}")
