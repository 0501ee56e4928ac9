"""VM fixtures: one kernel, one initramfs and one test root per session; guests always killed.

Each guest boots the Debian cloud kernel under QEMU with an initramfs built by
`ovl initramfs build`, reaches its bundle server as http://10.0.2.100/ and boots the test root,
whose init prints `OVL-TEST ...` lines (ovl.tools/vm/test-init.sh) that the tests read.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest

from tests.vmkit.initrd import build_initrd
from tests.vmkit.kernel import Kernel, fetch_kernel
from tests.vmkit.markers import GuestReport
from tests.vmkit.qemu import Boot, Machine, VirtualMachine
from tests.vmkit.rootimage import build_test_root
from tests.vmkit.sealing import Signer, make_signer, seal_tree

BOOT_TIMEOUT = 180.0  # seconds for one whole boot under TCG, with room for a busy 2-core host
# What initramfs/init prints when it drops to an emergency, ovl.break or rescue shell.
SHELL_OFFERED = "ovl-init: type 'exit' to "
PROBES = ("/etc/hostname", "/etc/motd", "/etc/role", "/etc/release-note", "/etc/base-only")


@pytest.fixture(scope="session")
def kernel() -> Kernel:
    return fetch_kernel()


@pytest.fixture(scope="session")
def signer(tmp_path_factory: pytest.TempPathFactory) -> Signer:
    """A root key (trusted by the initramfs) that certified one signer key."""
    return make_signer(tmp_path_factory.mktemp("trust"))


@pytest.fixture(scope="session")
def initrd(kernel: Kernel, signer: Signer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_initrd(kernel, signer.keys, tmp_path_factory.mktemp("initramfs") / "initrd.img")


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
StartVm = Callable[..., VirtualMachine]


@pytest.fixture
def start_vm(tmp_path: Path) -> Iterator[StartVm]:
    """Start one guest: start_vm(Boot(...), Machine(...)) -> VirtualMachine. Every guest is
    killed at teardown; the console of each is kept in tmp_path/boot-N/console.log and printed
    when the test fails."""
    guests: list[VirtualMachine] = []

    def start(boot: Boot, machine: Machine) -> VirtualMachine:
        workdir = tmp_path / f"boot-{len(guests) + 1}"
        vm = VirtualMachine(boot, machine, workdir, lifetime=BOOT_TIMEOUT)
        guests.append(vm)
        return vm

    yield start
    for vm in guests:
        vm.kill()
        print(f"--- console of {vm.console.parent.name} ---\n{vm.text()}")


def run_to_end(vm: VirtualMachine) -> GuestReport:
    """Wait for the guest to power off, or stop it once the shim offers a shell; what it printed."""
    for line in vm.lines(BOOT_TIMEOUT):
        if SHELL_OFFERED in line:  # the shim gave up and waits on the console: fail now
            vm.kill()
    return GuestReport.parse(vm.text())


@pytest.fixture
def boot_vm(kernel: Kernel, initrd: Path, start_vm: StartVm) -> BootVm:
    """Boot one guest to power-off and return what it printed.

    Call as boot_vm(cmdline, http_port, machine=Machine(...)).
    """

    def boot(cmdline: str, http_port: int, machine: Machine | None = None) -> GuestReport:
        spec = Boot(kernel=kernel.vmlinuz, initrd=initrd, cmdline=cmdline, http_port=http_port)
        return run_to_end(start_vm(spec, machine or Machine()))

    return boot


@pytest.fixture
def pack_bundle(tmp_path: Path, signer: Signer) -> Callable[..., Path]:
    """Pack and seal `tree` (relative path -> text) as tmp_path/www/<name> (+ `.minisig`).

    Call as pack_bundle(name, tree, recipients=(age public key files), armor=False); `name`
    may hold directories below www/.
    """
    count = 0

    def pack(
        name: str, tree: dict[str, str], recipients: Sequence[Path] = (), armor: bool = False
    ) -> Path:
        nonlocal count
        count += 1
        work, output = tmp_path / f"bundle-{count}", tmp_path / "www" / name
        return seal_tree(tree, work, output, signer, recipients, armor=armor)

    return pack
