"""The agent's share of the demo boot beside a busybox-only baseline doing the same work.

Both initramfs images come from this tree's `ovl initramfs build` (same kernel, modules, /init
shim, console markers). The baseline has a second newc archive appended (the kernel unpacks
concatenated archives, later files win) whose /ovl/agent/ovl-agent is a shell script doing
the demo's work with busybox and the zstd CLI: DHCP on eth0 (udhcpc, ovl's script), `wget` of
the bundle, `zstd -dc | tar x` into the tmpfs upper, the demo machine's layers copied over it
(chosen on the host by ovl's rule: no favors, no signature, no checks in the guest), the image
on /dev/vda mounted, overlayfs, the hand-over file; and KEEP_AGENT=no, as it has no agent
worth keeping. The ovl side is the demo boot as `./dev demo` runs it (signed bundle,
ovl.require=signed).

The agent's share is `ovl-init: running agent` to `ovl-init: switching to` (the shim's lines
around the agent, the KEEP_AGENT copy included); boots alternate so both meet the same load.

    .venv/bin/python bench/boot.py [--runs 5]

Needs what the VM tests need (qemu, the Debian cloud kernel in $OVL_CACHE; no root).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "agent"), str(ROOT / "ovl-tools")]

from ovl.core.facts import Facts  # noqa: E402
from ovl.format.favors import match_layers  # noqa: E402
from ovl.tools.initramfs import cpio  # noqa: E402
from ovl.tools.initramfs.elfdeps import library_closure  # noqa: E402
from ovl.tools.initramfs.tree import usr_path  # noqa: E402
from tests.vmkit.demo import CMDLINE, DEMO_MAC, DEMO_UUID, PROBES, sample_fleet  # noqa: E402
from tests.vmkit.httpserve import StaticServer  # noqa: E402
from tests.vmkit.initrd import build_initrd  # noqa: E402
from tests.vmkit.kernel import Kernel, fetch_kernel  # noqa: E402
from tests.vmkit.qemu import Boot, Machine  # noqa: E402
from tests.vmkit.rootimage import build_test_root  # noqa: E402
from tests.vmkit.sealing import make_signer, seal_tree  # noqa: E402
from tests.vmkit.timing import stage_times  # noqa: E402

AGENT = r"(?:ovl|baseline)"
STAGES = (
    ("agent starts", re.compile(r"ovl-init: running agent")),
    ("first agent line", re.compile(rf"\b{AGENT}: [a-z]+: ")),
    ("bundle fetched", re.compile(rf"\b{AGENT}: fetch: \S+ ok")),
    ("root stacked", re.compile(rf"\b{AGENT}: stack: ")),
    ("agent kept", re.compile(r"ovl-init: agent kept|ovl-init: could not keep")),
    ("switch_root", re.compile(r"ovl-init: switching to")),
    ("root's init runs", re.compile(r"OVL-TEST booted")),
)
BOOT_TIMEOUT = 240.0

BASELINE_AGENT = """#!/bin/sh
# bench/boot.py's baseline: the demo boot's work with busybox and zstd, nothing checked.
set -e
for arg in $(cat /proc/cmdline); do
    case $arg in
        ovl=*) url=${{arg#ovl=}} ;;
        ovl.root=*) image=${{arg#ovl.root=}} ;;
    esac
done
echo "baseline: net: udhcpc on eth0"
ip link set eth0 up
udhcpc -i eth0 -n -q -t 20 -T 1 -s /etc/ovl/udhcpc.script >/dev/null
run=/run/ovl
wget -q -O $run/bundle.ovl "$url"
echo "baseline: fetch: $url ok"
mkdir -p $run/upper $run/work $run/lower $run/layers /sysroot
zstd -qdc $run/bundle.ovl | tar x -C $run/upper
mv $run/upper/layers/* $run/layers/
rmdir $run/upper/layers
rm $run/upper/ovl.json
for layer in {layers}; do
    cp -a $run/layers/$layer/. $run/upper/
done
mount -t squashfs -o ro "$image" $run/lower
mount -t overlay -o lowerdir=$run/lower,upperdir=$run/upper,workdir=$run/work ovl /sysroot
echo "baseline: stack: overlay on /sysroot"
echo ROOT=/sysroot >$run/handover
"""


def baseline_initrd(ovl_initrd: Path, layers: list[str], output: Path) -> Path:
    """`ovl_initrd` with an archive appended that replaces the agent by BASELINE_AGENT and
    adds the zstd CLI with its libraries."""
    zstd = Path(shutil.which("zstd") or "/usr/bin/zstd")
    entries = {
        "ovl/agent/ovl-agent": cpio.regular(
            "ovl/agent/ovl-agent", BASELINE_AGENT.format(layers=" ".join(layers)).encode(), 0o755
        ),
        "etc/ovl/init.conf": cpio.regular("etc/ovl/init.conf", b"KEEP_AGENT=no\n"),
        "usr/bin/zstd": cpio.regular("usr/bin/zstd", zstd, 0o755),
    }
    for wanted, host in library_closure([zstd]).items():
        entries[usr_path(wanted)] = cpio.regular(usr_path(wanted), host, 0o755)
    for path in list(entries):
        parent = os.path.dirname(path)
        while parent and parent not in entries:
            entries[parent] = cpio.directory(parent)
            parent = os.path.dirname(parent)
    shutil.copyfile(ovl_initrd, output)
    with output.open("ab") as out:
        # The kernel takes a '0' as the start of a cpio archive only at a 4-byte offset; the
        # zero bytes before it are skipped.
        out.write(bytes(-out.tell() % 4))
        cpio.write_newc(entries.values(), out, mtime=0)
    return output


def demo_layers(tree: dict[str, str], kernel: Kernel) -> list[str]:
    """The demo VM's layers in apply order, chosen here by ovl's own rule for its facts."""
    facts = Facts(
        macs=(DEMO_MAC,),
        product_uuid=DEMO_UUID,
        kernel_release=kernel.version,
        arch="x86_64",
    )
    folders = {path.split("/")[1] for path in tree if path.startswith("layers/")}
    return [layer.dirname for layer in match_layers(facts, folders)]


def share(sample: dict[str, float], start: str, end: str) -> float | None:
    if start in sample and end in sample:
        return sample[end] - sample[start]
    return None


def cell(values: list[float]) -> str:
    if not values:
        return f"{'-':>18}"
    return f"{statistics.median(values):6.2f} ({min(values):.2f}-{max(values):.2f})"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    kernel: Kernel = fetch_kernel()
    with tempfile.TemporaryDirectory(prefix="ovl-bench-boot-") as scratch:
        work = Path(scratch)
        signer = make_signer(work / "trust", name="demo")
        root = build_test_root(work / "root.sqfs", probes=PROBES)
        tree = sample_fleet(kernel)
        bundle = seal_tree(tree, work / "bundle", work / "www" / "fleet.ovl", signer)
        ovl_initrd = build_initrd(kernel, signer.keys, work / "initrd.img")
        initrds = {
            "ovl": ovl_initrd,
            "busybox": baseline_initrd(
                ovl_initrd, demo_layers(tree, kernel), work / "baseline.img"
            ),
        }
        samples: dict[str, list[dict[str, float]]] = {name: [] for name in initrds}
        machine = Machine(mac=DEMO_MAC, product_uuid=DEMO_UUID, disks=(root,))
        with StaticServer(bundle.parent) as server:
            for run in range(args.runs):
                for name, initrd in initrds.items():
                    boot = Boot(kernel.vmlinuz, initrd, CMDLINE, server.port)
                    times = stage_times(boot, machine, work / f"boot-{run}-{name}", STAGES,
                                        last="root's init runs", timeout=BOOT_TIMEOUT)  # fmt: skip
                    samples[name].append(times)
        print(f"{args.runs} boots each, in turns, TCG; seconds, median (min-max)")
        print(f"{'':34}" + "".join(f"{name:>22}" for name in samples))
        spans = (
            ("agent's share (running -> switch)", "agent starts", "switch_root"),
            ("  start-up (to its first line)", "agent starts", "first agent line"),
            ("  its work (first line -> stacked)", "first agent line", "root stacked"),
            ("  exit and KEEP_AGENT copy", "root stacked", "switch_root"),
            ("QEMU start -> agent starts", "", "agent starts"),
            ("QEMU start -> root's init", "", "root's init runs"),
        )
        medians: dict[str, float] = {}
        for label, start, end in spans:
            row = f"{label:34}"
            for name, runs in samples.items():
                values = [
                    v
                    for s in runs
                    if (v := (s.get(end) if not start else share(s, start, end))) is not None
                ]
                row += f"{cell(values):>22}"
                if start == "agent starts" and end == "switch_root" and values:
                    medians[name] = statistics.median(values)
            print(row)
        if len(medians) == 2:
            ratio = medians["ovl"] / medians["busybox"]
            print(f"ratio ovl / busybox (agent's share): {ratio:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
