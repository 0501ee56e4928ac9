"""Delta pack time: `ovl-agent delta pack`'s writer vs GNU tar + zstd on the same upper dir.

    .venv/bin/python bench/delta.py [--small 20000] [--large 40] [--runs 3]

Target: ovl <= 1.1x the time of `tar --xattrs -I 'zstd -3 -T0' -cf`.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path[:0] = [str(Path(__file__).resolve().parents[1] / d) for d in (".", "agent", "ovl-tools")]

from ovl.core.run import run  # noqa: E402
from ovl.delta.pack import write_delta  # noqa: E402
from ovl.delta.rules import Rules  # noqa: E402
from ovl.delta.upper import walk_upper  # noqa: E402

WORDS = [f"word{i}" for i in range(2000)]


def make_upper(root: Path, small: int, large: int, rng: random.Random) -> int:
    """Config-like small text files in nested dirs plus some large half-compressible files."""
    total = 0
    for i in range(small):
        path = root / f"etc/d{i % 97}/s{i % 13}/f{i}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = " ".join(rng.choices(WORDS, k=rng.randint(20, 900))).encode()
        path.write_bytes(data)
        total += len(data)
    for i in range(large):
        path = root / f"var/lib/app/blob{i}"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(1 << 20) + b"\0" * (1 << 20)
        path.write_bytes(data)
        total += len(data)
    return total


def timed(action: Callable[[], None]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process and its children, all threads)."""

    def cpu() -> float:
        own, kids = (
            resource.getrusage(resource.RUSAGE_SELF),
            resource.getrusage(resource.RUSAGE_CHILDREN),
        )
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime

    cpu0, wall0 = cpu(), time.perf_counter()
    action()
    return time.perf_counter() - wall0, cpu() - cpu0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--small", type=int, default=20000)
    parser.add_argument("--large", type=int, default=40)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ovl-bench-") as tmp:
        upper, out = Path(tmp) / "upper", Path(tmp) / "out"
        size = make_upper(upper, args.small, args.large, random.Random(1))

        def ovl() -> None:
            with open(out, "wb") as handle:
                write_delta(walk_upper(upper, Rules().wanted), handle)

        def gnu() -> None:
            run(["tar", "--xattrs", "-I", "zstd -3 -T0", "-cf", out, "-C", upper, "."])

        gnu()  # warm the page cache for both
        # Interleaved, best of N: the machine is shared, so load hits both sides alike.
        ovl_runs, tar_runs = [], []
        for _ in range(args.runs):
            ovl_runs.append(timed(ovl))
            ovl_size = out.stat().st_size
            tar_runs.append(timed(gnu))
            tar_size = out.stat().st_size
        ovl_s, ovl_cpu = min(r[0] for r in ovl_runs), min(r[1] for r in ovl_runs)
        tar_s, tar_cpu = min(r[0] for r in tar_runs), min(r[1] for r in tar_runs)
    files = args.small + args.large
    load = " ".join(f"{figure:.2f}" for figure in os.getloadavg())
    print(f"upper: {files} files, {size / 1e6:.1f} MB, cores: {os.cpu_count()}, load: {load}")
    print(f"{'':20}{'wall s':>8}{'cpu s':>8}{'MB/s':>8}{'out MB':>8}")
    for label, wall, cpu, out_size in (
        ("ovl delta pack", ovl_s, ovl_cpu, ovl_size),
        ("tar + zstd -3 -T0", tar_s, tar_cpu, tar_size),
    ):
        print(f"{label:20}{wall:>8.3f}{cpu:>8.3f}{size / 1e6 / wall:>8.1f}{out_size / 1e6:>8.2f}")
    ratio = ovl_s / tar_s
    print(
        f"wall ratio ovl/tar: {ratio:.2f}x (target <= 1.1x): {'ok' if ratio <= 1.1 else 'MISSED'}"
    )
    print(f"cpu ratio ovl/tar: {ovl_cpu / tar_cpu:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
