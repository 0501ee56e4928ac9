"""Streaming decoder for base64 armour, bare or between BEGIN/END OVL BUNDLE lines."""

from __future__ import annotations

import binascii
import io
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from _typeshed import WriteableBuffer

from ovl.core.errors import BadInput

BEGIN_LINE = b"-----BEGIN OVL BUNDLE-----"
END_LINE = b"-----END OVL BUNDLE-----"
_WHITESPACE = b" \t\r\n"
_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_CHUNK = 1 << 16


def looks_armoured(head: bytes) -> bool:
    """True when `head` (the first bytes of a bundle) is base64 text or starts with BEGIN."""
    text = head.lstrip(_WHITESPACE)
    if text.startswith(BEGIN_LINE[: len(text)]) and text:
        return True
    body = text.translate(None, _WHITESPACE)
    return bool(body) and not body.translate(None, _ALPHABET)


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


class ReadStream(io.RawIOBase):
    """A raw stream whose subclass defines read(size) -> bytes; readinto() follows from it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        view = memoryview(buffer).cast("B")
        data = self.read(len(view))
        view[: len(data)] = data
        return len(data)


class Base64Reader(ReadStream):
    """Decodes armoured text from `source` as it is read; never holds more than one chunk."""

    def __init__(self, source: Readable) -> None:
        super().__init__()
        self._source = source
        self._carry = b""  # base64 characters not yet forming a 4-character group
        self._out = b""
        self._framed: bool | None = None  # unknown until the first non-blank text
        self._trailer = b""  # text from the first '-' after the body (the END line)
        self._padded = False
        self._eof = False
        self._offset = 0

    def read(self, size: int = -1, /) -> bytes:
        if size < 0:
            return self.readall()
        while not self._out and not self._eof:
            self._feed(self._source.read(_CHUNK))
        data, self._out = self._out[:size], self._out[size:]
        return data

    def _feed(self, chunk: bytes) -> None:
        if not chunk:
            self._finish()
            return
        if self._framed is None:
            chunk = self._carry + chunk
            self._carry = b""
            stripped = chunk.lstrip(_WHITESPACE)
            if len(stripped) < len(BEGIN_LINE) and BEGIN_LINE.startswith(stripped):
                self._carry = stripped  # too short to decide yet
                return
            self._framed = stripped.startswith(BEGIN_LINE)
            chunk = stripped[len(BEGIN_LINE) :] if self._framed else stripped
        if self._trailer:
            self._trailer += chunk
            self._check_trailer_size()
            return
        body, dash, rest = chunk.partition(b"-")
        if dash:
            if not self._framed:
                raise BadInput(f"bundle armour: '-' in base64 text near byte {self._offset}")
            self._trailer = dash + rest
            self._check_trailer_size()
        self._decode(body)

    def _check_trailer_size(self) -> None:
        if len(self._trailer.strip(_WHITESPACE)) > len(END_LINE):
            raise BadInput("bundle armour: text after the END OVL BUNDLE line")

    def _decode(self, text: bytes) -> None:
        body = text.translate(None, _WHITESPACE)
        if body.translate(None, _ALPHABET):
            raise BadInput(f"bundle armour: invalid base64 character near byte {self._offset}")
        if self._padded and body:
            raise BadInput("bundle armour: base64 text continues after '=' padding")
        self._offset += len(text)
        data = self._carry + body
        whole = len(data) - len(data) % 4
        self._carry = data[whole:]
        if not whole:
            return
        try:
            self._out += binascii.a2b_base64(data[:whole], strict_mode=True)
        except binascii.Error as exc:
            raise BadInput(f"bundle armour: bad base64 near byte {self._offset}: {exc}") from None
        self._padded = data[whole - 1 : whole] == b"="

    def _finish(self) -> None:
        self._eof = True
        if self._framed is None or self._carry:
            raise BadInput("bundle armour: base64 text is truncated")
        if self._framed and self._trailer.strip(_WHITESPACE) != END_LINE:
            raise BadInput("bundle armour: missing the -----END OVL BUNDLE----- line")
