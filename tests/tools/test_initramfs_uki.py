"""Unified Kernel Images: the sections objcopy added read back with binutils, byte-identical
rebuilds, Secure Boot signatures checked with sbverify, and every bad input one line.

The kernel is the real Debian cloud kernel; the EFI stub is Debian's systemd-boot-efi."""

from __future__ import annotations

import contextlib
import io
import json
import re
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from ovl.tools.cli import main
from ovl.tools.initramfs.freeze import frozen_agent
from ovl.tools.initramfs.uki import DEFAULT_STUB, SecureBootKey, UkiSpec, build_uki
from tests.tools.initramfs_fixtures import Kernel, debian_cloud_kernel

pytestmark = pytest.mark.subprocess

CMDLINE = "console=ttyS0 ip=dhcp ovl=http://10.0.2.100/fleet.ovl"
OS_RELEASE = 'NAME="ovl"\nID=ovl\nPRETTY_NAME="ovl test"\n'


def ovl(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    if not DEFAULT_STUB.is_file():
        pytest.fail(f"{DEFAULT_STUB} missing: apt install systemd-boot-efi (./dev installs it)")
    return debian_cloud_kernel()


def spec(kernel: Kernel, initrd: Path, **changes: Any) -> UkiSpec:
    return replace(UkiSpec(DEFAULT_STUB, kernel.vmlinuz, initrd, CMDLINE, OS_RELEASE), **changes)


def objdump_sections(efi: Path) -> dict[str, tuple[int, int]]:
    """Section name -> (VMA, size) as GNU objdump reads the PE file."""
    out = subprocess.run(["objdump", "-h", str(efi)], check=True, capture_output=True, text=True)
    rows = re.findall(r"^\s*\d+\s+(\S+)\s+([0-9a-f]+)\s+([0-9a-f]+)", out.stdout, re.M)
    return {name: (int(vma, 16), int(size, 16)) for name, size, vma in rows}


def section_bytes(efi: Path, name: str, tmp_path: Path) -> bytes:
    out = tmp_path / f"section{name}"
    subprocess.run(
        ["objcopy", "-O", "binary", f"--only-section={name}", str(efi), str(out)], check=True
    )
    return out.read_bytes()


def test_sections_hold_the_inputs_after_the_stub_page_aligned_kernel_last(
    kernel: Kernel, tmp_path: Path
) -> None:
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"an initramfs\n" * 1000)
    made = build_uki(spec(kernel, initrd), tmp_path / "ovl.efi")
    sections = objdump_sections(made.output)
    stub = objdump_sections(DEFAULT_STUB)
    stub_end = max(vma + size for vma, size in stub.values())
    added = [s.name for s in made.sections]
    assert added == [".osrel", ".cmdline", ".initrd", ".linux"]
    previous_end = stub_end
    for section in made.sections:
        assert sections[section.name] == (section.vma, section.size)
        assert section.vma % 0x1000 == 0 and section.vma >= previous_end
        previous_end = section.vma + section.size
    assert section_bytes(made.output, ".cmdline", tmp_path) == CMDLINE.encode()
    assert section_bytes(made.output, ".osrel", tmp_path) == OS_RELEASE.encode()
    assert section_bytes(made.output, ".initrd", tmp_path) == initrd.read_bytes()
    assert section_bytes(made.output, ".linux", tmp_path) == kernel.vmlinuz.read_bytes()
    for name in stub:
        assert name in sections
    assert not made.signed and made.sha256 == made.unsigned_sha256


def test_same_inputs_give_the_same_bytes_with_a_zero_time_stamp(
    kernel: Kernel, tmp_path: Path
) -> None:
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"x" * 4096)
    first = build_uki(spec(kernel, initrd), tmp_path / "a.efi")
    second = build_uki(spec(kernel, initrd), tmp_path / "b.efi")
    assert first.output.read_bytes() == second.output.read_bytes()
    assert first.sha256 == second.sha256
    header = subprocess.run(
        ["objdump", "-p", str(first.output)], check=True, capture_output=True, text=True
    ).stdout
    assert "Time/Date\t\tThu Jan  1 00:00:00 1970" in header
    other = build_uki(spec(kernel, initrd, cmdline="console=tty0"), tmp_path / "c.efi")
    assert other.sha256 != first.sha256


def test_splash_goes_in_before_the_initramfs(kernel: Kernel, tmp_path: Path) -> None:
    initrd, splash = tmp_path / "initrd.img", tmp_path / "splash.bmp"
    initrd.write_bytes(b"i")
    splash.write_bytes(b"BM" + bytes(100))
    made = build_uki(spec(kernel, initrd, splash=splash), tmp_path / "ovl.efi")
    assert [s.name for s in made.sections] == [".osrel", ".cmdline", ".splash", ".initrd", ".linux"]
    assert section_bytes(made.output, ".splash", tmp_path) == splash.read_bytes()


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> SecureBootKey:
    """A self-signed RSA key and certificate, as a Secure Boot db key would be."""
    where = tmp_path_factory.mktemp("sb")
    key, cert = where / "db.key", where / "db.crt"
    subprocess.run(
        ["openssl", "req", "-new", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "3650",
         "-subj", "/CN=ovl test db/", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )  # fmt: skip
    return SecureBootKey(key, cert)


def test_signed_uki_verifies_with_its_certificate_and_reports_the_unsigned_hash(
    kernel: Kernel, tmp_path: Path, signing_key: SecureBootKey
) -> None:
    initrd = tmp_path / "initrd.img"
    initrd.write_bytes(b"i" * 100)
    unsigned = build_uki(spec(kernel, initrd), tmp_path / "plain.efi")
    signed = build_uki(spec(kernel, initrd, sign=signing_key), tmp_path / "signed.efi")
    assert signed.signed and signed.unsigned_sha256 == unsigned.sha256
    assert signed.sha256 != unsigned.sha256
    check = subprocess.run(
        ["sbverify", "--cert", str(signing_key.cert), str(signed.output)],
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stderr
    refused = subprocess.run(
        ["sbverify", "--cert", str(signing_key.cert), str(unsigned.output)],
        capture_output=True,
        text=True,
    )
    assert refused.returncode != 0


def test_initramfs_build_uki_writes_the_image_with_its_initramfs_and_conf_cmdline(
    kernel: Kernel, tmp_path: Path
) -> None:
    conf = tmp_path / "mkinitramfs.conf"
    conf.write_text(
        f'MODULES="overlay"\nCOMPRESS_LEVEL=1\nKEYS=keys\nAGENT={frozen_agent()}\n'
        f'UKI=yes\nUKI_KERNEL={kernel.vmlinuz}\nUKI_CMDLINE="{CMDLINE}"\n'
    )
    output = tmp_path / "out" / "ovl.efi"
    output.parent.mkdir()
    code, out, err = ovl(
        "initramfs", "build", "-c", conf, "--kernel-version", kernel.version,
        "--modules-dir", kernel.modules, "-o", output, "--json",
    )  # fmt: skip
    assert code == 0, err
    result = json.loads(out)
    assert result["output"] == str(output)
    assert result["uki"]["cmdline"] == CMDLINE
    assert result["uki"]["kernel"] == str(kernel.vmlinuz)
    assert [s["name"] for s in result["uki"]["sections"]] == [
        ".osrel", ".cmdline", ".initrd", ".linux"
    ]  # fmt: skip
    initrd = section_bytes(output, ".initrd", tmp_path)
    assert initrd[:4] == b"\x28\xb5\x2f\xfd"  # the zstd initramfs
    assert len(initrd) == result["compressed"]
    osrel = section_bytes(output, ".osrel", tmp_path).decode()
    assert f'PRETTY_NAME="ovl ({kernel.version})"' in osrel
    # the flag wins over the conf's UKI_CMDLINE
    code, out, err = ovl(
        "initramfs", "build", "-c", conf, "--kernel-version", kernel.version,
        "--modules-dir", kernel.modules, "-o", output, "--cmdline", "quiet",
    )  # fmt: skip
    assert code == 0, err
    assert section_bytes(output, ".cmdline", tmp_path) == b"quiet"
    assert out.startswith(f"{output}: UKI ")
    assert sorted(p.name for p in output.parent.iterdir()) == ["ovl.efi"]


def bad_input_cases(kernel: Kernel, tmp_path: Path) -> list[tuple[list[str], str]]:
    not_kernel, bad_splash, key = tmp_path / "initrd.img", tmp_path / "s.png", tmp_path / "k.pem"
    not_kernel.write_bytes(b"\x28\xb5\x2f\xfd" + bytes(1000))
    bad_splash.write_bytes(b"\x89PNG" + bytes(10))
    key.write_text("not used\n")
    uki = tmp_path / "made.efi"
    build_uki(spec(kernel, not_kernel), uki)
    real = ["--kernel", str(kernel.vmlinuz)]
    return [
        (["--kernel", str(not_kernel)], f"kernel {not_kernel}: not a bzImage"),
        ([*real, "--stub", "/nonexistent/linuxx64.efi.stub"], "EFI stub /nonexistent/"),
        ([*real, "--stub", str(kernel.vmlinuz)], "not a systemd EFI stub (no .sdmagic section)"),
        ([*real, "--stub", str(uki)], "already has .cmdline, .initrd, .linux, .osrel (a UKI"),
        ([*real, "--splash", str(bad_splash)], "not a BMP image"),
        ([*real, "--sign-key", str(key)], "signing needs both a key and a certificate"),
        ([*real, "--cmdline", "quiet\ninit=/bin/sh"], "control characters"),
        (["--kernel", str(tmp_path / "vmlinuz-none")], "vmlinuz-none: no such file"),
    ]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(kernel: Kernel, tmp_path: Path) -> None:
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for flags, message in bad_input_cases(kernel, inputs):
        code, _, err = ovl(
            "initramfs", "build", "--kernel-version", kernel.version,
            "--modules-dir", kernel.modules, "-o", out_dir / "ovl.efi", "--uki", *flags,
        )  # fmt: skip
        assert code == 2, (flags, err)
        assert err.startswith("ovl: error: ") and message in err, (flags, err)
        assert err.count("\n") == 1 and "Traceback" not in err
        assert list(out_dir.iterdir()) == [], flags
