"""Retries, backoff and resume of ovl.agent.download against a real HTTP server on 127.0.0.1 that
misbehaves as servers do: drops connections mid-body, stalls, ignores Range, replaces the file
mid-download, answers ranges wrongly, comes up late, asks for a pause (Retry-After)."""

from __future__ import annotations

import hashlib
import io
import math
import random
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.agent.channels.http import HttpChannel
from ovl.agent.console import Console
from ovl.agent.context import BootContext
from ovl.agent.deadline import Deadline
from ovl.agent.download.ranged import open_range
from ovl.agent.download.retry import Backoff, Final, Transient, retrying
from ovl.agent.download.session import http_errors, open_session
from ovl.agent.mounts import MountStack
from ovl.core.errors import OvlError
from tests.agent.bootkit import LoopbackServer, free_port
from tests.vmkit.cutter import CuttingRelay
from tests.vmkit.nginx import NginxStatic

BODY = random.Random(13).randbytes(3 * 1024 * 1024)
NEW_BODY = random.Random(14).randbytes(2 * 1024 * 1024)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def _ctx(tmp_path: Path, timeout: float = 5.0) -> BootContext:
    return BootContext(
        work_dir=tmp_path / "mnt",
        timeout=timeout,
        console=Console(stream=io.StringIO()),
        mounts=MountStack(),
    )


def _fetch(url: str, tmp_path: Path, timeout: float = 5.0) -> tuple[bytes, str, list[str]]:
    ctx = _ctx(tmp_path, timeout)
    fetched = HttpChannel(url).fetch(tmp_path / "b.ovl", ctx)
    return fetched.bundle.read_bytes(), fetched.sha256, ctx.console.lines


def _ranges(server: LoopbackServer) -> list[tuple[str | None, str | None]]:
    """(Range, If-Range) of each request for the bundle."""
    return [
        (headers.get("Range"), headers.get("If-Range"))
        for path, headers in server.log.seen
        if path == "/fleet.ovl"
    ]


def test_dropped_connections_resume_where_they_stopped_and_the_hash_covers_the_whole_file(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY, drops=2, drop_after=700_000)
    data, sha256, lines = _fetch(url, tmp_path)
    assert data == BODY and sha256 == hashlib.sha256(BODY).hexdigest()
    ranges = _ranges(server)
    assert len(ranges) == 3 and ranges[0] == (None, None)
    # Each retry asks for what is missing: from the last whole chunk it had written (what
    # was in flight when the connection dropped is asked for again), with the ETag.
    starts = [int(r.removeprefix("bytes=").removesuffix("-")) for r, _ in ranges[1:]]
    assert 0 < starts[0] <= 700_000 < starts[1] <= starts[0] + 700_000
    assert [if_range for _, if_range in ranges[1:]] == ['"v1"', '"v1"']
    failed = [line for line in lines if " failed: " in line]
    assert failed[0].startswith(f"ovl: fetch: {url} attempt 1 failed: truncated: connection")
    assert f" at {starts[0] / 1e6:.1f} of 3.1 MB; retry in " in failed[0]
    assert len(failed) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.ovl"]


def test_a_stall_mid_body_is_cut_by_the_read_timeout_and_resumed(
    server: LoopbackServer, tmp_path: Path
) -> None:
    # ovl.timeout=3: each read waits at most a third of it, leaving time to resume.
    url = server.serve("/fleet.ovl", BODY, stall_after=500_000, stall=4)
    start = time.monotonic()
    data, _, lines = _fetch(url, tmp_path, timeout=3)
    assert data == BODY
    assert time.monotonic() - start < 4  # not waiting out the 4 s stall
    assert any("attempt 1 failed: read timed out at 0." in line for line in lines)
    assert _ranges(server)[1][1] == '"v1"'
    assert 0 < int(_ranges(server)[1][0].removeprefix("bytes=").removesuffix("-")) <= 500_000


def test_a_server_that_ignores_range_sends_the_whole_file_and_it_starts_over(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY, drops=1, drop_after=900_000, ranges=False)
    data, sha256, lines = _fetch(url, tmp_path)
    assert data == BODY and sha256 == hashlib.sha256(BODY).hexdigest()
    assert _ranges(server)[1][0] is not None  # asked for a range, and got a 200
    assert f"ovl: fetch: {url}: the server sent the whole file again; starting over" in lines


def test_a_file_replaced_mid_download_is_fetched_whole_again_thanks_to_if_range(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY, drops=1, drop_after=900_000, replaced_by=NEW_BODY)
    data, sha256, _ = _fetch(url, tmp_path)
    # If-Range "v1" no longer matches: the server answers 200 with the new file, not a range
    # of it appended to the old one's first 900 kB.
    assert data == NEW_BODY and sha256 == hashlib.sha256(NEW_BODY).hexdigest()
    assert [if_range for _, if_range in _ranges(server)] == [None, '"v1"']


def test_a_range_of_another_version_is_refused_and_the_download_starts_over(
    server: LoopbackServer, tmp_path: Path
) -> None:
    """A server that answers the range but ignores If-Range: its 206 carries the new ETag."""
    url = server.serve(
        "/fleet.ovl", BODY, drops=1, drop_after=900_000, replaced_by=NEW_BODY, if_range=False
    )
    data, _, lines = _fetch(url, tmp_path)
    assert data == NEW_BODY
    assert any("the file changed on the server mid-download" in line for line in lines)
    assert _ranges(server)[2] == (None, None)  # after the refusal: a plain GET from byte 0


def test_a_206_for_other_bytes_than_asked_is_refused_and_the_download_starts_over(
    server: LoopbackServer, tmp_path: Path
) -> None:
    url = server.serve("/fleet.ovl", BODY, drops=1, drop_after=900_000, wrong_content_range=True)
    data, _, lines = _fetch(url, tmp_path)
    assert data == BODY
    asked = _ranges(server)[1][0]
    assert asked is not None
    start = int(asked.removeprefix("bytes=").removesuffix("-"))
    sent = f"asked for bytes from {start}, the server sent {start + 1}-"
    assert any(sent in line for line in lines)
    assert _ranges(server)[2] == (None, None)


class LateServer:
    """A LoopbackServer serving BODY that starts listening on `port` after `delay` seconds."""

    def __init__(self, port: int, delay: float) -> None:
        self.server: LoopbackServer | None = None
        self._timer = threading.Timer(delay, self._start, args=(port,))

    def _start(self, port: int) -> None:
        server = LoopbackServer(port)
        server.serve("/fleet.ovl", BODY)
        self.server = server.__enter__()

    def __enter__(self) -> LateServer:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()
        self._timer.join()
        if self.server is not None:
            self.server.__exit__()


def test_a_server_that_comes_up_late_is_reached_within_the_timeout(tmp_path: Path) -> None:
    port = free_port()
    with LateServer(port, delay=2.0):
        data, _, lines = _fetch(f"http://127.0.0.1:{port}/fleet.ovl", tmp_path, timeout=6)
    assert data == BODY
    refused = [line for line in lines if "failed: connection failed; retry in" in line]
    assert len(refused) >= 2  # retried with backoff, not three quick attempts and out


def test_no_time_limit_keeps_retrying_and_says_so(tmp_path: Path) -> None:
    port = free_port()
    with LateServer(port, delay=2.0):
        data, _, lines = _fetch(f"http://127.0.0.1:{port}/fleet.ovl", tmp_path, timeout=math.inf)
    assert data == BODY
    assert any(line.endswith("(no time limit)") for line in lines)


def test_retry_after_is_honoured(server: LoopbackServer, tmp_path: Path) -> None:
    url = server.serve("/fleet.ovl", BODY, fail_first=1, retry_after=1)
    start = time.monotonic()
    data, _, lines = _fetch(url, tmp_path)
    assert data == BODY and time.monotonic() - start >= 1.0
    assert any("attempt 1 failed: HTTP 500; retry in 1.0 s" in line for line in lines)


@pytest.mark.parametrize("status", [408, 425, 429, 502, 503])
def test_statuses_worth_another_attempt_are_retried(
    server: LoopbackServer, tmp_path: Path, status: int
) -> None:
    url = server.serve("/fleet.ovl", BODY, status=status)
    with pytest.raises(OvlError, match=rf"^HTTP {status} \(\d+ attempts\)$"):
        _fetch(url, tmp_path, timeout=3)  # each request may wait 1 s: a busy host answers


@pytest.mark.parametrize("status", [401, 403, 404, 410])
def test_client_errors_are_final(server: LoopbackServer, tmp_path: Path, status: int) -> None:
    url = server.serve("/fleet.ovl", BODY, status=status)
    with pytest.raises(OvlError, match=rf"^HTTP {status}$"):
        _fetch(url, tmp_path)
    assert len(server.log.seen) == 1


@pytest.mark.subprocess
def test_resumes_from_nginx_through_a_connection_that_drops(tmp_path: Path) -> None:
    """Interop with a real server: nginx's strong ETag, its 206 for Range + If-Range."""
    www = tmp_path / "www"
    www.mkdir()
    (www / "fleet.ovl").write_bytes(BODY)
    with (
        NginxStatic(www, tmp_path / "nginx") as nginx,
        CuttingRelay(nginx.port, path="/fleet.ovl", after=1_000_000) as relay,
    ):
        target = tmp_path / "dl"
        target.mkdir()
        data, sha256, lines = _fetch(f"http://127.0.0.1:{relay.port}/fleet.ovl", target)
        log = [line for line in nginx.requests() if line.startswith("GET /fleet.ovl ")]
    assert data == BODY and sha256 == hashlib.sha256(BODY).hexdigest()
    assert relay.cut == 1 and len(log) == 2
    assert log[0].startswith('GET /fleet.ovl HTTP/1.1 "-" "-" 200 ')
    assert re.fullmatch(r'GET /fleet.ovl HTTP/1.1 "bytes=\d+-" "\\x22[^"]+\\x22" 206 \d+', log[1])
    assert sum(" failed: truncated: connection closed at " in line for line in lines) == 1


def test_a_ranged_get_of_a_slice_checks_the_content_range(server: LoopbackServer) -> None:
    """The piece issue 12 builds on: bytes a-b of a file, with If-Range."""
    url = server.serve("/fleet.ovl", BODY)
    with open_session(None) as session, http_errors():
        part = open_range(session, url, Deadline(5), start=1000, end=1999)
        with part.response:
            assert part.start == 1000 and part.length == 1000 and part.total == len(BODY)
            assert part.response.content == BODY[1000:2000]
            assert part.validator.etag == '"v1"'


@given(
    failed=st.integers(min_value=1, max_value=200),
    first=st.floats(min_value=0.01, max_value=5),
    cap=st.floats(min_value=0.01, max_value=60),
    seed=st.integers(),
)
def test_backoff_is_full_jitter_under_a_doubling_ceiling_and_the_cap(
    failed: int, first: float, cap: float, seed: int
) -> None:
    backoff = Backoff(first=first, cap=cap, rng=random.Random(seed))
    pause = backoff.pause(failed)
    assert 0 <= pause <= min(cap, first * 2 ** (failed - 1))


def test_backoff_spreads_a_fleet_and_never_exceeds_the_cap() -> None:
    backoff = Backoff(first=0.5, cap=10, rng=random.Random(1))
    pauses = [backoff.pause(8) for _ in range(2000)]
    assert max(pauses) <= 10 and min(pauses) < 1 and 4 < sum(pauses) / len(pauses) < 6


def test_retrying_runs_until_the_deadline_with_one_attempt_on_it() -> None:
    calls: list[float] = []
    lines: list[str] = []
    deadline = Deadline(1.0)

    def attempt() -> None:
        calls.append(time.monotonic())
        raise Transient("refused")

    with pytest.raises(OvlError, match=r"^refused \(\d+ attempts\)$"):
        retrying(attempt, deadline=deadline, say=lines.append, backoff=Backoff(0.05, 0.3))
    assert len(calls) >= 4 and len(lines) == len(calls) - 1
    assert calls[-1] >= deadline.at - 0.05  # the last pause is cut so one attempt falls on it
    assert calls[-1] - calls[0] < 1.5


def test_retrying_stops_at_a_final_failure_at_once() -> None:
    calls = []

    def attempt() -> None:
        calls.append(1)
        raise Final("HTTP 404")

    with pytest.raises(Final):
        retrying(attempt, deadline=Deadline(5), say=lambda _: None)
    assert calls == [1]
