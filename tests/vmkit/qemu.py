"""Run one QEMU guest: serial console to a file, loopback-only networking, always killed.

The guest reaches the test's HTTP server as http://10.0.2.100/ and nothing else: QEMU user
networking with `restrict=on`, plus a guestfwd that runs `busybox nc 127.0.0.1 PORT` for each
guest connection (a `tcp:` guestfwd target is one chardev that serves a single connection).
Each NIC is a virtio-net-pci device (id nic0, nic1, ...) on a user network of its own, so a test
can pull its cable with QMP's set_link (`VirtualMachine.set_link`).

A guest boots a kernel and initramfs given to QEMU (`-kernel`), or whatever its firmware
finds: SeaBIOS or OVMF (UEFI, optionally with Secure Boot) booting a disk, a USB stick, or the
NIC's iPXE ROM fetching `bootfile` over DHCP.
"""

from __future__ import annotations

import contextlib
import enum
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from subprocess import CompletedProcess
from types import TracebackType

from ovl.core.errors import OvlError
from ovl.core.run import run

ACCEL_ENV = "OVL_QEMU_ACCEL"
GUEST_SERVER = "10.0.2.100"
BUSYBOX = "/bin/busybox"


class Firmware(enum.Enum):
    BIOS = "bios"  # SeaBIOS, QEMU's default
    UEFI = "uefi"  # OVMF, Secure Boot off, no boot entries: it boots EFI/BOOT/BOOTX64.EFI
    SECURE_BOOT = "secure-boot"  # OVMF enforcing Secure Boot, Debian's snakeoil keys enrolled


# OVMF code (read-only) and the template its writable variable store is copied from.
OVMF = {
    Firmware.UEFI: (
        Path("/usr/share/OVMF/OVMF_CODE_4M.fd"),
        Path("/usr/share/OVMF/OVMF_VARS_4M.fd"),
    ),
    Firmware.SECURE_BOOT: (
        Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd"),
        Path("/usr/share/OVMF/OVMF_VARS_4M.snakeoil.fd"),
    ),
}
# The key the snakeoil variable store trusts (its db), encrypted with the passphrase below.
SNAKEOIL_KEY = Path("/usr/share/ovmf/PkKek-1-snakeoil.key")
SNAKEOIL_CERT = Path("/usr/share/ovmf/PkKek-1-snakeoil.pem")
SNAKEOIL_PASSPHRASE = "snakeoil"


@dataclass(frozen=True)
class Machine:
    """The hardware a guest sees: its NICs' MACs (the first `mac`, then `more_macs`), its DMI
    product UUID, virtio disks in order and USB sticks (on an xHCI controller, booted first,
    each VM writing to a snapshot)."""

    mac: str = "52:54:00:0a:00:01"
    product_uuid: str = "5a1e0000-0000-4000-8000-000000000001"
    disks: tuple[Path, ...] = ()
    memory_mb: int = 1024
    more_macs: tuple[str, ...] = ()
    usb_disks: tuple[Path, ...] = ()


@dataclass(frozen=True)
class Boot:
    """What to boot and where 10.0.2.100:80 leads.

    With `kernel` (and `initrd`) QEMU loads them itself; without, the firmware boots what it
    finds. `http_port` None: the NIC has no network at all. `bootfile`: the DHCP boot file name
    QEMU's DHCP server offers, which the NIC's iPXE ROM fetches and runs (`${...}` expanded)."""

    kernel: Path | None
    initrd: Path | None
    cmdline: str
    http_port: int | None
    reboot: bool = False  # a guest reboot restarts it (else QEMU exits: -no-reboot)
    firmware: Firmware = Firmware.BIOS
    bootfile: str | None = None
    tap: str | None = None  # instead of user networking: this tap device, in network namespace
    netns: str | None = None  # `netns` (QEMU runs there), which the test made


def qemu_argv(
    boot: Boot,
    machine: Machine,
    console: Path,
    pidfile: Path,
    qmp: Path | None = None,
    efi_vars: Path | None = None,
) -> list[str]:
    """The qemu-system-x86_64 command line for one boot (accelerator from $OVL_QEMU_ACCEL).

    `efi_vars` is this guest's own copy of the OVMF variable store (UEFI firmware only)."""
    secure = boot.firmware is Firmware.SECURE_BOOT
    argv = [
        "qemu-system-x86_64",
        "-machine", "q35,smm=on" if secure else "q35",
        "-accel", os.environ.get(ACCEL_ENV, "tcg"),
        "-m", str(machine.memory_mb),
        "-nographic", *([] if boot.reboot else ["-no-reboot"]),
        "-serial", f"file:{console}",
        "-monitor", "none",
        "-pidfile", str(pidfile),
        "-smbios", f"type=1,uuid={machine.product_uuid}",
    ]  # fmt: skip
    if boot.firmware is not Firmware.BIOS:
        if efi_vars is None:
            raise OvlError(f"{boot.firmware.value} firmware needs a copy of the variable store")
        code = OVMF[boot.firmware][0]
        if secure:
            argv += ["-global", "driver=cfi.pflash01,property=secure,value=on"]
        argv += ["-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={code}"]
        argv += ["-drive", f"if=pflash,format=raw,unit=1,file={efi_vars}"]
    if boot.kernel is not None:
        argv += ["-kernel", str(boot.kernel)]
        argv += ["-initrd", str(boot.initrd)] if boot.initrd is not None else []
        argv += ["-append", f"console=ttyS0 panic=-1 {boot.cmdline}".strip()]
    argv += _network(boot, machine)
    if qmp is not None:
        argv += ["-qmp", f"unix:{qmp},server=on,wait=off"]
    for disk in machine.disks:
        argv += ["-drive", f"file={disk},if=virtio,format=raw"]
    if machine.usb_disks:
        argv += ["-device", "qemu-xhci,id=xhci"]
    for index, stick in enumerate(machine.usb_disks):
        # snapshot=on: two guests can boot "the same stick" and neither changes the file.
        argv += ["-drive", f"if=none,id=usb{index},format=raw,snapshot=on,file={stick}"]
        argv += ["-device", f"usb-storage,bus=xhci.0,drive=usb{index},removable=on,"
                 f"bootindex={index}"]  # fmt: skip
    return argv


def _network(boot: Boot, machine: Machine) -> list[str]:
    """One NIC per MAC, each on a network of its own (id nic0, nic1, ...: set_link's names)."""
    if boot.tap is not None:
        netdev = f"tap,id=n0,ifname={boot.tap},script=no,downscript=no"
        nic = f"virtio-net-pci,id=nic0,netdev=n0,mac={machine.mac},bootindex=0"
        return ["-netdev", netdev, "-device", nic]
    argv: list[str] = []
    if boot.http_port is None:  # NICs (their MACs are facts) with no network behind them
        argv += ["-nic", "none"]
        for index, mac in enumerate((machine.mac, *machine.more_macs)):
            argv += ["-device", f"virtio-net-pci,id=nic{index},mac={mac}"]
        return argv
    forward = f"guestfwd=tcp:{GUEST_SERVER}:80-cmd:{BUSYBOX} nc 127.0.0.1 {boot.http_port}"
    for index, mac in enumerate((machine.mac, *machine.more_macs)):
        netdev = f"user,id=n{index},restrict=on,{forward}"
        nic = f"virtio-net-pci,id=nic{index},netdev=n{index},mac={mac}"
        if boot.bootfile is not None and index == 0:
            netdev += ",bootfile=" + boot.bootfile.replace(",", ",,")  # QEMU's comma escape
            nic += ",bootindex=0"
        argv += ["-netdev", netdev, "-device", nic]
    return argv


class VirtualMachine:
    """A running guest. Use as a context manager: the QEMU process is killed on exit.

    QEMU runs through ovl.core.run.run() on a thread (capped by `lifetime` seconds); the console is
    read from its file, and `-pidfile` gives the process to kill when the guest must stop early.
    """

    def __init__(self, boot: Boot, machine: Machine, workdir: Path, lifetime: float = 300) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.console = workdir / "console.log"
        self._pidfile = workdir / "qemu.pid"
        self._qmp = workdir / "qmp.sock"
        self.console.write_bytes(b"")
        self._pidfile.unlink(missing_ok=True)
        self._qmp.unlink(missing_ok=True)
        efi_vars = None
        if boot.firmware is not Firmware.BIOS:
            efi_vars = workdir / "efi-vars.fd"
            shutil.copyfile(OVMF[boot.firmware][1], efi_vars)
        self.argv = qemu_argv(boot, machine, self.console, self._pidfile, self._qmp, efi_vars)
        if boot.netns is not None:  # ip netns exec execs QEMU: the pidfile's PID is still QEMU's
            self.argv = ["ip", "netns", "exec", boot.netns, *self.argv]
        self._lifetime = lifetime
        self._result: CompletedProcess[bytes] | None = None
        self._error: OvlError | None = None
        self._offset = 0
        self._partial = b""
        self._thread = threading.Thread(target=self._run, name="qemu", daemon=True)
        self.started = time.monotonic()
        self._thread.start()

    def _run(self) -> None:
        try:
            self._result = run(self.argv, check=False, timeout=self._lifetime)
        except OvlError as exc:
            self._error = exc

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def lines(self, timeout: float) -> Iterator[str]:
        """Console lines as they appear, until the guest stops or `timeout` seconds pass."""
        deadline = time.monotonic() + timeout
        while True:
            alive = self.running
            yield from self._new_lines(final=not alive)
            if not alive:
                return
            if time.monotonic() > deadline:
                raise OvlError(f"VM: still running after {timeout:.0f} s")
            time.sleep(0.05)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """The first new console line matching the regex `pattern`; OvlError if none comes."""
        regex = re.compile(pattern)
        for line in self.lines(timeout):
            found = regex.search(line)
            if found:
                return found
        raise OvlError(f"VM: stopped ({self._exit_reason()}) without a line matching {pattern!r}")

    def set_link(self, nic: int, up: bool) -> None:
        """Plug in (up) or pull out the cable of NIC `nic` (0 is the first), through QMP."""
        self.qmp("set_link", name=f"nic{nic}", up=up)

    def qmp(self, command: str, **arguments: object) -> object:
        """Run one QMP command; its "return"; OvlError on an error reply."""
        deadline = time.monotonic() + 30
        while not self._qmp.exists():
            if not self.running or time.monotonic() > deadline:
                raise OvlError(f"VM: no QMP socket ({self._exit_reason()})")
            time.sleep(0.05)
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(30)
            sock.connect(str(self._qmp))
            replies = sock.makefile("rb")
            json.loads(replies.readline())  # the greeting
            for execute, args in (("qmp_capabilities", {}), (command, arguments)):
                sock.sendall(json.dumps({"execute": execute, "arguments": args}).encode())
                while True:
                    reply = json.loads(replies.readline())
                    if "event" not in reply:
                        break
                if "error" in reply:
                    raise OvlError(f"QMP {execute}: {reply['error'].get('desc', reply)}")
            return reply.get("return")

    def text(self) -> str:
        """The whole console so far."""
        return self.console.read_bytes().decode(errors="replace").replace("\r", "")

    def _new_lines(self, final: bool) -> Iterator[str]:
        with self.console.open("rb") as stream:
            stream.seek(self._offset)
            chunk = stream.read()
        self._offset += len(chunk)
        data = self._partial + chunk
        *complete, self._partial = data.split(b"\n")
        if final and self._partial:
            complete.append(self._partial)
            self._partial = b""
        for raw in complete:
            yield raw.decode(errors="replace").rstrip("\r")

    def _exit_reason(self) -> str:
        if self._error is not None:
            return self._error.line
        if self._result is None:
            return "still running"
        if self._result.returncode == 0:
            return "powered off"
        err = self._result.stderr.decode(errors="replace").strip().splitlines()
        return f"qemu exit status {self._result.returncode}: {err[-1] if err else ''}".strip()

    def kill(self) -> None:
        """Stop the guest now (no-op once QEMU has exited)."""
        # QEMU writes its pidfile while starting; a guest killed that early has not run yet.
        deadline = time.monotonic() + 10
        while self.running and not self._pidfile.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        if self.running:
            with contextlib.suppress(ProcessLookupError, ValueError, FileNotFoundError):
                os.kill(int(self._pidfile.read_text().strip()), signal.SIGKILL)
        self._thread.join(timeout=30)

    def __enter__(self) -> VirtualMachine:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.kill()
