"""A private LAN for VM boots that need real DHCP: a network namespace with a bridge, tap
devices for guests and daemons started inside it; everything is removed at the end.

Nothing leaves the namespace: it has no route out and no link to the host's interfaces, so
DHCP, TFTP and HTTP between the daemons and the guests stay on the bridge.
"""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.core.run import run

BRIDGE = "br0"


@dataclass
class Lan:
    """The namespace `name`: bridge br0 at `<prefix>.1/24`, guests on `taps`."""

    name: str
    prefix: str
    taps: tuple[str, ...]
    logs: Path
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def host(self) -> str:
        """The bridge's own address: where daemons in the namespace listen."""
        return f"{self.prefix}.1"

    def run(self, argv: Sequence[str | Path]) -> subprocess.CompletedProcess[bytes]:
        return run(["ip", "netns", "exec", self.name, *argv])

    def start(self, name: str, argv: Sequence[str | Path]) -> subprocess.Popen[bytes]:
        """Start a daemon inside the namespace; its output goes to `<logs>/<name>.log`.

        A daemon runs until the LAN is torn down, which `run()` (waiting for an exit) cannot
        express: this is the one place the harness starts processes itself."""
        self.logs.mkdir(parents=True, exist_ok=True)
        with (self.logs / f"{name}.log").open("wb") as log:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.name, *map(str, argv)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        self.daemons.append(proc)
        time.sleep(0.2)
        if proc.poll() is not None:
            raise OvlError(f"{name} exited at once: {(self.logs / f'{name}.log').read_text()}")
        return proc

    def wait_for_http(self, url: str, timeout: float = 30) -> None:
        """Until `url` answers from inside the namespace."""
        deadline = time.monotonic() + timeout
        while True:
            probe = [
                "ip",
                "netns",
                "exec",
                self.name,
                "busybox",
                "wget",
                "-q",
                "-O",
                "/dev/null",
                url,
            ]
            if run(probe, check=False).returncode == 0:
                return
            if time.monotonic() > deadline:
                raise OvlError(f"{url}: no answer inside {self.name} after {timeout:.0f} s")
            time.sleep(0.2)

    def log(self, name: str) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextmanager
def private_lan(logs: Path, prefix: str = "192.168.77", taps: int = 1) -> Iterator[Lan]:
    """A namespace named after this process, removed with its daemons when the block ends."""
    if os.geteuid() != 0:
        raise OvlError("network namespaces need root")
    name = f"ovl-lan-{os.getpid()}"
    run(["ip", "netns", "add", name])
    lan = Lan(name, prefix, tuple(f"tap{n}" for n in range(taps)), logs)
    try:
        for command in (
            ["ip", "link", "set", "lo", "up"],
            ["ip", "link", "add", BRIDGE, "type", "bridge"],
            ["ip", "addr", "add", f"{lan.host}/24", "dev", BRIDGE],
            ["ip", "link", "set", BRIDGE, "up"],
        ):
            lan.run(command)
        for tap in lan.taps:
            lan.run(["ip", "tuntap", "add", "dev", tap, "mode", "tap"])
            lan.run(["ip", "link", "set", tap, "master", BRIDGE])
            lan.run(["ip", "link", "set", tap, "up"])
        yield lan
    finally:
        for proc in lan.daemons:
            proc.terminate()
        for proc in lan.daemons:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        run(["ip", "netns", "del", name], check=False)
