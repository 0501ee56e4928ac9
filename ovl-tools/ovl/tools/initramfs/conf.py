"""Read mkinitramfs.conf: shell-style KEY=value lines, one table of settings, one frozen result.

Relative paths are taken from the directory of the config file. Values are quoted as in sh
(double or single quotes may span lines); variable expansion is refused rather than guessed at.
"""

from __future__ import annotations

import difflib
import enum
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from ovl.core.errors import BadInput


class Compression(enum.Enum):
    ZSTD = "zstd"
    GZIP = "gzip"
    XZ = "xz"
    NONE = "none"


@dataclass(frozen=True)
class ExtraFile:
    """A host file copied into the image; `dest` is its absolute path inside the image."""

    source: Path
    dest: str


@dataclass(frozen=True)
class ExtraBinary:
    """An ELF program copied with its shared libraries; optional ones may be absent on the host."""

    name: str
    optional: bool


@dataclass(frozen=True)
class UkiConfig:
    """The UKI_* keys: what `build` needs to write a Unified Kernel Image (docs/UKI.md).

    `kernel` None means /boot/vmlinuz-<kernel version>; `os_release` None a generated one."""

    enabled: bool
    kernel: Path | None
    cmdline: str
    stub: Path
    splash: Path | None
    os_release: Path | None
    sign_key: Path | None
    sign_cert: Path | None


@dataclass(frozen=True)
class InitramfsConfig:
    modules: tuple[str, ...]
    busybox: Path
    compress: Compression
    compress_level: int | None
    keys: Path
    ca_certs: Path | None
    extra_files: tuple[ExtraFile, ...]
    extra_binaries: tuple[ExtraBinary, ...]
    cmdline: str
    agent: Path | None
    keep_agent: bool
    uki: UkiConfig


@dataclass(frozen=True)
class Setting:
    """One config key: its default (as written in the file) and what it means."""

    key: str
    default: str
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "MODULES",
        "overlay squashfs erofs loop btrfs vfat nls_cp437 nls_iso8859_1 nls_ascii isofs "
        "virtio_pci virtio_blk virtio_scsi sd_mod virtio_net virtio_console "
        "e1000 e1000e af_packet",
        "kernel modules loaded by /init, with their dependencies; built-in or absent ones are "
        "skipped with a warning",
    ),
    Setting("BUSYBOX", "/bin/busybox", "a statically linked busybox (Debian: busybox-static)"),
    Setting("COMPRESS", "zstd", "image compression: zstd, gzip, xz or none"),
    Setting("COMPRESS_LEVEL", "", "compression level; empty for the compressor's default"),
    Setting("KEYS", "keys", "directory of trusted public keys, copied to /etc/ovl/keys/"),
    Setting(
        "CA_CERTS",
        "/etc/ssl/certs/ca-certificates.crt",
        "CA bundle for https channels, copied to the same path; empty for none",
    ),
    Setting("EXTRA_FILES", "", "more files: SOURCE or SOURCE:DEST, separated by spaces"),
    Setting(
        "EXTRA_BINARIES",
        "blkid btrfs? mkfs.btrfs?",
        "ELF programs (name on PATH or absolute path) copied to /usr/bin with their shared "
        "libraries; a trailing ? makes one optional",
    ),
    Setting("CMDLINE", "", "ovl arguments used when the kernel command line has no ovl= key"),
    Setting("AGENT", "", "prebuilt frozen agent directory; empty freezes agent/ now (cached)"),
    Setting(
        "KEEP_AGENT",
        "yes",
        "yes: /init copies the frozen agent to /run/ovl/agent/ so the booted system can run "
        "`ovl-agent delta` without Python; no: leave it in the initramfs",
    ),
    Setting(
        "UKI",
        "no",
        "yes: write a Unified Kernel Image (EFI stub + kernel + initramfs + command line) "
        "instead of a bare initramfs, as --uki does",
    ),
    Setting("UKI_KERNEL", "", "the kernel (bzImage) for the UKI; empty: /boot/vmlinuz-VERSION"),
    Setting("UKI_CMDLINE", "", "the UKI's built-in kernel command line (its .cmdline section)"),
    Setting(
        "UKI_STUB",
        "/usr/lib/systemd/boot/efi/linuxx64.efi.stub",
        "the systemd EFI stub (Debian: systemd-boot-efi)",
    ),
    Setting("UKI_SPLASH", "", "a BMP image the stub shows while booting; empty for none"),
    Setting("UKI_OS_RELEASE", "", "os-release file for the .osrel section; empty: ovl's own"),
    Setting("UKI_SIGN_KEY", "", "PEM private key to sign the UKI for Secure Boot (sbsign)"),
    Setting("UKI_SIGN_CERT", "", "its X.509 certificate (PEM); set both or neither"),
)

_T = TypeVar("_T")
_BY_KEY = {s.key: s for s in SETTINGS}
_HOST_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")


def default_config(base: Path) -> InitramfsConfig:
    """The configuration with every key at its default, relative paths taken from `base`."""
    return _build({}, base, "defaults")


def load_config(path: Path) -> InitramfsConfig:
    """Parse a mkinitramfs.conf; errors name the file, line and key."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"{path}: cannot read: {exc.strerror}") from exc
    except UnicodeDecodeError:
        raise BadInput(f"{path}: not a mkinitramfs.conf (binary data, not text)") from None
    values = parse_assignments(text, str(path))
    return _build(values, path.parent, str(path))


def parse_assignments(text: str, where: str) -> dict[str, tuple[str, int]]:
    """KEY=value lines to {KEY: (value, line number)}; sh quoting, comments and blank lines."""
    values: dict[str, tuple[str, int]] = {}
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        number = index + 1
        line = lines[index].strip()
        index += 1
        if not line or line.startswith("#"):
            continue
        key, sep, rest = line.partition("=")
        if not sep or not key.isidentifier() or key != key.strip():
            raise BadInput(f"{where}:{number}: expected KEY=value, got {line!r}")
        if key not in _BY_KEY:
            close = difflib.get_close_matches(key, list(_BY_KEY), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise BadInput(f"{where}:{number}: {key}: unknown key{hint}")
        while True:
            try:
                words = shlex.split(rest, comments=True)
                break
            except ValueError:
                if index >= len(lines):
                    raise BadInput(f"{where}:{number}: {key}: unterminated quote") from None
                rest += "\n" + lines[index]
                index += 1
        if "$" in rest and not rest.strip().startswith("'"):
            raise BadInput(f"{where}:{number}: {key}: variable expansion is not supported")
        if len(words) > 1:
            raise BadInput(f"{where}:{number}: {key}: quote a value that contains spaces")
        values[key] = (words[0] if words else "", number)
    return values


def _build(values: dict[str, tuple[str, int]], base: Path, where: str) -> InitramfsConfig:
    def get(key: str, convert: Callable[[str], _T]) -> _T:
        raw, number = values.get(key, (_BY_KEY[key].default, 0))
        try:
            return convert(raw)
        except ValueError as exc:
            at = f"{where}:{number}" if number else where
            raise BadInput(f"{at}: {key}: {exc}") from None

    def path(raw: str) -> Path:
        return base / Path(raw).expanduser()

    def optional_path(raw: str) -> Path | None:
        return path(raw) if raw else None

    def compression(raw: str) -> Compression:
        try:
            return Compression(raw)
        except ValueError:
            choices = ", ".join(c.value for c in Compression)
            raise ValueError(f"{raw!r} is not one of {choices}") from None

    def level(raw: str) -> int | None:
        if not raw:
            return None
        if not raw.isdigit():
            raise ValueError(f"{raw!r} is not a number")
        return int(raw)

    def module_names(raw: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(raw.split()))
        for name in names:
            if "/" in name:
                raise ValueError(f"{name!r}: give module names, not paths")
        return names

    def extra_files(raw: str) -> tuple[ExtraFile, ...]:
        files = []
        for entry in raw.split():
            source, _, dest = entry.partition(":")
            if dest and not dest.startswith("/"):
                raise ValueError(f"{entry!r}: destination must be absolute")
            src = path(source)
            files.append(ExtraFile(src, dest or str(src.resolve())))
        return tuple(files)

    def yes_no(raw: str) -> bool:
        if raw not in ("yes", "no"):
            raise ValueError(f"{raw!r} is not yes or no")
        return raw == "yes"

    def extra_binaries(raw: str) -> tuple[ExtraBinary, ...]:
        return tuple(ExtraBinary(e.rstrip("?"), e.endswith("?")) for e in raw.split())

    return InitramfsConfig(
        modules=get("MODULES", module_names),
        busybox=get("BUSYBOX", path),
        compress=get("COMPRESS", compression),
        compress_level=get("COMPRESS_LEVEL", level),
        keys=get("KEYS", path),
        ca_certs=get("CA_CERTS", optional_path),
        extra_files=get("EXTRA_FILES", extra_files),
        extra_binaries=get("EXTRA_BINARIES", extra_binaries),
        cmdline=get("CMDLINE", str),
        agent=get("AGENT", optional_path),
        keep_agent=get("KEEP_AGENT", yes_no),
        uki=UkiConfig(
            enabled=get("UKI", yes_no),
            kernel=get("UKI_KERNEL", optional_path),
            cmdline=get("UKI_CMDLINE", str),
            stub=get("UKI_STUB", path),
            splash=get("UKI_SPLASH", optional_path),
            os_release=get("UKI_OS_RELEASE", optional_path),
            sign_key=get("UKI_SIGN_KEY", optional_path),
            sign_cert=get("UKI_SIGN_CERT", optional_path),
        ),
    )


def find_binary(binary: ExtraBinary) -> Path | None:
    """Where an EXTRA_BINARIES entry lives on this host (absolute path or searched on PATH)."""
    if binary.name.startswith("/"):
        candidate = Path(binary.name)
        return candidate if candidate.is_file() else None
    for directory in _HOST_PATH:
        candidate = Path(directory) / binary.name
        if candidate.is_file():
            return candidate
    return None
