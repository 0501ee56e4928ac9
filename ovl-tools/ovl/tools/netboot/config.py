"""The netboot files of a server directory (docs/NETBOOT.md), read and checked into dataclasses.

    DIR/netboot.json                                   settings (netboot.schema.json)
    DIR/profiles/<p>/netboot/boot.json                 the profile's boot (boot.schema.json)
    DIR/profiles/<p>/netboot/machines/<NN-favors>.json its machines, by layer-name favors
    DIR/profiles/<p>/netboot/<file>                    kernel, initramfs, images: served as
                                                       /profiles/<p>/netboot/<file>

Errors name the file and the JSON path, on one line (BadInput).
"""

from __future__ import annotations

import enum
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovl.core.errors import BadInput
from ovl.format.favors import LayerName, parse_layer_name

SETTINGS_FILE = "netboot.json"
BOOT_FILE = "boot.json"
MACHINES_DIR = "machines"
_FILE = re.compile(r"^[A-Za-z0-9_+-][A-Za-z0-9._+-]*$")
_URL = re.compile(r"^http://[^\s/?#]+(/[^\s?#]*)?$")
_PROFILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Unknown(enum.Enum):
    """What a machine no entry matches gets."""

    MENU = "menu"
    DEFAULT = "default"


@dataclass(frozen=True)
class Settings:
    unknown: Unknown = Unknown.MENU
    default_profile: str | None = None
    menu_timeout: int = 0  # seconds; 0 waits for a choice
    server_url: str | None = None


@dataclass(frozen=True)
class BootSpec:
    """A boot: file names in the profile's netboot directory and the command line.

    In a machine entry every key is optional: None keeps the profile's."""

    kernel: str | None = None
    initrd: str | None = None
    images: tuple[str, ...] | None = None
    cmdline: str = ""


@dataclass(frozen=True)
class Entry:
    """`machines/<NN-favors>.json`: the machines its favors match, and what they change."""

    layer: LayerName
    spec: BootSpec


@dataclass(frozen=True)
class ProfileBoot:
    profile: str
    directory: Path  # DIR/profiles/<p>/netboot
    boot: BootSpec  # kernel and initrd set
    entries: tuple[Entry, ...]


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as exc:
        raise BadInput(f"{path}: cannot read ({exc.strerror})") from exc
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc


def _object(data: Any, where: str, known: set[str]) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise BadInput(f"{where}: $: expected a JSON object")
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadInput(f"{where}: $.{unknown[0]}: unknown key (known: {', '.join(sorted(known))})")
    return data


def load_settings(root: Path) -> Settings:
    """DIR/netboot.json; every key at its default when there is no such file."""
    path = root / SETTINGS_FILE
    if not path.exists():
        return Settings()
    where = str(path)
    keys = {"version", "unknown", "default_profile", "menu_timeout", "server_url"}
    data = _object(_read(path), where, keys)
    if data.get("version", 1) != 1:
        raise BadInput(f"{where}: $.version: only version 1 is understood")
    try:
        unknown = Unknown(data.get("unknown", "menu"))
    except ValueError:
        raise BadInput(f"{where}: $.unknown: expected menu or default") from None
    default = data.get("default_profile")
    if default is not None and (not isinstance(default, str) or not _PROFILE.match(default)):
        raise BadInput(f"{where}: $.default_profile: not a profile name: {default!r}")
    if unknown is Unknown.DEFAULT and default is None:
        raise BadInput(f"{where}: $.unknown: 'default' needs default_profile")
    timeout = data.get("menu_timeout", 0)
    if not isinstance(timeout, int) or isinstance(timeout, bool) or not 0 <= timeout <= 3600:
        raise BadInput(f"{where}: $.menu_timeout: expected whole seconds from 0 to 3600")
    url = data.get("server_url")
    if url is not None and (not isinstance(url, str) or not _URL.match(url)):
        expected = "expected http://host[:port][/path] (QEMU's iPXE has no https)"
        raise BadInput(f"{where}: $.server_url: {expected}")
    return Settings(unknown, default, timeout, url.rstrip("/") if url else None)


def check_cmdline(text: str, where: str) -> str:
    """A command line an iPXE `kernel` line can carry as it is."""
    if any(ord(c) < 0x20 or c in '\x7f$"' for c in text):
        raise BadInput(f"{where}: control characters, '$' and '\"' cannot go in an iPXE script")
    return " ".join(text.split())


def parse_spec(data: Any, where: str, *, required: bool) -> BootSpec:
    """A boot.json (`required`: kernel and initrd must be there) or a machine entry."""
    spec = _object(data, where, {"kernel", "initrd", "images", "cmdline"})

    def file(value: Any, path: str) -> str:
        if not isinstance(value, str) or not _FILE.match(value):
            raise BadInput(f"{where}: {path}: expected a file name beside boot.json: {value!r}")
        return value

    for key in ("kernel", "initrd"):
        if required and key not in spec:
            raise BadInput(f"{where}: $.{key}: required")
    images = spec.get("images")
    if images is not None and not isinstance(images, list):
        raise BadInput(f"{where}: $.images: expected a list of file names")
    cmdline = spec.get("cmdline", "")
    if not isinstance(cmdline, str):
        raise BadInput(f"{where}: $.cmdline: expected a string")
    return BootSpec(
        kernel=file(spec["kernel"], "$.kernel") if "kernel" in spec else None,
        initrd=file(spec["initrd"], "$.initrd") if "initrd" in spec else None,
        images=tuple(file(i, f"$.images[{n}]") for n, i in enumerate(images))
        if images is not None
        else None,
        cmdline=check_cmdline(cmdline, f"{where}: $.cmdline"),
    )


def load_profile(root: Path, profile: str) -> ProfileBoot:
    """One profile's netboot: its boot.json and its machine entries."""
    directory = root / "profiles" / profile / "netboot"
    boot_file = directory / BOOT_FILE
    if not boot_file.is_file():
        raise BadInput(f"profile {profile}: no netboot ({boot_file} missing)")
    boot = parse_spec(_read(boot_file), str(boot_file), required=True)
    entries = []
    machines = directory / MACHINES_DIR
    for path in sorted(machines.glob("*.json")) if machines.is_dir() else []:
        try:
            layer = parse_layer_name(path.name.removesuffix(".json"))
        except BadInput as exc:
            raise BadInput(f"{path}: {exc.line}") from None
        entries.append(Entry(layer, parse_spec(_read(path), str(path), required=False)))
    return ProfileBoot(profile, directory, boot, tuple(entries))


def netboot_profiles(root: Path) -> list[str]:
    """The profiles that have a netboot, in name order."""
    profiles = root / "profiles"
    found = profiles.glob(f"*/netboot/{BOOT_FILE}") if profiles.is_dir() else []
    return sorted(path.parent.parent.name for path in found if _PROFILE.match(path.parts[-3]))
