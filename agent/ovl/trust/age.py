"""Decrypt age files with this machine's identities (pyrage: X25519, SSH ed25519, scrypt).

Identity files: age identity files (`AGE-SECRET-KEY-1...` lines, `#` comments) or unencrypted
OpenSSH ed25519 private keys. A passphrase (OVL_PASSPHRASE, or the first line of a key file)
opens scrypt-recipient files and legacy openssl files.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ovl.core.errors import BadInput, OvlError

MAGIC = b"age-encryption.org/v1\n"
ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
_HEADER_PEEK = 1 << 16


@dataclass(frozen=True)
class AgeIdentity:
    key: Any = field(repr=False)  # a pyrage x25519.Identity or ssh.Identity
    source: str


@dataclass(frozen=True)
class Passphrase:
    secret: str = field(repr=False)
    source: str


Identity = AgeIdentity | Passphrase


def is_age(head: bytes) -> bool:
    return head.startswith(MAGIC) or head.lstrip().startswith(ARMOR_BEGIN)


def load_identity_file(path: Path) -> list[Identity]:
    """The age or SSH identities in a file; BadInput when it holds none."""
    import pyrage

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"identity {path}: {exc.strerror}") from exc
    where = f"identity {path}"
    if b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
        try:
            return [AgeIdentity(pyrage.ssh.Identity.from_buffer(data), str(path))]
        except pyrage.IdentityError as exc:
            raise BadInput(f"{where}: not an unencrypted ssh-ed25519 key ({exc})") from exc
    lines = [line.strip() for line in data.decode(errors="replace").splitlines()]
    secrets = [line for line in lines if line.startswith("AGE-SECRET-KEY-1")]
    if not secrets:
        from ovl.trust.keykind import AGE_IDENTITY, wrong_kind

        raise wrong_kind(where, f"{AGE_IDENTITY} or an OpenSSH private key", data)
    try:
        return [AgeIdentity(pyrage.x25519.Identity.from_str(s), str(path)) for s in secrets]
    except pyrage.IdentityError as exc:
        raise BadInput(f"{where}: malformed age identity ({exc})") from exc


def load_machine_key(path: Path) -> list[Identity]:
    """The machine's key file (`ovl.key=`): age or SSH identities, else a passphrase file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BadInput(f"key file {path}: {exc.strerror}") from exc
    if b"AGE-SECRET-KEY-1" in data or b"-----BEGIN OPENSSH PRIVATE KEY-----" in data:
        return load_identity_file(path)
    return [passphrase_file(path)]


def passphrase_file(path: Path) -> Passphrase:
    """A passphrase from the first line of a key file (as `openssl enc -kfile` reads it)."""
    try:
        first = path.read_text().splitlines()
    except OSError as exc:
        raise BadInput(f"key file {path}: {exc.strerror}") from exc
    if not first or not first[0]:
        raise BadInput(f"key file {path}: first line is empty")
    return Passphrase(first[0], str(path))


def header_stanzas(path: Path) -> list[list[str]]:
    """The recipient stanzas' type and arguments from an age header (binary or armoured)."""
    with path.open("rb") as stream:
        head = stream.read(_HEADER_PEEK)
    if head.lstrip().startswith(ARMOR_BEGIN):
        body = b"".join(head.lstrip().splitlines()[1:])
        body = body.split(b"-----END", 1)[0]
        try:
            head = base64.b64decode(body[: len(body) // 4 * 4])
        except binascii.Error:
            return []
    stanzas = []
    for line in head.split(b"\n")[1:]:
        if line.startswith(b"---"):
            break
        if line.startswith(b"-> "):
            stanzas.append(line[3:].decode(errors="replace").split())
    return stanzas


def describe_recipients(stanzas: list[list[str]]) -> str:
    """What age lets us tell about who a file is for: X25519 recipients are anonymous."""
    x25519 = sum(1 for s in stanzas if s and s[0] == "X25519")
    parts = [f"ssh-ed25519 key tag {s[1]}" for s in stanzas if len(s) > 1 and s[0] == "ssh-ed25519"]
    if x25519:
        parts.append(f"{x25519} X25519 recipient(s), which age does not reveal")
    if any(s and s[0] == "scrypt" for s in stanzas):
        parts.append("a passphrase")
    return ", ".join(parts) or "no recognised recipient"


def decrypt_age(src: Path, dst: Path, identities: list[Identity], where: str) -> None:
    """Decrypt `src` into `dst` (streaming for key recipients); OvlError names the cause."""
    import pyrage

    stanzas = header_stanzas(src)
    if any(s and s[0] == "scrypt" for s in stanzas):
        _decrypt_scrypt(src, dst, [i for i in identities if isinstance(i, Passphrase)], where)
        return
    keys = [i.key for i in identities if isinstance(i, AgeIdentity)]
    if not keys:
        raise OvlError(
            f"{where}: encrypted to {describe_recipients(stanzas)}; this machine has no age key"
        )
    # Unbuffered: pyrage buffers itself, a Python buffer in between only adds a copy.
    with src.open("rb", buffering=0) as reader, dst.open("wb", buffering=0) as writer:
        try:
            pyrage.decrypt_io(reader, writer, keys)
        except pyrage.DecryptError as exc:
            if "No matching keys" in str(exc):
                raise OvlError(
                    f"{where}: not encrypted to this machine's key"
                    f" (encrypted to {describe_recipients(stanzas)})"
                ) from exc
            raise OvlError(
                f"{where}: age decryption failed, truncated or tampered ({exc})"
            ) from exc
        except OSError as exc:
            # pyrage reports a payload chunk that fails authentication as OSError too.
            if "decryption error" not in str(exc):
                raise OvlError(f"{where}: decrypting to {dst}: {exc}") from exc
            raise OvlError(
                f"{where}: age decryption failed, truncated or tampered ({exc})"
            ) from exc


def _decrypt_scrypt(src: Path, dst: Path, passphrases: list[Passphrase], where: str) -> None:
    # pyrage offers passphrase decryption on whole buffers only; passphrase bundles are small.
    import pyrage

    if not passphrases:
        raise OvlError(f"{where}: encrypted with a passphrase; none given (OVL_PASSPHRASE)")
    data = src.read_bytes()
    for passphrase in passphrases:
        try:
            dst.write_bytes(pyrage.passphrase.decrypt(data, passphrase.secret))
            return
        except pyrage.DecryptError:
            continue
    raise OvlError(f"{where}: wrong passphrase, or the file is truncated or tampered")
