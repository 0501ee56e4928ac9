"""Build the initramfs a VM boots, with `ovl initramfs build` and a generated config."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from ovl.core.run import run
from tests.vmkit.kernel import Kernel
from tests.vmkit.ovlcommand import OVL

# What VM boots change from mkinitramfs.conf's defaults, and why.
VM_SETTINGS: Mapping[str, str] = {
    # zstd -3 builds in seconds rather than a minute; the guest unpacks either as fast.
    "COMPRESS_LEVEL": "3",
}


def build_initrd(kernel: Kernel, keys: Path, output: Path, program: Path = OVL) -> Path:
    """An initramfs for `kernel` trusting the public keys in `keys`; written to `output` by
    `program initramfs build` (the `ovl` beside this interpreter, or another one's: a bench's
    baseline)."""
    conf = output.with_name(output.name + ".conf")
    settings = {"KEYS": str(keys), **VM_SETTINGS}
    conf.write_text("".join(f'{key}="{value}"\n' for key, value in settings.items()))
    run([program, "initramfs", "build", "-c", conf, "--kernel-version", kernel.version,
         "--modules-dir", kernel.modules_dir, "-o", output])  # fmt: skip
    return output
