"""A Unified Kernel Image booted by UEFI firmware (OVMF) from an ESP: no -kernel, no loader.

The UKI is `ovl initramfs build --uki`'s, its command line (the only one the guest gets) names
the bundle; with Secure Boot enforced, the UKI signed by a key the firmware trusts boots and
the unsigned one is refused by the firmware."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from ovl.core.run import run
from tests.vm.conftest import StartVm, run_to_end
from tests.vmkit.esp import esp_image
from tests.vmkit.httpserve import StaticServer
from tests.vmkit.initrd import build_initrd
from tests.vmkit.kernel import Kernel
from tests.vmkit.qemu import (
    SNAKEOIL_CERT,
    SNAKEOIL_KEY,
    SNAKEOIL_PASSPHRASE,
    Boot,
    Firmware,
    Machine,
)
from tests.vmkit.sealing import Signer

pytestmark = pytest.mark.vm

MAC, UUID = "52:54:00:0e:00:01", "e1e1e1e1-0000-4000-8000-000000000001"
CMDLINE = (
    "console=ttyS0 panic=-1 quiet ip=dhcp ovl.timeout=5 "
    "ovl=http://10.0.2.100/fleet.ovl ovl.root=/dev/vda"
)
PackBundle = Callable[..., Path]


def make_uki(kernel: Kernel, signer: Signer, output: Path, *sign: str | Path) -> Path:
    return build_initrd(kernel, signer.keys, output, options=[
        "--uki", "--kernel", kernel.vmlinuz, "--cmdline", CMDLINE, *sign,
    ])  # fmt: skip


@pytest.fixture(scope="module")
def uki(kernel: Kernel, signer: Signer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_uki(kernel, signer, tmp_path_factory.mktemp("uki") / "ovl.efi")


def fleet(pack_bundle: PackBundle) -> Path:
    return pack_bundle("fleet.ovl", {
        "ovl.json": json.dumps({"name": "uki-fleet", "serial": 1}),
        "etc/motd": "fleet motd\n",
        f"layers/10-{MAC}/etc/hostname": "uki-machine\n",
        "layers/10-52:54:00:0e:00:99/etc/hostname": "another machine\n",
    })  # fmt: skip


def test_uefi_firmware_boots_the_uki_from_an_esp_and_the_machine_gets_its_layers(
    start_vm: StartVm, pack_bundle: PackBundle, test_root: Path, uki: Path, tmp_path: Path
) -> None:
    esp = esp_image(uki, tmp_path / "esp.img")
    bundle = fleet(pack_bundle)
    machine = Machine(mac=MAC, product_uuid=UUID, disks=(test_root, esp))
    with StaticServer(bundle.parent) as server:
        boot = Boot(kernel=None, initrd=None, cmdline="", http_port=server.port,
                    firmware=Firmware.UEFI)  # fmt: skip
        seen = run_to_end(start_vm(boot, machine))
    assert "-kernel" not in seen.console  # (the harness passed none: the firmware found it)
    assert seen.files["/etc/hostname"] == "uki-machine"
    assert seen.files["/etc/motd"] == "fleet motd"
    assert seen.report is not None and seen.report["layers"] == ["base", f"10-{MAC}"]
    assert {"GET /fleet.ovl 200", "GET /fleet.ovl.minisig 200"} <= set(server.requests)


def snakeoil_key(directory: Path) -> Path:
    """Debian's OVMF test key (the snakeoil store's db), decrypted for sbsign."""
    plain = directory / "snakeoil.key"
    run(["openssl", "rsa", "-in", SNAKEOIL_KEY, "-passin", f"pass:{SNAKEOIL_PASSPHRASE}",
         "-out", plain])  # fmt: skip
    return plain


def test_secure_boot_runs_the_signed_uki_and_refuses_the_unsigned_one(
    start_vm: StartVm,
    pack_bundle: PackBundle,
    test_root: Path,
    kernel: Kernel,
    signer: Signer,
    uki: Path,
    tmp_path: Path,
) -> None:
    key = snakeoil_key(tmp_path)
    signed = make_uki(kernel, signer, tmp_path / "signed" / "ovl.efi",
                      "--sign-key", key, "--sign-cert", SNAKEOIL_CERT)  # fmt: skip
    bundle = fleet(pack_bundle)
    with StaticServer(bundle.parent) as server:
        boot = Boot(kernel=None, initrd=None, cmdline="", http_port=server.port,
                    firmware=Firmware.SECURE_BOOT)  # fmt: skip
        esp = esp_image(signed, tmp_path / "signed-esp.img")
        seen = run_to_end(start_vm(boot, Machine(mac=MAC, disks=(test_root, esp))))
        refused = start_vm(
            boot, Machine(mac=MAC, disks=(test_root, esp_image(uki, tmp_path / "esp.img")))
        )
        denied = refused.wait_for(r"Access Denied", timeout=180)
        refused.kill()
    assert seen.files["/etc/hostname"] == "uki-machine"
    assert denied and "ovl-init:" not in refused.text()
