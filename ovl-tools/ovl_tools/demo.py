"""`./dev demo`: boot one VM from an ovl bundle and show what happened.

Builds a sample fleet bundle (a base plus layers, one of them for this VM's MAC), serves it on
127.0.0.1, builds the initramfs with `ovl initramfs build`, boots the Debian cloud kernel in
QEMU with the console streamed here, then prints the layers the agent applied and its timings.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.errors import OvlError
from agent.run import run
from ovl_tools.vm.httpserve import StaticServer
from ovl_tools.vm.kernel import Kernel, fetch_kernel
from ovl_tools.vm.markers import GuestReport
from ovl_tools.vm.qemu import Boot, Machine, VirtualMachine
from ovl_tools.vm.rootimage import build_test_root

OVL = Path(sys.executable).parent / "ovl"
DEMO_MAC, DEMO_UUID = "52:54:00:de:00:01", "de000000-0000-4000-8000-0000000000d1"
OTHER_MAC = "52:54:00:de:00:02"
PROBES = ("/etc/hostname", "/etc/motd", "/etc/role", "/etc/issue")
CMDLINE = "quiet ip=dhcp ovl=http://10.0.2.100/fleet.ovl ovl.root=/dev/vda ovl.require=none"


def sample_fleet(kernel: Kernel) -> dict[str, str]:
    """The demo bundle: files for every machine, then layers chosen by this VM's facts."""
    return {
        "ovl.json": json.dumps({"name": "demo-fleet", "serial": 1, "description": "./dev demo"}),
        "etc/motd": "Welcome to a machine booted by ovl\n",
        f"layers/10-{DEMO_MAC}/etc/hostname": "demo-vm\n",
        f"layers/10-{OTHER_MAC}/etc/hostname": "some-other-machine\n",
        f"layers/20-{kernel.version}/etc/issue": f"layer for kernel {kernel.version}\n",
        f"layers/30-{DEMO_UUID}-x86_64/etc/role": "demo web server\n",
    }


def step(message: str) -> None:
    print(f"\033[1mdemo:\033[0m {message}", flush=True)


def build_bundle(tree: dict[str, str], work: Path) -> Path:
    source = work / "fleet"
    for relative, text in tree.items():
        target = source / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    bundle = work / "www" / "fleet.ovl"
    bundle.parent.mkdir()
    run([OVL, "pack", source, "-o", bundle])
    return bundle


def boot_and_stream(boot: Boot, machine: Machine, work: Path, timeout: float) -> GuestReport:
    with VirtualMachine(boot, machine, work / "vm", lifetime=timeout) as vm:
        for line in vm.lines(timeout):
            print(f"  | {line}", flush=True)
        seconds = time.monotonic() - vm.started
        seen = GuestReport.parse(vm.text())
    step(f"guest powered off {seconds:.1f} s after QEMU started")
    return seen


def summarize(seen: GuestReport) -> int:
    if not seen.done or seen.report is None:
        step("the guest did not finish booting into the stacked root (see the console above)")
        return 1
    report: dict[str, Any] = seen.report
    step(f"layers applied: {', '.join(report.get('layers', [])) or 'none'}")
    for path, content in seen.files.items():
        step(f"  {path}: {content}")
    timings = report.get("timings_ms", {})
    step("agent phases (ms): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="./dev demo", description=__doc__)
    parser.add_argument("--timeout", type=float, default=300, help="seconds for the boot")
    args = parser.parse_args(argv)
    try:
        with tempfile.TemporaryDirectory(prefix="ovl-demo-") as tmp:
            work = Path(tmp)
            step("fetching the Debian cloud kernel (cached after the first run)")
            kernel = fetch_kernel()
            step(f"kernel {kernel.version}; building the initramfs with `ovl initramfs build`")
            initrd = work / "initrd.img"
            run([OVL, "initramfs", "build", "--kernel-version", kernel.version,
                 "--modules-dir", kernel.modules_dir, "-o", initrd])  # fmt: skip
            step("building the root image (busybox; its init prints what it finds)")
            root = build_test_root(work / "root.sqfs", probes=PROBES)
            tree = sample_fleet(kernel)
            step(f"packing the fleet bundle: {', '.join(sorted(tree))}")
            bundle = build_bundle(tree, work)
            with StaticServer(bundle.parent) as server:
                step(f"serving it on {server.url}/fleet.ovl (the guest sees 10.0.2.100)")
                step(f"booting VM mac={DEMO_MAC}: {CMDLINE}")
                boot = Boot(kernel.vmlinuz, initrd, CMDLINE, server.port)
                machine = Machine(mac=DEMO_MAC, product_uuid=DEMO_UUID, disks=(root,))
                seen = boot_and_stream(boot, machine, work, args.timeout)
            return summarize(seen)
    except OvlError as exc:
        print(f"demo: error: {exc.line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
