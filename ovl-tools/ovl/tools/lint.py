"""Findings about a bundle before it ships: what machines would refuse (the engine's own
scan_bundle), malformed layer names, near-miss top-level names, typed favors that swallowed a
MAC or UUID, layers no machine gets, paths that layers fight over, whiteouts that delete
nothing. One check: `ovl lint` runs `check_bundle` on a file, `ovl pack` the same rules on
the members it writes (ovl.tools.packcheck). docs/CLI.md lists the codes."""

from __future__ import annotations

import difflib
import enum
import re
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import BinaryIO

from ovl.core.errors import BadInput
from ovl.core.facts import Facts
from ovl.format.codec import open_decoded
from ovl.format.favors import FavorKey, parse_layer_name
from ovl.format.manifest import MANIFEST_NAME
from ovl.format.membercheck import LAYERS_DIR, Kind
from ovl.format.scan import BundleInfo, LayerInfo, scan_bundle
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


_REFUSED_ENTRY = re.compile(r"^bundle entry '(.*?)': ")


def refusal_finding(exc: BadInput) -> Finding:
    """The engine's refusal (the first problem scan_bundle met) as an error finding."""
    entry = _REFUSED_ENTRY.match(exc.line)
    where = entry[1] if entry else "bundle"
    reason = exc.line[entry.end() :] if entry else exc.line.removeprefix("bundle: ")
    return Finding(Severity.ERROR, "refused", where, reason)


# A name this close to one of these, at the top of the base, was most likely meant to be it.
_NEAR_MISS_OF = (LAYERS_DIR, MANIFEST_NAME)


def near_miss_findings(info: BundleInfo) -> list[Finding]:
    """Top-level names of the base that look like a misspelt `layers` or `ovl.json`: their
    content goes to every machine instead of being a layer or the manifest."""
    tops = {entry.path.split("/", 1)[0] for entry in info.layers[0].entries}
    findings = []
    for top in sorted(tops - set(_NEAR_MISS_OF)):
        for meant in _NEAR_MISS_OF:
            close = difflib.SequenceMatcher(None, top.lower(), meant).ratio() >= 0.8
            if top.lower() == meant or close:
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "near-miss",
                        top,
                        f"looks like a misspelt {meant}; as it is, it is base content every "
                        f"machine gets as /{top}",
                    )
                )
                break
    return findings


_HEX = re.compile(r"[0-9a-fA-F]+")
_UUID_LENGTHS = (8, 4, 4, 4, 12)


def _lookalikes(tokens: list[str]) -> Iterable[tuple[str, str]]:
    """(kind, text) of the MACs and UUIDs among dash-separated tokens."""
    index = 0
    while index < len(tokens):
        token = tokens[index]
        run = tokens[index : index + 5]
        if [len(t) for t in run] == list(_UUID_LENGTHS) and all(map(_HEX.fullmatch, run)):
            yield "machine UUID", "-".join(run)
            index += 5
            continue
        pairs = tokens[index : index + 6]
        if len(pairs) == 6 and all(len(t) == 2 and _HEX.fullmatch(t) for t in pairs):
            yield "MAC", "-".join(pairs)
            index += 6
            continue
        colons = token.count(":") == 5 and _HEX.fullmatch(token.replace(":", ""))
        if colons and len(token) == 17:
            yield "MAC", token
        index += 1


_LOOKALIKE_KEY = {"MAC": "mac", "machine UUID": "machine"}


def swallowed_favor_findings(info: BundleInfo) -> list[Finding]:
    """Typed favors whose value ran on over a MAC- or UUID-looking token: a typed value ends
    only at the next `key=` (FORMAT.md 3.1), so `release=6.1.0-56-52:54:00:aa:bb:01` asks for
    a release with the MAC in it, which no machine has."""
    findings = []
    for layer in info.layers[1:]:
        assert layer.layer is not None
        for favor in layer.layer.favors:
            if favor.key in (FavorKey.ANY, FavorKey.MAC):
                continue
            tokens = favor.value.split("-")
            if favor.key in (FavorKey.MACHINE, FavorKey.VOLUME):
                tokens = tokens[len(_UUID_LENGTHS) :]  # the value's own UUID
            for kind, text in _lookalikes(tokens):
                findings.append(
                    Finding(
                        Severity.WARNING,
                        "swallowed-favor",
                        f"layers/{layer.name}",
                        f"the {favor.key.value}= value runs on over {text!r}, which looks like "
                        f"a {kind} (a typed value ends only at the next key=): write "
                        f"{_LOOKALIKE_KEY[kind]}={text}, or put untyped favors first",
                    )
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
    findings = (
        near_miss_findings(info)
        + swallowed_favor_findings(info)
        + base_whiteout_findings(info)
        + merged_usr_findings(info)
    )
    if fleet is not None:
        findings += unmatched_layer_findings(info, fleet)
        findings += override_findings(info, fleet)
    return _most_severe_first(findings)


def _most_severe_first(findings: list[Finding]) -> list[Finding]:
    order = list(Severity)
    return sorted(findings, key=lambda f: order.index(f.severity))


def refusal_findings(exc: BadInput, layer_dirnames: Callable[[], Iterable[str]]) -> list[Finding]:
    """What machines refuse, as findings: one per malformed layer folder (`layer_dirnames`
    lists them all, where the engine stops at the first), else the engine's one line."""
    malformed = malformed_layer_findings(layer_dirnames())
    if malformed and "malformed layer name" in exc.line:
        return malformed
    return [*malformed, refusal_finding(exc)]


def check_bundle(
    source: BinaryIO,
    layer_dirnames: Callable[[], Iterable[str]],
    fleet: dict[str, Facts] | None = None,
) -> list[Finding]:
    """The one check of a bundle file: scan_bundle (what every machine refuses) and, when it
    passes, every lint rule; a refusal is reported as `refusal_findings`."""
    try:
        info = scan_bundle(source)
    except BadInput as exc:
        return refusal_findings(exc, layer_dirnames)
    return lint_bundle(info, fleet)


def count(findings: Iterable[Finding], severity: Severity) -> int:
    return sum(1 for finding in findings if finding.severity is severity)
