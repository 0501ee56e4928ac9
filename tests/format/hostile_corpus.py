"""A generated corpus of hostile bundles: each must be refused with one line naming the entry
and the reason, before anything reaches the target."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass

from ovl.format.reader import DEFAULT_LIMITS, Limits
from tests.format.bundle_build import Item, armour, bundle, compress, tar_bytes

# Harmless entries first, so that refusals happen after real writes to the staging area.
PREFIX = [
    Item("etc", "dir", mode=0o755),
    Item("etc/hostname", data=b"fleet\n"),
    Item("layers", "dir", mode=0o755),
    Item("layers/10-x86_64", "dir", mode=0o755),
    Item("layers/10-x86_64/etc", "dir", mode=0o755),
    Item("layers/10-x86_64/etc/motd", data=b"x86\n"),
]


@dataclass(frozen=True)
class Case:
    id: str
    data: bytes
    reason: str  # a regular expression the one-line error must match
    limits: Limits = DEFAULT_LIMITS


def _entries(*items: Item) -> bytes:
    return bundle([*PREFIX, *items])


def _without_end_marker() -> bytes:
    """A tar cut right after its last entry, as if the rest never arrived."""
    data = tar_bytes(PREFIX)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        last = tar.getmembers()[-1]
    return data[: last.offset_data + -(-last.size // 512) * 512]


def _corrupt_header() -> bytes:
    data = bytearray(tar_bytes([*PREFIX, Item("etc/later", data=b"later")]))
    at = data.index(b"etc/later")
    data[at : at + 3] = b"ETC"  # the checksum no longer matches
    return bytes(data)


def _huge_pax_header() -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo("etc/padded")
        info.pax_headers = {"comment": "x" * (2 << 20)}
        tar.addfile(info, io.BytesIO(b""))
    return out.getvalue()


def hostile_cases() -> Iterator[Case]:
    # paths
    yield Case("absolute", _entries(Item("/etc/passwd", data=b"x")), "'/etc/passwd': absolute path")
    yield Case("dotdot", _entries(Item("../escape", data=b"x")), "'../escape': '..' in path")
    yield Case("dotdot-inside", _entries(Item("etc/../../x", data=b"")), "'..' in path")
    yield Case(
        "dotdot-in-unmatched-layer",
        _entries(Item("layers/99-aarch64/../../x", data=b"")),
        "'..' in path",
    )
    yield Case(
        "through-symlink",
        _entries(Item("lib", "symlink", link="/tmp"), Item("lib/evil", data=b"x")),
        "'lib/evil': path passes through symlink lib",
    )
    yield Case(
        "symlink-over-earlier-entries",
        _entries(Item("opt/tool", data=b"x"), Item("opt", "symlink", link="/usr")),
        "'opt': a symlink with entries below it",
    )
    yield Case(
        "through-file",
        _entries(Item("etc/hostname/x", data=b"")),
        "'etc/hostname/x': etc/hostname is not a directory",
    )
    yield Case(
        "two-types",
        _entries(Item("etc/hostname", "dir")),
        "declared both as file and dir",
    )
    yield Case(
        "symlink-climbs-out",
        _entries(Item("etc/up", "symlink", link="../../../root")),
        "symlink to '../../../root' leads outside the root",
    )
    yield Case(
        "symlink-empty",
        _entries(Item("etc/nothing", "symlink", link="")),
        "'etc/nothing': symlink with an empty target",
    )
    yield Case(
        "layer-symlink-climbs-out",
        _entries(Item("layers/10-x86_64/up", "symlink", link="../x")),
        "leads outside the root",
    )
    yield Case(
        "hardlink-absolute",
        _entries(Item("etc/shadow", "hardlink", link="/etc/shadow")),
        "'etc/shadow': hardlink to '/etc/shadow' leads outside the bundle",
    )
    yield Case(
        "hardlink-dotdot",
        _entries(Item("etc/shadow", "hardlink", link="../../etc/shadow")),
        "hardlink to '../../etc/shadow' leads outside the bundle",
    )
    yield Case(
        "hardlink-across-layers",
        _entries(Item("layers/10-x86_64/h", "hardlink", link="etc/hostname")),
        "hardlink to 'etc/hostname' outside its layer",
    )
    yield Case(
        "hardlink-to-unknown",
        _entries(Item("etc/h", "hardlink", link="etc/nothing")),
        "not an earlier regular file of the same layer",
    )
    yield Case(
        "hardlink-to-symlink",
        _entries(
            Item("etc/s", "symlink", link="hostname"), Item("etc/h", "hardlink", link="etc/s")
        ),
        "not an earlier regular file",
    )
    # special files
    for kind in ("char", "block", "fifo"):
        yield Case(
            kind, _entries(Item(f"dev/{kind}", kind)), f"{kind} device nodes are not allowed"
        )
    yield Case(
        "device-in-unmatched-layer",
        _entries(Item("layers/99-aarch64/null", "char")),
        "char device nodes are not allowed",
    )
    # whiteouts and overlay metadata
    yield Case(
        "reserved-whiteout",
        _entries(Item("etc/.wh..wh.plnk", data=b"")),
        "reserved whiteout name",
    )
    yield Case("whiteout-dotdot", _entries(Item("etc/.wh...", data=b"")), "reserved whiteout")
    yield Case(
        "whiteout-and-entry",
        _entries(Item("etc/.wh.hostname", data=b"")),
        "declared both as file and whiteout",
    )
    yield Case(
        "whiteout-symlink",
        _entries(Item("etc/.wh.x", "symlink", link="y")),
        "a whiteout must be a regular file",
    )
    yield Case(
        "overlay-xattr",
        _entries(Item("etc/d", "dir", xattrs={"trusted.overlay.redirect": b"/etc"})),
        "reserved xattr trusted.overlay.redirect",
    )
    # layer names
    for name, why in [
        ("abc", "must start with a number"),
        ("10--x", "empty favor"),
        ("10-color=red", "unknown favor key"),
        ("10-mac=zz", "not a MAC address"),
    ]:
        yield Case(
            f"layer-{name}",
            _entries(Item(f"layers/{name}/x", data=b"")),
            f"'layers/{name}/x': malformed layer name '{name}': .*{why}",
        )
    yield Case(
        "file-in-layers",
        _entries(Item("layers/10", data=b"")),
        "'layers/10': must be a directory",
    )
    yield Case("root-not-dir", _entries(Item(".", data=b"")), "'.': must be a directory")
    # sizes
    yield Case(
        "entry-over-cap",
        _entries(Item("etc/big", data=b"x" * 5000)),
        "'etc/big': 5000 bytes, over the per-entry limit of 4096",
        Limits(max_entry_bytes=4096),
    )
    yield Case(
        "total-over-cap",
        _entries(*(Item(f"etc/f{i}", data=b"y" * 3000) for i in range(10))),
        "more than 20000 bytes once decompressed",
        Limits(max_total_bytes=20000),
    )
    yield Case(
        "bomb",
        bundle([*PREFIX, Item("zeros", data=bytes(64 << 20))]),
        "more than 8388608 bytes once decompressed",
        Limits(max_total_bytes=8 << 20),
    )
    yield Case(
        "too-many-entries",
        _entries(*(Item(f"etc/e{i}", data=b"") for i in range(20))),
        "more than 10 entries",
        Limits(max_entries=10),
    )
    yield Case("huge-pax-header", compress(_huge_pax_header(), "zstd"), "extended header of")
    # streams
    whole = tar_bytes([*PREFIX, Item("etc/big", data=b"x" * 20000)])
    for compression in ("none", "zstd", "gzip", "xz", "zlib"):
        data = compress(whole, compression)
        yield Case(f"truncated-{compression}", data[: len(data) * 2 // 3], "truncated")
    yield Case("no-end-marker", _without_end_marker(), "truncated \\(no end-of-archive marker")
    yield Case("corrupt-header", _corrupt_header(), "corrupt header .* after entry")
    corrupt_zstd = bytearray(compress(whole, "zstd"))
    corrupt_zstd[len(corrupt_zstd) // 2] ^= 0xFF
    yield Case("corrupt-zstd", bytes(corrupt_zstd), "corrupt zstd stream|truncated|corrupt header")
    yield Case(
        "armour-garbage",
        b"-----BEGIN OVL BUNDLE-----\n" + b"QUJD" * 200 + b"\n%%%\n-----END OVL BUNDLE-----\n",
        "invalid base64 character",
    )
    armoured = armour(_entries(), framed=True)
    yield Case(
        "armour-without-end",
        armoured[: -len(b"-----END OVL BUNDLE-----\n")],
        "missing the -----END OVL BUNDLE----- line",
    )
    yield Case("armour-truncated", armoured[:-40], "base64 text is truncated")
    # manifest
    for number, (text, why) in enumerate(
        [
            (b'{"serial": "7"}', r"\$.serial: expected a non-negative integer"),
            (b'{"serial": -1}', r"\$.serial: expected a non-negative integer"),
            (b'{"created": "yesterday"}', r"\$.created: not an RFC 3339 date-time"),
            (b'{"name": 5}', r"\$.name: expected a string"),
            (b"[1, 2]", r"\$: expected a JSON object"),
            (b"{oops", "not JSON"),
        ]
    ):
        yield Case(f"manifest-{number}", _entries(Item("ovl.json", data=text)), why)
    yield Case(
        "manifest-twice",
        _entries(Item("ovl.json", data=b"{}"), Item("./ovl.json", data=b"{}")),
        "a second manifest",
    )
