"""Only this machine's frames of an indexed bundle over http(s) (docs/TRUST.md, "Fetching only
a machine's frames"), in four steps:

1. the signature (`.minisig`), whose signer and trusted comment `FrameChoice.claim` checks as
   for the whole bundle (certificate, roots, replay): the comment names the frame index by
   size and sha256;
2. the index: the file's last `size` bytes (`Range: bytes=-size`), which must hash to that
   digest before anything of it is parsed;
3. the frames this machine reads (`FrameChoice.choose`), neighbours in one request, each
   request with `If-Range` (the index response's validator) and each frame hashed against
   the index as it arrives;
4. a partial bundle (ovl.format.partial) renamed into place: the frames, the index, the table.

`FullDownload` says why the whole bundle is fetched instead: no signature, no signed index
(an encrypted, armoured or older bundle), a server that ignores Range, a bundle that keeps
changing on the server. A frame or index whose bytes do not match what the signer signed is
refused (OvlError): the next channel is tried, nothing is applied.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING

from ovl.agent.context import BootContext
from ovl.agent.deadline import Deadline
from ovl.agent.download.ranged import Part, RangeMismatch, Validator, open_range
from ovl.agent.download.resume import CHUNK, download_file
from ovl.agent.download.retry import Final, Transient, retrying
from ovl.agent.download.session import http_errors, is_loopback, open_session
from ovl.agent.fetched import Fetched, FrameCount, partial_path, signature_path
from ovl.core.errors import OvlError
from ovl.format.frameindex import Frame, frame_ranges, parse_index
from ovl.format.partial import partial_tail

if TYPE_CHECKING:
    import requests

    from ovl.trust.open import IndexDigest

RESTARTS = 2  # a bundle replaced on the server mid-way is fetched again this many times


@dataclass(frozen=True)
class FrameChoice:
    """What the boot tells a frame fetch: the frame index a checked signature names (None
    when it names none; OvlError when the signature is refused), and which frames of an
    index this machine reads."""

    claim: Callable[[Path], IndexDigest | None]
    choose: Callable[[list[Frame]], list[int]]


class FullDownload(Exception):
    """Why the whole bundle is fetched instead (and verified whole, as ever)."""


class _Changed(Exception):
    """The bundle changed on the server while its frames were fetched."""


def fetch_frames(url: str, dest: Path, ctx: BootContext, choice: FrameChoice) -> Fetched:
    """This machine's frames of the bundle at `url` as a partial bundle in `dest`, and its
    signature in `dest.minisig`; retried and resumed like any download for as long as
    `ctx.timeout` passes without progress. FullDownload when only the whole bundle will do."""
    deadline = Deadline(ctx.timeout)
    if not is_loopback(url):
        ctx.network.wait(deadline)
    say = partial(ctx.console.line, "fetch")
    with open_session(ctx.proxy) as session:
        fetch = _FrameFetch(session, url, dest, deadline, ctx.size_cap, say)
        for restart in range(RESTARTS + 1):
            try:
                return fetch.once(choice)
            except _Changed as exc:
                fetch.clean()
                if restart == RESTARTS:
                    raise FullDownload(
                        f"the bundle changed on the server {RESTARTS + 1} times while its frames"
                        f" were fetched ({exc})"
                    ) from None
                say(f"{url}: {exc}; starting over ({restart + 1} of {RESTARTS})")
            except BaseException:
                fetch.clean()
                raise
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass
class _FrameFetch:
    session: requests.Session
    url: str
    dest: Path
    deadline: Deadline
    size_cap: int
    say: Callable[[str], None]

    def clean(self) -> None:
        """Nothing of an attempt that did not end in a partial bundle stays behind."""
        signature = signature_path(self.dest)
        for path in (partial_path(self.dest), partial_path(signature), signature):
            path.unlink(missing_ok=True)

    def once(self, choice: FrameChoice) -> Fetched:
        signed = self._signature()
        claim = choice.claim(signed)
        if claim is None:
            raise FullDownload(
                "its signature names no frame index (an encrypted or armoured bundle, or one"
                " sealed without it)"
            )
        index, validator, total = self._index(claim)
        frames = parse_index(index)
        if frames is None:
            raise FullDownload("its frame index is too big to use")
        if not all(frame.sha256 for frame in frames):
            raise FullDownload("its frame index lists no frame digests")
        described = sum(frame.compressed for frame in frames) + len(index)
        if described != total:
            raise OvlError(
                f"{self.url}: the server's file is {total} bytes, its signed frame index"
                f" describes {described}; refused"
            )
        numbers = choice.choose(frames)
        written = self._frames(frames, numbers, validator, partial_tail(index, numbers, total))
        os.replace(partial_path(self.dest), self.dest)
        return Fetched(
            self.dest,
            signed,
            written[0],
            written[1],
            FrameCount(len(numbers), len(frames), total),
        )

    def _signature(self) -> Path:
        """The signature, in place (the whole bundle's, so the fallback can keep it)."""
        signature = signature_path(self.dest)
        got = download_file(
            self.session,
            self.url + ".minisig",
            partial_path(signature),
            self.deadline,
            size_cap=self.size_cap,
            say=self.say,
            optional=True,
        )
        if got is None:
            raise FullDownload("no signature beside it")
        os.replace(partial_path(signature), signature)
        return signature

    def _index(self, claim: IndexDigest) -> tuple[bytes, Validator, int]:
        """The index frame (the file's last claim.size bytes), the validator of the file it
        came from, and the file's size; refused unless it hashes to the claim."""
        if claim.size > self.size_cap:
            raise Final(f"a frame index of {claim.size} bytes is over the {self.size_cap} cap")
        found: list[tuple[bytes, Validator, int]] = []

        def attempt() -> None:
            with http_errors():
                try:
                    part = open_range(self.session, self.url, self.deadline, tail=claim.size)
                except RangeMismatch as exc:
                    raise _Changed(f"asked for the frame index: {exc.line}") from None
                with part.response:
                    if part.response.status_code == 200:
                        raise FullDownload("the server ignores Range (HTTP 200)")
                    if part.total is None:
                        raise FullDownload(
                            "the server does not say the file's size (Content-Range)"
                        )
                    data = _read_exactly(part, claim.size, self.deadline)
            found.append((data, part.validator, part.total))

        self._retrying(attempt, "frame index")
        index, validator, total = found[0]
        if hashlib.sha256(index).hexdigest() != claim.sha256:
            if self._signature_changed():
                raise _Changed("a new version was published")
            raise OvlError(f"{self.url}: frame index does not match its signature (tampered)")
        return index, validator, total

    def _signature_changed(self) -> bool:
        """Whether the server's signature is now another than the one fetched first."""
        signature = signature_path(self.dest)
        again = signature.with_name(signature.name + ".again")
        try:
            got = download_file(
                self.session,
                self.url + ".minisig",
                again,
                self.deadline,
                size_cap=self.size_cap,
                say=self.say,
                optional=True,
            )
            return got is None or again.read_bytes() != signature.read_bytes()
        finally:
            again.unlink(missing_ok=True)

    def _frames(
        self, frames: list[Frame], numbers: list[int], validator: Validator, tail: bytes
    ) -> tuple[int, str]:
        """The frames `numbers` then `tail` into dest's `.part`: (bytes written, sha256)."""
        check = _FrameCheck(self.url, frames, numbers)
        with open(partial_path(self.dest), "wb") as out:
            sink = _Sink(out, check, self.size_cap)
            for offset, length in frame_ranges(frames, numbers):
                self._range(offset, length, validator, sink)
            sink.frames_done()
            sink.write(tail)
        return sink.written, sink.digest.hexdigest()

    def _range(self, offset: int, length: int, validator: Validator, sink: _Sink) -> None:
        """Bytes [offset, offset + length) of the bundle into `sink`, resumed after a drop."""
        got = 0

        def attempt() -> None:
            nonlocal got
            start = offset + got
            try:
                with http_errors():
                    part = open_range(
                        self.session,
                        self.url,
                        self.deadline,
                        start=start,
                        end=offset + length - 1,
                        validator=validator,
                    )
            except RangeMismatch as exc:
                raise _Changed(f"asked for bytes from {start}: {exc.line}") from None
            with part.response:
                if part.response.status_code == 200 or validator.contradicts(part.validator):
                    raise _Changed("the bundle changed on the server (another validator)")
                try:
                    with http_errors():
                        for chunk in part.response.iter_content(CHUNK):
                            chunk = chunk[: length - got]
                            sink.write(chunk)
                            got += len(chunk)
                            self.deadline.progress()
                            if got == length:
                                break
                except Transient as exc:  # mid-body: say where it stopped
                    raise Transient(f"{exc.line} at byte {offset + got}") from None
            if got < length:
                raise Transient(f"truncated: connection closed at byte {offset + got}")

        self._retrying(attempt, f"bytes {offset}-{offset + length - 1}")

    def _retrying(self, attempt: Callable[[], None], what: str) -> None:
        retrying(
            attempt, deadline=self.deadline, say=lambda line: self.say(f"{self.url} {what} {line}")
        )


def _read_exactly(part: Part, size: int, deadline: Deadline) -> bytes:
    """The body of `part`, which must be `size` bytes; Transient when it stops short."""
    data = bytearray()
    for chunk in part.response.iter_content(CHUNK):
        data += chunk
        deadline.progress()
        if len(data) > size:
            raise Transient(f"the server sent more than the {size} bytes asked for")
    if len(data) < size:
        raise Transient(f"truncated: connection closed at {len(data)} of {size} bytes")
    return bytes(data)


class _FrameCheck:
    """The frames being fetched, in order: each one's bytes hashed as they pass, and compared
    with the index's sha256 when the frame is complete."""

    def __init__(self, url: str, frames: list[Frame], numbers: list[int]) -> None:
        self._url = url
        self._frames = frames
        self._numbers = numbers
        self._at = 0  # position in `numbers`
        self._left = frames[numbers[0]].compressed if numbers else 0
        self._digest = hashlib.sha256()

    def feed(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._at == len(self._numbers):
                raise Final(f"{self._url}: more bytes than the frames asked for")
            take = min(self._left, len(view))
            self._digest.update(view[:take])
            view, self._left = view[take:], self._left - take
            if not self._left:
                self._frame_done()

    def _frame_done(self) -> None:
        number = self._numbers[self._at]
        if self._digest.hexdigest() != self._frames[number].sha256:
            raise Final(
                f"{self._url}: frame {number} does not match its sha256 in the signed frame"
                " index (tampered or replaced); refused"
            )
        self._at += 1
        self._digest = hashlib.sha256()
        if self._at < len(self._numbers):
            self._left = self._frames[self._numbers[self._at]].compressed


class _Sink:
    """The partial bundle being written: frames checked first, all of it hashed and capped."""

    def __init__(self, out: IO[bytes], check: _FrameCheck, size_cap: int) -> None:
        self._out = out
        self._check: _FrameCheck | None = check
        self._size_cap = size_cap
        self.written = 0
        self.digest = hashlib.sha256()

    def write(self, data: bytes) -> None:
        if self.written + len(data) > self._size_cap:
            raise Final(f"over the {self._size_cap} byte cap")
        if self._check is not None:
            self._check.feed(data)
        try:
            self._out.write(data)
        except OSError as exc:  # the local side: a full /run, say
            raise Final(f"writing the partial bundle: {exc.strerror or exc}") from None
        self.digest.update(data)
        self.written += len(data)

    def frames_done(self) -> None:
        """What is written from now on is not frames (the index and the table)."""
        self._check = None
