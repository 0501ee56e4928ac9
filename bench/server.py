"""Server load on loopback: concurrent bundle downloads and signed delta uploads.

    .venv/bin/python bench/server.py [--downloads 500] [--uploads 100] [--bundle-mb 1]

Downloads hit `ovl server serve` (waitress) and, side by side, the shipped nginx config on
the real nginx; uploads go to `ovl server serve`. Target: 0 errors. Prints p50/p99 latency
and throughput.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "ovl-tools"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agent"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests

from ovl.delta.pack import write_delta
from ovl.delta.protocol import SIGNATURE_HEADER, trusted_comment
from ovl.delta.rules import Rules
from ovl.delta.upper import walk_upper
from ovl.tools.keys import new_signing_pair
from ovl.tools.server.store import Machine, Store
from ovl.trust.signing import load_secret_key, sign_file

OVL = [sys.executable, "-c", "import sys; from ovl.tools.cli import main; sys.exit(main())"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_up(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while True:
        try:
            requests.get(url + "/", timeout=1)
            return
        except requests.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{url}: server did not start") from None
            time.sleep(0.05)


@contextmanager
def started(argv: list[str], url: str) -> Iterator[str]:
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def ovl_server(root: Path, threads: int) -> AbstractContextManager[str]:
    port = free_port()
    argv = [*OVL, "server", "--root", str(root), "serve", "--listen", f"127.0.0.1:{port}",
            "--threads", str(threads)]  # fmt: skip
    return started(argv, f"http://127.0.0.1:{port}")


def nginx(root: Path, upstream: str, prefix: Path) -> AbstractContextManager[str]:
    port = free_port()
    block = subprocess.run(
        [
            *OVL,
            "server",
            "--root",
            str(root),
            "nginx-conf",
            "--listen",
            f"127.0.0.1:{port}",
            "--upstream",
            upstream.removeprefix("http://"),
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    temps = "".join(
        f"{k}_temp_path {prefix}/{k};\n"
        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    prefix.mkdir()
    (prefix / "nginx.conf").write_text(
        f"user root;\nworker_processes 2;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        f"events {{ worker_connections 4096; }}\nhttp {{\naccess_log off;\n{temps}{block}}}\n"
    )
    argv = ["nginx", "-p", str(prefix), "-c", str(prefix / "nginx.conf"), "-g", "daemon off;"]
    return started(argv, f"http://127.0.0.1:{port}")


def hammer(jobs: list[Callable[[], int]]) -> tuple[list[float], int, int, float]:
    """Run all jobs at once (one thread each); (latencies, errors, bytes, wall seconds)."""

    def one(job: Callable[[], int]) -> tuple[float, int]:
        start = time.perf_counter()
        try:
            size = job()
        except Exception:  # any failure counts as an error; the bench reports, not raises
            size = -1
        return time.perf_counter() - start, size

    wall = time.perf_counter()
    with ThreadPoolExecutor(max_workers=len(jobs)) as pool:
        results = list(pool.map(one, jobs))
    wall = time.perf_counter() - wall
    latencies = sorted(r[0] for r in results)
    errors = sum(1 for r in results if r[1] < 0)
    return latencies, errors, sum(max(r[1], 0) for r in results), wall


def report(label: str, result: tuple[list[float], int, int, float]) -> None:
    latencies, errors, size, wall = result
    p50 = statistics.median(latencies)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    print(
        f"{label:34}{len(latencies):>6}{errors:>7}{p50 * 1000:>9.0f}{p99 * 1000:>9.0f}"
        f"{len(latencies) / wall:>9.0f}{size / 1e6 / wall:>9.0f}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--downloads", type=int, default=500)
    parser.add_argument("--uploads", type=int, default=100)
    parser.add_argument("--bundle-mb", type=float, default=1.0)
    parser.add_argument("--delta-kb", type=int, default=256)
    parser.add_argument("--threads", type=int, default=16, help="waitress worker threads")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ovl-bench-server-") as tmp:
        root = Path(tmp) / "srv"
        store = Store(root)
        bundle = Path(tmp) / "bundle.ovl"
        bundle.write_bytes(os.urandom(int(args.bundle_mb * 1e6)))
        staged = store.temp_dir()
        (staged / "bundle.ovl").write_bytes(bundle.read_bytes())
        store.publish("lab", 1, staged, {"action": "import", "serial": 1, "deltas": []})
        key_path, pub = new_signing_pair(Path(tmp) / "keys", "node", "node")
        key = load_secret_key(key_path)
        uploads = []
        for i in range(args.uploads):
            machine = f"node{i}"
            store.add_machine(
                Machine(
                    machine, "lab", f"52:54:00:00:{i // 256:02x}:{i % 256:02x}", pub.read_text()
                )
            )
            upper = Path(tmp) / f"upper-{i}"
            (upper / "var/lib/app").mkdir(parents=True)
            (upper / "var/lib/app/state").write_bytes(os.urandom(args.delta_kb * 1024))
            path = Path(tmp) / f"delta-{i}.tar.zst"
            with path.open("wb") as out:
                sha = write_delta(walk_upper(upper, Rules().wanted), out).sha256
            data = path.read_bytes()
            sig = sign_file(key, path, trusted_comment(machine, sha, i), "bench").to_text()
            header = base64.b64encode(sig.encode()).decode()
            uploads.append((machine, sha, data, header))
        print(f"bundle {args.bundle_mb} MB, deltas {args.delta_kb} KiB, cores {os.cpu_count()}")
        print(f"{'':34}{'reqs':>6}{'errors':>7}{'p50 ms':>9}{'p99 ms':>9}{'req/s':>9}{'MB/s':>9}")
        with ovl_server(root, args.threads) as url:

            def download(base: str) -> Callable[[], int]:
                def job() -> int:
                    reply = requests.get(base + "/profiles/lab/current/bundle.ovl", timeout=120)
                    reply.raise_for_status()
                    return len(reply.content)

                return job

            def upload(item: tuple[str, str, bytes, str]) -> Callable[[], int]:
                machine, sha, data, header = item

                def job() -> int:
                    reply = requests.put(
                        f"{url}/deltas/{machine}/{sha}.tar.zst",
                        data=data,
                        headers={SIGNATURE_HEADER: header},
                        timeout=120,
                    )
                    if reply.status_code != 201:
                        raise RuntimeError(reply.text)
                    return len(data)

                return job

            report("download, ovl server serve", hammer([download(url)] * args.downloads))
            with nginx(root, url, Path(tmp) / "nginx") as front:
                report(
                    "download, nginx (shipped config)", hammer([download(front)] * args.downloads)
                )
            report("upload, ovl server serve", hammer([upload(u) for u in uploads]))
        stored = sum(1 for _ in (root / "deltas").rglob("*.json"))
        print(f"deltas stored: {stored} of {args.uploads}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
