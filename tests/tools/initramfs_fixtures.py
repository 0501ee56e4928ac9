"""The Debian cloud kernel the initramfs tests build for (fetched once into the ovl cache)."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Kernel:
    version: str
    modules: Path
    vmlinuz: Path


def cache_dir() -> Path:
    return Path(os.environ.get("OVL_CACHE") or Path.home() / ".cache" / "ovl")


def debian_cloud_kernel() -> Kernel:
    """Unpack linux-image-cloud-amd64's kernel into <cache>/kernel/root unless already there."""
    base = cache_dir() / "kernel"
    root = base / "root"
    if not any((root / "lib" / "modules").glob("*")):
        base.mkdir(parents=True, exist_ok=True)
        depends = subprocess.run(
            ["apt-cache", "depends", "linux-image-cloud-amd64"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        package = next(
            line.split()[1]
            for line in depends.splitlines()
            if line.strip().startswith("Depends: linux-image-") and line.split()[1][12].isdigit()
        )
        subprocess.run(["apt-get", "download", package], cwd=base, check=True)
        deb = next(base.glob(f"{package}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    moddir = sorted((root / "lib" / "modules").iterdir())[-1]
    return Kernel(moddir.name, moddir, root / "boot" / f"vmlinuz-{moddir.name}")
