"""Bundles and deltas as tar members grouped by layer, merged without extracting anything.

A bundle (docs/FORMAT.md) is a pax tar: `ovl.json`, the base (everything outside `layers/`)
and `layers/<NN>-<favors>/...`. A delta is one layer's worth of members in OCI form
(`.wh.<name>` deletes a name below, `.wh..wh..opq` hides everything below its dir).
Merging a newer layer onto an older one gives the single layer that means the same when
stacked: what the newer one deletes or replaces disappears from the older, its whiteouts stay
(they still hide the layers beneath).
"""

from __future__ import annotations

import copy
import io
import json
import tarfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import IO, Any, BinaryIO

from ovl.core.errors import BadInput, OvlError
from ovl.format.codec import Compression
from ovl.format.encode import open_encoder
from ovl.format.tarstream import TarWriter, header_block, layer_folder
from ovl.format.whiteouts import OPAQUE_MARKER, WHITEOUT_PREFIX

MANIFEST = "ovl.json"
BASE = ""


@dataclass(frozen=True)
class Member:
    path: str  # relative to its layer's root
    info: tarfile.TarInfo  # as read, so `tar` can still find its data and link targets
    tar: tarfile.TarFile
    link: str = ""  # hardlink target relative to the same layer root


Layer = dict[str, Member]


@dataclass
class Bundle:
    manifest: dict[str, Any]
    layers: dict[str, Layer]  # BASE or "layers/<dirname>" -> members


def _normalise(name: str) -> str:
    while name.startswith("./"):
        name = name[2:]
    return name.strip("/")


def _group_of(path: str) -> tuple[str, str]:
    """(layer key, path inside the layer) for a bundle member path."""
    parts = path.split("/", 2)
    if parts[0] != "layers":
        return BASE, path
    if len(parts) == 1:
        return BASE, ""  # the `layers` dir itself
    return f"layers/{parts[1]}", parts[2] if len(parts) == 3 else ""


def read_bundle(tar: tarfile.TarFile, where: str) -> Bundle:
    """Members of a seekable bundle tar, grouped by layer; the manifest parsed."""
    manifest: dict[str, Any] = {}
    layers: dict[str, Layer] = {BASE: {}}
    for info in tar.getmembers():
        path = _normalise(info.name)
        if not path:
            continue
        if path == MANIFEST:
            extracted = tar.extractfile(info)
            try:
                manifest = json.loads(extracted.read()) if extracted else {}
            except json.JSONDecodeError as exc:
                raise BadInput(f"{where}: ovl.json is not JSON ({exc.msg})") from exc
            continue
        key, inner = _group_of(path)
        layer = layers.setdefault(key, {})
        if not inner:
            continue  # the `layers/` and `layers/<dir>` entries themselves are made on write
        link = ""
        if info.islnk():
            link_key, link = _group_of(_normalise(info.linkname))
            if link_key != key:
                raise BadInput(f"{where}: {path}: hardlink crosses layers")
        layer[inner] = Member(inner, info, tar, link)
    return Bundle(manifest, layers)


def read_layer(tar: tarfile.TarFile) -> Layer:
    """Members of a delta tar: one layer, paths relative to its root."""
    layer: Layer = {}
    for info in tar.getmembers():
        path = _normalise(info.name)
        if path:
            link = _normalise(info.linkname) if info.islnk() else ""
            layer[path] = Member(path, info, tar, link)
    return layer


def _sibling(head: str, name: str) -> str:
    return f"{head}/{name}" if head else name


def _ancestors(path: str) -> Iterable[str]:
    parts = path.split("/")
    for i in range(1, len(parts)):
        yield "/".join(parts[:i])


def merge_layers(lower: Layer, upper: Layer) -> Layer:
    """The one layer equal to `upper` stacked on `lower`."""
    gone: set[str] = set()  # names whose lower entry and everything below is hidden
    opaque: set[str] = set()  # dirs whose lower children are hidden
    for path, member in upper.items():
        head, _, name = path.rpartition("/")
        if name == OPAQUE_MARKER:
            opaque.add(head)
        elif name.startswith(WHITEOUT_PREFIX):
            gone.add(_sibling(head, name[len(WHITEOUT_PREFIX) :]))
        elif not member.info.isdir():
            gone.add(path)

    def survives(path: str) -> bool:
        if path in upper or path in gone:
            return False
        head, _, name = path.rpartition("/")
        # When the upper layer brings a name back, the older deletion marker must go.
        revived = _sibling(head, name[len(WHITEOUT_PREFIX) :])
        if name.startswith(WHITEOUT_PREFIX) and name != OPAQUE_MARKER and revived in upper:
            return False
        return not any(a in gone or a in opaque for a in _ancestors(path))

    merged = {path: member for path, member in lower.items() if survives(path)}
    merged.update(upper)
    return dict(sorted(merged.items(), key=lambda item: item[0].split("/")))


def _layer_dir(name: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = 0o755
    return info


def _renamed(member: Member, name: str) -> tarfile.TarInfo:
    info = copy.copy(member.info)
    info.name = name
    headers = dict(member.info.pax_headers)
    # A pax path/linkpath would win over the new name when written back.
    headers.pop("path", None)
    headers.pop("linkpath", None)
    info.pax_headers = headers
    return info


def write_bundle(
    bundle: Bundle, out: BinaryIO, *, level: int = 3, advance: Callable[[int], None] | None = None
) -> None:
    """Write `bundle` as pax tar in framed zstd with a frame index (docs/FORMAT.md, section
    2.1): manifest first, then base, then layers by name."""
    tar = TarWriter(open_encoder(out, Compression.ZSTD, level, False, framed=True))
    manifest = json.dumps(bundle.manifest, indent=2, sort_keys=True).encode() + b"\n"
    info = tarfile.TarInfo(MANIFEST)
    info.size, info.mode = len(manifest), 0o644
    _add(tar, info, io.BytesIO(manifest))
    keys = sorted(bundle.layers, key=lambda k: (k != BASE, k))
    if any(k != BASE and bundle.layers[k] for k in keys):
        _add(tar, _layer_dir("layers"))
    for key in keys:
        layer = bundle.layers[key]
        if key != BASE:
            if not layer:
                continue
            _add(tar, _layer_dir(key))
        _write_layer(tar, key, layer, advance)
    tar.finish()


def _add(tar: TarWriter, info: tarfile.TarInfo, data: IO[bytes] | None = None) -> None:
    """One entry: its header, then `data` when it is a regular file."""
    size = info.size if info.isreg() else 0
    tar.begin_entry(layer_folder(info.name), size)
    tar.write(header_block(info))
    if size:
        if data is None:
            raise OvlError(f"{info.name}: no data for a regular file in the source tar")
        tar.copy_stream(data, size, info.name)


def _write_layer(
    tar: TarWriter, key: str, layer: Layer, advance: Callable[[int], None] | None
) -> None:
    prefix = key + "/" if key else ""
    written: set[str] = set()
    for path, member in layer.items():
        info = _renamed(member, prefix + path)
        if member.info.islnk() and member.link in written:
            info.linkname = prefix + member.link
        elif member.info.islnk():
            # Its target was replaced or deleted by a newer delta: carry the data instead.
            info.type = tarfile.REGTYPE
            info.linkname = ""
            info.size = member.tar.getmember(member.info.linkname).size
        _add(tar, info, member.tar.extractfile(member.info) if info.isreg() else None)
        written.add(path)
        if advance is not None:
            advance(info.size)
