"""A corrupt pax record after the first member is corruption, not the end of the bundle.

tarfile ends an archive silently on a header it cannot read past the first member; a bundle
cut or damaged there must not pass for a shorter one.
"""

from __future__ import annotations

import io
import tarfile

import pytest

from ovl.core.errors import BadInput
from ovl.format.scan import scan_bundle


def _tar_with_pax_second_member() -> bytes:
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name in ("etc/first", "etc/" + "long" * 40, "etc/third"):
            info = tarfile.TarInfo(name)
            info.size = 2
            tar.addfile(info, io.BytesIO(b"ok"))
    return raw.getvalue()


def test_intact_archive_has_three_entries() -> None:
    info = scan_bundle(io.BytesIO(_tar_with_pax_second_member()))
    assert sum(len(layer.entries) for layer in info.layers) == 3


@pytest.mark.parametrize("digits", [b"999", b"0x1", b"000"])
def test_corrupt_pax_record_in_a_later_member_is_refused(digits: bytes) -> None:
    data = bytearray(_tar_with_pax_second_member())
    record = data.index(b" path=etc/long")
    start = record - record % tarfile.BLOCKSIZE  # the record opens the pax data block
    assert len(digits) == record - start
    data[start:record] = digits
    with pytest.raises(BadInput, match="corrupt"):
        scan_bundle(io.BytesIO(bytes(data)))
