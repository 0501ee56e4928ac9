"""The Debian cloud kernel the initramfs tests build for, fetched once by the VM harness's
kernel cache (tests.vmkit.kernel), which also indexes its modules."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tests.vmkit.kernel import fetch_kernel


@dataclass(frozen=True)
class Kernel:
    version: str
    modules: Path
    vmlinuz: Path


def debian_cloud_kernel() -> Kernel:
    fetched = fetch_kernel()
    return Kernel(fetched.version, fetched.modules_dir, fetched.vmlinuz)
