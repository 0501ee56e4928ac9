"""Key files: minisign key pairs (roots, signers), age node identities, certificates, revocations.

Reading secret keys and signing live in ovl.trust.signing (nodes sign deltas with them).
"""

from __future__ import annotations

import argparse
import hashlib
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.core.fs import write_atomic
from ovl.trust.certs import (
    REVOCATIONS_KIND,
    REVOKED_FILE,
    TrustStore,
    cert_comment,
    cert_fields,
    format_expiry,
    parse_revoked,
)
from ovl.trust.keykind import CERTIFICATE, key_kind, wrong_kind
from ovl.trust.minisign import (
    PublicKey,
    Signature,
    key_id_hex,
    parse_public_key,
    parse_signature,
    read_text_file,
)
from ovl.trust.signing import (
    generate_secret_key,
    is_password_protected,
    load_secret_key,
    sign,
)


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
    pub_text = read_text_file(signer_pub, str(signer_pub))
    pub = parse_public_key(pub_text, str(signer_pub))
    if pub.to_text() != pub_text:
        raise BadInput(f"{signer_pub}: not in minisign's two-line form; regenerate with ovl keys")
    root = load_secret_key(root_key)
    digest = hashlib.blake2b(pub_text.encode(), digest_size=64).digest()
    comment = cert_comment(name, expires)
    untrusted = f"ovl certificate of signer {name} key {pub.id_hex}; its .pub follows"
    sig = sign(root, digest, comment, untrusted, tuple(pub_text.splitlines()))
    write_atomic(out, sig.to_text())
    return comment


def add_keys_option(parser: argparse.ArgumentParser) -> None:
    """--keys PATH, default $OVL_KEYS, else keys/."""
    parser.add_argument(
        "--keys",
        type=Path,
        default=env_path("OVL_KEYS") or Path("keys"),
        metavar="PATH",
        help="trusted roots: a directory like keys/, or one root .pub (default $OVL_KEYS or keys)",
    )


def env_path(name: str) -> Path | None:
    """The path an environment variable names, or None when it is unset or empty."""
    value = os.environ.get(name)
    return Path(value) if value else None


def signer_option_specs() -> list[tuple[tuple[str, ...], dict[str, object]]]:
    """--sign-key and --cert, defaults from OVL_SIGN_KEY and OVL_SIGN_CERT; for `add_argument`
    (seal, sign and server share them; `signer_files` reads them)."""
    return [
        (
            ("--sign-key", "--sign"),
            {
                "dest": "sign",
                "type": Path,
                "default": env_path("OVL_SIGN_KEY"),
                "metavar": "SIGNER.key",
                "help": "the signer's secret key (default $OVL_SIGN_KEY)",
            },
        ),
        (
            ("--cert",),
            {
                "type": Path,
                "default": env_path("OVL_SIGN_CERT"),
                "metavar": "SIGNER.cert",
                "help": "its certificate (default $OVL_SIGN_CERT, else SIGNER.cert beside the key)",
            },
        ),
    ]


def signer_files(args: argparse.Namespace) -> tuple[Path, Path] | None:
    """(key, certificate) from --sign-key/--cert or their environment defaults, the
    certificate defaulting to NAME.cert beside NAME.key; None when no key is given."""
    key: Path | None = args.sign
    cert: Path | None = args.cert
    if key is None:
        if cert is not None:
            raise BadInput("--cert without --sign-key (or OVL_SIGN_KEY)")
        return None
    if cert is None:
        cert = key.with_suffix(".cert")
        if not cert.is_file():
            raise BadInput(
                f"--sign-key {key}: no --cert (or OVL_SIGN_CERT), and no {cert} beside it"
            )
    return key, cert


def required_signer(args: argparse.Namespace) -> tuple[Path, Path]:
    """`signer_files`, which must name a key (seal and sign always sign)."""
    files = signer_files(args)
    if files is None:
        raise BadInput("no signer: give --sign-key SIGNER.key (or set OVL_SIGN_KEY)")
    return files


def load_trust(path: Path) -> TrustStore:
    """The trusted roots given by --keys: a directory (as keys/ is on machines: every *.pub a
    root, plus the revocation list) or one root's .pub file."""
    where = f"--keys {path}"
    if path.is_dir():
        store = TrustStore.load(path)
        if not store.roots:
            raise BadInput(f"{where}: no trusted root (*.pub) in this directory")
        return store
    if not path.exists():
        raise BadInput(f"{where}: no such directory or file (the trusted roots, e.g. keys/)")
    return TrustStore((parse_public_key(read_text_file(path, where), where),))


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
    text = read_text_file(path, f"certificate {path}")
    if key_kind(text) != CERTIFICATE:
        raise wrong_kind(f"certificate {path}", CERTIFICATE, text, "made by `ovl keys certify`")
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
    write_atomic(revoked_path, data)
    write_atomic(keys_dir / f"{REVOKED_FILE}.minisig", sig.to_text())
    return parse_revoked(text)


@dataclass(frozen=True)
class KeyFile:
    """What `ovl keys list` says of one key file."""

    path: Path
    kind: str  # public key, secret key, certificate, age recipient, unreadable
    key_id: str | None = None  # upper-case hex; None where the file does not show it
    detail: str = ""  # the key's comment, a certificate's trusted comment, a recipient
    certified_by: str | None = None  # a certificate's root key id
    expires: datetime | None = None  # a certificate's expiry

    def line(self) -> str:
        key_id = self.key_id or ("-" if self.kind == "age recipient" else "?") * 16
        kind = f"{self.kind:<12}"
        if self.kind == "certificate":
            return f"{key_id}  {kind} {self.path.name}  by root {self.certified_by}: {self.detail}"
        return f"{key_id}  {kind} {self.path.name}  {self.detail}".rstrip()

    def to_json(self) -> dict[str, object]:
        return {
            "file": str(self.path),
            "kind": self.kind,
            "key_id": self.key_id,
            "detail": self.detail,
            "certified_by": self.certified_by,
            "expires": None if self.expires is None else format_expiry(self.expires),
        }


def describe_key_file(path: Path) -> KeyFile | None:
    """What an ovl key file is, or None when `path` is not one."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError):
        return None
    try:
        if path.suffix == ".pub" and not path.name.endswith(".age.pub"):
            pub = parse_public_key(text, str(path))
            return KeyFile(path, "public key", pub.id_hex, pub.comment)
        if path.suffix == ".key":
            if is_password_protected(text):
                return KeyFile(path, "secret key", None, "(password-protected)")
            key = load_secret_key(path)
            return KeyFile(path, "secret key", key_id_hex(key.key_id))
        if path.suffix == ".cert":
            cert = read_certificate(path)
            _, expires = cert_fields(cert.comment, f"certificate {path}")
            by = cert.signature.key_id_hex
            return KeyFile(path, "certificate", cert.signer.id_hex, cert.comment, by, expires)
        if path.name.endswith(".age.pub"):
            return KeyFile(path, "age recipient", None, text.strip())
    except (OvlError, ValueError, IndexError):
        return KeyFile(path, "unreadable")
    return None
