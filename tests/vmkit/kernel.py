"""A real Debian kernel for VM boots: resolve the meta package, download, unpack, index modules.

Unpacked kernels are kept in `<cache>/kernel/<version>/`; a second call for the same version
touches nothing but `apt-cache`, and an unpacked tree only appears once it is complete.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.core.run import run
from tests.vmkit.cache import cache_root

DEFAULT_PACKAGE = "linux-image-cloud-amd64"
_IMAGE_PREFIX = "linux-image-"


@dataclass(frozen=True)
class Kernel:
    """An unpacked kernel: the image QEMU boots and the modules an initramfs takes from."""

    version: str
    vmlinuz: Path
    modules_dir: Path


def resolve_package(package: str) -> str:
    """The versioned image package a meta package depends on (itself when already versioned)."""
    out = run(["apt-cache", "depends", "--important", package]).stdout.decode()
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if key == "Depends" and value.startswith(_IMAGE_PREFIX) and value != package:
            return value
    if _release_of(package):
        return package
    raise OvlError(f"{package}: no versioned linux-image package among its dependencies")


def fetch_kernel(package: str = DEFAULT_PACKAGE, cache_dir: Path | None = None) -> Kernel:
    """Download and unpack the kernel `package` resolves to, or reuse the cached unpacked tree."""
    versioned = resolve_package(package)
    version = _release_of(versioned)
    cache = cache_dir if cache_dir is not None else cache_root() / "kernel"
    tree = cache / version
    if not tree.is_dir():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
            staging = Path(tmp)
            run(["apt-get", "download", "-q", versioned], cwd=staging)
            debs = sorted(staging.glob(f"{versioned}_*.deb"))
            if not debs:
                raise OvlError(f"apt-get download {versioned}: no .deb was written")
            unpacked = staging / "tree"
            run(["dpkg-deb", "-x", debs[0], unpacked])
            # The package leaves modules.dep to its postinst; the initramfs builder needs it.
            run(["depmod", "-b", unpacked, version])
            unpacked.rename(tree)
    return _kernel_in(tree, version)


def _kernel_in(tree: Path, version: str) -> Kernel:
    vmlinuz = tree / "boot" / f"vmlinuz-{version}"
    modules_dir = _modules_dir(tree, version)
    if not vmlinuz.is_file() or not (modules_dir / "modules.dep").is_file():
        raise OvlError(f"{tree}: incomplete kernel tree (remove it to fetch again)")
    return Kernel(version=version, vmlinuz=vmlinuz, modules_dir=modules_dir)


def _modules_dir(tree: Path, version: str) -> Path:
    # Bookworm ships modules under /lib; merged-/usr packages under /usr/lib.
    for base in ("lib", "usr/lib"):
        candidate = tree / base / "modules" / version
        if candidate.is_dir():
            return candidate
    return tree / "lib" / "modules" / version


def _release_of(package: str) -> str:
    """`linux-image-6.1.0-56-cloud-amd64` -> `6.1.0-56-cloud-amd64`; "" for a meta package."""
    release = package.removeprefix(_IMAGE_PREFIX)
    return release if release != package and release[:1].isdigit() else ""
