"""An EFI system partition as a bare FAT image: the firmware boots EFI/BOOT/BOOTX64.EFI."""

from __future__ import annotations

from pathlib import Path

from ovl.tools.cik.fat import format_fat

MIB = 1 << 20


def esp_image(efi: Path, output: Path) -> Path:
    """Write `output`: FAT32 holding `efi` as EFI/BOOT/BOOTX64.EFI, with room to spare."""
    size = max(64 * MIB, (efi.stat().st_size * 5 // 4 + 8 * MIB) // MIB * MIB)
    output.parent.mkdir(parents=True, exist_ok=True)
    with output.open("wb") as image:
        image.truncate(size)
    volume = format_fat(output, offset=0, size=size, label="ESP", volume_id="0c1e5eed")
    volume.mkdir("/EFI/BOOT")
    volume.put(efi, "/EFI/BOOT/BOOTX64.EFI")
    return output
