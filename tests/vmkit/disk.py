"""Virtual disks for guests: a sparse raw image holding one labelled filesystem."""

from __future__ import annotations

import enum
from pathlib import Path

from ovl.core.run import run


class DiskFs(enum.Enum):
    EXT4 = "ext4"
    BTRFS = "btrfs"


def make_disk(
    path: Path, *, fs: DiskFs, label: str, size_mb: int = 256, contents: Path | None = None
) -> Path:
    """Create `path` as a raw disk whose whole device is one `fs` labelled `label`.

    `contents`, when given, is a directory copied into the new filesystem's root.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as image:
        image.truncate(size_mb * 1024 * 1024)
    if fs is DiskFs.EXT4:
        argv: list[str | Path] = ["mkfs.ext4", "-q", "-F", "-L", label]
        argv += ["-d", contents] if contents is not None else []
    else:
        argv = ["mkfs.btrfs", "-q", "-f", "-L", label]
        argv += ["--rootdir", contents] if contents is not None else []
    run([*argv, path])
    return path
