"""Module closure against a real Debian kernel's modules.dep, softdeps and aliases."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovl.tools.initramfs.kmod import (
    ModuleIndex,
    module_index,
    module_name,
    select_modules,
    subset_indexes,
)
from tests.tools.initramfs_fixtures import Kernel, debian_cloud_kernel

pytestmark = pytest.mark.subprocess


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    return debian_cloud_kernel()


@pytest.fixture(scope="module")
def index(kernel: Kernel) -> ModuleIndex:
    with module_index(kernel.modules, kernel.version) as found:
        return found


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("kernel/fs/btrfs/btrfs.ko", "btrfs"),
        ("kernel/arch/x86/crypto/crc32c-intel.ko.xz", "crc32c_intel"),
        ("kernel/lib/zstd/zstd_compress.ko.zst", "zstd_compress"),
    ],
)
def test_module_name_drops_directory_and_suffix(path: str, name: str) -> None:
    assert module_name(path) == name


def test_btrfs_pulls_in_its_hard_and_soft_dependencies(index: ModuleIndex) -> None:
    selection = select_modules(index, ["btrfs"])
    names = {module_name(f) for f in selection.files}
    assert {"btrfs", "raid6_pq", "xor", "zstd_compress", "libcrc32c"} <= names
    # softdep btrfs pre: crypto-crc32c xxhash64 blake2b-256, resolved through modules.alias
    assert {"crc32c_intel", "xxhash_generic", "blake2b_generic"} <= names
    assert selection.load == ("btrfs",)
    assert all(f.startswith("kernel/") for f in selection.files)


def test_virtio_net_brings_the_virtio_core(index: ModuleIndex) -> None:
    names = {module_name(f) for f in select_modules(index, ["virtio_net"]).files}
    assert {"virtio_net", "virtio", "virtio_ring", "net_failover", "failover"} <= names


def test_builtin_and_absent_modules_are_reported_not_copied(index: ModuleIndex) -> None:
    selection = select_modules(index, ["af_packet", "ext4", "e1000", "overlay"])
    assert selection.builtin == ("af_packet", "ext4")
    assert selection.missing == ("e1000",)
    assert selection.load == ("overlay",)
    assert selection.files == ("kernel/fs/overlayfs/overlay.ko",)


def test_subset_indexes_know_only_the_selected_modules(kernel: Kernel, index: ModuleIndex) -> None:
    selection = select_modules(index, ["vfat", "squashfs"])
    indexes = subset_indexes(kernel.modules, kernel.version, selection.files)
    assert {"modules.dep", "modules.dep.bin", "modules.alias.bin", "modules.builtin"} <= set(
        indexes
    )
    dep = indexes["modules.dep"].decode()
    assert "kernel/fs/fat/vfat.ko: kernel/fs/fat/fat.ko" in dep
    assert len(dep.splitlines()) == len(selection.files)
    assert subset_indexes(kernel.modules, kernel.version, selection.files) == indexes


def test_a_tree_without_indexes_is_indexed_in_scratch_space(kernel: Kernel, tmp_path: Path) -> None:
    # As unpacked from a kernel .deb: modules and modules.order, no modules.dep (postinst's job).
    tree = tmp_path / "modules"
    for rel in ("kernel/fs/fat/vfat.ko", "kernel/fs/fat/fat.ko", "modules.order"):
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).symlink_to(kernel.modules / rel)
    with module_index(tree, kernel.version) as index:
        selection = select_modules(index, ["vfat"])
    assert selection.files == ("kernel/fs/fat/fat.ko", "kernel/fs/fat/vfat.ko")
    assert sorted(p.name for p in tree.iterdir()) == ["kernel", "modules.order"]
