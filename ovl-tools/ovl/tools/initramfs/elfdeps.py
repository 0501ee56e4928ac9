"""Shared-library closure of ELF files, read from their headers (nothing is executed).

Like dracut's inst and initramfs-tools' copy_exec, but without ldd: each DT_NEEDED name is
looked up the way ld.so does (DT_RPATH, extra dirs standing in for LD_LIBRARY_PATH, DT_RUNPATH,
then the system directories), and the ELF interpreter (PT_INTERP) is part of the closure.
"""

from __future__ import annotations

import glob
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ovl.core.errors import OvlError

_PT_LOAD, _PT_DYNAMIC, _PT_INTERP = 1, 2, 3
_DT_NEEDED, _DT_STRTAB, _DT_RPATH, _DT_RUNPATH = 1, 5, 15, 29
_DEFAULT_DIRS = (
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
)


@dataclass(frozen=True)
class ElfInfo:
    """The parts of an ELF file's headers that say what it needs at run time."""

    machine: int
    interpreter: str | None
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]


def is_elf(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(4) == b"\x7fELF"
    except OSError:
        return False


def read_elf(path: Path) -> ElfInfo:
    """Parse a 64-bit little-endian ELF file's program headers and dynamic section."""
    data = path.read_bytes()
    if data[:4] != b"\x7fELF":
        raise OvlError(f"{path}: not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise OvlError(f"{path}: only 64-bit little-endian ELF files are supported")
    try:
        return _parse(data)
    except (struct.error, StopIteration, ValueError, UnicodeDecodeError):
        raise OvlError(f"{path}: malformed ELF file") from None


def _parse(data: bytes) -> ElfInfo:
    machine = struct.unpack_from("<H", data, 18)[0]
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    loads: list[tuple[int, int, int]] = []
    interpreter = None
    dynamic: tuple[int, int] | None = None
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from(
            "<IIQQQQ", data, phoff + i * phentsize
        )
        if p_type == _PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == _PT_INTERP:
            interpreter = data[p_offset : p_offset + p_filesz].split(b"\0", 1)[0].decode()
        elif p_type == _PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return ElfInfo(machine, interpreter, (), (), ())
    entries: list[tuple[int, int]] = []
    for off in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, off)
        if tag == 0:
            break
        entries.append((tag, value))
    # DT_STRTAB is an address; the PT_LOAD segment that maps it gives the file offset.
    strtab_vaddr = next(v for t, v in entries if t == _DT_STRTAB)
    strtab = next(o + strtab_vaddr - v for v, o, n in loads if v <= strtab_vaddr < v + n)

    def string(offset: int) -> str:
        start = strtab + offset
        return data[start : data.index(b"\0", start)].decode()

    def paths(tag: int) -> tuple[str, ...]:
        return tuple(p for t, v in entries if t == tag for p in string(v).split(":") if p)

    needed = tuple(string(v) for t, v in entries if t == _DT_NEEDED)
    return ElfInfo(machine, interpreter, needed, paths(_DT_RPATH), paths(_DT_RUNPATH))


def system_library_dirs(root: Path = Path("/")) -> tuple[str, ...]:
    """The directories ld.so searches after RUNPATH: /etc/ld.so.conf (with includes), defaults."""
    dirs: list[str] = []
    _read_ld_so_conf(root, root / "etc/ld.so.conf", dirs)
    return tuple(dict.fromkeys([*dirs, *_DEFAULT_DIRS]))


def _read_ld_so_conf(root: Path, conf: Path, dirs: list[str]) -> None:
    try:
        lines = conf.read_text().splitlines()
    except OSError:
        return
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if line.startswith("include "):
            pattern = line.split(None, 1)[1]
            for match in sorted(glob.glob(str(root / pattern.lstrip("/")))):
                _read_ld_so_conf(root, Path(match), dirs)
        elif line.startswith("/"):
            dirs.append(line)


def library_closure(
    binaries: Iterable[Path],
    *,
    extra_dirs: Sequence[Path] = (),
    system_dirs: Sequence[str] | None = None,
) -> dict[str, Path]:
    """Every shared library (and interpreter) `binaries` need, transitively, as
    {path ld.so opens: the host file it is}.

    `extra_dirs` are searched first, as LD_LIBRARY_PATH would be; libraries found there ship
    with the binaries: they are scanned for their own needs but are not part of the closure.
    """
    search = tuple(system_dirs if system_dirs is not None else system_library_dirs())
    closure: dict[str, Path] = {}
    shipped: set[str] = set()
    pending = list(binaries)
    seen: set[Path] = set()
    while pending:
        binary = pending.pop()
        if binary in seen:
            continue
        seen.add(binary)
        info = read_elf(binary)
        if info.interpreter and info.interpreter not in closure:
            interp = Path(info.interpreter)
            if not interp.exists():
                raise OvlError(f"{binary}: interpreter {info.interpreter} not found")
            closure[info.interpreter] = interp.resolve()
        for soname in info.needed:
            if soname in shipped:
                continue
            local = _find_in(soname, [str(d) for d in extra_dirs], binary, info.machine)
            if local is not None:
                shipped.add(soname)
                pending.append(local)
                continue
            where = _find_library(soname, binary, info, search)
            if where is None:
                raise OvlError(f"{binary}: needs {soname}, which is not on the library path")
            if str(where) not in closure:
                closure[str(where)] = where.resolve()
                pending.append(where.resolve())
    return closure


def _find_library(soname: str, binary: Path, info: ElfInfo, search: Sequence[str]) -> Path | None:
    if "/" in soname:
        path = Path(soname)
        return path if path.exists() else None
    dirs = [*(() if info.runpath else info.rpath), *info.runpath, *search]
    return _find_in(soname, dirs, binary, info.machine)


def _find_in(soname: str, dirs: Sequence[str], binary: Path, machine: int) -> Path | None:
    for directory in dirs:
        candidate = Path(directory.replace("$ORIGIN", str(binary.parent))) / soname
        if candidate.is_file() and _elf64_machine(candidate) == machine:
            return candidate
    return None


def _elf64_machine(path: Path) -> int | None:
    """e_machine of a 64-bit little-endian ELF file, else None (skips 32-bit libraries)."""
    with path.open("rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:6] != b"\x7fELF\x02\x01":
        return None
    machine: int = struct.unpack_from("<H", header, 18)[0]
    return machine
