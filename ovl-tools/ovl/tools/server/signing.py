"""The server signs what it publishes the way `ovl seal` does: a certified signer key."""

from __future__ import annotations

from pathlib import Path

from ovl.tools.seal import load_certified
from ovl.tools.server.bake import Signer


def certified_signer(key_path: Path, cert_path: Path) -> Signer:
    """A Signer whose signatures carry the certificate, so agents check them against a root."""
    signer = load_certified(key_path, cert_path)

    def sign(path: Path, comment: str) -> str:
        return signer.sign(path, comment, f"ovl server: {comment}, signer certificate follows")

    return sign
