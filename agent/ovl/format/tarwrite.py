"""Tar header blocks: a ustar header, behind a pax extended header ('x') when ustar is not enough.

The one place that lays out header bytes, for both packers (`ovl pack` and `ovl-agent delta
pack`). Built by hand rather than by `tarfile`: per-member header building in tarfile costs more
than GNU tar's whole run on a tree of thousands of small files. What goes into pax records, and
what a field holds when its value does not fit, is each packer's choice; this module only
encodes the choice.
"""

from __future__ import annotations

import functools

BLOCK = 512
MAX_ID = 8**7 - 1  # the largest uid/gid an 8-byte octal field holds
MAX_NUMBER = 8**11 - 1  # the largest size/mtime a 12-byte octal field holds
_MAGIC_AND_OWNER_NAMES = b"ustar\x0000" + bytes(64)
_BLANK_PREFIX = bytes(155 + 12)  # prefix field and the block's padding
_CONSTANT_TAIL_SUM = sum(_MAGIC_AND_OWNER_NAMES) + 8 * 0x20  # the checksum counts as spaces


def ustar_block(
    name: bytes,
    mode: int,
    uid: int,
    gid: int,
    size: int,
    mtime: int,
    typeflag: bytes,
    link: bytes = b"",
    devices: bytes = b"",
) -> bytes:
    """One 512-byte ustar header with empty owner names and prefix.

    Numbers must fit their octal fields (see MAX_ID, MAX_NUMBER); `name` and `link` are cut at
    100 bytes; `devices` is the two device-number fields (16 bytes; empty leaves them blank).
    """
    head = b"%s%07o\0%07o\0%07o\0%011o\0%011o\0" % (
        name[:100].ljust(100, b"\0"),
        mode,
        uid,
        gid,
        size,
        mtime,
    )
    link = link[:100]
    # The tail is mostly constant: its checksum is summed from the parts that vary.
    checksum = sum(head) + _CONSTANT_TAIL_SUM + typeflag[0]
    if link:
        checksum += sum(link)
    if devices:
        checksum += sum(devices)
    return b"%s%06o\0 %s%s%s%s%s" % (
        head,
        checksum,
        typeflag,
        link.ljust(100, b"\0"),
        _MAGIC_AND_OWNER_NAMES,
        devices.ljust(16, b"\0"),
        _BLANK_PREFIX,
    )


def device_fields(major: int, minor: int) -> bytes:
    """The devmajor and devminor fields holding these numbers."""
    return b"%07o\0%07o\0" % (major, minor)


def pax_record(key: bytes, value: bytes) -> bytes:
    """`<length> <key>=<value>\\n` where the length counts its own digits."""
    body = len(key) + len(value) + 3
    length = body + len(str(body))
    if len(str(length)) + body != length:
        length += 1
    return b"%d %s=%s\n" % (length, key, value)


HDRCHARSET_BINARY = pax_record(b"hdrcharset", b"BINARY")


def pax_extension(records: bytes, header_name: bytes, mode: int, devices: bytes = b"") -> bytes:
    """The 'x' header and its record blocks, to go right before the member's ustar header."""
    return (
        _extension_header(len(records), header_name, mode, devices)
        + records
        + padding(len(records))
    )


@functools.cache
def _extension_header(size: int, header_name: bytes, mode: int, devices: bytes) -> bytes:
    # Readers ignore the 'x' header's own name, owner and mtime, so one header per record size
    # serves every member.
    return ustar_block(header_name, mode, 0, 0, size, 0, b"x", b"", devices)


def padding(size: int) -> bytes:
    """The zero bytes that fill `size` bytes of data up to a whole block."""
    return bytes(-size % BLOCK)
