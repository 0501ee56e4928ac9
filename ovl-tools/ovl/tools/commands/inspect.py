"""`ovl inspect FILE`: what a bundle holds, without writing anything."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ovl.core.cli import input_file
from ovl.core.units import human_size
from ovl.format.reader import Kind
from ovl.format.scan import BundleInfo, LayerInfo
from ovl.tools.bundlefile import scan_file
from ovl.tools.commands.match import describe_favors


def _layer_summary(layer: LayerInfo) -> dict[str, Any]:
    return {
        "name": layer.name,
        "order": None if layer.layer is None else layer.layer.order,
        "favors": [] if layer.layer is None else describe_favors(layer.layer),
        "entries": len(layer.entries),
        "files": sum(1 for e in layer.entries if e.kind is Kind.FILE),
        "whiteouts": sum(1 for e in layer.entries if e.kind in (Kind.WHITEOUT, Kind.OPAQUE)),
        "bytes": layer.bytes,
    }


def summary(info: BundleInfo, size: int) -> dict[str, Any]:
    return {
        "compression": info.encoding.compression.value,
        "armoured": info.armoured,
        "size": size,
        "tar_bytes": info.decoded_bytes,
        "frame_index": info.frames,
        "manifest": None if info.manifest is None else asdict(info.manifest),
        "layers": [_layer_summary(layer) for layer in info.layers],
    }


def _print_text(path: Path, data: dict[str, Any]) -> None:
    armour = ", armoured" if data["armoured"] else ""
    frames = data["frame_index"]
    indexed = "" if frames is None else f", frame index of {frames} frames"
    print(
        f"{path}: {data['compression']}{armour}, {human_size(data['size'])} "
        f"({human_size(data['tar_bytes'])} as tar){indexed}"
    )
    manifest = data["manifest"]
    if manifest is not None:
        print(f"manifest: {manifest['name']!r} serial {manifest['serial']}", end="")
        print(f" created {manifest['created']}" if manifest["created"] else "")
        if manifest["description"]:
            print(f"  {manifest['description']}")
    width = max(40, *(len(layer["name"]) for layer in data["layers"]))
    print(f"{'layer':<{width}} {'entries':>8} {'files':>8} {'size':>10}  favors")
    for layer in data["layers"]:
        print(
            f"{layer['name']:<{width}} {layer['entries']:>8} {layer['files']:>8} "
            f"{human_size(layer['bytes']):>10}  {' '.join(layer['favors'])}"
        )


def run(args: argparse.Namespace) -> int:
    info = scan_file(args.bundle, "inspect")
    data = summary(info, args.bundle.stat().st_size)
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        _print_text(args.bundle, data)
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "inspect",
        help="show a bundle's encoding, manifest and layers",
        description=(
            "Read FILE once, with the agent's checks, and show its encoding (compression, "
            "armour), manifest, and every layer (base first, then apply order) with its "
            "favors, entries, files and bytes. Nothing is written."
        ),
    )
    parser.add_argument("bundle", type=input_file, metavar="FILE", help="a bundle")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(func=run)
