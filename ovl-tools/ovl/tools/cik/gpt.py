"""GPT partition tables of disk images and devices, written and read with sfdisk (util-linux)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.core.run import run

SECTOR = 512
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
BASIC_DATA_TYPE = "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7"  # FAT data any OS opens


@dataclass(frozen=True)
class Partition:
    """One partition; `start` and `size` in bytes. `size` 0 in a plan: up to the disk's end."""

    start: int
    size: int
    type: str
    uuid: str
    name: str


def write_gpt(image: Path, disk_id: str, partitions: list[Partition]) -> None:
    """Write a GPT with exactly these partitions (fixed ids: the same plan, the same bytes)."""
    lines = ["label: gpt", f"label-id: {disk_id}", "unit: sectors"]
    for part in partitions:
        size = f", size={part.size // SECTOR}" if part.size else ""
        lines.append(
            f"start={part.start // SECTOR}{size}, type={part.type}, uuid={part.uuid}, "
            f'name="{part.name}"'
        )
    run(["sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", image],
        input=("\n".join(lines) + "\n").encode())  # fmt: skip


def read_gpt(device: Path) -> list[Partition]:
    """The partitions of a GPT disk image or device; BadInput when it has no GPT."""
    proc = run(["sfdisk", "--json", device], check=False)
    if proc.returncode != 0:
        reason = proc.stderr.decode(errors="replace").strip().splitlines()
        raise BadInput(f"{device}: no partition table ({reason[-1] if reason else 'sfdisk'})")
    table = json.loads(proc.stdout)["partitiontable"]
    if table.get("label") != "gpt":
        raise BadInput(f"{device}: not a GPT disk (a {table.get('label')} partition table)")
    sector = int(table.get("sectorsize", SECTOR))
    return [
        Partition(
            start=int(p["start"]) * sector,
            size=int(p["size"]) * sector,
            type=p["type"].upper(),
            uuid=p.get("uuid", "").upper(),
            name=p.get("name", ""),
        )
        for p in table.get("partitions", [])
    ]
