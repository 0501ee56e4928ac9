"""The server signs what it publishes the way `ovl seal` does: a certified signer key."""

from __future__ import annotations

from pathlib import Path

from agent.errors import BadInput
from agent.trust.signing import load_secret_key, sign_file
from ovl_tools.keys import read_certificate
from ovl_tools.server.bake import Signer


def certified_signer(key_path: Path, cert_path: Path) -> Signer:
    """A Signer whose signatures carry the certificate, so agents check them against a root."""
    key = load_secret_key(key_path)
    cert = read_certificate(cert_path)
    if cert.signer.key_id != key.key_id:
        raise BadInput(
            f"{cert_path}: certifies key {cert.signer.id_hex}, but {key_path} is key"
            f" {key.public_key.id_hex}"
        )
    trailer = tuple(line for line in cert.text.splitlines() if line.strip())

    def sign(path: Path, comment: str) -> str:
        untrusted = f"ovl server: {comment}, signer certificate follows"
        return sign_file(key, path, comment, untrusted, trailer).to_text()

    return sign
