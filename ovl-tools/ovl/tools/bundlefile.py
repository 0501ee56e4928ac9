"""A bundle file read by the tools: scanned once with a progress line, errors naming the file."""

from __future__ import annotations

from pathlib import Path

from ovl.core.errors import BadInput
from ovl.format.scan import BundleInfo, scan_bundle
from ovl.tools.progress import open_with_progress


def scan_file(path: Path, label: str, *, digests: bool = False) -> BundleInfo:
    """scan_bundle over the file at `path`; a refusal is BadInput `PATH: <the engine's line>`."""
    try:
        with open_with_progress(path, f"{label} {path.name}") as source:
            return scan_bundle(source, digests=digests)
    except BadInput as exc:
        raise BadInput(f"{path}: {exc.line}") from exc
