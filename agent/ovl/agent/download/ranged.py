"""One GET, of a whole file or of a byte range (RFC 9110 14): the request, and the checks that
make a response safe to append to what an earlier one delivered.

A ranged request carries `If-Range` with the representation's strong ETag (or its exact
Last-Modified), so a server whose file changed answers 200 with the whole new file instead of a
range of it. A 206 is accepted only when its Content-Range starts exactly where asked (and ends
where asked, or at the end); anything else is a RangeMismatch and the caller starts over. The
last N bytes (`tail`, a suffix range) are how a frame index is fetched without knowing the
file's size.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ovl.agent.deadline import Deadline
from ovl.agent.download.retry import Final, NotFound, Transient
from ovl.agent.download.session import request_timeouts

if TYPE_CHECKING:
    from collections.abc import Mapping

    import requests

RETRIED_STATUS = frozenset({408, 425, 429})  # and every 5xx
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class RangeMismatch(Transient):
    """The server's answer does not continue what was downloaded so far: start over."""


@dataclass(frozen=True)
class Validator:
    """What identifies one version of a file, for If-Range: a strong ETag or Last-Modified."""

    etag: str | None = None  # strong only: a weak one (W/"...") may not be used for ranges
    last_modified: str | None = None

    @classmethod
    def of(cls, headers: Mapping[str, str]) -> Validator:
        etag = headers.get("ETag")
        strong = etag if etag and not etag.startswith("W/") else None
        return cls(strong, headers.get("Last-Modified"))

    @property
    def if_range(self) -> str | None:
        return self.etag or self.last_modified

    def contradicts(self, other: Validator) -> bool:
        """Whether `other` is known to be another version of the file."""
        if self.etag and other.etag:
            return self.etag != other.etag
        return bool(self.last_modified and other.last_modified) and (
            self.last_modified != other.last_modified
        )


@dataclass(frozen=True)
class Part:
    """A response whose body holds the file's bytes from `start` on."""

    response: requests.Response
    start: int
    length: int | None  # bytes in this body, when announced
    total: int | None  # bytes in the whole file, when known
    validator: Validator


def open_range(
    session: requests.Session,
    url: str,
    deadline: Deadline,
    *,
    start: int = 0,
    end: int | None = None,
    validator: Validator | None = None,
    tail: int | None = None,
) -> Part:
    """GET `url` (from byte `start` to `end` inclusive when given, or its last `tail` bytes)
    with a streamed body.

    A 200 is the whole file (start 0), even when a range was asked for. Raises NotFound (404),
    Final (another 4xx, an encoded body), Transient (5xx, 408/425/429, with Retry-After) and
    RangeMismatch (a 206 for other bytes, 416). requests' own exceptions pass through: wrap the
    call in session.http_errors().
    """
    headers = {"Accept-Encoding": "identity"}  # byte offsets are offsets into the file
    ranged = start > 0 or end is not None or tail is not None
    if ranged:
        asked = f"-{tail}" if tail is not None else f"{start}-{'' if end is None else end}"
        headers["Range"] = f"bytes={asked}"
        if validator is not None and validator.if_range:
            headers["If-Range"] = validator.if_range
    response = session.get(url, headers=headers, stream=True, timeout=request_timeouts(deadline))
    try:
        return _checked(response, start, end, ranged, tail)
    except BaseException:
        response.close()
        raise


def _checked(
    response: requests.Response, start: int, end: int | None, ranged: bool, tail: int | None
) -> Part:
    status = response.status_code
    if status == 404:
        raise NotFound("HTTP 404")
    if status == 416 and ranged:
        raise RangeMismatch(f"HTTP 416: no bytes from {start} (the file changed?)")
    if status in RETRIED_STATUS or status >= 500:
        raise Transient(f"HTTP {status}", after=_retry_after(response.headers.get("Retry-After")))
    if 400 <= status < 500:
        raise Final(f"HTTP {status}")
    if status not in (200, 206) or (status == 206 and not ranged):
        raise Transient(f"HTTP {status}: expected 200")
    encoding = response.headers.get("Content-Encoding", "identity").lower()
    if encoding != "identity":
        raise Final(f"the server encoded the file ({encoding}); serve it as is")
    length = _length(response.headers.get("Content-Length"))
    validator = Validator.of(response.headers)
    if status == 200:
        return Part(response, 0, length, length, validator)
    first, last, total = _content_range(response.headers.get("Content-Range", ""))
    if tail is not None:
        if total is None or last != total - 1 or first != max(0, total - tail):
            raise RangeMismatch(f"asked for the last {tail} bytes, the server sent {first}-{last}")
    elif first != start or (end is not None and last != end):
        raise RangeMismatch(f"asked for bytes from {start}, the server sent {first}-{last}")
    if end is None and total is not None and last != total - 1:
        raise RangeMismatch(f"asked for bytes {start}- to the end, got {first}-{last}/{total}")
    if length is not None and length != last - first + 1:
        raise RangeMismatch(f"Content-Length {length} for bytes {first}-{last}")
    return Part(response, first, last - first + 1, total, validator)


def _content_range(value: str) -> tuple[int, int, int | None]:
    found = _CONTENT_RANGE.fullmatch(value.strip())
    if found is None:
        raise RangeMismatch(f"206 without a usable Content-Range ({value!r})")
    first, last = int(found[1]), int(found[2])
    total = None if found[3] == "*" else int(found[3])
    if last < first or (total is not None and last >= total):
        raise RangeMismatch(f"impossible Content-Range {value!r}")
    return first, last, total


def _length(value: str | None) -> int | None:
    return int(value) if value and value.isdigit() else None


def _retry_after(value: str | None) -> float | None:
    """Retry-After in seconds (the HTTP-date form is ignored: the initramfs clock may be off)."""
    return float(value) if value and value.isdigit() else None
