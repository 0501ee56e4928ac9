"""Run by tests/agent/netlab.py inside a client network namespace: the agent's network bring-up
(ovl.agent.net) for the ip= words given, then what came of it, as one JSON line on stdout.

    python -m tests.agent.netprobe '{"ip": [...], "bootif": ..., "window": 10, ...}'

Keys: ip, bootif, nameservers, window (ovl.timeout), hold (seconds to stay up after the
network is: a lease renews meanwhile), stop (stop the DHCP clients at the end), run_dir, script.
"""

from __future__ import annotations

import io
import json
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ovl.agent.console import Console
from ovl.agent.deadline import Deadline
from ovl.agent.net.bringup import BringUp, NetPaths, start_network
from ovl.agent.net.ipconfig import parse_network
from ovl.core.errors import OvlError
from ovl.core.run import run


def _udhcpc_running(run_dir: Path) -> list[str]:
    names = []
    for pidfile in sorted((run_dir / "dhcp").glob("*.pid")):
        try:
            comm = Path(f"/proc/{pidfile.read_text().strip()}/comm").read_text().strip()
        except OSError:
            continue
        if comm == "udhcpc":
            names.append(pidfile.name.removesuffix(".pid"))
    return names


def main(args: dict[str, Any]) -> dict[str, Any]:
    config = parse_network(args["ip"], args.get("bootif"), args.get("nameservers", []))
    assert config is not None
    console = Console(stream=io.StringIO())
    run_dir = Path(args["run_dir"])
    paths = NetPaths(Path("/sys"), run_dir, Path(args["script"]), Path("/etc/resolv.conf"))
    start = time.monotonic()
    network = start_network(config, paths, console, args["window"])
    assert isinstance(network, BringUp)
    error = None
    try:
        network.wait(Deadline(args["window"]))
    except OvlError as exc:
        error = exc.line
    waited = time.monotonic() - start
    time.sleep(args.get("hold", 0))
    events = {p.stem: p.read_text().strip() for p in (run_dir / "dhcp").glob("*.event")}
    result = {
        "error": error,
        "waited": waited,
        "lines": console.lines,
        "report": network.describe(),
        "events": events,
        "running": _udhcpc_running(run_dir),
        "addresses": run(["/sbin/ip", "-4", "-o", "addr", "show"]).stdout.decode(),
        "routes": run(["/sbin/ip", "route"]).stdout.decode(),
        "hostname": socket.gethostname(),
    }
    if args.get("stop"):
        network.stop()
        time.sleep(0.2)
        result["running_after_stop"] = _udhcpc_running(run_dir)
        result["addresses_after_stop"] = run(
            ["/sbin/ip", "-4", "-o", "addr", "show"]
        ).stdout.decode()
        result["lines"] = console.lines
    return result


if __name__ == "__main__":
    print(json.dumps(main(json.loads(sys.argv[1]))))
