"""The CIK stick image: GPT; an ESP holding the UKI (and a rescue UKI); a FAT data partition
labelled OVLCIK holding bundles, root images and node keys (docs/CIK.md).

    partition 1  OVLESP  ESP, FAT32     /EFI/BOOT/BOOTX64.EFI   UKI, the stick's command line
                                        /EFI/ovl/rescue.efi     the same with ovl.cik=rescue
    partition 2  OVLCIK  basic data,    /<bundle>(.minisig)     --bundle, the first is ovl=
                         FAT32          /images/<image>(.minisig)  --image, in order: ovl.root=
                                        /keys/<mac>|<uuid>      --node-keys

FAT everywhere: any laptop can read and change the data partition, and mtools writes it
without mounting anything. Same inputs and SOURCE_DATE_EPOCH give the same bytes: partition
ids come from a hash of the contents, FAT volumes are made `--invariant` with fixed ids.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from ovl.core.errors import BadInput, OvlError
from ovl.core.fs import atomic_write
from ovl.tools.cik.fat import FatVolume, format_fat
from ovl.tools.cik.gpt import BASIC_DATA_TYPE, ESP_TYPE, Partition, read_gpt, write_gpt
from ovl.tools.initramfs import uki

MIB = 1 << 20
DATA_LABEL = "OVLCIK"
ESP_LABEL = "OVLESP"
BOOT_PATH = "/EFI/BOOT/BOOTX64.EFI"
RESCUE_PATH = "/EFI/ovl/rescue.efi"
_ESP_MIN = 64 * MIB  # FAT32 needs 65525 clusters: mkfs.fat refuses much less
_DATA_MIN = 64 * MIB
CLUSTER = 32 * 1024  # the largest cluster fat.cluster_size picks: a safe estimate
_FAT_NAME_FORBIDDEN = set('"*/:<>?\\|') | {chr(c) for c in range(0x20)} | {" "}


@dataclass(frozen=True)
class BootFiles:
    """What the stick's UKIs are made of (docs/UKI.md)."""

    kernel: Path
    initrd: Path
    stub: Path = uki.DEFAULT_STUB
    sign: uki.SecureBootKey | None = None


@dataclass(frozen=True)
class Content:
    """What goes on the data partition: its path on the stick -> the host file."""

    files: Mapping[str, Path]
    bundles: tuple[str, ...]  # stick paths of the bundles, the first being the default
    images: tuple[str, ...]
    keys: tuple[str, ...]


@dataclass(frozen=True)
class Made:
    output: Path
    size: int
    cmdline: str
    esp: Partition
    data: Partition
    esp_files: tuple[str, ...]
    data_files: tuple[str, ...]


def parse_size(text: str) -> int:
    """`2G`, `512M`, `1.5GiB`, `4096K` or bytes; binary units."""
    units = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    value = text.strip().upper().removesuffix("IB").removesuffix("B")
    suffix = value[-1:] if value[-1:] in units else ""
    try:
        number = float(value.removesuffix(suffix)) if suffix else float(value)
    except ValueError:
        raise BadInput(f"--size {text!r}: expected a size such as 2G or 512M") from None
    if number <= 0:
        raise BadInput(f"--size {text!r}: must be more than zero")
    return int(number * units[suffix])


def _fat_name(path: Path, what: str) -> str:
    name = path.name
    if not name or any(c in _FAT_NAME_FORBIDDEN for c in name) or name.startswith("."):
        raise BadInput(f"{what} {path}: its name cannot go on a FAT stick as it is (rename it)")
    return name


def plan_content(
    bundles: Sequence[Path], images: Sequence[Path], keys: Mapping[str, Path]
) -> Content:
    """Where each file goes on the data partition; each bundle's and image's `.minisig` along."""
    files: dict[str, Path] = {}

    def add(dest: str, source: Path, what: str) -> None:
        if not source.is_file():
            raise BadInput(f"{what} {source}: no such file")
        if dest.casefold() in (d.casefold() for d in files):
            raise BadInput(f"{what} {source}: {dest} is on the stick twice (FAT ignores case)")
        files[dest] = source

    def with_signature(directory: str, source: Path, what: str) -> str:
        dest = f"{directory}/{_fat_name(source, what)}"
        add(dest, source, what)
        signature = source.with_name(source.name + ".minisig")
        if signature.is_file():
            add(dest + ".minisig", signature, what)
        return dest

    bundle_paths = tuple(with_signature("", b, "bundle") for b in bundles)
    image_paths = tuple(with_signature("/images", i, "image") for i in images)
    key_paths = []
    for name, source in sorted(keys.items()):
        key_paths.append(f"/keys/{name}")
        add(key_paths[-1], source, "node key")
    return Content(files, bundle_paths, image_paths, tuple(key_paths))


def stick_cmdline(content: Content, extra: str = "") -> str:
    """The command line the stick boots with: everything from OVLCIK, nothing from a network."""
    words = []
    if content.bundles:
        words.append(f"ovl=part:LABEL={DATA_LABEL}:{content.bundles[0]}")
    if content.images:
        images = ",".join(f"part:LABEL={DATA_LABEL}:{i}" for i in content.images)
        words.append(f"ovl.root={images}")
    if content.keys:
        words += [f"ovl.key=part:LABEL={DATA_LABEL}:/keys/", "ovl.cik=boot"]
    return uki.check_cmdline(" ".join([*words, extra.strip()]))


def round_up(value: int, unit: int) -> int:
    return (value + unit - 1) // unit * unit


def data_bytes_needed(files: Mapping[str, Path]) -> int:
    """A generous estimate of the FAT space `files` take: whole clusters, directories, FATs."""
    payload = sum(round_up(path.stat().st_size, CLUSTER) for path in files.values())
    return max(_DATA_MIN, round_up(payload * 102 // 100 + 16 * MIB, MIB))


def _guid(seed: bytes, index: int) -> str:
    digest = bytearray(hashlib.sha256(seed + bytes([index])).digest()[:16])
    digest[6] = (digest[6] & 0x0F) | 0x40  # version 4 and the RFC 4122 variant: well-formed
    digest[8] = (digest[8] & 0x3F) | 0x80
    hexed = digest.hex().upper()
    return f"{hexed[:8]}-{hexed[8:12]}-{hexed[12:16]}-{hexed[16:20]}-{hexed[20:]}"


def make_stick(
    output: Path, size: int, boot: BootFiles, content: Content, cmdline: str, epoch: int = 0
) -> Made:
    """Write the stick image to `output` (atomically; nothing is left there on failure)."""
    if output.exists() and not output.is_file():
        raise BadInput(f"{output}: not a regular file (write an image, then dd it to the stick)")
    if not boot.initrd.is_file():
        raise BadInput(f"initramfs {boot.initrd}: no such file")
    needed_data = data_bytes_needed(content.files)
    with _scratch(output) as scratch:
        efi = _build_ukis(scratch, boot, cmdline)
        efi_bytes = sum(path.stat().st_size for path in efi.values())
        esp_size = max(_ESP_MIN, round_up(efi_bytes * 11 // 10 + 8 * MIB, MIB))
        needed = MIB + esp_size + needed_data + MIB
        if size < needed:
            raise BadInput(
                f"{output}: --size {size / MIB:.0f}M is too small for this stick: it needs at "
                f"least {needed / MIB:.0f}M (ESP {esp_size / MIB:.0f}M for the UKIs, data "
                f"{needed_data / MIB:.0f}M for {len(content.files)} files)"
            )
        seed = (
            hashlib.sha256(efi[BOOT_PATH].read_bytes()).digest()
            + "\n".join(
                [str(size)] + [f"{d} {p.stat().st_size}" for d, p in sorted(content.files.items())]
            ).encode()
        )
        esp = Partition(MIB, esp_size, ESP_TYPE, _guid(seed, 1), ESP_LABEL)
        # The data partition ends 1 MiB before the disk does: room for the backup GPT.
        data_size = size - MIB - esp_size - MIB
        data = Partition(MIB + esp_size, data_size, BASIC_DATA_TYPE, _guid(seed, 2), DATA_LABEL)
        with atomic_write(output) as staged:
            with staged.path.open("r+b") as image:
                image.truncate(size)
            write_gpt(staged.path, _guid(seed, 0), [esp, data])
            for part, files, index in ((esp, efi, 3), (data, content.files, 4)):
                volume = format_fat(
                    staged.path,
                    offset=part.start,
                    size=part.size,
                    label=part.name,
                    volume_id=_guid(seed, index)[:8],
                    epoch=epoch,
                )
                write_files(volume, files)
    return Made(output, size, cmdline, esp, data, tuple(efi), tuple(sorted(content.files)))


def _build_ukis(scratch: Path, boot: BootFiles, cmdline: str) -> dict[str, Path]:
    """The ESP's files: the stick's UKI, and the same with `ovl.cik=rescue` for any machine."""
    release = uki.kernel_release(boot.kernel) or "unknown kernel"
    os_release = uki.default_os_release(release).replace('"ovl (', '"ovl CIK (')
    built = {}
    for dest, line in ((BOOT_PATH, cmdline), (RESCUE_PATH, f"{cmdline} ovl.cik=rescue")):
        spec = uki.UkiSpec(boot.stub, boot.kernel, boot.initrd, line, os_release, sign=boot.sign)
        built[dest] = uki.build_uki(spec, scratch / dest.rsplit("/", 1)[1]).output
    return built


def write_files(volume: FatVolume, files: Mapping[str, Path], *, in_place: bool = False) -> None:
    """Copy `files` in, directories first; `in_place`: each through a temporary name."""
    for dest in sorted({str(PurePosixPath(d).parent) for d in files} - {"/"}):
        volume.mkdir(dest)
    for dest, source in sorted(files.items()):
        try:
            if in_place:
                parent, name = dest.rsplit("/", 1)
                temporary = f"{parent}/.{name}.new"
                volume.put(source, temporary)
                volume.rename(temporary, dest)
            else:
                volume.put(source, dest)
        except OvlError as exc:
            if "Disk full" in exc.line:
                raise OvlError(f"{volume.image}: the {dest} copy filled the partition") from exc
            raise


def find_data_partition(device: Path) -> Partition:
    """The stick's OVLCIK partition (by its GPT name)."""
    for part in read_gpt(device):
        if part.name == DATA_LABEL:
            return part
    raise BadInput(f"{device}: no {DATA_LABEL} partition (not a CIK stick made by ovl cik make)")


@contextmanager
def _scratch(output: Path) -> Iterator[Path]:
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ovl-cik-", dir=output.parent) as scratch:
        yield Path(scratch)
