"""Bundle speed beside GNU tar + zstd: pack, then apply/extract, on a ~300 MB mixed tree.

    .venv/bin/python bench/bundle.py [--workdir /tmp/ovl-bench] [--small 20000] [--large-mib 60]

The tree: many small config-like text files plus a few large binaries (half random, half
repetitive, so compression has something to do). Prints one line per step, ovl beside tar.
Best wall-clock time of --repeat runs each, page cache warm (the tree is read once before
timing). ovl pack fsyncs its output before renaming it into place; tar does not.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "ovl-tools")]

from agent.run import run  # noqa: E402

OVL = [str(Path(sys.executable).parent / "ovl")]
WORDS = ["server", "port", "listen", "allow", "deny", "user", "group", "path", "timeout", "log"]
MAC = "52:54:00:be:0c:01"


def generate_tree(root: Path, small: int, large_mib: int, seed: int = 7) -> int:
    """Write the benchmark tree; returns its content size in bytes."""
    rng = random.Random(seed)
    total = 0
    for index in range(small):
        base = "etc" if index % 4 else f"layers/{10 + index % 3}-{MAC}/etc"
        path = root / base / f"svc{index % 97}" / f"conf{index}.conf"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = [
            f"{rng.choice(WORDS)} = {rng.randrange(1 << 20)}" for _ in range(rng.randrange(4, 120))
        ]
        text = "\n".join(lines) + "\n"
        path.write_text(text)
        total += len(text)
    (root / "usr/lib/big").mkdir(parents=True, exist_ok=True)
    for index in range(4):
        half = large_mib * 1024 * 1024 // 2
        data = rng.randbytes(half) + bytes(rng.randrange(16) for _ in range(4096)) * (half // 4096)
        (root / f"usr/lib/big/blob{index}.bin").write_bytes(data)
        total += len(data)
    return total


def timed(
    step: Callable[[], object], repeat: int, before: Callable[[], object] | None = None
) -> float:
    """The best wall-clock time of `repeat` runs (the machine may be shared)."""
    best = float("inf")
    for _ in range(repeat):
        if before is not None:
            before()
        started = time.perf_counter()
        step()
        best = min(best, time.perf_counter() - started)
    return best


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def row(label: str, ovl: float, tar: float, extra: str = "") -> None:
    print(f"{label:<28} ovl {ovl:7.2f} s   tar {tar:7.2f} s   ovl/tar {ovl / tar:5.2f}  {extra}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ovl-bench"))
    parser.add_argument("--small", type=int, default=20000, help="number of small files")
    parser.add_argument("--large-mib", type=int, default=60, help="size of each of 4 binaries")
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; the best counts")
    args = parser.parse_args()

    work = fresh(args.workdir)
    tree = work / "tree"
    content = generate_tree(tree, args.small, args.large_mib)
    run(["tar", "-cf", "/dev/null", "-C", tree, "."])  # warm the page cache for both packers
    files = sum(1 for p in tree.rglob("*") if p.is_file())
    print(f"tree: {files} files, {content / 2**20:.0f} MiB of content, {os.cpu_count()} CPUs")

    ovl_bundle, tar_bundle = work / "tree.ovl", work / "tree.tar.zst"
    ovl_pack = timed(lambda: run([*OVL, "pack", tree, "-o", ovl_bundle]), args.repeat)
    tar_create = ["tar", "--format=pax", "--xattrs", "--sort=name", "-I", "zstd -3 -T0", "-cf"]
    tar_pack = timed(lambda: run([*tar_create, tar_bundle, "-C", tree, "."]), args.repeat)
    sizes = f"sizes ovl {ovl_bundle.stat().st_size / 2**20:.1f} MiB, "
    sizes += f"tar {tar_bundle.stat().st_size / 2**20:.1f} MiB"
    row("pack (zstd -3, all CPUs)", ovl_pack, tar_pack, sizes)

    facts = work / "facts.json"
    facts.write_text(json.dumps({"macs": [MAC]}))
    ovl_target, tar_target = work / "ovl-out", work / "tar-out"
    ovl_apply = timed(
        lambda: run([*OVL, "apply", ovl_bundle, "--target", ovl_target, "--facts", facts]),
        args.repeat,
        lambda: fresh(ovl_target),
    )
    tar_extract = timed(
        lambda: run(["tar", "--xattrs", "-I", "zstd -d", "-xf", tar_bundle, "-C", tar_target]),
        args.repeat,
        lambda: fresh(tar_target),
    )
    row("apply (merge, 3 layers)", ovl_apply, tar_extract, "tar: plain extract, no layers")
    shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
