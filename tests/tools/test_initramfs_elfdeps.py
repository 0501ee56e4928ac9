"""ELF headers read without running anything, and the library closure ld.so would load, on
programs and libraries built here with gcc and on the host's own binaries."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ovl.core.errors import OvlError
from ovl.tools.initramfs.elfdeps import (
    is_elf,
    library_closure,
    read_elf,
    system_library_dirs,
)

pytestmark = pytest.mark.subprocess


@pytest.fixture
def program(tmp_path: Path) -> Path:
    """prog -> libgreet.so (in $ORIGIN/lib via RUNPATH) -> libz.so.1 (system) -> libc."""
    (tmp_path / "lib").mkdir()
    (tmp_path / "greet.c").write_text(
        "#include <zlib.h>\nconst char *greet(void) { return zlibVersion(); }\n"
    )
    (tmp_path / "prog.c").write_text(
        "#include <stdio.h>\nconst char *greet(void);\n"
        "int main(void) { puts(greet()); return 0; }\n"
    )
    subprocess.run(
        ["gcc", "-shared", "-fPIC", "-o", "lib/libgreet.so", "-Wl,-soname,libgreet.so",
         "greet.c", "-lz"],
        cwd=tmp_path, check=True,
    )  # fmt: skip
    subprocess.run(
        ["gcc", "-o", "prog", "prog.c", "-Llib", "-lgreet", "-Wl,-rpath,$ORIGIN/lib",
         "-Wl,--enable-new-dtags"],
        cwd=tmp_path, check=True,
    )  # fmt: skip
    return tmp_path / "prog"


def test_headers_give_interpreter_needed_and_runpath(program: Path) -> None:
    info = read_elf(program)
    assert info.interpreter == "/lib64/ld-linux-x86-64.so.2"
    assert info.needed == ("libgreet.so", "libc.so.6")
    assert info.runpath == ("$ORIGIN/lib",)
    assert info.rpath == ()
    assert info.machine == 62  # EM_X86_64


def test_static_busybox_needs_nothing() -> None:
    info = read_elf(Path("/bin/busybox"))
    assert info.interpreter is None
    assert info.needed == ()


def test_closure_follows_origin_runpath_then_system_dirs(program: Path) -> None:
    closure = library_closure([program])
    libgreet = str(program.parent / "lib" / "libgreet.so")
    assert libgreet in closure
    assert "/lib64/ld-linux-x86-64.so.2" in closure
    names = {Path(p).name for p in closure}
    assert {"libgreet.so", "libz.so.1", "libc.so.6"} <= names
    for host in closure.values():
        assert host.is_file() and not host.is_symlink()


def test_libraries_in_extra_dirs_ship_with_the_program(program: Path) -> None:
    closure = library_closure([program], extra_dirs=[program.parent / "lib"])
    assert not any(Path(p).name == "libgreet.so" for p in closure)
    # libgreet's own needs still count
    assert any(Path(p).name == "libz.so.1" for p in closure)


def test_a_library_nowhere_on_the_path_is_one_line(program: Path) -> None:
    (program.parent / "lib" / "libgreet.so").unlink()
    with pytest.raises(OvlError) as caught:
        library_closure([program])
    assert caught.value.line == f"{program}: needs libgreet.so, which is not on the library path"


def test_not_an_elf_file_is_refused(tmp_path: Path) -> None:
    script = tmp_path / "script"
    script.write_text("#!/bin/sh\n")
    assert not is_elf(script)
    with pytest.raises(OvlError, match="not an ELF file"):
        read_elf(script)
    truncated = tmp_path / "truncated"
    truncated.write_bytes(Path("/bin/busybox").read_bytes()[:100])
    with pytest.raises(OvlError, match="malformed ELF file"):
        read_elf(truncated)


def test_ld_so_conf_includes_are_followed(tmp_path: Path) -> None:
    (tmp_path / "etc/ld.so.conf.d").mkdir(parents=True)
    (tmp_path / "etc/ld.so.conf").write_text("include /etc/ld.so.conf.d/*.conf\n/opt/first\n")
    (tmp_path / "etc/ld.so.conf.d/b.conf").write_text("/opt/b # comment\n")
    (tmp_path / "etc/ld.so.conf.d/a.conf").write_text("# only a comment\n/opt/a\n")
    dirs = system_library_dirs(tmp_path)
    assert dirs[:3] == ("/opt/a", "/opt/b", "/opt/first")
    assert "/usr/lib/x86_64-linux-gnu" in dirs
