"""scan_bundle reports what a bundle holds, in apply order, without any target."""

from __future__ import annotations

import io

from ovl.format.codec import Compression, Encoding
from ovl.format.manifest import Manifest
from ovl.format.reader import Kind
from ovl.format.scan import EntryInfo, scan_bundle
from tests.format.bundle_build import Item, armour, bundle


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
    assert base.entries == [
        EntryInfo("etc", Kind.DIR, 0),
        EntryInfo("etc/motd", Kind.FILE, 5),
        EntryInfo("etc/motd2", Kind.HARDLINK, 0, "etc/motd"),
    ]
    assert a3.entries == [EntryInfo("etc/motd", Kind.WHITEOUT, 0), EntryInfo("etc", Kind.OPAQUE, 0)]
    assert a20.entries == [EntryInfo("lib", Kind.SYMLINK, 0, "/usr/lib")]
    assert b20.bytes == 5 and base.bytes == 5
    assert info.decoded_bytes >= 10240
