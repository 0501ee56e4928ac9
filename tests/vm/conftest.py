"""VM fixtures: one kernel, one initramfs and one test root per session; guests always killed.

Each guest boots the Debian cloud kernel under QEMU with an initramfs built by
`ovl initramfs build`, reaches its bundle server as http://10.0.2.100/ and boots the test root,
whose init prints `OVL-TEST ...` lines (ovl_tools/vm/test-init.sh) that the tests read.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ovl_tools.vm.kernel import Kernel, fetch_kernel
from ovl_tools.vm.markers import GuestReport
from ovl_tools.vm.qemu import Boot, Machine, VirtualMachine
from ovl_tools.vm.rootimage import build_test_root

from agent.run import run

OVL = Path(sys.executable).parent / "ovl"
BOOT_TIMEOUT = 180.0  # seconds for one whole boot under TCG, with room for a busy 2-core host
# What initramfs/init prints when it drops to an emergency or ovl.break shell.
SHELL_OFFERED = "ovl-init: type 'exit' to continue the boot"
PROBES = ("/etc/hostname", "/etc/motd", "/etc/role", "/etc/release-note", "/etc/base-only")


@pytest.fixture(scope="session")
def kernel() -> Kernel:
    return fetch_kernel()


@dataclass(frozen=True)
class Signer:
    """A session trust root: `keys` holds the root's public key for the initramfs."""

    key: Path
    cert: Path
    keys: Path


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """A root key (trusted by the initramfs) that certified one signer key."""
    secrets = tmp_path_factory.mktemp("secrets")
    keys = tmp_path_factory.mktemp("keys")
    run([OVL, "keys", "root-new", "root", "-d", secrets])
    run([OVL, "keys", "signer-new", "signer", "-d", secrets])
    cert = secrets / "signer.cert"
    run([OVL, "keys", "certify", secrets / "signer.pub", "--root", secrets / "root.key",
         "--name", "vm-test", "--expires", "2099-01-01", "-o", cert])  # fmt: skip
    (keys / "root.pub").write_bytes((secrets / "root.pub").read_bytes())
    return Signer(key=secrets / "signer.key", cert=cert, keys=keys)


@pytest.fixture(scope="session")
def initrd(kernel: Kernel, signer: Signer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`ovl initramfs build` with the defaults, except for what the settings below say."""
    work = tmp_path_factory.mktemp("initramfs")
    conf = work / "mkinitramfs.conf"
    conf.write_text(
        f"KEYS={signer.keys}\n"
        # zstd -3 builds in seconds rather than a minute; boots unpack either as fast.
        "COMPRESS_LEVEL=3\n"
        # busybox-static has no blkid, and the agent finds LABEL= devices with it.
        'EXTRA_BINARIES="blkid btrfs? mkfs.btrfs?"\n'
    )
    output = work / "initrd.img"
    run([OVL, "initramfs", "build", "-c", conf, "--kernel-version", kernel.version,
         "--modules-dir", kernel.modules_dir, "-o", output])  # fmt: skip
    return output


@pytest.fixture(scope="session")
def test_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("root") / "root.sqfs"
    return build_test_root(
        output,
        files={"/etc/hostname": "base-image\n", "/etc/base-only": "from the image\n"},
        probes=PROBES,
    )


@pytest.fixture
def refusing_port() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening): a server that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


BootVm = Callable[..., GuestReport]


@pytest.fixture
def boot_vm(
    kernel: Kernel, initrd: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[BootVm]:
    """Boot one guest to power-off and return what it printed; every guest is killed at teardown.

    Call as boot_vm(cmdline, http_port, machine=Machine(...)); the console of each boot is kept
    in tmp_path/boot-N/console.log and printed when the test fails.
    """
    guests: list[VirtualMachine] = []

    def boot(cmdline: str, http_port: int, machine: Machine | None = None) -> GuestReport:
        vm = VirtualMachine(
            Boot(kernel=kernel.vmlinuz, initrd=initrd, cmdline=cmdline, http_port=http_port),
            machine or Machine(),
            tmp_path / f"boot-{len(guests) + 1}",
            lifetime=BOOT_TIMEOUT,
        )
        guests.append(vm)
        for line in vm.lines(BOOT_TIMEOUT):
            if SHELL_OFFERED in line:  # the shim gave up and waits on the console: fail now
                vm.kill()
        return GuestReport.parse(vm.text())

    yield boot
    for vm in guests:
        vm.kill()
        print(f"--- console of {vm.console.parent.name} ---\n{vm.text()}")


@pytest.fixture
def pack_bundle(tmp_path: Path, signer: Signer) -> Callable[[str, dict[str, str]], Path]:
    """Write `tree` (relative path -> text), `ovl pack` it and `ovl seal` it into tmp_path/www.

    Returns the sealed bundle; its signature is beside it as `<bundle>.minisig`.
    """

    def pack(name: str, tree: dict[str, str]) -> Path:
        source = tmp_path / f"{name}.tree"
        for relative, text in tree.items():
            target = source / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(text)
        packed = tmp_path / f"{name}.packed"
        run([OVL, "pack", source, "-o", packed])
        sealed = tmp_path / "www" / name
        sealed.parent.mkdir(exist_ok=True)
        run([OVL, "seal", packed, "--sign", signer.key, "--cert", signer.cert, "-o", sealed])
        return sealed

    return pack
