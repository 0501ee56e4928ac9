"""Seal a bundle: optionally age-encrypt (or armour) it, then sign what is shipped.

OUT.minisig is a minisign signature over OUT (the bytes as shipped, so machines verify before
decrypting) whose trusted comment is `ovl-bundle name=NAME serial=N`, plus the frame index's
size and sha256 for a plain bundle with one (machines then fetch only their frames), followed
by the signer's certificate file verbatim (certificate lines, then the signer's .pub lines);
stock minisign ignores lines after the fourth. See docs/TRUST.md.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ovl.core.errors import BadInput, OvlError
from ovl.core.fs import atomic_write
from ovl.format.encode import ArmorWriter
from ovl.tools.keys import Certificate, read_certificate
from ovl.trust.certs import CERT_KIND, cert_fields, comment_fields, format_expiry
from ovl.trust.open import IndexDigest, bundle_comment
from ovl.trust.signing import SecretKey, load_secret_key, sign_file

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
    from ovl.trust.keykind import AGE_RECIPIENT, wrong_kind

    raise wrong_kind(where, f"{AGE_RECIPIENT} or an ssh-ed25519 public key", text)


def load_recipients(spec: str) -> list[Any]:
    """A recipient given inline, or every recipient line (no '#' comments) in a file."""
    if spec.startswith(("age1", "ssh-ed25519 ")):
        return [parse_recipient(spec, "recipient")]
    path = Path(spec)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"recipient {spec}: neither a recipient nor a readable file") from exc
    lines = text.splitlines()
    if not any(line.lstrip().startswith(("age1", "ssh-ed25519 ")) for line in lines):
        from ovl.trust.keykind import AGE_RECIPIENT, wrong_kind

        raise wrong_kind(f"recipient file {path}", f"{AGE_RECIPIENT} lines", text)
    return [
        parse_recipient(line, f"{path}:{number}")
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]


@dataclass(frozen=True)
class Sealed:
    out: Path
    signature: Path
    name: str
    serial: int
    encrypted: bool


@dataclass(frozen=True)
class CertifiedKey:
    """A signer's secret key with the certificate that certifies it."""

    key: SecretKey
    certificate: Certificate

    @property
    def name(self) -> str:
        return comment_fields(self.certificate.comment, CERT_KIND, "certificate")["name"]

    def sign(self, path: Path, comment: str, untrusted: str) -> str:
        """A prehashed signature of `path` followed by the certificate file (docs/TRUST.md)."""
        trailer = tuple(line for line in self.certificate.text.splitlines() if line.strip())
        return sign_file(self.key, path, comment, untrusted, trailer).to_text()


def load_certified(signer_key: Path, certificate: Path) -> CertifiedKey:
    """The signer key with its certificate; BadInput when the certificate is for another key
    or has expired (machines would refuse whatever it signs)."""
    cert = read_certificate(certificate)
    name, expires = cert_fields(cert.comment, f"certificate {certificate}")
    if expires <= datetime.now(UTC):
        raise BadInput(
            f"certificate {certificate}: signer {name!r} expired on {format_expiry(expires)};"
            " machines would refuse what it signs (have a root certify the key again)"
        )
    key = load_secret_key(signer_key)
    if cert.signer.key_id != key.key_id:
        raise BadInput(
            f"{certificate}: certifies key {cert.signer.id_hex}, but {signer_key} is key"
            f" {key.public_key.id_hex}"
        )
    return CertifiedKey(key, cert)


def checked_index(bundle: Path) -> IndexDigest | None:
    """The frame index a signature over `bundle` may name: that of a plain bundle whose index
    lists every frame's sha256, once scan_bundle (what `ovl lint` runs) has checked the index
    against every entry and every frame against its digest, so a machine that trusts the
    signed index reads what a full read gives. None when there is none; BadInput when the
    check fails."""
    from ovl.format.frameindex import index_digest, read_index
    from ovl.format.scan import scan_bundle

    try:
        with bundle.open("rb") as raw:
            found = index_digest(raw)
            frames = read_index(raw) if found is not None else None
            if found is None or not frames or not all(frame.sha256 for frame in frames):
                return None
            raw.seek(0)
            scan_bundle(raw)
    except OvlError as exc:
        raise BadInput(f"{bundle}: machines would refuse it: {exc.line}") from None
    return IndexDigest(*found)


def sealing_comment(bundle: Path, name: str, serial: int) -> str:
    """The trusted comment of a signature over `bundle` as shipped: name, serial and, for a
    plain bundle with a frame index, the checked index (`checked_index`)."""
    return bundle_comment(name, serial, checked_index(bundle))


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
    comment = bundle_comment(name, serial)  # a bad name fails before anything is written
    signer = load_certified(signer_key, certificate)
    sig_path = out.with_name(out.name + ".minisig")
    encrypted = bool(recipients) or passphrase is not None
    with atomic_write(out) as payload, atomic_write(sig_path) as sig_temp:
        try:
            _write_payload(bundle, payload.path, recipients, passphrase, armor)
        except OSError as exc:
            raise OvlError(f"{exc.filename or out}: {exc.strerror or exc}") from exc
        if not encrypted and not armor:
            comment = sealing_comment(payload.path, name, serial)
        untrusted = f"ovl bundle {name} serial {serial}, signer certificate follows"
        sig_temp.path.write_text(signer.sign(payload.path, comment, untrusted))
    return Sealed(out, sig_path, name, serial, encrypted)


@dataclass(frozen=True)
class MachineSealed:
    out: Path
    serial: int
    layers: int  # layers kept for this machine (the base is always kept)


def machine_recipients(directory: Path, machine: str) -> list[Any]:
    """DIR/MACHINE.age.pub (from `ovl keys node-new`) or DIR/MACHINE.pub (ssh-ed25519)."""
    for candidate in (directory / f"{machine}.age.pub", directory / f"{machine}.pub"):
        if candidate.is_file():
            return load_recipients(str(candidate))
    raise BadInput(f"machine {machine}: no {machine}.age.pub or {machine}.pub in {directory}")


def keep_layers(bundle: Path, dest: Path, keep: set[str]) -> None:
    """Re-write `bundle` into `dest` (same compression, no armour) without the layers/ folders
    not in `keep`; everything else, pax records included, is copied as it is."""
    import tarfile

    from ovl.format.codec import detect, open_decoded
    from ovl.format.encode import open_encoder
    from ovl.format.paths import member_parts

    with bundle.open("rb") as raw:
        compression = detect(raw).compression
    with bundle.open("rb") as raw, dest.open("wb") as out:
        sink = open_encoder(out, compression, None, False)
        with (
            tarfile.open(fileobj=open_decoded(raw), mode="r|") as source,
            tarfile.open(  # type: ignore[call-overload]
                fileobj=sink, mode="w|", format=tarfile.PAX_FORMAT, bufsize=_COPY
            ) as target,
        ):
            for member in source:
                parts = member_parts(member.name)
                if len(parts) > 1 and parts[0] == "layers" and parts[1] not in keep:
                    continue
                target.addfile(member, source.extractfile(member) if member.isreg() else None)
        sink.finish()


def seal_per_machine(
    bundle: Path,
    fleet_file: Path,
    recipients_dir: Path,
    out_dir: Path,
    *,
    signer_key: Path,
    certificate: Path,
    armor: bool = False,
) -> list[tuple[str, MachineSealed]]:
    """One sealed bundle per fleet machine: base plus the layers it matches, encrypted to its
    key, written as OUT_DIR/<mac>.ovl (+ .minisig) for each of its MACs, dashes for colons."""
    from ovl.format.favors import match_layers
    from ovl.format.scan import scan_bundle
    from ovl.tools.fleet import load_fleet

    fleet = load_fleet(fleet_file)
    with bundle.open("rb") as source:
        info = scan_bundle(source)
    if info.manifest is None or not info.manifest.name:
        raise BadInput(f"{bundle}: --per-machine needs an ovl.json with name and serial")
    name, serial = info.manifest.name, info.manifest.serial
    layer_names = [layer.name for layer in info.layers[1:]]
    # Every machine's recipient and MACs first: a missing one must not leave half a set.
    plans = []
    for machine, facts in fleet.machines.items():
        if not facts.macs:
            raise BadInput(f"{fleet_file}: machine {machine} has no MAC to name its bundle by")
        plans.append((machine, facts, machine_recipients(recipients_dir, machine)))
    if not out_dir.parent.is_dir():
        raise BadInput(f"-o {out_dir}: directory {out_dir.parent} does not exist")
    if out_dir.exists() and not out_dir.is_dir():
        raise BadInput(f"-o {out_dir}: not a directory (--per-machine writes one file per MAC)")
    out_dir.mkdir(exist_ok=True)
    results = []
    for machine, facts, recipients in plans:
        keep = {layer.dirname for layer in match_layers(facts, layer_names)}
        outs = [out_dir / f"{mac.replace(':', '-')}.ovl" for mac in facts.macs]
        fd, scratch = tempfile.mkstemp(prefix=f".{machine}.", suffix=".plain", dir=out_dir)
        os.close(fd)
        plain = Path(scratch)
        try:
            keep_layers(bundle, plain, keep)
            seal_bundle(
                plain,
                outs[0],
                signer_key=signer_key,
                certificate=certificate,
                name=name,
                serial=serial,
                recipients=recipients,
                armor=armor,
            )
        finally:
            plain.unlink(missing_ok=True)
        for extra in outs[1:]:
            for suffix in ("", ".minisig"):
                shutil.copyfile(f"{outs[0]}{suffix}", f"{extra}{suffix}")
        results.append((machine, MachineSealed(outs[0], serial, len(keep))))
    return results
