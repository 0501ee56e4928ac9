"""The CIK stick: made by `ovl cik make`, attached as USB storage, booted by UEFI firmware with
no network at all. Two machines boot the same stick, each with its own key from the stick and
its own decrypted layers; a third, whose key is not on it, is refused and gets the rescue shell.

The Debian cloud kernel has no USB support: these boots use the generic kernel
(linux-image-amd64) and an initramfs with xhci and usb-storage in MODULES."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.vm.conftest import StartVm, run_to_end
from tests.vmkit.initrd import build_initrd
from tests.vmkit.kernel import Kernel, fetch_kernel
from tests.vmkit.ovlcommand import ovl
from tests.vmkit.qemu import Boot, Firmware, Machine
from tests.vmkit.sealing import Signer

pytestmark = pytest.mark.vm

USB_MODULES = ("xhci_pci", "xhci_hcd", "usb_storage", "uas", "sd_mod")
ALPHA = ("52:54:00:0c:00:01", "c1c1c1c1-0000-4000-8000-000000000001")
BETA = ("52:54:00:0c:00:02", "c2c2c2c2-0000-4000-8000-000000000002")
GAMMA = ("52:54:00:0c:00:03", "c3c3c3c3-0000-4000-8000-000000000003")
# Firmware boots: the stick's UKI holds the command line; nothing comes from QEMU.
FROM_STICK = Boot(kernel=None, initrd=None, cmdline="", http_port=None, firmware=Firmware.UEFI)
PackBundle = Callable[..., Path]


@pytest.fixture(scope="module")
def generic_kernel() -> Kernel:
    return fetch_kernel("linux-image-amd64")


@pytest.fixture(scope="module")
def usb_initrd(
    generic_kernel: Kernel, signer: Signer, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    output = tmp_path_factory.mktemp("cik-initramfs") / "initrd.img"
    return build_initrd(generic_kernel, signer.keys, output, more_modules=USB_MODULES)


def node_keys(tmp_path: Path) -> tuple[Path, Path, list[Path]]:
    """alpha's key named by its fleet name (mapped by a fleet file), beta's by its UUID."""
    keys, recipients = tmp_path / "node-keys", tmp_path / "recipients"
    recipients.mkdir()
    for name in ("alpha", BETA[1]):
        ovl("keys", "node-new", name, "-d", keys)
        (keys / f"{name}.age.pub").rename(recipients / f"{name}.age.pub")
    fleet = tmp_path / "fleet.json"
    fleet.write_text(json.dumps({"machines": {"alpha": {"macs": [ALPHA[0]]}}}))
    return keys, fleet, sorted(recipients.iterdir())


@pytest.mark.slow
def test_two_machines_boot_their_own_layers_from_one_stick_and_a_stranger_is_rescued(
    start_vm: StartVm,
    pack_bundle: PackBundle,
    test_root: Path,
    generic_kernel: Kernel,
    usb_initrd: Path,
    tmp_path: Path,
) -> None:
    keys, fleet, recipients = node_keys(tmp_path)
    bundle = pack_bundle("fleet.ovl", {
        "ovl.json": json.dumps({"name": "cik-fleet", "serial": 1}),
        "etc/motd": "from the stick\n",
        f"layers/10-{ALPHA[0]}/etc/hostname": "alpha\n",
        f"layers/10-machine={BETA[1]}/etc/hostname": "beta\n",
        f"layers/20-{GAMMA[0]}/etc/hostname": "gamma\n",
    }, recipients=recipients)  # fmt: skip
    image = tmp_path / "base.sqfs"
    image.write_bytes(test_root.read_bytes())
    stick = tmp_path / "cik.img"
    ovl("cik", "make", stick, "--size", "256M", "--kernel", generic_kernel.vmlinuz,
        "--initrd", usb_initrd, "--bundle", bundle, "--image", image,
        "--node-keys", keys, "--fleet", fleet,
        "--cmdline", "console=ttyS0 panic=-1 quiet ovl.timeout=30")  # fmt: skip
    before = hashlib.sha256(stick.read_bytes()).hexdigest()
    gamma_disk = tmp_path / "gamma-disk.img"
    gamma_disk.write_bytes(b"\xa5" * (4 << 20))

    def machine(facts: tuple[str, str], *disks: Path) -> Machine:
        return Machine(mac=facts[0], product_uuid=facts[1], disks=disks, usb_disks=(stick,))

    alpha = run_to_end(start_vm(FROM_STICK, machine(ALPHA)))
    beta = run_to_end(start_vm(FROM_STICK, machine(BETA)))
    gamma = run_to_end(start_vm(FROM_STICK, machine(GAMMA, gamma_disk)))

    assert alpha.files["/etc/hostname"] == "alpha" and beta.files["/etc/hostname"] == "beta"
    for seen in (alpha, beta):
        assert seen.files["/etc/motd"] == "from the stick"
        assert seen.report is not None and seen.report["bundle"]["encrypted"] is True
        assert seen.report["root"]["images"] == ["part:LABEL=OVLCIK:/images/base.sqfs"]
        assert any(
            line.startswith("ovl: fetch: part:LABEL=OVLCIK:/fleet.ovl ok")
            for line in seen.agent_lines()
        )
    assert not gamma.booted
    names = f"{GAMMA[0].replace(':', '-')}, {GAMMA[1]}"
    refusal = f"no key for this machine in part:LABEL=OVLCIK:/keys/ (looked for {names})"
    lines = gamma.agent_lines()
    assert f"ovl: key: this machine is refused: {refusal}" in lines
    assert not any(line.startswith(("ovl: fetch:", "ovl: apply:")) for line in lines)
    disks = [line for line in lines if line.startswith("ovl: rescue: ") and " MiB " in line]
    assert any(line.startswith("ovl: rescue: vda 4.0 MiB") and "(read-only)" in line
               for line in disks), disks  # fmt: skip
    assert any(line.startswith("ovl: rescue: sda 256.0 MiB") and "read-only" in line
               and "LABEL=OVLCIK" in line for line in disks), disks  # fmt: skip
    assert f"ovl-init: rescue: refused: {refusal}" in gamma.console
    assert gamma_disk.read_bytes() == b"\xa5" * (4 << 20)
    assert hashlib.sha256(stick.read_bytes()).hexdigest() == before
