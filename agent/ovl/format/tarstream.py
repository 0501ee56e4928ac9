"""The one writer of bundle tar streams: headers, data, framing.

`ovl pack` and the server's baked bundles both go through it, so both carry the frame index
(docs/FORMAT.md, section 2.1) and the same header bytes.
"""

from __future__ import annotations

import os
import tarfile
from typing import IO

from ovl.core.errors import OvlError
from ovl.format.encode import Encoder
from ovl.format.tarwrite import (
    HDRCHARSET_BINARY,
    MAX_ID,
    MAX_NUMBER,
    device_fields,
    pax_extension,
    pax_record,
    ustar_block,
)

_COPY_BUFFER = 4 << 20
# The decoded size before a frame may be cut: small enough that a machine decodes little
# besides its own layers, big enough that compression loses little at each cut.
MIN_FRAME = 256 << 10
_DEVICE_TYPES = (tarfile.CHRTYPE, tarfile.BLKTYPE)
_TARFILE_PAX_NAME = b"././@PaxHeader"
_ZERO_BLOCK = bytes(tarfile.BLOCKSIZE)


def layer_folder(name: str) -> str | None:
    """The layer folder an entry belongs to, its own folder entry included; None for the base."""
    parts = name.split("/", 2)
    return parts[1] if parts[0] == "layers" and len(parts) > 1 else None


def header_block(info: tarfile.TarInfo) -> bytes:
    """The header of `info` exactly as tarfile writes it in pax format (owner names left out:
    the agent sets owners by number), built by `tarwrite` at a fraction of tarfile's cost."""
    name = info.name
    if info.type == tarfile.DIRTYPE and not name.endswith("/"):
        name += "/"
    link = info.linkname
    devices = device_fields(info.devmajor, info.devminor) if info.type in _DEVICE_TYPES else b""
    if (  # the common case, checked first: nothing needs a pax record
        not info.pax_headers
        and name.isascii()
        and len(name) <= 100
        and link.isascii()
        and len(link) <= 100
        and 0 <= info.uid <= MAX_ID
        and 0 <= info.gid <= MAX_ID
        and 0 <= info.size <= MAX_NUMBER
        and type(info.mtime) is int
        and 0 <= info.mtime <= MAX_NUMBER
    ):
        return ustar_block(
            name.encode(),
            info.mode & 0o7777,
            info.uid,
            info.gid,
            info.size,
            info.mtime,
            info.type,
            link.encode(),
            devices,
        )
    pax = dict(info.pax_headers)
    for key, text in (("path", name), ("linkpath", link)):
        if key not in pax and not (text.isascii() and len(text) <= 100):
            pax[key] = text
    fields = []
    for key, value, limit in (
        ("uid", info.uid, MAX_ID),
        ("gid", info.gid, MAX_ID),
        ("size", info.size, MAX_NUMBER),
        ("mtime", info.mtime, MAX_NUMBER),
    ):
        whole = round(value)
        fits = 0 <= whole <= limit
        fields.append(whole if fits else 0)
        if not fits or isinstance(value, float):  # a float keeps its fraction in the record
            pax.setdefault(key, str(value))
    uid, gid, size, mtime = fields
    header = ustar_block(
        name.encode("ascii", "replace"),
        info.mode & 0o7777,
        uid,
        gid,
        size,
        mtime,
        info.type,
        link.encode("ascii", "replace"),
        devices,
    )
    if not pax:
        return header
    records = [pax_record(k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in pax.items()]
    if any(map(_has_surrogates, pax.values())):
        records.insert(0, HDRCHARSET_BINARY)
    return pax_extension(b"".join(records), _TARFILE_PAX_NAME, 0) + header


def _has_surrogates(text: str) -> bool:
    """True for text holding escaped raw bytes: tarfile then marks the records as binary."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _read_some(fd: int, view: memoryview, path: str) -> int:
    """Read at least one byte of the file `path` (open as `fd`) into `view`, which the file
    was big enough to fill when it was examined."""
    try:
        count = os.readv(fd, [view])
    except OSError as exc:
        raise OvlError(f"{path}: changed while packing ({exc})") from exc
    if not count:
        raise OvlError(f"{path}: changed while packing (unexpected end of data)")
    return count


class TarWriter:
    """Tar blocks gathered in one reused buffer and handed to the encoder 4 MiB at a time;
    file data is read straight into that buffer. With a framed encoder, zstd frames are cut at
    entry boundaries: where the layer changes once a frame holds MIN_FRAME bytes, and before
    the entry that takes a layer's run to MIN_FRAME bytes in a frame others began, so small
    layers never share a frame with a big one (docs/FORMAT.md, section 2.1). Each cut waits
    for zstd's workers, so there are no other cuts."""

    def __init__(self, encoder: Encoder) -> None:
        self._encoder = encoder
        self._framed = encoder.framed
        self._layer: str | None = None
        self._run_start = 0  # where the current layer's run began in the current frame
        self._buffer = bytearray(_COPY_BUFFER)
        self._view = memoryview(self._buffer)
        self._used = 0
        self._offset = 0  # bytes of tar written so far

    @property
    def offset(self) -> int:
        """Bytes of tar written so far: where the next entry's header starts."""
        return self._offset

    def begin_entry(self, layer: str | None, size: int) -> None:
        """The next entry, of `size` data bytes, belongs to `layer` (its folder name), or to
        the base (None)."""
        framed = self._framed
        if framed is None:
            return
        held = framed.frame_bytes + self._used
        changed = layer != self._layer
        if changed:
            self._run_start = held
        run = held - self._run_start
        if (changed and held >= MIN_FRAME) or (self._run_start and run + size >= MIN_FRAME):
            self._flush()
            framed.cut()
            self._run_start = 0
        framed.label(layer)
        self._layer = layer

    def write(self, data: bytes) -> None:
        if self._used + len(data) > _COPY_BUFFER:
            self._flush()
        if len(data) > _COPY_BUFFER:
            self._encoder.write(data)
        else:
            self._view[self._used : self._used + len(data)] = data
            self._used += len(data)
        self._offset += len(data)

    def add_file(self, header: bytes, path: str, size: int) -> None:
        """Append an entry: `header`, then `size` bytes of the file at `path` padded to a whole
        block. Most files of a tree are small: theirs is read straight into the buffer."""
        start = self._used + len(header)
        end = start + size + (-size % tarfile.BLOCKSIZE)
        if end > _COPY_BUFFER:
            self.write(header)
            self.copy_file(path, size)
            return
        self._view[self._used : start] = header
        self._offset += len(header)
        self._used = start
        if size:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                while self._used < start + size:
                    self._used += _read_some(fd, self._view[self._used : start + size], path)
            finally:
                os.close(fd)
        self._end_data(size)

    def copy_file(self, path: str, size: int) -> None:
        """Append `size` bytes of the file at `path`, padded to a whole block."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        try:
            remaining = size
            while remaining:
                if self._used == _COPY_BUFFER:
                    self._flush()
                end = self._used + min(remaining, _COPY_BUFFER - self._used)
                count = _read_some(fd, self._view[self._used : end], path)
                self._used += count
                remaining -= count
        finally:
            os.close(fd)
        self._end_data(size)

    def copy_stream(self, source: IO[bytes], size: int, name: str) -> None:
        """Append `size` bytes read from `source` (the data of entry `name`), padded to a whole
        block."""
        remaining = size
        while remaining:
            if self._used == _COPY_BUFFER:
                self._flush()
            try:
                chunk = source.read(min(remaining, _COPY_BUFFER - self._used))
            except (OSError, tarfile.TarError) as exc:
                raise OvlError(f"{name}: cannot read its data ({exc})") from exc
            if not chunk:
                raise OvlError(f"{name}: its data ends {remaining} bytes short of {size}")
            self._view[self._used : self._used + len(chunk)] = chunk
            self._used += len(chunk)
            remaining -= len(chunk)
        self._end_data(size)

    def _end_data(self, size: int) -> None:
        """Pad the `size` data bytes just copied to a whole block."""
        # The buffer holds whole blocks plus this entry's last partial one: the padding fits.
        pad = -size % tarfile.BLOCKSIZE
        self._view[self._used : self._used + pad] = _ZERO_BLOCK[:pad]
        self._used += pad
        self._offset += size + pad

    def finish(self) -> None:
        """End-of-archive blocks, padding to a whole 10 kB record as tarfile does."""
        self.begin_entry(None, 0)
        self.write(bytes(2 * tarfile.BLOCKSIZE))
        if self._offset % tarfile.RECORDSIZE:
            self.write(bytes(tarfile.RECORDSIZE - self._offset % tarfile.RECORDSIZE))
        self._flush()
        self._encoder.finish()

    def _flush(self) -> None:
        if self._used:
            self._encoder.write(self._view[: self._used])
            self._used = 0
