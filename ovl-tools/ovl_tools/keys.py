"""Key files: minisign key pairs (roots, signers), age node identities, certificates, revocations.

Secret keys are written in minisign's own format, unencrypted like `minisign -G -W`, or
scrypt-encrypted like `minisign -G` when a password is given; both kinds are read, the password
coming from OVL_KEY_PASSWORD or a tty prompt.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import os
import secrets
import struct
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from agent.errors import BadInput, OvlError
from agent.trust.certs import (
    REVOCATIONS_KIND,
    REVOKED_FILE,
    TrustStore,
    cert_comment,
    parse_revoked,
)
from agent.trust.minisign import (
    LEGACY,
    PREHASHED,
    UNTRUSTED,
    PublicKey,
    Signature,
    blake2b_file,
    comment_bytes,
    key_id_hex,
    parse_public_key,
    parse_signature,
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


def load_secret_key(path: Path) -> SecretKey:
    """A minisign secret key file, unencrypted or scrypt-encrypted."""
    where = f"secret key {path}"
    try:
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        blob = base64.b64decode(lines[-1], validate=True)
    except (OSError, IndexError, ValueError) as exc:
        raise BadInput(f"{where}: not a readable minisign secret key") from exc
    if len(blob) != 158 or blob[:2] != LEGACY or blob[4:6] != _CHECKSUM_ALG:
        raise BadInput(f"{where}: not a minisign Ed25519 secret key")
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


def _write_new(path: Path, text: str, mode: int) -> None:
    if path.exists():
        raise BadInput(f"{path}: exists; refusing to overwrite a key")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def new_signing_pair(
    directory: Path, name: str, role: str, password: bytes | None = None
) -> tuple[Path, Path]:
    """NAME.key and NAME.pub in minisign's formats; `role` goes in the comments."""
    key = generate_secret_key()
    pub_path, key_path = directory / f"{name}.pub", directory / f"{name}.key"
    comment = f"ovl {role} {name}: minisign public key {key.public_key.id_hex}"
    secret_text = key.to_text(f"ovl {role} {name}: minisign secret key", password)
    _write_new(key_path, secret_text, 0o600)
    _write_new(pub_path, PublicKey(key.key_id, key.public, comment).to_text(), 0o644)
    return key_path, pub_path


def new_node_identity(directory: Path, name: str) -> tuple[Path, Path]:
    """NAME.age (age identity file) and NAME.age.pub (its age1 recipient line)."""
    import pyrage

    identity = pyrage.x25519.Identity.generate()
    recipient = str(identity.to_public())
    created = datetime.now().astimezone().isoformat(timespec="seconds")
    key_path, pub_path = directory / f"{name}.age", directory / f"{name}.age.pub"
    text = f"# created: {created}\n# public key: {recipient}\n{identity}\n"
    _write_new(key_path, text, 0o600)
    _write_new(pub_path, recipient + "\n", 0o644)
    return key_path, pub_path


def certify(root_key: Path, signer_pub: Path, name: str, expires: datetime, out: Path) -> str:
    """Write a certificate: the root's signature over the signer's exact .pub file, then it."""
    pub_text = signer_pub.read_text()
    pub = parse_public_key(pub_text, str(signer_pub))
    if pub.to_text() != pub_text:
        raise BadInput(f"{signer_pub}: not in minisign's two-line form; regenerate with ovl keys")
    root = load_secret_key(root_key)
    digest = hashlib.blake2b(pub_text.encode(), digest_size=64).digest()
    comment = cert_comment(name, expires)
    untrusted = f"ovl certificate of signer {name} key {pub.id_hex}; its .pub follows"
    sig = sign(root, digest, comment, untrusted, tuple(pub_text.splitlines()))
    out.write_text(sig.to_text())
    return comment


@dataclass(frozen=True)
class Certificate:
    """A signer's certificate file: the root's signature, then the signer's .pub lines."""

    text: str
    signature: Signature
    signer: PublicKey

    @property
    def comment(self) -> str:
        return self.signature.trusted_comment


def read_certificate(path: Path) -> Certificate:
    try:
        text = path.read_text()
    except OSError as exc:
        raise BadInput(f"certificate {path}: {exc.strerror}") from exc
    cert = parse_signature(text, f"certificate {path}")
    if len(cert.trailer) != 2:
        raise BadInput(f"certificate {path}: no signer public key after the signature")
    signer = parse_public_key("\n".join(cert.trailer), f"certificate {path}")
    return Certificate(text, cert, signer)


def revoke(root_key: Path, keys_dir: Path, targets: list[str], reason: str) -> frozenset[str]:
    """Add key ids (or the ids of .pub files) to keys_dir/revoked and re-sign it with a root."""
    root = load_secret_key(root_key)
    store = TrustStore.load(keys_dir)
    if not any(r.key_id == root.key_id for r in store.roots):
        raise BadInput(f"{root_key}: not one of the trusted roots in {keys_dir}")
    ids = []
    for target in targets:
        path = Path(target)
        ids.append(parse_public_key(path.read_text(), target).id_hex if path.exists() else target)
    for key_id in ids:
        if len(key_id) != 16 or any(c not in "0123456789ABCDEF" for c in key_id.upper()):
            raise BadInput(f"{key_id}: not a key id (16 hex digits) nor a .pub file")
    revoked_path = keys_dir / REVOKED_FILE
    text = revoked_path.read_text() if revoked_path.exists() else "# key ids no longer trusted\n"
    known = parse_revoked(text)
    note = f"  # {reason}" if reason else ""
    text += "".join(f"{k.upper()}{note}\n" for k in ids if k.upper() not in known)
    data = text.encode()
    digest = hashlib.blake2b(data, digest_size=64).digest()
    sig = sign(
        root, digest, REVOCATIONS_KIND, f"revocation list signed by root {key_id_hex(root.key_id)}"
    )
    # Written side by side, then renamed: a crash in between leaves a list that fails its
    # signature check, and machines refuse bundles rather than trust a revoked key.
    tmp = revoked_path.with_name(f".{REVOKED_FILE}.tmp")
    tmp_sig = revoked_path.with_name(f".{REVOKED_FILE}.minisig.tmp")
    tmp.write_bytes(data)
    tmp_sig.write_text(sig.to_text())
    tmp.replace(revoked_path)
    tmp_sig.replace(keys_dir / f"{REVOKED_FILE}.minisig")
    return parse_revoked(text)


def describe_key_file(path: Path) -> str | None:
    """One line about an ovl key file, or None when `path` is not one."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        if path.suffix == ".pub" and not path.name.endswith(".age.pub"):
            pub = parse_public_key(text, str(path))
            return f"{pub.id_hex}  public key   {path.name}  {pub.comment}"
        if path.suffix == ".key":
            if base64.b64decode(text.splitlines()[-1])[2:4] == _KDF_SCRYPT:
                return f"{'?' * 16}  secret key   {path.name}  (password-protected)"
            key = load_secret_key(path)
            return f"{key_id_hex(key.key_id)}  secret key   {path.name}"
        if path.suffix == ".cert":
            cert = read_certificate(path)
            by = cert.signature.key_id_hex
            return f"{cert.signer.id_hex}  certificate  {path.name}  by root {by}: {cert.comment}"
        if path.name.endswith(".age.pub"):
            return f"{'-' * 16}  age recipient {path.name}  {text.strip()}"
    except (OvlError, ValueError, IndexError):
        return f"{'?' * 16}  unreadable   {path.name}"
    return None
