"""Seal a bundle: optionally age-encrypt (or armour) it, then sign what is shipped.

OUT.minisig is a minisign signature over OUT (the bytes as shipped, so machines verify before
decrypting) whose trusted comment is `ovl-bundle name=NAME serial=N`, followed by the signer's
certificate file verbatim (certificate lines, then the signer's .pub lines); stock minisign
ignores lines after the fourth. See docs/TRUST.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.errors import BadInput, OvlError
from agent.trust.minisign import PublicKey, Signature, parse_public_key, parse_signature
from agent.trust.open import bundle_comment
from ovl_tools.encode import ArmorWriter
from ovl_tools.keys import load_secret_key, sign_file

_COPY = 1 << 20


def parse_recipient(text: str, where: str) -> Any:
    """An age recipient object from `age1...` or an `ssh-ed25519 AAAA...` line."""
    import pyrage

    text = text.strip()
    try:
        if text.startswith("age1"):
            return pyrage.x25519.Recipient.from_str(text)
        if text.startswith("ssh-ed25519 "):
            return pyrage.ssh.Recipient.from_str(text)
    except pyrage.RecipientError as exc:
        raise BadInput(f"{where}: malformed recipient ({exc})") from exc
    raise BadInput(f"{where}: not an age1... or ssh-ed25519 recipient")


def load_recipients(spec: str) -> list[Any]:
    """A recipient given inline, or every recipient line (no '#' comments) in a file."""
    if spec.startswith(("age1", "ssh-ed25519 ")):
        return [parse_recipient(spec, "recipient")]
    path = Path(spec)
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise BadInput(f"recipient {spec}: neither a recipient nor a readable file") from exc
    found = [
        parse_recipient(line, f"{path}:{number}")
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    if not found:
        raise BadInput(f"recipient file {path}: no recipients")
    return found


@dataclass(frozen=True)
class Certificate:
    """A signer's certificate file: the root's signature, then the signer's .pub lines."""

    text: str
    signature: Signature
    signer: PublicKey


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


@dataclass(frozen=True)
class Sealed:
    out: Path
    signature: Path
    name: str
    serial: int
    encrypted: bool


@contextmanager
def _atomic(dest: Path) -> Iterator[Path]:
    """A temp path beside `dest`, renamed onto it only when the block succeeds."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    os.close(fd)
    temp = Path(name)
    try:
        yield temp
        temp.chmod(0o644)
        temp.replace(dest)
    finally:
        temp.unlink(missing_ok=True)


def _write_payload(
    bundle: Path, dest: Path, recipients: list[Any], passphrase: str | None, armor: bool
) -> None:
    import pyrage

    if passphrase is not None:
        if recipients:
            raise BadInput("a passphrase cannot be combined with -r recipients (age forbids it)")
        # pyrage encrypts with a passphrase only from a whole buffer.
        dest.write_bytes(pyrage.passphrase.encrypt(bundle.read_bytes(), passphrase, armor))
        return
    with bundle.open("rb") as reader, dest.open("wb") as writer:
        if recipients:
            pyrage.encrypt_io(reader, writer, recipients, armor)
        elif armor:
            armour = ArmorWriter(writer)
            while chunk := reader.read(_COPY):
                armour.write(chunk)
            armour.finish()
        else:
            shutil.copyfileobj(reader, writer, _COPY)


def seal_bundle(
    bundle: Path,
    out: Path,
    *,
    signer_key: Path,
    certificate: Path,
    name: str,
    serial: int,
    recipients: list[Any] = [],  # noqa: B006 -- never mutated
    passphrase: str | None = None,
    armor: bool = False,
) -> Sealed:
    """Write OUT (encrypted when recipients or a passphrase are given) and OUT.minisig."""
    if not bundle.is_file():
        raise BadInput(f"{bundle}: not a file")
    if serial < 0:
        raise BadInput(f"serial {serial}: must not be negative")
    comment = bundle_comment(name, serial)
    key = load_secret_key(signer_key)
    cert = read_certificate(certificate)
    if cert.signer.key_id != key.key_id:
        raise BadInput(
            f"{certificate}: certifies key {cert.signer.id_hex}, but {signer_key} is key"
            f" {key.public_key.id_hex}"
        )
    sig_path = out.with_name(out.name + ".minisig")
    with _atomic(out) as payload, _atomic(sig_path) as sig_temp:
        try:
            _write_payload(bundle, payload, recipients, passphrase, armor)
        except OSError as exc:
            raise OvlError(f"{exc.filename or out}: {exc.strerror or exc}") from exc
        trailer = tuple(line for line in cert.text.splitlines() if line.strip())
        untrusted = f"ovl bundle {name} serial {serial}, signer certificate follows"
        sig_temp.write_text(sign_file(key, payload, comment, untrusted, trailer).to_text())
    return Sealed(out, sig_path, name, serial, bool(recipients) or passphrase is not None)
