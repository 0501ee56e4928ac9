"""Agent start to hand-over on the host: a signed 5 MB bundle with 10 matching layers (and 5 that
do not match) over loopback HTTP, a squashfs image on a loop device, overlay root. Needs root.

    .venv/bin/python bench/agent.py [--runs 7] [--frozen]

Each run is `ovl-agent boot` as a fresh process (interpreter start-up included), timed from
spawn to exit; the phase breakdown comes from the run's report.json. Beside it, the start-up
cost the lazy imports avoid: the same process importing requests, cryptography, zstandard and
pyudev eagerly. --frozen also times the PyInstaller-frozen agent (frozen on a cache miss).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "agent"), str(ROOT / "ovl-tools")]

from ovl.core.run import run  # noqa: E402
from ovl.tools.keys import certify, new_signing_pair  # noqa: E402
from ovl.tools.seal import seal_bundle  # noqa: E402

TARGET_MS = 300
EAGER = "import requests, zstandard, pyudev, cryptography.hazmat.primitives.asymmetric.ed25519"


def make_bundle(work: Path) -> Path:
    """~5 MB of incompressible content across the base and 15 layers, packed by GNU tar + zstd."""
    tree = work / "tree"
    arch = platform.machine()
    layers = [f"layers/{10 + i}-arch={arch}" for i in range(10)]
    layers += [f"layers/{30 + i}-arch=riscv64" for i in range(5)]
    for index, top in enumerate(["", *layers]):
        directory = tree / top / "etc" / f"svc{index}"
        directory.mkdir(parents=True)
        for n in range(20):
            (directory / f"conf{n}").write_bytes(os.urandom(16 * 1024))
    (tree / "ovl.json").write_text(json.dumps({"name": "bench", "serial": 1}))
    tar = work / "bundle.tar"
    run(
        [
            "tar",
            "-C",
            tree,
            "--format=pax",
            "--sort=name",
            "--numeric-owner",
            "-cf",
            tar,
            "etc",
            "layers",
            "ovl.json",
        ]
    )
    run(["zstd", "-q", "-f", "--rm", tar, "-o", work / "plain.ovl"])
    return work / "plain.ovl"


def seal(plain: Path, work: Path) -> tuple[Path, Path]:
    """Seal with a throw-away root and certified signer; returns (sealed bundle, keys dir)."""
    secret, keys = work / "secret", work / "keys"
    keys.mkdir()
    root_key, root_pub = new_signing_pair(secret, "root", "root")
    root_pub.rename(keys / "root.pub")
    signer_key, signer_pub = new_signing_pair(secret, "bench", "signer")
    certify(root_key, signer_pub, "bench", datetime.now(UTC) + timedelta(days=1), secret / "c")
    out = work / "www" / "fleet.ovl"
    out.parent.mkdir()
    seal_bundle(plain, out, signer_key=signer_key, certificate=secret / "c", name="bench", serial=1)
    return out, keys


def serve(directory: Path) -> ThreadingHTTPServer:
    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(Quiet, directory=str(directory)))
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall-clock and CPU ms of one run (the wall clock stretches when others load the host;
    the CPU time much less)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
    wall = (time.perf_counter() - start) * 1000
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime) * 1000
    return wall, cpu


def summary(samples: list[tuple[float, float]]) -> str:
    walls = [w for w, _ in samples]
    cpu = statistics.median(c for _, c in samples)
    return (
        f"median {statistics.median(walls):4.0f} ms (min {min(walls):.0f}, max {max(walls):.0f}),"
        f" CPU {cpu:.0f} ms"
    )


def boot_runs(
    agent: list[str], work: Path, keys: Path, runs: int
) -> tuple[list[tuple[float, float]], dict[str, list[int]]]:
    run_dir, sysroot = work / "run" / "ovl", work / "sysroot"
    argv = [
        *agent,
        "boot",
        "--cmdline",
        str(work / "cmdline"),
        "--run-dir",
        str(run_dir),
        "--sysroot",
        str(sysroot),
        "--keys-dir",
        str(keys),
        "--kmsg",
        "/dev/null",
    ]
    samples: list[tuple[float, float]] = []
    phases: dict[str, list[int]] = {}
    for _ in range(runs):
        samples.append(timed(argv))
        report = json.loads((run_dir / "report.json").read_text())
        if report["errors"] or report["bundle"] is None or len(report["layers"]) != 11:
            raise SystemExit(f"bench boot did not apply the bundle: {report['channels']}")
        for phase, ms in report["timings_ms"].items():
            phases.setdefault(phase, []).append(ms)
        run(["umount", "-R", sysroot])
    return samples, phases


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--frozen", action="store_true", help="also time the frozen agent")
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("bench/agent.py needs root (loop devices, mounts)")
    python = [sys.executable, "-m", "ovl.agent"]
    with tempfile.TemporaryDirectory(prefix="ovl-bench-agent-") as scratch:
        work = Path(scratch)
        (work / "run").mkdir()
        run(["mount", "-t", "tmpfs", "tmpfs", work / "run"])
        image_dir = work / "image" / "etc"
        image_dir.mkdir(parents=True)
        (image_dir / "os-release").write_text("bench image\n")
        run(["mksquashfs", work / "image", work / "root.sqfs", "-quiet", "-noappend"])
        loop = run(["losetup", "--find", "--show", work / "root.sqfs"]).stdout.decode().strip()
        httpd = None
        try:
            bundle, keys = seal(make_bundle(work), work)
            httpd = serve(bundle.parent)
            url = f"http://127.0.0.1:{httpd.server_address[1]}/fleet.ovl"
            (work / "cmdline").write_text(f"ovl={url} ovl.root={loop} ovl.require=signed\n")
            print(
                f"bundle: {bundle.stat().st_size / 1e6:.1f} MB, 10 of 15 layers match,"
                f" {args.runs} runs, target <= {TARGET_MS} ms median"
            )
            variants = [("python -m ovl.agent", python)]
            if args.frozen:
                from ovl.tools.initramfs.freeze import EXECUTABLE, frozen_agent

                variants.append(("frozen ovl-agent", [str(frozen_agent() / EXECUTABLE)]))
            for name, agent in variants:
                samples, phases = boot_runs(agent, work, keys, args.runs)
                median = statistics.median(w for w, _ in samples)
                verdict = "ok" if median <= TARGET_MS else "over target"
                print(f"{name:17} start to hand-over: {summary(samples)} [{verdict}]")
                breakdown = ", ".join(
                    f"{p} {statistics.median(v):.0f}" for p, v in phases.items() if p != "total"
                )
                total = statistics.median(phases["total"])
                print(f"{'':17} inside boot(), median ms: {breakdown}; total {total:.0f}")
                facts = [timed([*agent, "facts", "--json"]) for _ in range(args.runs)]
                print(f"{'':17} start-up to facts printed: {summary(facts)}")
            eager = [timed([sys.executable, "-c", EAGER]) for _ in range(args.runs)]
            bare = [timed([sys.executable, "-c", "pass"]) for _ in range(args.runs)]
            print(f"{'baseline':17} eager requests+cryptography+zstandard+pyudev: {summary(eager)}")
            print(f"{'':17} bare interpreter: {summary(bare)}")
        finally:
            if httpd is not None:
                httpd.shutdown()
            run(["umount", "-R", "-l", work / "run"], check=False)
            run(["losetup", "-d", loop], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
