"""A real Debian root for the slow VM scenario: debootstrap minbase with systemd, as squashfs.

Built once into `<cache>/debian/` and reused; the image appears only once complete.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from ovl.core.run import run
from tests.vmkit.cache import cache_root

SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"


def debian_root(cache_dir: Path | None = None) -> Path:
    """The cached squashfs of `debootstrap --variant=minbase --include=systemd-sysv`."""
    cache = cache_dir if cache_dir is not None else cache_root() / "debian"
    image = cache / f"{SUITE}-minbase-systemd.sqfs"
    if image.is_file():
        return image
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
        root = Path(tmp) / "root"
        run(["debootstrap", "--variant=minbase", "--include=systemd-sysv", SUITE, root, MIRROR])
        partial = Path(tmp) / "root.sqfs"
        run(["mksquashfs", root, partial, "-noappend", "-comp", "zstd", "-quiet"])
        partial.rename(image)
    return image
