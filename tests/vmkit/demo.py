"""`./dev demo`: boot one VM from an ovl bundle and show what happened.

Seals a sample fleet bundle (a base plus layers, one of them for this VM's MAC), serves it on
127.0.0.1, builds the initramfs with `ovl initramfs build`, boots the Debian cloud kernel in
QEMU with the console streamed here, then prints the layers the agent applied and its timings.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ovl.core.errors import OvlError
from tests.vmkit.httpserve import StaticServer
from tests.vmkit.initrd import build_initrd
from tests.vmkit.kernel import Kernel, fetch_kernel
from tests.vmkit.markers import GuestReport
from tests.vmkit.qemu import Boot, Machine, VirtualMachine
from tests.vmkit.rootimage import build_test_root
from tests.vmkit.sealing import make_signer, seal_tree

DEMO_MAC, DEMO_UUID = "52:54:00:de:00:01", "de000000-0000-4000-8000-0000000000d1"
OTHER_MAC = "52:54:00:de:00:02"
PROBES = ("/etc/hostname", "/etc/motd", "/etc/role", "/etc/issue")
CMDLINE = "quiet ip=dhcp ovl=http://10.0.2.100/fleet.ovl ovl.root=/dev/vda ovl.require=signed"


# SeaBIOS and the kernel reset and clear the screen; echoed as is they would wipe the demo.
TERMINAL_CONTROL = re.compile(r"\x1b(\[[0-9;?]*[A-Za-z]|c)")


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


def boot_and_stream(boot: Boot, machine: Machine, work: Path, timeout: float) -> GuestReport:
    """Boot, echoing the console; note when the agent starts and when the new root's init runs."""
    seen_at: dict[str, float] = {}
    with VirtualMachine(boot, machine, work / "vm", lifetime=timeout) as vm:
        for line in vm.lines(timeout):
            print(f"  | {TERMINAL_CONTROL.sub('', line)}", flush=True)
            for marker in ("ovl-init: running agent", "OVL-TEST booted"):
                if marker in line:
                    seen_at.setdefault(marker, time.monotonic() - vm.started)
        seconds = time.monotonic() - vm.started
        seen = GuestReport.parse(vm.text())
    marks = ", ".join(f"'{marker}' at {at:.1f} s" for marker, at in seen_at.items())
    step(f"QEMU start to power-off {seconds:.1f} s ({marks})")
    return seen


def summarize(seen: GuestReport) -> int:
    """Print what the guest saw; 0 only when this VM's own layer was applied and booted."""
    if not seen.done or seen.report is None:
        step("the guest did not finish booting into the stacked root (see the console above)")
        return 1
    report: dict[str, Any] = seen.report
    bundle = report.get("bundle") or {}
    step(
        f"report.json: bundle {bundle.get('source')} serial {bundle.get('serial')}, "
        f"signer {bundle.get('signer')}, sha256 {str(bundle.get('sha256'))[:16]}..."
    )
    layers = report.get("layers", [])
    step(f"layers applied: {', '.join(layers) or 'none'}")
    for path, content in seen.files.items():
        step(f"  {path}: {content}")
    timings = report.get("timings_ms", {})
    step("agent phases (ms): " + ", ".join(f"{k} {v}" for k, v in timings.items()))
    if f"10-{DEMO_MAC}" not in layers or seen.files.get("/etc/hostname") != "demo-vm":
        step("this VM's layer was not applied (see the agent's lines above)")
        return 1
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
            step("making a root key and a signer it certifies (`ovl keys`)")
            signer = make_signer(work / "trust", name="demo")
            step(f"building the initramfs for {kernel.version}, trusting that root")
            step("(the first build freezes the agent with PyInstaller: a minute or two)")
            initrd = build_initrd(kernel, signer.keys, work / "initrd.img")
            step("building the root image (busybox; its init prints what it finds)")
            root = build_test_root(work / "root.sqfs", probes=PROBES)
            tree = sample_fleet(kernel)
            step(f"packing and sealing the fleet bundle: {', '.join(sorted(tree))}")
            bundle = seal_tree(tree, work / "bundle", work / "www" / "fleet.ovl", signer)
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
