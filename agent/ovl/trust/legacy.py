"""Read the predecessor's format: `openssl enc -aes-256-cbc -pbkdf2 [-a]` of a (zlib) tar.

Layout: "Salted__" || salt[8] || AES-256-CBC(PKCS#7-padded plain), key and IV from
PBKDF2-HMAC-SHA256(passphrase, salt, 10000 iterations, 48 bytes) -- openssl's defaults for
`-pbkdf2`. With `-a` the whole is base64 in 64-column lines. Nothing authenticates it, which is
why ovl.require must say allow-legacy before it is read.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from ovl.core.errors import OvlError
from ovl.trust.age import Passphrase

SALTED = b"Salted__"
SALTED_B64 = b"U2FsdGVkX1"  # base64 of "Salted__" up to the first byte that depends on the salt
PBKDF2_ITERATIONS = 10_000
_CHUNK = 1 << 20


def is_legacy(head: bytes) -> bool:
    return head.startswith(SALTED) or head.lstrip().startswith(SALTED_B64)


def _raw_chunks(stream: BinaryIO, armoured: bool) -> Iterator[bytes]:
    """The binary ciphertext, base64-decoded on the fly when `armoured`."""
    pending = b""
    while chunk := stream.read(_CHUNK):
        if not armoured:
            yield chunk
            continue
        pending += b"".join(chunk.split())
        cut = len(pending) // 4 * 4
        yield base64.b64decode(pending[:cut], validate=True)
        pending = pending[cut:]
    if pending:
        raise binascii.Error("base64 text ends mid-quantum")


def _decrypt_with(src: Path, dst: Path, secret: str) -> bool:
    """False when the padding shows the passphrase is wrong."""
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

    with src.open("rb") as stream, dst.open("wb") as out:
        armoured = not stream.read(len(SALTED)).startswith(SALTED)
        stream.seek(0)
        chunks = _raw_chunks(stream, armoured)
        first = b""
        for chunk in chunks:
            first += chunk
            if len(first) >= 16:
                break
        if not first.startswith(SALTED) or len(first) < 16:
            raise OvlError(f"{src}: not an openssl 'Salted__' file")
        kdf = PBKDF2HMAC(hashes.SHA256(), 48, first[8:16], PBKDF2_ITERATIONS)
        material = kdf.derive(secret.encode())
        decryptor = Cipher(algorithms.AES256(material[:32]), modes.CBC(material[32:])).decryptor()
        unpadder = padding.PKCS7(128).unpadder()
        out.write(unpadder.update(decryptor.update(first[16:])))
        for chunk in chunks:
            out.write(unpadder.update(decryptor.update(chunk)))
        try:
            out.write(unpadder.update(decryptor.finalize()) + unpadder.finalize())
        except ValueError:
            return False
    return True


def decrypt_legacy(src: Path, dst: Path, passphrases: list[Passphrase], where: str) -> None:
    """Decrypt into `dst` with the first passphrase whose padding checks out."""
    if not passphrases:
        raise OvlError(f"{where}: legacy openssl bundle needs a passphrase or key file")
    try:
        for passphrase in passphrases:
            if _decrypt_with(src, dst, passphrase.secret):
                return
    except (binascii.Error, ValueError) as exc:
        raise OvlError(f"{where}: legacy openssl bundle is damaged ({exc})") from exc
    raise OvlError(f"{where}: legacy openssl bundle: wrong passphrase or key file (bad padding)")
