"""OpenZFS for VM guests: modules built by DKMS for the guest kernel, and an initramfs with them.

The host needs no zfs of its own (its kernel may have none): `zfs-dkms` builds for the guest's
kernel headers, and `zfsutils-linux` provides the `zpool` and `zfs` programs the initramfs
carries. On Debian both are in `contrib`, enabled with a sources file of its own when apt has no
candidate for them. The guest's module tree plus the zfs modules is kept in
`<cache>/zfs/<kernel version>-zfs-<package version>/`, indexed by depmod.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.core.run import run
from ovl.tools.initramfs.conf import SETTINGS
from tests.vmkit.cache import cache_root
from tests.vmkit.initrd import VM_SETTINGS
from tests.vmkit.kernel import Kernel
from tests.vmkit.ovlcommand import ovl

PACKAGES = ("zfs-dkms", "zfsutils-linux")
CONTRIB_SOURCES = Path("/etc/apt/sources.list.d/ovl-contrib.sources")
POLICY_RC = Path("/usr/sbin/policy-rc.d")
DKMS_TREE = Path("/var/lib/dkms/zfs")
# Where the pool-making init (zfs-setup.sh) sits in the image; boot it with rdinit=.
SETUP_INIT = "/usr/lib/ovl-test/zfs-setup.sh"


class ZfsUnavailable(OvlError):
    """zfs-dkms, zfsutils-linux or the guest kernel's headers: missing and not installable."""


def zfs_kernel(kernel: Kernel, cache_dir: Path | None = None) -> Kernel:
    """`kernel` with a module tree that also holds zfs, spl and their companions (cached)."""
    ensure_packages(kernel.version)
    package_version = _installed_version("zfs-dkms")
    cache = cache_dir if cache_dir is not None else cache_root() / "zfs"
    tree = cache / f"{kernel.version}-zfs-{package_version}"
    if not tree.is_dir():
        built = dkms_build(kernel.version, _upstream(package_version))
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".build-") as tmp:
            staging = Path(tmp) / "tree"
            _merge_modules(kernel, built, staging)
            staging.rename(tree)
    return Kernel(kernel.version, kernel.vmlinuz, tree / "lib" / "modules" / kernel.version)


def ensure_packages(kernel_version: str) -> None:
    """Install the guest's headers, zfs-dkms and zfsutils-linux, enabling contrib if needed."""
    wanted = (f"linux-headers-{kernel_version}", *PACKAGES)
    missing = [p for p in wanted if not _installed(p)]
    if not missing:
        return
    if os.geteuid() != 0:
        raise ZfsUnavailable(f"{', '.join(missing)} not installed, and installing needs root")
    if not all(_candidate(p) for p in missing) and not CONTRIB_SOURCES.exists():
        CONTRIB_SOURCES.write_text(_contrib_sources())
        run(["apt-get", "update", "-qq"])
    unavailable = [p for p in missing if not _candidate(p)]
    if unavailable:
        raise ZfsUnavailable(f"apt has no candidate for {', '.join(unavailable)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    with _services_held():
        run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *missing], env=env)


def dkms_build(kernel_version: str, zfs_version: str) -> Path:
    """The directory of zfs .ko files DKMS built for `kernel_version` (building them if needed)."""
    built = DKMS_TREE / zfs_version / kernel_version / os.uname().machine / "module"
    if not list(built.glob("*.ko*")):
        run(["dkms", "build", "-m", "zfs", "-v", zfs_version, "-k", kernel_version])
    if not list(built.glob("*.ko*")):
        raise OvlError(f"dkms build zfs/{zfs_version} for {kernel_version}: no modules in {built}")
    return built


def build_zfs_initrd(kernel: Kernel, keys: Path, output: Path) -> Path:
    """The VM initramfs plus zfs: its modules loaded by /init, zpool and zfs, the setup init."""
    default_modules = next(s.default for s in SETTINGS if s.key == "MODULES")
    setup = resources.files("tests.vmkit").joinpath("zfs-setup.sh")
    settings = {
        **VM_SETTINGS,
        "KEYS": str(keys),
        "MODULES": f"{default_modules} zfs",
        "EXTRA_BINARIES": "blkid zpool zfs",
        "EXTRA_FILES": f"{setup}:{SETUP_INIT}",
    }
    conf = output.with_name(output.name + ".conf")
    conf.write_text("".join(f'{key}="{value}"\n' for key, value in settings.items()))
    ovl("initramfs", "build", "-c", conf, "--kernel-version", kernel.version,
        "--modules-dir", kernel.modules_dir, "-o", output)  # fmt: skip
    return output


def make_pool_disk(path: Path, size_mb: int = 256) -> Path:
    """A raw disk with one GPT partition for the pool.

    A partition, not the whole disk: on a whole disk `zpool create` partitions it itself and
    waits for udev to announce the partitions, and the initramfs runs no udev.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as image:
        image.truncate(size_mb * 1024 * 1024)
    run(["sfdisk", "-q", path], input=b"label: gpt\n,,\n")
    return path


def _merge_modules(kernel: Kernel, built: Path, root: Path) -> None:
    """`root/lib/modules/<version>`: the kernel's tree (hard links) + zfs in updates/dkms."""
    moddir = root / "lib" / "modules" / kernel.version
    shutil.copytree(kernel.modules_dir, moddir, symlinks=True, copy_function=_link_or_copy)
    extra = moddir / "updates" / "dkms"
    extra.mkdir(parents=True, exist_ok=True)
    for module in sorted(built.glob("*.ko*")):
        shutil.copy2(module, extra / module.name)
    run(["depmod", "-b", root, kernel.version])


def _link_or_copy(source: str, dest: str) -> None:
    try:
        os.link(source, dest)
    except OSError:
        shutil.copy2(source, dest)


@contextmanager
def _services_held() -> Iterator[None]:
    """No service starts while packages install: zfsutils' units would load zfs on the host."""
    if POLICY_RC.exists():
        yield
        return
    POLICY_RC.write_text("#!/bin/sh\n# ovl VM tests: installing zfs, start no services\nexit 101\n")
    POLICY_RC.chmod(0o755)
    try:
        yield
    finally:
        POLICY_RC.unlink(missing_ok=True)


def _contrib_sources() -> str:
    codename = _os_release().get("VERSION_CODENAME", "bookworm")
    return (
        "Types: deb\n"
        "URIs: http://deb.debian.org/debian\n"
        f"Suites: {codename} {codename}-updates\n"
        "Components: contrib\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def _os_release() -> dict[str, str]:
    pairs = {}
    for line in Path("/etc/os-release").read_text().splitlines():
        key, sep, value = line.partition("=")
        if sep:
            pairs[key] = value.strip('"')
    return pairs


def _installed(package: str) -> bool:
    proc = run(["dpkg-query", "-W", "-f=${Status}", package], check=False)
    return proc.returncode == 0 and proc.stdout.decode().endswith("ok installed")


def _installed_version(package: str) -> str:
    return run(["dpkg-query", "-W", "-f=${Version}", package]).stdout.decode().strip()


def _candidate(package: str) -> bool:
    out = run(["apt-cache", "policy", package]).stdout.decode()
    for line in out.splitlines():
        key, _, value = line.strip().partition(":")
        if key == "Candidate":
            return value.strip() not in ("", "(none)")
    return False


def _upstream(package_version: str) -> str:
    """`2.1.11-1+deb12u1` -> `2.1.11`, the version DKMS knows the module by."""
    return package_version.split(":", 1)[-1].rsplit("-", 1)[0]
