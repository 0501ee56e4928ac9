"""Verify/decrypt inside the boot: the node key file named by ovl.key=, what is left in /run,
what goes into report.json. Real sealed and openssl-encrypted bundles, real mounts."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from ovl.agent.cmdline import Phase
from tests.agent import test_boot
from tests.agent.test_boot import Booted, Machine

pytestmark = pytest.mark.subprocess
machine = test_boot.machine  # the boot tests' fixture: a squashfs image, a PKI, a /run tmpfs


def _decrypted_copies(machine: Machine) -> list[str]:
    return sorted(p.name for p in (machine.paths.run_dir / "fetched").glob("*.plain"))


def _legacy_bundle(machine: Machine, key_file: Path) -> Path:
    """The predecessor's format: `openssl enc -aes-256-cbc -pbkdf2 -a -kfile` of a bundle."""
    plain = machine.bundle(signed=False)
    out = machine.tmp / "legacy.ovl"
    subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-salt", "-a",
         "-kfile", key_file, "-in", plain, "-out", out],
        check=True,
    )  # fmt: skip
    return out


def _assert_fleet_layers(booted: Booted) -> None:
    assert booted.read("etc/fleet") == "base"
    assert booted.read("etc/hostname") == "node-1"


def test_legacy_bundle_opens_with_the_passphrase_file_named_by_ovl_key(machine: Machine) -> None:
    key = machine.tmp / "node.pass"
    key.write_text("correct horse battery\n")
    bundle = _legacy_bundle(machine, key)
    booted = machine.boot(f"ovl=file:{bundle} ovl.require=none,allow-legacy ovl.key={key}")
    _assert_fleet_layers(booted)
    assert booted.report["bundle"]["encrypted"] is True


def test_opening_warnings_are_recoverable_errors_in_the_report(machine: Machine) -> None:
    key = machine.tmp / "node.pass"
    key.write_text("correct horse battery\n")
    bundle = _legacy_bundle(machine, key)
    booted = machine.boot(f"ovl=file:{bundle} ovl.require=none,allow-legacy ovl.key={key}")
    legacy = [e for e in booted.report["recoverable_errors"] if "legacy openssl format" in e]
    assert legacy == ["verify: bundle bundle.ovl: legacy openssl format (AES-CBC); authenticated"
                      " by nothing"]  # fmt: skip


def test_no_decrypted_copy_is_left_in_run_after_applying(machine: Machine) -> None:
    bundle = machine.bundle(encrypt=True)
    booted = machine.boot(
        f"ovl=file:{bundle} ovl.require=encrypted ovl.key={machine.pki.node_identity}"
    )
    _assert_fleet_layers(booted)
    assert booted.report["bundle"]["encrypted"] is True
    assert _decrypted_copies(machine) == []
    assert (machine.paths.run_dir / "fetched" / "bundle.ovl").exists()  # the sealed bytes stay


def test_no_decrypted_copy_is_left_in_run_at_a_break_before_apply(machine: Machine) -> None:
    bundle = machine.bundle(encrypt=True)
    booted = machine.boot(
        f"ovl=file:{bundle} ovl.require=encrypted ovl.key={machine.pki.node_identity}"
        f" ovl.break={Phase.APPLY.value}"
    )
    assert booted.handover.break_at is Phase.APPLY
    assert _decrypted_copies(machine) == []


def test_no_decrypted_copy_is_left_when_the_decrypted_bundle_fails_to_apply(
    machine: Machine,
) -> None:
    key = machine.tmp / "node.pass"
    key.write_text("correct horse battery\n")
    garbage = machine.tmp / "garbage"
    garbage.write_bytes(b"this is not a tar archive\n" * 100)
    out = machine.tmp / "legacy-garbage.ovl"
    subprocess.run(
        ["openssl", "enc", "-aes-256-cbc", "-pbkdf2", "-salt", "-kfile", key,
         "-in", garbage, "-out", out],
        check=True,
    )  # fmt: skip
    booted = machine.boot(f"ovl=file:{out} ovl.require=none,allow-legacy ovl.key={key}")
    assert booted.report["channels"][0]["outcome"] == "apply"
    assert _decrypted_copies(machine) == []
