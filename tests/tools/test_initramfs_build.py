"""`ovl initramfs build` end to end against the real Debian cloud kernel, read back with GNU
cpio and zstd, and the frozen agent run from the unpacked image with chroot."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from ovl.tools.cli import main
from ovl.tools.initramfs.elfdeps import is_elf, read_elf
from ovl.tools.initramfs.freeze import frozen_agent
from tests.tools.initramfs_fixtures import Kernel, debian_cloud_kernel

pytestmark = pytest.mark.subprocess

CONF = """\
MODULES="overlay squashfs btrfs virtio_net af_packet e1000"
COMPRESS_LEVEL=3
KEYS=trusted
EXTRA_FILES="motd:/etc/motd"
EXTRA_BINARIES="btrfs? no-such-tool?"
CMDLINE="ovl=http://10.0.2.2/fleet.ovl ip=dhcp"
"""
EPOCH = "1700000000"


@dataclass(frozen=True)
class Built:
    kernel: Kernel
    conf: Path
    image: Path
    result: dict[str, Any]
    stderr: str
    unpacked: Path
    listing: list[str]


@contextlib.contextmanager
def source_date_epoch(value: str) -> Iterator[None]:
    old = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = value
    try:
        yield
    finally:
        if old is None:
            del os.environ["SOURCE_DATE_EPOCH"]
        else:
            os.environ["SOURCE_DATE_EPOCH"] = old


def ovl(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def build(kernel: Kernel, conf: Path, output: Path, *extra: str) -> tuple[int, str, str]:
    return ovl(
        "initramfs", "build", "-c", str(conf), "--kernel-version", kernel.version,
        "--modules-dir", str(kernel.modules), "-o", str(output), *extra,
    )  # fmt: skip


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    kernel = debian_cloud_kernel()
    base = tmp_path_factory.mktemp("initramfs")
    (base / "trusted").mkdir()
    (base / "trusted" / "fleet.pub").write_text("untrusted comment: test\nRWQ=\n")
    (base / "trusted" / "README.md").write_text("documentation stays on the host\n")
    (base / "motd").write_text("hello from the image\n")
    conf = base / "mkinitramfs.conf"
    # Pinned, so other work on agent/ during the test cannot change the inputs between builds.
    conf.write_text(CONF + f"AGENT={frozen_agent()}\n")
    image = base / "initrd.img"
    with source_date_epoch(EPOCH):
        code, out, err = build(kernel, conf, image, "--json")
    assert code == 0, err
    unpacked = base / "root"
    unpacked.mkdir()
    cpio = subprocess.run(["zstd", "-d", "-c", str(image)], check=True, capture_output=True).stdout
    listing = subprocess.run(
        ["cpio", "-t", "--quiet"], input=cpio, check=True, capture_output=True
    ).stdout.decode()
    subprocess.run(["cpio", "-i", "-d", "--quiet"], input=cpio, cwd=unpacked, check=True)
    return Built(kernel, conf, image, json.loads(out), err, unpacked, listing.splitlines())


def test_gnu_cpio_lists_the_shim_busybox_agent_modules_and_keys(built: Built) -> None:
    modules = f"usr/lib/modules/{built.kernel.version}"
    for path in (
        "init",
        "dev/console",
        "usr/bin/busybox",
        "usr/bin/sh",
        "ovl/agent/ovl-agent",
        "etc/ovl/udhcpc.script",
        "etc/ovl/keys/fleet.pub",
        "etc/ssl/certs/ca-certificates.crt",
        "etc/motd",
        f"{modules}/kernel/fs/btrfs/btrfs.ko",
        f"{modules}/modules.dep",
        f"{modules}/modules.dep.bin",
    ):
        assert path in built.listing, path
    assert [p for p in built.listing if p.startswith("etc/ovl/keys/")] == ["etc/ovl/keys/fleet.pub"]
    assert built.listing == sorted(built.listing, key=lambda p: p.split("/"))
    assert (built.unpacked / "etc/ovl/cmdline").read_text() == (
        "ovl=http://10.0.2.2/fleet.ovl ip=dhcp\n"
    )
    assert (built.unpacked / "etc/motd").read_text() == "hello from the image\n"
    assert os.access(built.unpacked / "init", os.X_OK)


def test_modules_are_the_closure_and_the_indexes_describe_only_them(built: Built) -> None:
    moddir = built.unpacked / f"usr/lib/modules/{built.kernel.version}"
    shipped = sorted(str(p.relative_to(moddir)) for p in moddir.rglob("*.ko"))
    dep = (moddir / "modules.dep").read_text()
    assert sorted(line.split(":")[0] for line in dep.splitlines()) == shipped
    for line in dep.splitlines():
        for needed in line.split(":")[1].split():
            assert (moddir / needed).is_file(), needed
    assert "kernel/lib/raid6/raid6_pq.ko" in shipped
    assert (built.unpacked / "etc/ovl/modules").read_text().split() == [
        "overlay",
        "squashfs",
        "btrfs",
        "virtio_net",
    ]
    assert built.result["modules_builtin"] == ["af_packet"]
    assert built.result["modules_missing"] == ["e1000"]
    assert "ovl: warning: module e1000 is not in this kernel\n" in built.stderr
    assert "EXTRA_BINARIES: no-such-tool not found; left out" in built.stderr


def _search_dirs(root: Path, binary: Path) -> list[Path]:
    """Where ld.so looks inside the image: _internal first for the agent's libraries (the
    PyInstaller bootloader sets LD_LIBRARY_PATH before loading them), then the system dirs."""
    system = [root / d for d in ("usr/lib/x86_64-linux-gnu", "usr/lib64", "usr/lib")]
    internal = root / "ovl/agent/_internal"
    if binary.is_relative_to(internal):
        return [internal, *system]
    return system


def test_every_needed_library_resolves_inside_the_image(built: Built) -> None:
    root = built.unpacked
    elves = [p for p in sorted(root.rglob("*")) if p.is_file() and not p.is_symlink()]
    elves = [p for p in elves if is_elf(p) and not p.name.endswith(".ko")]
    assert len(elves) > 20
    unresolved = []
    for binary in elves:
        info = read_elf(binary)
        if info.interpreter:
            assert (root / info.interpreter.lstrip("/")).resolve().is_relative_to(root.resolve())
            assert (root / info.interpreter.lstrip("/")).is_file(), info.interpreter
        for soname in info.needed:
            if not any((d / soname).is_file() for d in _search_dirs(root, binary)):
                unresolved.append(f"{binary.relative_to(root)}: {soname}")
    assert unresolved == []


def test_frozen_agent_and_extra_binary_run_from_the_image_alone(built: Built) -> None:
    help_text = subprocess.run(
        ["/usr/sbin/chroot", str(built.unpacked), "/ovl/agent/ovl-agent", "--help"],
        check=True,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin"},
    ).stdout
    assert "boot" in help_text
    if (built.unpacked / "usr/bin/btrfs").exists():
        version = subprocess.run(
            ["/usr/sbin/chroot", str(built.unpacked), "/usr/bin/btrfs", "--version"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert version.startswith("btrfs-progs")
    shell = subprocess.run(
        ["/usr/sbin/chroot", str(built.unpacked), "/bin/sh", "-c", "echo $((6 * 7))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert shell == "42\n"


def test_json_and_report_give_the_real_sizes(built: Built, tmp_path: Path) -> None:
    result = built.result
    assert result["compressed"] == built.image.stat().st_size
    assert result["sha256"] == hashlib.sha256(built.image.read_bytes()).hexdigest()
    parts = {p["name"]: p for p in result["parts"]}
    assert list(parts) == ["agent", "libs", "modules", "busybox", "other"]
    # the binary and its /bin/sh symlink (whose content is the 7-byte target "busybox")
    assert parts["busybox"]["uncompressed"] == Path("/bin/busybox").stat().st_size + 7
    agent_files = [p for p in (built.unpacked / "ovl/agent").rglob("*") if p.is_file()]
    assert parts["agent"]["uncompressed"] == sum(p.stat().st_size for p in agent_files)
    # content plus cpio headers and padding: each part alone is smaller than the whole
    assert sum(p["uncompressed"] for p in parts.values()) < result["uncompressed"]
    assert all(0 < p["compressed"] < result["compressed"] for p in parts.values())

    with source_date_epoch(EPOCH):
        code, out, _ = build(built.kernel, built.conf, tmp_path / "again.img", "--report")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith(f"{tmp_path / 'again.img'}: ")
    assert f"sha256 {result['sha256']}" in lines[0], "same inputs, same bytes"
    agent_row = next(line for line in lines if line.startswith("agent "))
    assert f"{parts['agent']['compressed'] / 1e6:.2f} MB" in agent_row
    assert lines[-1].split()[-2:] == [f"{result['compressed'] / 1e6:.2f}", "MB"]


def test_another_source_date_epoch_changes_only_the_mtimes(built: Built, tmp_path: Path) -> None:
    with source_date_epoch("1"):
        code, out, _ = build(built.kernel, built.conf, tmp_path / "other.img", "--json")
    assert code == 0
    assert json.loads(out)["sha256"] != built.result["sha256"]
    assert json.loads(out)["uncompressed"] == built.result["uncompressed"]


def test_missing_busybox_is_one_line_naming_the_key(built: Built, tmp_path: Path) -> None:
    conf = tmp_path / "bad.conf"
    conf.write_text(f"BUSYBOX=/nonexistent/busybox\nKEYS={built.conf.parent / 'trusted'}\n")
    code, _, err = build(built.kernel, conf, tmp_path / "never.img")
    assert code == 2
    assert err == (
        "ovl: error: BUSYBOX: /nonexistent/busybox: not found (Debian: apt install "
        "busybox-static)\n"
    )
    assert not (tmp_path / "never.img").exists()


@pytest.mark.slow
def test_default_image_stays_within_its_size_budget(built: Built, tmp_path: Path) -> None:
    """The shipped mkinitramfs.conf (zstd 19): at most 25 MB, the agent at most 12 MB of it."""
    repo = Path(__file__).resolve().parents[2]
    code, out, err = build(built.kernel, repo / "mkinitramfs.conf", tmp_path / "i.img", "--json")
    assert code == 0, err
    result = json.loads(out)
    agent = next(p for p in result["parts"] if p["name"] == "agent")
    assert result["compressed"] <= 25_000_000
    assert agent["compressed"] <= 12_000_000
