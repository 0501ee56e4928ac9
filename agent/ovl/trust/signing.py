"""minisign secret keys and signing, so nodes sign deltas without the stock minisign binary.

Secret key files are minisign's own format, unencrypted like `minisign -G -W`, or
scrypt-encrypted like `minisign -G`; both are read, the password coming from OVL_KEY_PASSWORD
or a tty prompt. Signatures are prehashed ('ED'), which stock minisign verifies.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.trust.minisign import (
    LEGACY,
    PREHASHED,
    UNTRUSTED,
    PublicKey,
    Signature,
    blake2b_file,
    comment_bytes,
)

_KDF_NONE = b"\0\0"
_KDF_SCRYPT = b"Sc"
_CHECKSUM_ALG = b"B2"
# libsodium's scryptsalsa208sha256 "sensitive" limits, which minisign -G uses (1 GiB, ~3 s).
_OPSLIMIT_SENSITIVE = 33554432
_MEMLIMIT_SENSITIVE = 1073741824


@dataclass(frozen=True)
class SecretKey:
    key_id: bytes
    seed: bytes = field(repr=False)
    public: bytes

    @property
    def public_key(self) -> PublicKey:
        return PublicKey(self.key_id, self.public)

    def _checksum(self) -> bytes:
        return hashlib.blake2b(
            LEGACY + self.key_id + self.seed + self.public, digest_size=32
        ).digest()

    def to_text(self, comment: str, password: bytes | None = None) -> str:
        """minisign's secret key file; with a password, scrypt-encrypted as `minisign -G` does."""
        keynum = self.key_id + self.seed + self.public + self._checksum()
        kdf, salt, limits = _KDF_NONE, bytes(32), bytes(16)
        if password is not None:
            kdf, salt = _KDF_SCRYPT, secrets.token_bytes(32)
            limits = struct.pack("<QQ", _OPSLIMIT_SENSITIVE, _MEMLIMIT_SENSITIVE)
            stream = _scrypt_stream(password, salt, limits, len(keynum))
            keynum = bytes(a ^ b for a, b in zip(keynum, stream, strict=True))
        blob = LEGACY + kdf + _CHECKSUM_ALG + salt + limits + keynum
        return f"{UNTRUSTED}{comment}\n{base64.b64encode(blob).decode()}\n"

    def sign(self, message: bytes) -> bytes:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        return Ed25519PrivateKey.from_private_bytes(self.seed).sign(message)


def _public_of(seed: bytes) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def generate_secret_key() -> SecretKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    seed = Ed25519PrivateKey.generate().private_bytes_raw()
    return SecretKey(secrets.token_bytes(8), seed, _public_of(seed))


def _scrypt_params(opslimit: int, memlimit: int) -> tuple[int, int, int]:
    """(N, r, p) the way libsodium's crypto_pwhash_scryptsalsa208sha256 picks them."""
    opslimit = max(opslimit, 32768)
    r = 8
    if opslimit < memlimit // 32:
        max_n = opslimit // (r * 4)
        p = 1
    else:
        max_n = memlimit // (r * 128)
    n_log2 = 1
    while n_log2 < 63 and (1 << n_log2) <= max_n // 2:
        n_log2 += 1
    if opslimit >= memlimit // 32:
        p = min((opslimit // 4) // (1 << n_log2), 0x3FFFFFFF) // r
    return 1 << n_log2, r, p


def _scrypt_stream(password: bytes, salt: bytes, limits: bytes, length: int) -> bytes:
    from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

    n, r, p = _scrypt_params(*struct.unpack("<QQ", limits))
    return Scrypt(salt=salt, length=length, n=n, r=r, p=p).derive(password)


def _password(path: Path) -> bytes:
    password = os.environ.get("OVL_KEY_PASSWORD")
    if password is None:
        if not os.isatty(0):
            raise BadInput(f"secret key {path}: encrypted; set OVL_KEY_PASSWORD")
        password = getpass.getpass(f"password for {path}: ")
    return password.encode()


def is_password_protected(text: str) -> bool:
    """Whether a minisign secret key file's text is scrypt-encrypted (read without a password)."""
    return base64.b64decode(text.splitlines()[-1])[2:4] == _KDF_SCRYPT


def load_secret_key(path: Path) -> SecretKey:
    """A minisign secret key file, unencrypted or scrypt-encrypted."""
    where = f"secret key {path}"
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"{where}: cannot read it ({exc.strerror})") from exc
    try:
        lines = [line for line in data.decode().splitlines() if line.strip()]
        blob = base64.b64decode(lines[-1], validate=True)
    except (IndexError, ValueError):
        blob = b""
    if len(blob) != 158 or blob[:2] != LEGACY or blob[4:6] != _CHECKSUM_ALG:
        from ovl.trust.keykind import MINISIGN_PUBLIC, MINISIGN_SECRET, key_kind, wrong_kind

        public = key_kind(data) == MINISIGN_PUBLIC
        hint = "that is the public half of a key pair: pass NAME.key" if public else ""
        raise wrong_kind(where, MINISIGN_SECRET, data, hint)
    kdf, salt, keynum = blob[2:4], blob[6:38], blob[54:]
    if kdf == _KDF_SCRYPT:
        stream = _scrypt_stream(_password(path), salt, blob[38:54], len(keynum))
        keynum = bytes(a ^ b for a, b in zip(keynum, stream, strict=True))
    elif kdf != _KDF_NONE:
        raise BadInput(f"{where}: unknown key derivation {kdf!r}")
    key = SecretKey(keynum[:8], keynum[8:40], keynum[40:72])
    # Stock `minisign -G -W` leaves the checksum of an unencrypted key zeroed.
    unchecked = kdf == _KDF_NONE and keynum[72:] == bytes(32)
    if not unchecked and key._checksum() != keynum[72:]:
        raise BadInput(f"{where}: checksum mismatch (wrong password or damaged key)")
    if _public_of(key.seed) != key.public:
        raise BadInput(f"{where}: damaged (its public half does not match its seed)")
    return key


def sign(
    key: SecretKey,
    digest: bytes,
    trusted_comment: str,
    untrusted_comment: str,
    trailer: tuple[str, ...] = (),
) -> Signature:
    """A prehashed ('ED') minisign signature given the message's BLAKE2b-512 digest."""
    if "\n" in trusted_comment or "\n" in untrusted_comment:
        raise BadInput("signature comments must be one line")
    signature = key.sign(digest)
    return Signature(
        algorithm=PREHASHED,
        key_id=key.key_id,
        signature=signature,
        trusted_comment=trusted_comment,
        global_signature=key.sign(signature + comment_bytes(trusted_comment)),
        untrusted_comment=untrusted_comment,
        trailer=trailer,
    )


def sign_file(
    key: SecretKey,
    path: Path,
    trusted_comment: str,
    untrusted_comment: str,
    trailer: tuple[str, ...] = (),
) -> Signature:
    return sign(key, blake2b_file(path), trusted_comment, untrusted_comment, trailer)
