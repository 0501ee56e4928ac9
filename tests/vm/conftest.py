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


def run_to_end(vm: VirtualMachine, timeout: float = BOOT_TIMEOUT) -> GuestReport:
    """Read the console until the guest stops (killed at once if it offers a shell: the shim
    gave up and would wait there); what it printed."""
    for line in vm.lines(timeout):
        if SHELL_OFFERED in line:
            vm.kill()
    return GuestReport.parse(vm.text())


class Guests:
    """The guests of one test: started, read to the end, and always killed at teardown (with
    each console printed, so a failing test shows what the guests said)."""

    finish = staticmethod(run_to_end)

    def __init__(self, kernel: Kernel, initrd: Path, tmp_path: Path) -> None:
        self.kernel, self.initrd, self.tmp_path = kernel, initrd, tmp_path
        self.started: list[VirtualMachine] = []

    def launch(
        self, boot: Boot, machine: Machine, lifetime: float = BOOT_TIMEOUT
    ) -> VirtualMachine:
        """A running guest booting `boot`; its console is in tmp_path/boot-N/console.log."""
        workdir = self.tmp_path / f"boot-{len(self.started) + 1}"
        vm = VirtualMachine(boot, machine, workdir, lifetime)
        self.started.append(vm)
        return vm

    def start(
        self,
        cmdline: str,
        http_port: int,
        machine: Machine | None = None,
        *,
        reboot: bool = False,
        lifetime: float = BOOT_TIMEOUT,
    ) -> VirtualMachine:
        """A running guest booting the session's kernel and initramfs with `cmdline`."""
        boot = Boot(self.kernel.vmlinuz, self.initrd, cmdline, http_port, reboot=reboot)
        return self.launch(boot, machine or Machine(), lifetime)

    def kill_all(self) -> None:
        for vm in self.started:
            vm.kill()
            print(f"--- console of {vm.console.parent.name} ---\n{vm.text()}")


@pytest.fixture
def guests(kernel: Kernel, initrd: Path, tmp_path: Path) -> Iterator[Guests]:
    """Start guests and read them as a test needs (pull a NIC's cable, start a server late)."""
    started = Guests(kernel, initrd, tmp_path)
    try:
        yield started
    finally:
        started.kill_all()


@pytest.fixture
def start_vm(guests: Guests) -> StartVm:
    """Start one guest of any kind: start_vm(Boot(...), Machine(...)) -> VirtualMachine."""
    return guests.launch


@pytest.fixture
def boot_vm(guests: Guests) -> BootVm:
    """Boot one guest to power-off and return what it printed.

    Call as boot_vm(cmdline, http_port, machine=Machine(...)).
    """

    def boot(cmdline: str, http_port: int, machine: Machine | None = None) -> GuestReport:
        return guests.finish(guests.start(cmdline, http_port, machine))

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
