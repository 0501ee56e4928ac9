"""A fleet boot against one nginx on loopback: N simulated machines fetch, verify and apply
their bundle, only their frames beside the whole bundle (the baseline).

    .venv/bin/python bench/fleet.py [--machines 1000] [--parallel 16] [--layers 10000]
                                    [--full-machines N] [--workdir DIR]

The bundle is bench/bundle.py's fleet bundle (--layers one-machine layers of ~22 kB, ~200 MB
for 10,000), packed by `ovl pack`, sealed by a throw-away signer and published with `ovl server
import`; nginx runs the shipped config (`ovl server nginx-conf`, 2 workers) with an access log
of `$body_bytes_sent`. A machine is the agent's own code in a worker process (`--parallel`
workers, each booting its share of the machines one after the other, each machine with facts of
its own): the http channel's fetch (frames, or `ovl.fetch=full`), Verifier.open (signature,
certificate, trust root, frame digests) and apply_bundle into a scratch directory on tmpfs,
removed after. Per machine: wall time of those three steps and the bytes that landed (the
partial bundle or the whole one, plus the signature). Server side: the bytes nginx sent and the
requests it answered, per second of the run. Not run in CI: docs/SERVER.md has the figures.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "agent"), str(ROOT / "ovl-tools")]

from bench.bundle import fleet_mac, generate_fleet  # noqa: E402
from ovl.core.run import run, start  # noqa: E402

OVL = [sys.executable, "-c", "import sys; from ovl.tools.cli import main; sys.exit(main())"]
BUNDLE = "/profiles/fleet/current/bundle.ovl"
LOG_FORMAT = "$status $body_bytes_sent"


def publish(work: Path, layers: int) -> tuple[Path, Path]:
    """The sealed fleet bundle in an `ovl server` root, and the trust store (both kept in
    `work` and reused by later runs)."""
    from ovl.tools.keys import certify, new_signing_pair
    from ovl.tools.pack import PackOptions, pack_directory
    from ovl.tools.seal import seal_bundle

    root, keys = work / f"srv-{layers}", work / "keys"
    if (root / "profiles/fleet/current/bundle.ovl").exists():
        return root, keys
    secret = work / "secret"
    shutil.rmtree(secret, ignore_errors=True)
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir(parents=True)
    root_key, root_pub = new_signing_pair(secret, "root", "root")
    root_pub.rename(keys / "root.pub")
    signer_key, signer_pub = new_signing_pair(secret, "bench", "signer")
    from datetime import UTC, datetime, timedelta

    certify(root_key, signer_pub, "bench", datetime.now(UTC) + timedelta(days=365), secret / "c")
    tree = work / f"tree-{layers}"
    shutil.rmtree(tree, ignore_errors=True)
    generate_fleet(tree, layers)
    (tree / "ovl.json").write_text(json.dumps({"name": "fleet", "serial": 1}))
    packed, sealed = work / "packed.ovl", work / "ship" / "fleet.ovl"
    pack_directory(tree, packed, PackOptions())
    shutil.rmtree(tree)
    seal_bundle(
        packed, sealed, signer_key=signer_key, certificate=secret / "c", name="fleet", serial=1
    )
    packed.unlink()
    run([*OVL, "server", "--root", root, "import", "fleet", sealed])
    return root, keys


class Nginx:
    """The shipped config on the real nginx (2 workers), counting what it sends."""

    def __init__(self, root: Path, prefix: Path) -> None:
        import socket

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = int(probe.getsockname()[1])
        listen = f"127.0.0.1:{self.port}"
        conf = ["nginx-conf", "--listen", listen, "--upstream", "127.0.0.1:9"]
        block = run([*OVL, "server", "--root", root, *conf]).stdout.decode()
        shutil.rmtree(prefix, ignore_errors=True)
        prefix.mkdir(parents=True)
        self.log = prefix / "access.log"
        temps = "".join(
            f"{kind}_temp_path {prefix}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        (prefix / "nginx.conf").write_text(
            f"user root;\nworker_processes 2;\npid {prefix}/nginx.pid;\n"
            f"error_log {prefix}/error.log;\nevents {{ worker_connections 4096; }}\nhttp {{\n"
            f"{temps}log_format sent '{LOG_FORMAT}';\naccess_log {self.log} sent;\n{block}}}\n"
        )
        self._proc = start(
            ["nginx", "-p", prefix, "-c", prefix / "nginx.conf", "-g", "daemon off;"]
        )
        self.url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 20
        while not self.log.exists() or not self.log.read_text():
            import requests

            try:
                requests.head(self.url + BUNDLE, timeout=1)
            except requests.ConnectionError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"nginx did not start: {prefix / 'error.log'}") from None
            time.sleep(0.1)

    def sent(self) -> tuple[int, int, int]:
        """(body bytes, requests, error responses) logged so far."""
        lines = self.log.read_text().splitlines()
        statuses = [line.split() for line in lines]
        errors = sum(1 for status, _ in statuses if not status.startswith(("2", "3")))
        return sum(int(sent) for _, sent in statuses), len(lines), errors

    def stop(self) -> None:
        self._proc.terminate()
        self._proc.wait(timeout=10)


def boot_machines(url: str, keys: Path, machines: list[int], full: bool, scratch: Path) -> None:
    """The worker: each machine's fetch, verify and apply, one JSON line each on stdout."""
    from ovl.agent.channels.http import HttpChannel
    from ovl.agent.console import Console
    from ovl.agent.context import BootContext
    from ovl.agent.download.frames import FrameChoice
    from ovl.agent.mounts import MountStack
    from ovl.agent.verify import Verifier
    from ovl.core.errors import OvlError
    from ovl.core.facts import Facts
    from ovl.format.apply import apply_bundle, machine_frames
    from ovl.trust.policy import Policy

    for machine in machines:
        facts = Facts(macs=(fleet_mac(machine),))
        work = scratch / f"machine-{machine}"
        (work / "fetched").mkdir(parents=True)
        began = time.monotonic()
        try:
            verifier = Verifier(Policy(), keys, None, None, facts)
            choice = FrameChoice(verifier.signed_index, partial(machine_frames, facts=facts))
            ctx = BootContext(work, 60.0, Console(stream=io.StringIO()), MountStack())
            channel = HttpChannel(url + BUNDLE, None if full else choice)
            fetched = channel.fetch(work / "fetched/bundle.ovl", ctx)
            opened = verifier.open(fetched, ctx)
            with opened.path.open("rb") as source:
                apply_bundle(source, facts, work / "root", split=False)
            signature = fetched.signature.stat().st_size if fetched.signature else 0
            landed = fetched.size + signature
            error = ""
        except OvlError as exc:
            landed, error = 0, exc.line
        seconds = time.monotonic() - began
        shutil.rmtree(work)
        print(json.dumps({"machine": machine, "s": seconds, "bytes": landed, "error": error}))
        sys.stdout.flush()


@dataclass(frozen=True)
class FleetRun:
    machines: int
    failed: int
    first_error: str
    wall_s: float
    served_bytes: int  # nginx's $body_bytes_sent, all requests of the run
    requests: int
    http_errors: int
    per_machine_bytes: list[int]  # what landed on each machine that booted, sorted
    seconds: list[float]  # each machine's fetch + verify + apply, sorted


def fleet_boot(
    nginx: Nginx, keys: Path, machines: int, layers: int, parallel: int, full: bool, tmp: Path
) -> FleetRun:
    """`machines` machines (spread over the layers) booted by `parallel` workers at once."""
    chosen = [(n * 7919) % layers for n in range(machines)]  # distinct while machines <= layers
    before, asked_before, errors_before = nginx.sent()
    outputs, workers = [], []
    began = time.monotonic()
    for worker in range(parallel):
        share = chosen[worker::parallel]
        if not share:
            continue
        output = tmp / f"worker-{'full' if full else 'frames'}-{worker}.jsonl"
        output.unlink(missing_ok=True)
        argv: list[str | Path] = [sys.executable, __file__, "--worker", nginx.url, keys, tmp]
        argv += [",".join(map(str, share)), *(["--full"] if full else [])]
        workers.append(start(argv, output=output))
        outputs.append(output)
    for proc in workers:
        proc.wait()
    wall = time.monotonic() - began
    time.sleep(0.5)  # nginx logs a request once its response is sent
    sent, asked, errors = nginx.sent()
    results = [json.loads(line) for out in outputs for line in out.read_text().splitlines()]
    booted = [r for r in results if not r["error"]]
    failed = [r["error"] for r in results if r["error"]]
    return FleetRun(
        machines=machines,
        failed=machines - len(booted),
        first_error=failed[0] if failed else "",
        wall_s=wall,
        served_bytes=sent - before,
        requests=asked - asked_before,
        http_errors=errors - errors_before,
        per_machine_bytes=sorted(r["bytes"] for r in booted),
        seconds=sorted(r["s"] for r in booted),
    )


def _pct(values: list[float] | list[int], pct: int) -> float:
    if not values:
        return float("nan")
    return float(values[min(len(values) - 1, len(values) * pct // 100)])


def show(size: int, frames: FleetRun, full: FleetRun) -> None:
    rows: list[tuple[str, str, str]] = []

    def row(label: str, fmt: str, get: Callable[[FleetRun], float]) -> None:
        rows.append((label, fmt.format(get(frames)), fmt.format(get(full))))

    row("machines", "{:.0f}", lambda r: r.machines)
    row("failed", "{:.0f}", lambda r: r.failed)
    row("served by nginx, total (MB)", "{:.1f}", lambda r: r.served_bytes / 1e6)
    row("served per machine, mean (MB)", "{:.3f}", lambda r: r.served_bytes / r.machines / 1e6)
    row("landed per machine, p50 (MB)", "{:.3f}", lambda r: _pct(r.per_machine_bytes, 50) / 1e6)
    row("landed per machine, max (MB)", "{:.3f}", lambda r: _pct(r.per_machine_bytes, 100) / 1e6)
    row("time per machine, p50 (s)", "{:.3f}", lambda r: _pct(r.seconds, 50))
    row("time per machine, p99 (s)", "{:.3f}", lambda r: _pct(r.seconds, 99))
    row("wall time (s)", "{:.1f}", lambda r: r.wall_s)
    row("requests", "{:.0f}", lambda r: r.requests)
    row("requests/s", "{:.0f}", lambda r: r.requests / r.wall_s)
    row("served MB/s", "{:.0f}", lambda r: r.served_bytes / r.wall_s / 1e6)
    row("HTTP errors", "{:.0f}", lambda r: r.http_errors)
    print(f"bundle {size / 1e6:.1f} MB; load average {os.getloadavg()[0]:.1f}")
    print(f"| {'':<32} | {'own frames':>14} | {'whole bundle':>14} |")
    print(f"| {'-' * 32} | {'-' * 14} | {'-' * 14} |")
    for label, mine, whole in rows:
        print(f"| {label:<32} | {mine:>14} | {whole:>14} |")
    for name, run_ in (("own frames", frames), ("whole bundle", full)):
        if run_.first_error:
            print(f"{name}: first failure: {run_.first_error}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--machines", type=int, default=1000)
    parser.add_argument("--full-machines", type=int, help="for the baseline (default --machines)")
    parser.add_argument("--parallel", type=int, default=16, help="worker processes at once")
    parser.add_argument("--layers", type=int, default=10_000)
    parser.add_argument("--workdir", type=Path, default=Path(tempfile.gettempdir()) / "ovl-fleet")
    parser.add_argument("--scratch", type=Path, default=Path("/dev/shm/ovl-fleet"))
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    began = time.monotonic()
    root, keys = publish(args.workdir, args.layers)
    print(f"bundle ready in {time.monotonic() - began:.0f} s", flush=True)
    size = (root / "profiles/fleet/current/bundle.ovl").stat().st_size
    args.scratch.mkdir(parents=True, exist_ok=True)
    nginx = Nginx(root, args.workdir / "nginx")
    try:
        frames = fleet_boot(
            nginx, keys, args.machines, args.layers, args.parallel, False, args.scratch
        )
        print(f"own frames: {frames.wall_s:.0f} s", flush=True)
        full = fleet_boot(
            nginx, keys, args.full_machines or args.machines, args.layers, args.parallel, True,
            args.scratch,
        )  # fmt: skip
    finally:
        nginx.stop()
        shutil.rmtree(args.scratch, ignore_errors=True)
    show(size, frames, full)
    return 0 if not frames.failed and not full.failed else 1


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        url, keys, scratch, machines = sys.argv[2:6]
        boot_machines(
            url, Path(keys), [int(m) for m in machines.split(",")], "--full" in sys.argv,
            Path(scratch),
        )  # fmt: skip
        sys.exit(0)
    sys.exit(main())
