"""A download that survives dropped connections and stalls: each retry asks for the bytes still
missing (Range + If-Range) and appends them, and the sha256 runs over the whole file, so what
is verified later is every byte, whichever response delivered it.

A clean close before the announced length is never accepted (dracut-ng#2639): it is a
truncation, and the next attempt resumes. A server that ignores the range, or whose file
changed, makes the download start over from byte 0.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ovl.agent.deadline import Deadline
from ovl.agent.download.ranged import Part, RangeMismatch, Validator, open_range
from ovl.agent.download.retry import Final, NotFound, Transient, retrying
from ovl.agent.download.session import http_errors
from ovl.agent.fetched import Copied

if TYPE_CHECKING:
    import requests

CHUNK = 256 * 1024
PROGRESS_SECONDS = 1.0


class PartialFile:
    """The file being downloaded into `path`: bytes so far, their running sha256, the file's
    total size and validator (what a resumed request must match)."""

    def __init__(self, path: Path, size_cap: int) -> None:
        self.path = path
        self.size_cap = size_cap
        self.got = 0
        self.furthest = 0  # the most bytes ever held: only going past it is progress
        self.total: int | None = None
        self.validator = Validator()
        self._digest = hashlib.sha256()
        self._out: IO[bytes] | None = None

    @property
    def resumable(self) -> bool:
        """Whether a ranged request can continue it: bytes held, and a validator for If-Range."""
        return self.got > 0 and self.validator.if_range is not None

    def start_over(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)
        self.got, self.total, self.validator = 0, None, Validator()
        self._digest = hashlib.sha256()

    def take(self, part: Part) -> None:
        """Accept `part` as the continuation (or, from byte 0, the replacement) of the file."""
        if part.start == 0:
            self.start_over()
        elif part.start != self.got or self.validator.contradicts(part.validator):
            self.start_over()
            raise RangeMismatch("the file changed on the server mid-download")
        elif self.total is not None and part.total is not None and part.total != self.total:
            self.start_over()
            raise RangeMismatch(f"the file is now {part.total} bytes, was {self.total}")
        if part.start == 0:
            self.validator = part.validator
        self.total = part.total if part.total is not None else self.total
        if self.total is not None and self.total > self.size_cap:
            raise Final(f"{self.total} bytes is over the {self.size_cap} byte cap")

    def write(self, chunk: bytes) -> bool:
        """Append `chunk`; whether the file now reaches further than it ever did (a server
        that drops every connection at the same byte makes no progress)."""
        if self.got + len(chunk) > self.size_cap:
            raise Final(f"over the {self.size_cap} byte cap")
        if self._out is None:
            self._out = open(self.path, "ab" if self.got else "wb")  # noqa: SIM115
        self._out.write(chunk)
        self._digest.update(chunk)
        self.got += len(chunk)
        if self.got <= self.furthest:
            return False
        self.furthest = self.got
        return True

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def result(self) -> Copied:
        self.close()
        return Copied(self.got, self._digest.hexdigest())


def download_file(
    session: requests.Session,
    url: str,
    dest: Path,
    deadline: Deadline,
    *,
    size_cap: int,
    say: Callable[[str], None],
    optional: bool = False,
) -> Copied | None:
    """GET `url` into `dest` with retries and resume until the deadline; None when `optional`
    and the server says 404. On failure `dest` is removed."""
    partial = PartialFile(dest, size_cap)

    def attempt() -> None:
        start = partial.got if partial.resumable else 0
        if start == 0 and partial.got:
            partial.start_over()  # no validator to resume with: the whole file again
        try:
            try:
                with http_errors():
                    part = open_range(
                        session, url, deadline, start=start, validator=partial.validator
                    )
            except RangeMismatch:
                partial.start_over()  # whatever the server has now, from byte 0
                raise
            with part.response:
                if start and part.start == 0:
                    say(f"{url}: the server sent the whole file again; starting over")
                partial.take(part)
                try:
                    with http_errors():
                        _stream(part.response, partial, deadline, url, say)
                except Transient as exc:  # mid-body: say where it stopped
                    raise Transient(f"{exc.line} at {_mb(partial.got, partial.total)}") from None
        except OSError as exc:  # the local side: a full /run, say
            raise Final(f"writing {dest.name}: {exc.strerror or exc}") from None
        finally:
            partial.close()
        if partial.total is not None and partial.got < partial.total:
            raise Transient(f"truncated: connection closed at {_mb(partial.got, partial.total)}")

    try:
        retrying(attempt, deadline=deadline, say=lambda line: say(f"{url} {line}"))
    except NotFound:
        partial.start_over()
        if optional:
            return None
        raise
    except BaseException:
        partial.start_over()
        raise
    return partial.result()


def _stream(
    response: requests.Response,
    partial: PartialFile,
    deadline: Deadline,
    url: str,
    say: Callable[[str], None],
) -> None:
    shown = time.monotonic()
    for chunk in response.iter_content(CHUNK):
        if partial.write(chunk):
            deadline.progress()
        now = time.monotonic()
        if now - shown >= PROGRESS_SECONDS:
            shown = now
            say(f"{url} {_mb(partial.got, partial.total)}")
        if partial.total is not None and partial.got > partial.total:
            raise Transient(f"the server sent more than the {partial.total} bytes it announced")


def _mb(got: int, total: int | None) -> str:
    return f"{got / 1e6:.1f}" + (f" of {total / 1e6:.1f}" if total else "") + " MB"
