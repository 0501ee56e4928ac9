"""scan_bundle reports what a bundle holds, in apply order, without any target."""

from __future__ import annotations

import hashlib
import io

from ovl.format.codec import Compression, Encoding
from ovl.format.manifest import Manifest
from ovl.format.reader import Kind
from ovl.format.scan import EntryInfo, scan_bundle
from tests.format.bundle_build import Item, armour, bundle


def shape(entries: list[EntryInfo]) -> list[EntryInfo]:
    """Path, kind, size and link only."""
    return [EntryInfo(e.path, e.kind, e.size, e.link) for e in entries]


def test_scan_lists_layers_in_apply_order_with_entries_and_sizes() -> None:
    data = bundle(
        [
            Item("layers/20-b/x", data=b"12345"),
            Item("ovl.json", data=b'{"name": "n", "serial": 5}'),
            Item("etc", "dir"),
            Item("etc/motd", data=b"hello"),
            Item("etc/motd2", "hardlink", link="etc/motd"),
            Item("layers/3-a/etc/.wh.motd", data=b""),
            Item("layers/20-a/lib", "symlink", link="/usr/lib"),
            Item("layers/3-a/etc/.wh..wh..opq", data=b""),
        ],
        "xz",
    )
    info = scan_bundle(io.BytesIO(armour(data, framed=True)))
    assert info.encoding == Encoding(Compression.XZ, armoured=True)
    assert info.armoured
    assert info.manifest == Manifest(name="n", serial=5)
    assert [layer.name for layer in info.layers] == ["base", "3-a", "20-a", "20-b"]
    base, a3, a20, b20 = info.layers
    assert base.layer is None and a3.layer is not None and a3.layer.order == 3
    assert shape(base.entries) == [
        EntryInfo("etc", Kind.DIR, 0),
        EntryInfo("etc/motd", Kind.FILE, 5),
        EntryInfo("etc/motd2", Kind.HARDLINK, 0, "etc/motd"),
    ]
    assert shape(a3.entries) == [
        EntryInfo("etc/motd", Kind.WHITEOUT, 0),
        EntryInfo("etc", Kind.OPAQUE, 0),
    ]
    assert shape(a20.entries) == [EntryInfo("lib", Kind.SYMLINK, 0, "/usr/lib")]
    assert (base.entries[1].mode, base.entries[1].uid, base.entries[1].sha256) == (0o644, 0, "")
    assert b20.bytes == 5 and base.bytes == 5
    assert info.decoded_bytes >= 10240


def test_scan_with_digests_hashes_every_regular_file() -> None:
    data = bundle([Item("etc/a", data=b"hello"), Item("etc/b", data=b"x" * (3 << 20))], "zstd")
    info = scan_bundle(io.BytesIO(data), digests=True)
    assert {e.path: e.sha256 for e in info.layers[0].entries if e.kind is Kind.FILE} == {
        "etc/a": hashlib.sha256(b"hello").hexdigest(),
        "etc/b": hashlib.sha256(b"x" * (3 << 20)).hexdigest(),
    }
