"""A whole boot in QEMU, the common case (ip=dhcp, one NIC, the server up), timed at the console
lines that mark its stages: seconds after QEMU starts, median of the runs. With --baseline-ovl,
an initramfs built by another ovl (say a venv holding an older checkout) boots in turns with
this tree's, so both meet the same load, and the two columns print side by side.

    .venv/bin/python bench/netboot.py [--runs 5] [--baseline-ovl /path/to/venv/bin/ovl]

Needs what the VM tests need (qemu, the Debian cloud kernel in $OVL_CACHE; no root).
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "agent"), str(ROOT / "ovl-tools")]

from tests.vmkit.httpserve import StaticServer  # noqa: E402
from tests.vmkit.initrd import build_initrd  # noqa: E402
from tests.vmkit.kernel import Kernel, fetch_kernel  # noqa: E402
from tests.vmkit.ovlcommand import OVL  # noqa: E402
from tests.vmkit.qemu import Boot, Machine  # noqa: E402
from tests.vmkit.rootimage import build_test_root  # noqa: E402
from tests.vmkit.sealing import make_signer, seal_tree  # noqa: E402
from tests.vmkit.timing import stage_times  # noqa: E402

MAC = "52:54:00:be:00:01"
CMDLINE = "quiet ip=dhcp ovl=http://10.0.2.100/fleet.ovl ovl.root=/dev/vda"
# (stage, console line that marks it); "lease" is the agent's line now, the shim's before.
STAGES = (
    ("/init starts", re.compile(r"ovl-init: starting")),
    ("agent starts", re.compile(r"ovl-init: running agent")),
    ("first agent line", re.compile(r"\bovl: [a-z]+: ")),
    ("DHCP lease", re.compile(r"ovl: net: \S+: lease |ovl-init: network up on ")),
    ("bundle fetched", re.compile(r"ovl: fetch: \S+ ok ")),
    ("root stacked", re.compile(r"ovl: stack: ")),
    ("root's init runs", re.compile(r"OVL-TEST booted")),
)
BOOT_TIMEOUT = 180.0


def boot_once(kernel: Kernel, initrd: Path, root: Path, port: int, work: Path) -> dict[str, float]:
    """Seconds after QEMU started at which each stage's line appeared."""
    boot = Boot(kernel.vmlinuz, initrd, CMDLINE, port)
    machine = Machine(mac=MAC, disks=(root,))
    return stage_times(boot, machine, work, STAGES, last="root's init runs", timeout=BOOT_TIMEOUT)


def column(samples: list[dict[str, float]], stage: str) -> str:
    values = [s[stage] for s in samples if stage in s]
    if not values:
        return f"{'-':>16}"
    return f"{statistics.median(values):5.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--baseline-ovl", type=Path, help="an ovl that builds the baseline")
    args = parser.parse_args()
    kernel = fetch_kernel()
    with tempfile.TemporaryDirectory(prefix="ovl-bench-netboot-") as scratch:
        work = Path(scratch)
        signer = make_signer(work / "trust")
        root = build_test_root(work / "root.sqfs", files={"/etc/hostname": "image\n"})
        tree = {
            "ovl.json": json.dumps({"name": "bench", "serial": 1}),
            f"layers/10-{MAC}/etc/hostname": "bench\n",
        }
        bundle = seal_tree(tree, work / "bundle", work / "www" / "fleet.ovl", signer)
        builds = {"this tree": OVL}
        if args.baseline_ovl:
            builds["baseline"] = args.baseline_ovl
        initrds = {
            name: build_initrd(kernel, signer.keys, work / f"initrd-{i}.img", program)
            for i, (name, program) in enumerate(builds.items())
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in initrds}
        with StaticServer(bundle.parent) as server:
            for run in range(args.runs):
                for name, initrd in initrds.items():  # in turns: both meet the same load
                    boot_work = work / f"boot-{run}-{name.replace(' ', '-')}"
                    samples[name].append(boot_once(kernel, initrd, root, server.port, boot_work))
        names = list(samples)
        print(f"{args.runs} boots each, TCG; seconds after QEMU starts, median (min-max)")
        print(f"{'stage':18}" + "".join(f"{name:>20}" for name in names))
        for stage, _ in STAGES:
            print(f"{stage:18}" + "".join(f"{column(samples[n], stage):>20}" for n in names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
