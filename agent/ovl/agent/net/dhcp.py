"""One busybox udhcpc per NIC, racing: the first lease wins (the udhcpc script claims it
atomically and configures it), the others are stopped. The winner keeps running and renews its
lease while the boot downloads, until the agent stops it just before the hand-over.

State in <run>/dhcp/: `<if>.pid` (udhcpc's pidfile), `<if>.event` (the script's last event:
deconfig, leasefail, bound, renew, nak), `<if>.log` (udhcpc's output), `winner/interface`,
`lease` (KEY=value, also copied to <run>/net).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from ovl.core.run import start

# -t 3 -T 2 -A 1: a discover every 2 s, a 1 s pause every third, for as long as udhcpc runs
# (no -n, -q: it never gives up, and it renews the lease once it has one).
UDHCPC_OPTIONS = ("-f", "-t", "3", "-T", "2", "-A", "1")
STOP_SECONDS = 2.0


@dataclass(frozen=True)
class Lease:
    interface: str
    address: str  # ip/prefix
    router: str | None
    dns: tuple[str, ...]
    seconds: int | None
    server: str | None


class DhcpRace:
    """The udhcpc clients of this boot (and of an earlier agent run before an ovl.break)."""

    def __init__(self, run_dir: Path, script: Path, nameservers: tuple[str, ...] = ()) -> None:
        self.run_dir = run_dir
        self.dir = run_dir / "dhcp"
        self.script = script
        self.nameservers = nameservers
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, interface: str) -> None:
        """Start udhcpc on `interface` unless one runs there already."""
        if self.running(interface):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / f"{interface}.event").unlink(missing_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "OVL_RUN_DIR": str(self.run_dir),
            "OVL_NAMESERVERS": " ".join(self.nameservers),
        }
        argv: list[str | Path] = ["udhcpc", *UDHCPC_OPTIONS, "-i", interface,
                                  "-s", self.script, "-p", self._pidfile(interface)]  # fmt: skip
        process = start(argv, env=env, output=self.dir / f"{interface}.log")
        self._children[interface] = process
        # udhcpc writes the same pid a moment later; written now, a second start cannot race it.
        self._pidfile(interface).write_text(f"{process.pid}\n")

    def running(self, interface: str) -> bool:
        child = self._children.get(interface)
        if child is not None:
            return child.poll() is None
        pid = self._pid(interface)
        return pid is not None and _alive(pid)

    def event(self, interface: str) -> str | None:
        """The script's last event on `interface` (None before the first)."""
        try:
            return (self.dir / f"{interface}.event").read_text().strip() or None
        except OSError:
            return None

    def lease(self) -> Lease | None:
        """The winning lease, once its address and route are in place."""
        try:
            text = (self.dir / "lease").read_text()
        except OSError:
            return None
        fields = dict(line.split("=", 1) for line in text.splitlines() if "=" in line)
        if not fields.get("INTERFACE") or not fields.get("IP"):
            return None
        lease_seconds = fields.get("LEASE", "")
        return Lease(
            interface=fields["INTERFACE"],
            address=fields["IP"],
            router=fields.get("ROUTER") or None,
            dns=tuple(fields.get("DNS", "").split()),
            seconds=int(lease_seconds) if lease_seconds.isdigit() else None,
            server=fields.get("SERVER") or None,
        )

    def interfaces(self) -> list[str]:
        """Interfaces a udhcpc was started on (by this run or an earlier one)."""
        return sorted(p.name.removesuffix(".pid") for p in self.dir.glob("*.pid"))

    def stop(self, interface: str) -> None:
        """Stop the udhcpc on `interface` (its address stays: no release)."""
        child = self._children.pop(interface, None)
        if child is not None:
            child.terminate()
            try:
                child.wait(STOP_SECONDS)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        pid = None if child is not None else self._pid(interface)
        if pid is not None and _alive(pid):  # started by an earlier agent run
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + STOP_SECONDS
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.02)
            if _alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        (self.dir / f"{interface}.pid").unlink(missing_ok=True)

    def stop_all(self, keep: str | None = None) -> list[str]:
        """Stop every udhcpc but `keep`'s; the interfaces stopped."""
        stopped = [name for name in self.interfaces() if name != keep]
        for name in stopped:
            self.stop(name)
        return stopped

    def _pidfile(self, interface: str) -> Path:
        return self.dir / f"{interface}.pid"

    def _pid(self, interface: str) -> int | None:
        try:
            text = self._pidfile(interface).read_text().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None


def _alive(pid: int) -> bool:
    """Whether `pid` (from a pidfile) is a udhcpc that has not exited (a zombie has)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    comm, _, rest = stat.partition(") ")
    return comm.endswith("(udhcpc") and not rest.startswith(("Z", "X"))
