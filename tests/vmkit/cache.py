"""Where downloaded and built artefacts for VM boots are kept between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """`$OVL_CACHE` when set, else `~/.cache/ovl`; kernels and Debian roots live below it."""
    configured = os.environ.get("OVL_CACHE")
    return Path(configured) if configured else Path.home() / ".cache" / "ovl"
