"""Assemble the ovl initramfs: /init, busybox, the frozen agent and its libraries, kernel
modules, keys and certificates, written as one reproducible compressed cpio archive."""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.tools.initramfs.compress import compress_stream
from ovl.tools.initramfs.conf import InitramfsConfig, find_binary
from ovl.tools.initramfs.cpio import Entry, write_newc
from ovl.tools.initramfs.elfdeps import is_elf, library_closure, read_elf
from ovl.tools.initramfs.freeze import EXECUTABLE, frozen_agent
from ovl.tools.initramfs.kmod import ModuleSelection, module_index, select_modules, subset_indexes
from ovl.tools.initramfs.tree import ImageTree, usr_path

AGENT_DIR = "ovl/agent"
PARTS = ("agent", "libs", "modules", "busybox", "other")


@dataclass(frozen=True)
class BuildRequest:
    config: InitramfsConfig
    kernel_version: str
    modules_dir: Path
    output: Path
    mtime: int
    measure_parts: bool = False


@dataclass(frozen=True)
class PartSize:
    name: str
    files: int
    uncompressed: int
    compressed: int | None


@dataclass(frozen=True)
class BuildResult:
    output: Path
    sha256: str
    compressed: int
    uncompressed: int
    parts: tuple[PartSize, ...]
    modules_loaded: tuple[str, ...]
    modules_builtin: tuple[str, ...]
    modules_missing: tuple[str, ...]
    warnings: tuple[str, ...]


def source_date_epoch(environ: dict[str, str] | None = None) -> int:
    """SOURCE_DATE_EPOCH as the mtime of every entry; 0 when unset, so builds never vary."""
    raw = (os.environ if environ is None else environ).get("SOURCE_DATE_EPOCH", "")
    if not raw:
        return 0
    if not raw.isdigit():
        raise BadInput(f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds")
    return int(raw)


def build_initramfs(request: BuildRequest) -> BuildResult:
    """Assemble the image described by `request.config` and write it to `request.output`."""
    config = request.config
    tree = ImageTree()
    warnings: list[str] = []
    _add_skeleton(tree)
    _add_busybox(tree, config.busybox)
    _add_shim(tree, config)
    selection = _add_modules(tree, request)
    warnings += [f"module {name} is built into the kernel" for name in selection.builtin]
    warnings += [f"module {name} is not in this kernel" for name in selection.missing]
    _add_keys(tree, config.keys, warnings)
    _add_extra_files(tree, config)
    binaries = _add_extra_binaries(tree, config, warnings)
    agent = config.agent or frozen_agent()
    _add_agent(tree, agent)
    _add_libraries(tree, agent, binaries)

    uncompressed, compressed, digest = _write_image(tree.entries(), request)
    parts = tuple(
        PartSize(
            name,
            files,
            size,
            _compressed_size(tree.entries(name), request) if request.measure_parts else None,
        )
        for name, (files, size) in sorted(tree.parts().items(), key=lambda p: PARTS.index(p[0]))
    )
    return BuildResult(
        output=request.output,
        sha256=digest,
        compressed=compressed,
        uncompressed=uncompressed,
        parts=parts,
        modules_loaded=selection.load,
        modules_builtin=selection.builtin,
        modules_missing=selection.missing,
        warnings=tuple(warnings),
    )


def _add_skeleton(tree: ImageTree) -> None:
    for path in ("proc", "sys", "dev", "run", "sysroot", "root", "etc/ovl", "usr/sbin"):
        tree.add_dir(path)
    tree.add_dir("tmp", 0o1777)
    # The kernel opens /dev/console for /init before anything can mount devtmpfs.
    tree.add_char_device("dev/console", 5, 1)
    tree.add_char_device("dev/null", 1, 3)
    tree.add_file("etc/hosts", b"127.0.0.1 localhost\n::1 localhost\n", "other")


def _add_busybox(tree: ImageTree, busybox: Path) -> None:
    if not busybox.is_file() or not is_elf(busybox):
        raise BadInput(f"BUSYBOX: {busybox}: not found (Debian: apt install busybox-static)")
    info = read_elf(busybox)
    if info.interpreter or info.needed:
        raise BadInput(f"BUSYBOX: {busybox} is dynamically linked; use busybox-static")
    tree.add_file("usr/bin/busybox", busybox, "busybox", 0o755)
    tree.add_symlink("usr/bin/sh", "busybox", "busybox")


def _add_shim(tree: ImageTree, config: InitramfsConfig) -> None:
    shim = resources.files("ovl.initramfs")
    tree.add_file("init", shim.joinpath("init").read_bytes(), "other", 0o755)
    udhcpc = shim.joinpath("udhcpc.script").read_bytes()
    tree.add_file("etc/ovl/udhcpc.script", udhcpc, "other", 0o755)
    if config.cmdline:
        tree.add_file("etc/ovl/cmdline", config.cmdline.encode() + b"\n", "other")
    keep = "yes" if config.keep_agent else "no"
    tree.add_file("etc/ovl/init.conf", f"KEEP_AGENT={keep}\n".encode(), "other")
    if config.ca_certs is not None:
        if not config.ca_certs.is_file():
            raise BadInput(f"CA_CERTS: {config.ca_certs}: no such file")
        tree.add_file(usr_path(str(config.ca_certs)), config.ca_certs.resolve(), "other")


def _add_keys(tree: ImageTree, keys: Path, warnings: list[str]) -> None:
    tree.add_dir("etc/ovl/keys")
    if not keys.is_dir():
        warnings.append(f"KEYS: {keys}: no such directory; the image trusts no keys")
        return
    # Everything the trust store reads (*.pub, revoked, revoked.minisig), not its README.
    for key in sorted(keys.iterdir()):
        if key.is_file() and not key.name.startswith(".") and key.suffix != ".md":
            tree.add_file(f"etc/ovl/keys/{key.name}", key.resolve(), "other")


def _add_extra_files(tree: ImageTree, config: InitramfsConfig) -> None:
    for extra in config.extra_files:
        if not extra.source.exists():
            raise BadInput(f"EXTRA_FILES: {extra.source}: no such file")
        sources = sorted(extra.source.rglob("*")) if extra.source.is_dir() else [extra.source]
        for source in sources:
            if source.is_file():
                inner = source.relative_to(extra.source) if source != extra.source else None
                dest = f"{extra.dest}/{inner}" if inner else extra.dest
                mode = 0o755 if os.access(source, os.X_OK) else 0o644
                tree.add_file(usr_path(dest), source.resolve(), "other", mode)


def _add_extra_binaries(
    tree: ImageTree, config: InitramfsConfig, warnings: list[str]
) -> list[Path]:
    found = []
    for binary in config.extra_binaries:
        path = find_binary(binary)
        if path is None:
            if not binary.optional:
                raise BadInput(f"EXTRA_BINARIES: {binary.name}: not found on this host")
            warnings.append(f"EXTRA_BINARIES: {binary.name} not found; left out")
            continue
        if not is_elf(path):
            raise BadInput(f"EXTRA_BINARIES: {path} is not an ELF program")
        tree.add_file(f"usr/bin/{path.name}", path.resolve(), "other", 0o755)
        found.append(path)
    return found


def _add_agent(tree: ImageTree, agent: Path) -> None:
    if not (agent / EXECUTABLE).is_file():
        raise BadInput(f"AGENT: {agent}: no {EXECUTABLE} inside (not a frozen agent directory)")
    for source in sorted(agent.rglob("*")):
        dest = f"{AGENT_DIR}/{source.relative_to(agent)}"
        if source.is_symlink():
            target = os.readlink(source)
            if target.startswith("/") or not source.resolve().is_relative_to(agent.resolve()):
                raise OvlError(f"{source}: symlink leaves the agent directory")
            tree.add_symlink(dest, target, "agent")
        elif source.is_dir():
            tree.add_dir(dest)
        else:
            mode = 0o755 if os.access(source, os.X_OK) else 0o644
            tree.add_file(dest, source, "agent", mode)


def _add_libraries(tree: ImageTree, agent: Path, binaries: Iterable[Path]) -> None:
    """Shared libraries for the agent and extra binaries, at the path ld.so will look in.

    The PyInstaller bootloader starts without LD_LIBRARY_PATH and re-executes itself with it
    pointing at _internal, so the bootloader resolves against the system directories only
    and everything in _internal against _internal first.
    """
    internal = agent / "_internal"
    inner = [p for p in sorted(internal.rglob("*")) if p.is_file() and is_elf(p)]
    libraries = {
        **library_closure([agent / EXECUTABLE, *binaries]),
        **library_closure(inner, extra_dirs=[internal]),
    }
    placed: dict[Path, str] = {}
    for wanted, host in sorted(libraries.items()):
        dest = usr_path(wanted)
        if dest in tree:
            continue
        if host in placed:
            tree.add_symlink(dest, os.path.relpath(placed[host], os.path.dirname(dest)), "libs")
        else:
            tree.add_file(dest, host, "libs", 0o755)
            placed[host] = dest


def _add_modules(tree: ImageTree, request: BuildRequest) -> ModuleSelection:
    moddir, version = request.modules_dir, request.kernel_version
    if not moddir.is_dir():
        raise BadInput(f"--modules-dir {moddir}: no such directory")
    with module_index(moddir, version) as index:
        selection = select_modules(index, request.config.modules)
    base = f"usr/lib/modules/{version}"
    for rel in selection.files:
        if not (moddir / rel).is_file():
            raise OvlError(f"{moddir / rel}: listed in modules.dep but missing")
        tree.add_file(f"{base}/{rel}", moddir / rel, "modules")
    for name, data in subset_indexes(moddir, version, selection.files).items():
        tree.add_file(f"{base}/{name}", data, "modules")
    # What /init modprobes, in the configured order.
    modprobe = "".join(f"{name}\n" for name in selection.load).encode()
    tree.add_file("etc/ovl/modules", modprobe, "other")
    return selection


def _write_image(entries: Iterable[Entry], request: BuildRequest) -> tuple[int, int, str]:
    """Write cpio then compressed image beside the output; rename into place when complete."""
    output = request.output
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".ovl-initramfs-", dir=output.parent) as scratch:
        archive = Path(scratch) / "image.cpio"
        packed = Path(scratch) / "image"
        with archive.open("wb") as out:
            write_newc(entries, out, mtime=request.mtime)
        with archive.open("rb") as source, packed.open("wb") as out:
            compress_stream(source, out, request.config.compress, request.config.compress_level)
        digest = hashlib.sha256()
        with packed.open("rb") as done:
            while chunk := done.read(1 << 20):
                digest.update(chunk)
        sizes = archive.stat().st_size, packed.stat().st_size
        packed.chmod(0o644)
        packed.rename(output)
    return sizes[0], sizes[1], digest.hexdigest()


def _compressed_size(entries: Iterable[Entry], request: BuildRequest) -> int:
    """What one part alone costs in the image, compressed as the whole image is."""
    raw = io.BytesIO()
    write_newc(entries, raw, mtime=request.mtime)
    raw.seek(0)
    packed = io.BytesIO()
    compress_stream(raw, packed, request.config.compress, request.config.compress_level)
    return len(packed.getvalue())
