"""A strict RFC 5424 parser (section 6's ABNF) and a UDP receiver on 127.0.0.1 for the tests of
ovl.log=: every datagram must parse, or the test fails."""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType

_HEADER = re.compile(
    rb"<(?P<pri>0|[1-9][0-9]{0,2})>(?P<version>[1-9][0-9]{0,2}) "
    rb"(?P<timestamp>-|[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{1,6})?"
    rb"(Z|[+-][0-9]{2}:[0-9]{2})) "
    rb"(?P<hostname>-|[\x21-\x7e]{1,255}) "
    rb"(?P<app>-|[\x21-\x7e]{1,48}) "
    rb"(?P<procid>-|[\x21-\x7e]{1,128}) "
    rb"(?P<msgid>-|[\x21-\x7e]{1,32}) "
    rb"(?P<sd>-|(\[[^\]]*\])+)"
    rb"(?P<rest>( .*)?)\Z",
    re.DOTALL,
)


@dataclass(frozen=True)
class Message:
    facility: int
    severity: int
    timestamp: str
    hostname: str
    app: str
    procid: str
    msgid: str
    structured_data: str
    msg: str


def parse_5424(datagram: bytes) -> Message:
    """The message, or AssertionError naming what breaks RFC 5424."""
    found = _HEADER.match(datagram)
    assert found is not None, f"not RFC 5424: {datagram[:120]!r}"
    pri = int(found["pri"])
    assert pri <= 191, f"PRI {pri} out of range"
    assert found["version"] == b"1"
    timestamp = found["timestamp"].decode()
    if timestamp != "-":
        datetime.fromisoformat(timestamp.replace("Z", "+00:00"))  # a real date and time
    rest = found["rest"]
    body = rest[1:] if rest else b""
    if body.startswith(b"\xef\xbb\xbf"):
        body = body[3:]
    return Message(
        facility=pri // 8,
        severity=pri % 8,
        timestamp=timestamp,
        hostname=found["hostname"].decode(),
        app=found["app"].decode(),
        procid=found["procid"].decode(),
        msgid=found["msgid"].decode(),
        structured_data=found["sd"].decode(),
        msg=body.decode("utf-8"),  # strict: a message cut mid-character fails here
    )


class Receiver:
    """UDP on 127.0.0.1 (any free port): the datagrams sent to it, parsed strictly."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(5)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    def take(self, count: int) -> list[tuple[bytes, Message]]:
        """The next `count` datagrams (raw, parsed); fails if they do not come within 5 s."""
        got = []
        for _ in range(count):
            data = self.sock.recv(65536)
            got.append((data, parse_5424(data)))
        return got

    def drain(self) -> list[Message]:
        """Whatever datagrams are waiting now (none is waited for), parsed."""
        self.sock.setblocking(False)
        got = []
        try:
            while True:
                got.append(parse_5424(self.sock.recv(65536)))
        except BlockingIOError:
            return got
        finally:
            self.sock.settimeout(5)

    def __enter__(self) -> Receiver:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.sock.close()
