"""Build the initramfs (or UKI) a VM boots, with `ovl initramfs build` and a generated config."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from ovl.core.run import run
from ovl.tools.initramfs.conf import SETTINGS
from tests.vmkit.kernel import Kernel
from tests.vmkit.ovlcommand import OVL

# What VM boots change from mkinitramfs.conf's defaults, and why.
VM_SETTINGS: Mapping[str, str] = {
    # zstd -3 builds in seconds rather than a minute; the guest unpacks either as fast.
    "COMPRESS_LEVEL": "3",
}
DEFAULT_MODULES = next(s.default for s in SETTINGS if s.key == "MODULES").split()


def build_initrd(
    kernel: Kernel,
    keys: Path,
    output: Path,
    program: Path = OVL,
    *,
    more_modules: Sequence[str] = (),
    options: Sequence[str | Path] = (),
) -> Path:
    """An initramfs for `kernel` trusting the public keys in `keys`; written to `output` by
    `program initramfs build` (the `ovl` beside this interpreter, or another one's: a bench's
    baseline).

    `more_modules` are loaded after the default MODULES; `options` go to `ovl initramfs build`
    (e.g. `--uki --kernel ... --cmdline ...` to write a UKI instead)."""
    conf = output.with_name(output.name + ".conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    settings = {"KEYS": str(keys), **VM_SETTINGS}
    if more_modules:
        settings["MODULES"] = " ".join([*DEFAULT_MODULES, *more_modules])
    conf.write_text("".join(f'{key}="{value}"\n' for key, value in settings.items()))
    run([program, "initramfs", "build", "-c", conf, "--kernel-version", kernel.version,
         "--modules-dir", kernel.modules_dir, "-o", output, *options])  # fmt: skip
    return output
