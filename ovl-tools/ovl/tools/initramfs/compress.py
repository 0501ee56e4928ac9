"""Compress the cpio archive the way the kernel can unpack it, with reproducible output."""

from __future__ import annotations

import gzip
import lzma
import shutil
from typing import BinaryIO

import zstandard

from ovl.tools.initramfs.conf import Compression

DEFAULT_LEVELS = {Compression.ZSTD: 19, Compression.GZIP: 9, Compression.XZ: 6}


def compress_stream(
    source: BinaryIO, out: BinaryIO, compression: Compression, level: int | None
) -> None:
    """Copy `source` into `out` compressed; gzip without name or time, xz with CRC32 (the only
    check the kernel's xz decoder knows), zstd single-threaded so the bytes never vary."""
    chosen = DEFAULT_LEVELS.get(compression, 0) if level is None else level
    if compression is Compression.ZSTD:
        zstandard.ZstdCompressor(level=chosen).copy_stream(source, out)
    elif compression is Compression.GZIP:
        with gzip.GzipFile(filename="", mode="wb", fileobj=out, compresslevel=chosen, mtime=0) as z:
            shutil.copyfileobj(source, z, 1 << 20)
    elif compression is Compression.XZ:
        packer = lzma.LZMACompressor(format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=chosen)
        while chunk := source.read(1 << 20):
            out.write(packer.compress(chunk))
        out.write(packer.flush())
    else:
        shutil.copyfileobj(source, out, 1 << 20)
