"""Signed bundles for VM boots: a throwaway trust root and `ovl pack` + `ovl seal` of a tree."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.vmkit.ovlcommand import ovl


@dataclass(frozen=True)
class Signer:
    """A signer certified by a fresh root; `keys` holds only the root's public key."""

    key: Path
    cert: Path
    keys: Path


def make_signer(directory: Path, name: str = "vm-test") -> Signer:
    """`ovl keys` a root and a signer in `directory`, the root certifying the signer."""
    secrets, keys = directory / "secrets", directory / "keys"
    secrets.mkdir(parents=True)
    keys.mkdir()
    ovl("keys", "root-new", "root", "-d", secrets)
    ovl("keys", "signer-new", "signer", "-d", secrets)
    cert = secrets / "signer.cert"
    ovl("keys", "certify", secrets / "signer.pub", "--root", secrets / "root.key",
        "--name", name, "--expires", "2099-01-01", "-o", cert)  # fmt: skip
    (keys / "root.pub").write_bytes((secrets / "root.pub").read_bytes())
    return Signer(key=secrets / "signer.key", cert=cert, keys=keys)


def seal_tree(
    tree: Mapping[str, str],
    work: Path,
    output: Path,
    signer: Signer,
    recipients: Sequence[Path] = (),
    *,
    armor: bool = False,
) -> Path:
    """Write `tree` (relative path -> text) below `work`, pack it, seal it to `output`.

    With `recipients` (age public key files) the bundle is encrypted to them; with `armor` it
    is base64 text. The signature lands beside the output as `<output>.minisig`.
    """
    source, packed = work / "tree", work / "packed.ovl"
    for relative, text in tree.items():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    ovl("pack", source, "-o", packed)
    output.parent.mkdir(parents=True, exist_ok=True)
    encrypt_to = [arg for recipient in recipients for arg in ("-r", str(recipient))]
    armor_args = ["--armor"] if armor else []
    ovl("seal", packed, "--sign", signer.key, "--cert", signer.cert, *encrypt_to, *armor_args,
        "-o", output)  # fmt: skip
    return output
