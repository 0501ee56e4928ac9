"""Findings about a bundle before it ships: malformed layer names, layers no machine gets,
paths that layers fight over, whiteouts that delete nothing. Pure functions; see docs/CLI.md."""

from __future__ import annotations

import enum
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import BinaryIO

from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.format.codec import open_decoded
from ovl.format.favors import parse_layer_name
from ovl.format.reader import LAYERS_DIR, Kind
from ovl.format.scan import BundleInfo, LayerInfo
from ovl.tools.plan import layers_for


class Severity(enum.Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


@dataclass(frozen=True)
class Finding:
    severity: Severity
    code: str
    where: str  # a layer folder, or a path inside the bundle
    message: str
    machines: tuple[str, ...] = ()


def layer_folder_names(source: BinaryIO) -> set[str]:
    """The names of the folders under layers/, read from entry names only, as far as the
    stream can be read (a corrupt bundle gives the names before the damage).

    scan_bundle stops at the first malformed layer name, as the agent must; lint lists them all.
    """
    names: set[str] = set()
    try:
        with tarfile.open(fileobj=open_decoded(source), mode="r|") as tar:
            for member in tar:
                parts = [part for part in member.name.split("/") if part not in ("", ".")]
                if len(parts) >= 2 and parts[0] == LAYERS_DIR:
                    names.add(parts[1])
    except (tarfile.TarError, BadInput):
        pass
    return names


def malformed_layer_findings(dirnames: Iterable[str]) -> list[Finding]:
    """One error per folder under layers/ whose name the agent would refuse."""
    findings = []
    for dirname in sorted(set(dirnames)):
        try:
            parse_layer_name(dirname)
        except BadInput as exc:
            findings.append(
                Finding(Severity.ERROR, "malformed-layer", f"layers/{dirname}", str(exc))
            )
    return findings


def base_whiteout_findings(info: BundleInfo) -> list[Finding]:
    base = info.layers[0]
    return [
        Finding(
            Severity.WARNING,
            "base-whiteout",
            entry.path,
            "a whiteout in the base deletes nothing (the base is applied first)",
        )
        for entry in base.entries
        if entry.kind in (Kind.WHITEOUT, Kind.OPAQUE)
    ]


# On merged-/usr systems (Debian 12, Fedora, Arch, Ubuntu) these are symlinks into usr/.
MERGED_USR_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")


def merged_usr_findings(info: BundleInfo) -> list[Finding]:
    """A layer with anything but a symlink at `bin` (or sbin, lib...): over a merged-/usr image
    it replaces the image's `bin -> usr/bin` symlink in an overlay root (no more /bin/sh), and
    a merged apply refuses it (a path through a symlink). One warning per layer and name."""
    findings = []
    for layer in info.layers:
        tops = set()
        for entry in layer.entries:
            top = entry.path.split("/", 1)[0]
            if top in MERGED_USR_LINKS and (entry.kind is not Kind.SYMLINK or top != entry.path):
                tops.add(top)
        where = "" if layer.layer is None else f"layers/{layer.name}/"
        findings += [
            Finding(
                Severity.WARNING,
                "merged-usr",
                f"{where}{top}",
                f"{top} here replaces a merged-/usr image's {top} -> usr/{top} symlink (an "
                f"overlay root loses /{top}/*, a merged apply refuses the path); write "
                f"usr/{top}/... instead",
            )
            for top in sorted(tops)
        ]
    return findings


def unmatched_layer_findings(info: BundleInfo, fleet: dict[str, Facts]) -> list[Finding]:
    gets = {
        name: {layer.name for layer in layers_for(info, facts)} for name, facts in fleet.items()
    }
    return [
        Finding(
            Severity.WARNING,
            "unmatched-layer",
            f"layers/{layer.name}",
            "no machine of the fleet matches this layer",
        )
        for layer in info.layers[1:]
        if not any(layer.name in got for got in gets.values())
    ]


def _writers(layers: list[LayerInfo]) -> dict[str, list[str]]:
    """Path → the layers (in apply order) that write something other than a directory there."""
    writers: dict[str, list[str]] = {}
    for layer in layers:
        for entry in layer.entries:
            if entry.kind not in (Kind.DIR, Kind.WHITEOUT, Kind.OPAQUE):
                writers.setdefault(entry.path, []).append(layer.name)
    return writers


def override_findings(info: BundleInfo, fleet: dict[str, Facts]) -> list[Finding]:
    """A path written by two or more layers one machine gets; grouped by (path, layers).

    Two layers from layers/ fighting over a path is a warning (the outcome hangs on their
    order); a layer replacing a base file is what layers are for, so only info.
    """
    affected: dict[tuple[str, tuple[str, ...]], list[str]] = {}
    for machine, facts in fleet.items():
        for path, writers in _writers(layers_for(info, facts)).items():
            if len(writers) > 1:
                affected.setdefault((path, tuple(writers)), []).append(machine)
    findings = []
    for (path, layers), machines in sorted(affected.items()):
        from_layers = [name for name in layers if name != "base"]
        severity = Severity.WARNING if len(from_layers) > 1 else Severity.INFO
        findings.append(
            Finding(
                severity,
                "override",
                path,
                f"written by {', '.join(layers)}; {layers[-1]} wins",
                tuple(machines),
            )
        )
    return findings


def lint_bundle(info: BundleInfo, fleet: dict[str, Facts] | None) -> list[Finding]:
    """Every finding about a bundle that scanned cleanly, most severe first."""
    findings = base_whiteout_findings(info) + merged_usr_findings(info)
    if fleet is not None:
        findings += unmatched_layer_findings(info, fleet)
        findings += override_findings(info, fleet)
    order = list(Severity)
    return sorted(findings, key=lambda f: order.index(f.severity))
