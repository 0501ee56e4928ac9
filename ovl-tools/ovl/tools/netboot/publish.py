"""Put a profile's netboot in place: kernel, initramfs and images copied into
DIR/profiles/<p>/netboot/, boot.json written last; machine entries by MAC or UUID."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.core.facts import normalize_mac
from ovl.core.fs import atomic_write, write_atomic
from ovl.tools.initramfs.uki import check_bzimage
from ovl.tools.netboot.choose import is_uuid
from ovl.tools.netboot.config import BOOT_FILE, MACHINES_DIR, check_cmdline
from ovl.tools.server.store import check_name
from ovl.trust.keynames import uuid_key_name

_FILE_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-")


def netboot_dir(root: Path, profile: str) -> Path:
    return root / "profiles" / check_name("profile", profile) / "netboot"


def _served_name(path: Path, what: str) -> str:
    name = path.name
    if not set(name) <= _FILE_CHARS or name.startswith("."):
        raise BadInput(f"{what} {path}: rename it to letters, digits, '.', '_', '+', '-'")
    if not path.is_file():
        raise BadInput(f"{what} {path}: no such file")
    return name


def publish(
    root: Path,
    profile: str,
    kernel: Path,
    initrd: Path,
    images: Sequence[Path] = (),
    cmdline: str = "",
) -> dict[str, object]:
    """Copy the files in (each atomically), then write boot.json; the boot.json written."""
    directory = netboot_dir(root, profile)
    check_bzimage(kernel)
    files = {_served_name(kernel, "kernel"): kernel, _served_name(initrd, "initramfs"): initrd}
    image_names = []
    for image in images:
        image_names.append(_served_name(image, "image"))
        files[image_names[-1]] = image
        signature = image.with_name(image.name + ".minisig")
        if signature.is_file():
            files[signature.name] = signature
    if len(files) < 2 + len(images):
        raise BadInput("kernel, initramfs and images need names of their own")
    boot: dict[str, object] = {
        "kernel": kernel.name,
        "initrd": initrd.name,
        "images": image_names,
        "cmdline": check_cmdline(cmdline, "--cmdline"),
    }
    for name, source in files.items():
        with atomic_write(directory / name) as staged:
            shutil.copyfile(source, staged.path)
    write_atomic(directory / BOOT_FILE, json.dumps(boot, indent=2) + "\n")
    return boot


def add_machine(
    root: Path,
    profile: str,
    *,
    mac: str | None,
    uuid: str | None,
    order: int = 10,
    cmdline: str = "",
) -> Path:
    """Write machines/<NN>-<mac>.json or <NN>-machine=<uuid>.json for one machine."""
    directory = netboot_dir(root, profile)
    if not (directory / BOOT_FILE).is_file():
        raise BadInput(f"profile {profile}: no netboot yet (ovl netboot publish {profile} ...)")
    if (mac is None) == (uuid is None):
        raise BadInput("give --mac or --uuid (one of them)")
    if not 0 <= order <= 999_999_999:
        raise BadInput(f"--order {order}: expected 0 to 999999999")
    if mac is not None:
        favor = normalize_mac(mac)
    else:
        name = uuid_key_name(uuid or "") if is_uuid(uuid or "") else None
        if name is None:
            raise BadInput(f"--uuid {uuid}: not a UUID, or a placeholder that names no machine")
        favor = f"machine={name}"
    entry = {"cmdline": check_cmdline(cmdline, "--cmdline")} if cmdline else {}
    path = directory / MACHINES_DIR / f"{order:02d}-{favor}.json"
    write_atomic(path, json.dumps(entry, indent=2) + "\n")
    return path
