"""Verify + decrypt speed of a sealed bundle beside stock `minisign -V` + `age -d`, same file.

    .venv/bin/python bench/crypto.py [--workdir /tmp/ovl-bench-crypto] [--mib 100] [--runs 3]

One sealed file (random payload, age X25519, prehashed minisign signature with the signer's
certificate) is opened three ways: `ovl open` as a process (what an admin runs), open_sealed
in this process (what the agent does at boot, minus interpreter start), and stock minisign then
stock age as processes. Best of --runs wall-clock times, page cache warm. Also prints the peak
RSS of the `ovl open` process and the growth of this one's: the bundle is streamed, not held.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "agent"), str(ROOT / "ovl-tools")]

from ovl.core.errors import OvlError  # noqa: E402
from ovl.core.run import run  # noqa: E402
from ovl.tools.keys import certify, new_node_identity, new_signing_pair  # noqa: E402
from ovl.tools.seal import load_recipients, seal_bundle  # noqa: E402
from ovl.trust.age import load_identity_file  # noqa: E402
from ovl.trust.certs import TrustStore  # noqa: E402
from ovl.trust.open import open_sealed  # noqa: E402
from ovl.trust.policy import parse_policy  # noqa: E402

OVL = str(Path(sys.executable).parent / "ovl")


def best(runs: int, step: Callable[[], object], output: Path) -> float:
    """Best wall-clock time of `step`, its `output` removed before each run (not timed)."""
    times = []
    for _ in range(runs):
        output.unlink(missing_ok=True)
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/ovl-bench-crypto"))
    parser.add_argument("--mib", type=int, default=100)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work: Path = args.workdir
    shutil.rmtree(work, ignore_errors=True)
    keys, secret = work / "keys", work / "secret"
    keys.mkdir(parents=True)
    root_key, root_pub = new_signing_pair(secret, "root", "root")
    root_pub.rename(keys / "root.pub")
    signer_key, signer_pub = new_signing_pair(secret, "alice", "signer")
    cert = secret / "alice.cert"
    certify(root_key, signer_pub, "alice", datetime.now(UTC) + timedelta(days=1), cert)
    identity, recipient = new_node_identity(secret, "node")

    plain = work / "bundle.ovl"
    with plain.open("wb") as out:
        for _ in range(args.mib):
            out.write(os.urandom(1 << 20))
    sealed = work / "bundle.ovl.age"
    start = time.perf_counter()
    seal_bundle(
        plain,
        sealed,
        signer_key=signer_key,
        certificate=cert,
        name="bench",
        serial=1,
        recipients=load_recipients(str(recipient)),
    )
    seal_time = time.perf_counter() - start
    size = sealed.stat().st_size
    with sealed.open("rb") as warm:  # the page cache, for every contender alike
        while warm.read(1 << 20):
            pass

    out_ovl, out_lib, out_age = work / "ovl.plain", work / "lib.plain", work / "age.plain"
    ovl_open: list[str | Path] = [
        OVL,
        "open",
        sealed,
        "-i",
        identity,
        "--keys",
        keys,
        "-o",
        out_ovl,
    ]
    ovl_cli = best(args.runs, lambda: run(ovl_open), out_ovl)
    rss_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss

    def in_process() -> None:
        opened = open_sealed(
            sealed,
            Path(f"{sealed}.minisig"),
            parse_policy("encrypted"),
            TrustStore.load(keys),
            load_identity_file(identity),
            None,
        )
        opened.path.replace(out_lib)

    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    ovl_lib = best(args.runs, in_process, out_lib)
    lib_growth_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    verify: list[str | Path] = ["minisign", "-Vq", "-p", signer_pub, "-m", sealed]
    decrypt: list[str | Path] = ["age", "-d", "-i", identity, "-o", out_age, sealed]
    stock = best(args.runs, lambda: (run(verify), run(decrypt)), out_age)
    stock_verify = best(args.runs, lambda: run(verify), work / "nothing")
    stock_age = stock - stock_verify
    same = (
        out_ovl.read_bytes() == out_age.read_bytes() == out_lib.read_bytes() == plain.read_bytes()
    )

    mib = size / 2**20
    print(f"sealed bundle: {mib:.0f} MiB (age X25519 + minisign ED), sealed in {seal_time:.2f} s")
    print(
        f"{'stock minisign -V + age -d':<34} {stock:6.2f} s  {mib / stock:7.0f} MiB/s"
        f"  (minisign {stock_verify:.2f} s, age ~{stock_age:.2f} s)"
    )
    print(
        f"{'ovl open (process)':<34} {ovl_cli:6.2f} s  {mib / ovl_cli:7.0f} MiB/s"
        f"  ovl/stock throughput {stock / ovl_cli:4.2f}x  peak RSS {rss_kib / 1024:.0f} MiB"
    )
    print(
        f"{'open_sealed (in process)':<34} {ovl_lib:6.2f} s  {mib / ovl_lib:7.0f} MiB/s"
        f"  ovl/stock throughput {stock / ovl_lib:4.2f}x"
        f"  peak RSS growth {lib_growth_kib / 1024:.0f} MiB"
    )
    print(f"outputs identical: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except OvlError as exc:
        print(f"bench: error: {exc.line}", file=sys.stderr)
        sys.exit(exc.exit_code)
