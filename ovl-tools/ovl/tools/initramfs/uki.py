"""A Unified Kernel Image: the systemd EFI stub with kernel, initramfs, command line and
os-release (and an optional splash) added as PE sections, optionally signed for Secure Boot.

The sections are added with objcopy, the method the systemd stub documents (and dracut uses):
each one at a virtual address after the previous end, page-aligned, `.linux` last. ukify
(systemd >= 253) is not used even where it exists: one producer everywhere keeps "same inputs,
same bytes" true across hosts. `--preserve-dates` keeps the stub's PE time stamp (0 in
Debian's), so two builds of the same inputs are byte-identical. sbsign's output is not (the
PKCS#7 signature carries a signing time): the unsigned image's hash is reported beside it.
"""

from __future__ import annotations

import hashlib
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.core.fs import atomic_write
from ovl.core.run import run

DEFAULT_STUB = Path("/usr/lib/systemd/boot/efi/linuxx64.efi.stub")
_PAGE = 0x1000
_BZIMAGE_MAGIC_OFFSET = 0x202  # "HdrS": the Linux x86 boot protocol header
_UKI_SECTIONS = (".osrel", ".cmdline", ".splash", ".initrd", ".linux")


@dataclass(frozen=True)
class SecureBootKey:
    """A PEM private key (unencrypted) and its X.509 certificate, for sbsign."""

    key: Path
    cert: Path


@dataclass(frozen=True)
class UkiSpec:
    """What goes into the image. `os_release` is the text of the `.osrel` section."""

    stub: Path
    kernel: Path
    initrd: Path
    cmdline: str
    os_release: str
    splash: Path | None = None
    sign: SecureBootKey | None = None


@dataclass(frozen=True)
class Section:
    name: str
    vma: int
    size: int


@dataclass(frozen=True)
class UkiResult:
    output: Path
    sha256: str
    unsigned_sha256: str  # equal to sha256 unless signed; reproducible either way
    size: int
    signed: bool
    sections: tuple[Section, ...]


@dataclass(frozen=True)
class PeLayout:
    """What the stub's PE headers say about where new sections may go."""

    image_base: int
    end: int  # first address past the last section, ImageBase included
    sections: tuple[str, ...]


def default_os_release(kernel_version: str) -> str:
    """The `.osrel` text when none is given: boot menus show PRETTY_NAME."""
    return (
        f'NAME="ovl"\nID=ovl\nVERSION_ID="{kernel_version}"\nPRETTY_NAME="ovl ({kernel_version})"\n'
    )


def read_pe_layout(stub: Path) -> PeLayout:
    """Parse the PE32+ headers of an EFI stub; BadInput when it is not one."""
    try:
        with stub.open("rb") as image:
            head = image.read(_PAGE * 4)
    except FileNotFoundError:
        raise BadInput(
            f"EFI stub {stub}: not found (Debian: apt install systemd-boot-efi)"
        ) from None
    except OSError as exc:
        raise BadInput(f"EFI stub {stub}: {exc.strerror}") from exc
    try:
        if head[:2] != b"MZ":
            raise ValueError("no MZ header")
        (pe_offset,) = struct.unpack_from("<I", head, 0x3C)
        if head[pe_offset : pe_offset + 4] != b"PE\0\0":
            raise ValueError("no PE signature")
        coff = pe_offset + 4
        count, optional_size = struct.unpack_from("<H12xH", head, coff + 2)
        optional = coff + 20
        (magic,) = struct.unpack_from("<H", head, optional)
        if magic != 0x20B:
            raise ValueError("not PE32+ (64-bit)")
        (image_base,) = struct.unpack_from("<Q", head, optional + 24)
        table = optional + optional_size
        names, end = [], 0
        for index in range(count):
            raw_name, virtual_size, address = struct.unpack_from("<8sII", head, table + 40 * index)
            names.append(raw_name.rstrip(b"\0").decode("ascii", "replace"))
            end = max(end, address + virtual_size)
    except (ValueError, struct.error) as exc:
        raise BadInput(f"EFI stub {stub}: not a PE32+ EFI image ({exc})") from None
    if ".sdmagic" not in names:
        raise BadInput(f"EFI stub {stub}: not a systemd EFI stub (no .sdmagic section)")
    taken = sorted(set(names) & set(_UKI_SECTIONS))
    if taken:
        raise BadInput(f"EFI stub {stub}: already has {', '.join(taken)} (a UKI, not a stub)")
    return PeLayout(image_base=image_base, end=image_base + end, sections=tuple(names))


def check_bzimage(kernel: Path) -> None:
    """BadInput unless `kernel` is an x86 Linux boot image (the 'HdrS' boot header)."""
    try:
        with kernel.open("rb") as image:
            head = image.read(_BZIMAGE_MAGIC_OFFSET + 4)
    except FileNotFoundError:
        raise BadInput(f"kernel {kernel}: no such file") from None
    except OSError as exc:
        raise BadInput(f"kernel {kernel}: {exc.strerror}") from exc
    if head[_BZIMAGE_MAGIC_OFFSET:] != b"HdrS":
        raise BadInput(f"kernel {kernel}: not a bzImage (no Linux boot header 'HdrS' at 0x202)")


def kernel_release(kernel: Path) -> str | None:
    """The release a bzImage names in its boot header (`kernel_version`), e.g. 6.1.0-57-amd64."""
    check_bzimage(kernel)
    with kernel.open("rb") as image:
        header = image.read(0x10200)  # the pointer is 16-bit, from 0x200
    (pointer,) = struct.unpack_from("<H", header, 0x20E)
    start = 0x200 + pointer
    if not pointer or start >= len(header):
        return None
    text = header[start : header.find(b"\0", start)].decode("ascii", "replace")
    return text.split()[0] if text.split() else None


def check_cmdline(cmdline: str) -> str:
    """A command line for the `.cmdline` section: one line of printable text."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in cmdline):
        raise BadInput("UKI command line: control characters (a newline?) are not allowed")
    return cmdline.strip()


def _check_splash(splash: Path) -> None:
    try:
        with splash.open("rb") as image:
            magic = image.read(2)
    except OSError as exc:
        raise BadInput(f"splash {splash}: {exc.strerror}") from exc
    if magic != b"BM":
        raise BadInput(f"splash {splash}: not a BMP image (the stub shows only BMP)")


def check_spec(spec: UkiSpec) -> PeLayout:
    """Every input checked before anything is written; the stub's layout."""
    layout = read_pe_layout(spec.stub)
    check_bzimage(spec.kernel)
    check_cmdline(spec.cmdline)
    if spec.splash is not None:
        _check_splash(spec.splash)
    require_tool("objcopy", "binutils")
    if spec.sign is not None:
        for what, path in (("key", spec.sign.key), ("certificate", spec.sign.cert)):
            if not path.is_file():
                raise BadInput(f"Secure Boot {what} {path}: no such file")
        require_tool("sbsign", "sbsigntool")
    return layout


def _round_up(value: int) -> int:
    return (value + _PAGE - 1) // _PAGE * _PAGE


def plan_sections(layout: PeLayout, contents: list[tuple[str, Path]]) -> list[Section]:
    """Where each added section goes: after the stub's last section, page-aligned, in order."""
    sections, address = [], _round_up(layout.end)
    for name, path in contents:
        size = path.stat().st_size
        sections.append(Section(name, address, size))
        address = _round_up(address + size)
    return sections


def build_uki(spec: UkiSpec, output: Path) -> UkiResult:
    """Write the UKI to `output` (atomically: a failure leaves nothing there)."""
    layout = check_spec(spec)
    with _scratch(output) as scratch:
        osrel, cmdline = scratch / "os-release", scratch / "cmdline"
        osrel.write_text(spec.os_release)
        cmdline.write_text(check_cmdline(spec.cmdline))
        contents = [(".osrel", osrel), (".cmdline", cmdline)]
        if spec.splash is not None:
            contents.append((".splash", spec.splash))
        # The kernel last: newer stubs load it in place and it may need room past its end.
        contents += [(".initrd", spec.initrd), (".linux", spec.kernel)]
        sections = plan_sections(layout, contents)
        unsigned = scratch / "unsigned.efi"
        argv: list[str | Path] = ["objcopy", "--preserve-dates"]
        for section, (_, path) in zip(sections, contents, strict=True):
            argv += ["--add-section", f"{section.name}={path}"]
            argv += ["--change-section-vma", f"{section.name}={section.vma:#x}"]
        run([*argv, spec.stub, unsigned])
        unsigned_sha = _sha256(unsigned)
        final = unsigned
        if spec.sign is not None:
            final = scratch / "signed.efi"
            run(["sbsign", "--key", spec.sign.key, "--cert", spec.sign.cert,
                 "--output", final, unsigned])  # fmt: skip
        with atomic_write(output, mode=0o644) as staged:
            final.rename(staged.path)
        digest = unsigned_sha if spec.sign is None else _sha256(output)
    return UkiResult(
        output=output,
        sha256=digest,
        unsigned_sha256=unsigned_sha,
        size=output.stat().st_size,
        signed=spec.sign is not None,
        sections=tuple(sections),
    )


@contextmanager
def _scratch(output: Path) -> Iterator[Path]:
    """A scratch directory beside `output` (same filesystem: the result is renamed)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ovl-uki-", dir=output.parent) as scratch:
        yield Path(scratch)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def require_tool(name: str, package: str) -> None:
    """OvlError naming the Debian package when `name` is not installed."""
    if shutil.which(name) is None:
        raise OvlError(f"{name}: not installed (Debian: apt install {package})")
