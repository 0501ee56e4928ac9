"""A small network for the bring-up tests, in namespaces of the test's own: a client namespace
with NICs eth0, eth1, ... each a veth whose peer srvN lives in a server namespace, with a busybox
udhcpd on it (or none: a NIC no server answers). A peer that is down is a cable pulled out:
the client's NIC has no carrier. The agent's network code runs in the client namespace through
tests/agent/netprobe.py and reports what it did as JSON."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "initramfs" / "udhcpc.script"
APPLETS = ("ip", "udhcpc", "sh", "cat", "mkdir", "grep", "mv", "cp", "rm", "printf", "echo")


def mac_of(index: int) -> str:
    return f"52:54:00:99:00:{index:02x}"


@dataclass
class NetLab:
    tmp: Path
    server: str = field(init=False)
    client: str = field(init=False)
    daemons: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.server = f"ovl-lab-s{os.getpid()}"
        self.client = f"ovl-lab-c{os.getpid()}"
        self.applets = self.tmp / "bin"
        self.applets.mkdir()
        for applet in APPLETS:
            (self.applets / applet).symlink_to("/bin/busybox")
        for ns in (self.server, self.client):
            _run("ip", "netns", "add", ns)

    def nic(
        self, index: int, *, carrier: bool = True, dhcp: bool = True, lease: int | None = None
    ) -> None:
        """ethN in the client (MAC mac_of(N)), its peer srvN with 10.99.N.1/24 in the server,
        udhcpd handing out 10.99.N.50-60 when `dhcp` (leases of `lease` seconds)."""
        srv = f"srv{index}"
        _run("ip", "link", "add", srv, "netns", self.server, "type", "veth",
             "peer", "name", f"eth{index}", "netns", self.client)  # fmt: skip
        self.client_run("ip", "link", "set", f"eth{index}", "address", mac_of(index))
        self.server_run("ip", "addr", "add", f"10.99.{index}.1/24", "dev", srv)
        self.set_carrier(index, carrier)
        if not dhcp:
            return
        conf = self.tmp / f"udhcpd-{index}.conf"
        leases = self.tmp / f"leases-{index}"
        leases.touch()
        lines = [
            f"start 10.99.{index}.50", f"end 10.99.{index}.60", f"interface {srv}",
            f"lease_file {leases}", f"pidfile {self.tmp}/udhcpd-{index}.pid",
            "option subnet 255.255.255.0", f"option router 10.99.{index}.1",
            f"option dns 10.99.{index}.53",
        ]  # fmt: skip
        if lease is not None:
            lines += [f"min_lease {lease}", f"option lease {lease}"]
        conf.write_text("\n".join(lines) + "\n")
        self.daemons.append(
            subprocess.Popen(
                ["ip", "netns", "exec", self.server, "busybox", "udhcpd", "-f", str(conf)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )

    def set_carrier(self, index: int, up: bool) -> None:
        """Plug (up) or pull (down) the cable of the client's ethN: its peer's state."""
        self.server_run("ip", "link", "set", f"srv{index}", "up" if up else "down")

    def server_run(self, *argv: str) -> str:
        return _run("ip", "netns", "exec", self.server, *argv)

    def client_run(self, *argv: str) -> str:
        return _run("ip", "netns", "exec", self.client, *argv)

    def probe(self, **args: Any) -> dict[str, Any]:
        """Run tests/agent/netprobe.py in the client namespace (own mount and UTS namespaces,
        a private resolv.conf) with `args`; what it printed."""
        run_dir = self.tmp / "run"
        resolv = self.tmp / "resolv.conf"
        resolv.write_text("")
        args = {"run_dir": str(run_dir), "script": str(SCRIPT), **args}
        inner = (
            f"mount --bind {resolv} /etc/resolv.conf && exec {sys.executable} "
            f"-m tests.agent.netprobe '{json.dumps(args)}'"
        )
        env = {
            **os.environ,
            "PATH": f"{self.applets}:{os.environ['PATH']}",
            "PYTHONPATH": f"{REPO}:{REPO / 'agent'}:{REPO / 'ovl-tools'}",
        }
        proc = subprocess.run(
            ["/sbin/ip", "netns", "exec", self.client,
             "unshare", "--mount", "--uts", "sh", "-c", inner],
            capture_output=True, text=True, env=env, cwd=REPO, timeout=120,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
        result["resolv_conf"] = resolv.read_text()
        return result

    def close(self) -> None:
        """Stop every process started here (udhcpd, and udhcpc left by a probe) and delete
        the namespaces."""
        for pidfile in (self.tmp / "run" / "dhcp").glob("*.pid"):
            with contextlib.suppress(ValueError, ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
        for daemon in self.daemons:
            daemon.terminate()
            daemon.wait(timeout=10)
        for ns in (self.server, self.client):
            subprocess.run(["ip", "netns", "del", ns], check=False)


def _run(*argv: str) -> str:
    return subprocess.run(argv, check=True, capture_output=True, text=True).stdout
