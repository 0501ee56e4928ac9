"""Fetching only a machine's frames (download/frames.py) against a loopback server that serves a
real packed and sealed bundle as a real server does (ETag, Range, If-Range) and in every way a
broken or hostile one might: what arrives is checked against the signed index before anything
is decoded, a server or bundle that does not allow it means the whole bundle, and bytes the
signer did not sign are refused in one line."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ovl.agent.channels.http import HttpChannel
from ovl.agent.console import Console
from ovl.agent.context import BootContext
from ovl.agent.download.frames import FrameChoice, FullDownload, fetch_frames
from ovl.agent.download.resume import CHUNK
from ovl.agent.fetched import Fetched
from ovl.agent.mounts import MountStack
from ovl.agent.verify import Verifier
from ovl.core.errors import OvlError
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle, machine_frames
from ovl.format.frameindex import Frame, encode_index, read_index
from ovl.tools.pack import PackOptions, pack_directory
from ovl.tools.seal import seal_bundle
from ovl.trust.policy import Policy
from tests.agent.bootkit import LoopbackServer
from tests.format.bundle_build import snapshot
from tests.trust.trust_pki import Pki, make_pki

LAYERS = 24
MINE = 13  # this machine's layer


def _mac(index: int) -> str:
    return f"52:54:00:00:04:{index:02x}"


FACTS = Facts(macs=(_mac(MINE),))


@dataclass(frozen=True)
class Sealed:
    bundle: bytes
    signature: bytes

    @property
    def frames(self) -> list[Frame]:
        frames = read_index(io.BytesIO(self.bundle))
        assert frames is not None
        return frames


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def _pack_and_seal(pki: Pki, where: Path, serial: int, armor: bool = False) -> Sealed:
    root = where / "tree"
    (root / "etc").mkdir(parents=True)
    (root / "etc/fleet.conf").write_text(f"serial {serial}\n")
    (root / "ovl.json").write_text(json.dumps({"name": "fleet", "serial": serial}))
    for index in range(LAYERS):
        folder = root / "layers" / f"10-mac={_mac(index)}" / "etc"
        folder.mkdir(parents=True)
        (folder / "hostname").write_text(f"host-{index} serial {serial}\n")
        (folder / "key").write_bytes(os.urandom(100_000))  # a frame holds two or three
    packed = where / "packed.ovl"
    pack_directory(root, packed, PackOptions())
    out = where / "ship" / "fleet.ovl"
    seal_bundle(
        packed,
        out,
        signer_key=pki.signer_key,
        certificate=pki.cert,
        name="fleet",
        serial=serial,
        armor=armor,
    )
    return Sealed(out.read_bytes(), out.with_name("fleet.ovl.minisig").read_bytes())


@pytest.fixture(scope="module")
def v5(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    return _pack_and_seal(pki, tmp_path_factory.mktemp("v5"), 5)


@pytest.fixture(scope="module")
def v6(pki: Pki, tmp_path_factory: pytest.TempPathFactory) -> Sealed:
    return _pack_and_seal(pki, tmp_path_factory.mktemp("v6"), 6)


@dataclass
class Agent:
    """The parts of the boot a fetch needs: where it lands, the console, the verifier."""

    tmp: Path
    pki: Pki
    console: Console
    replay: Path

    @property
    def verifier(self) -> Verifier:
        return Verifier(Policy(), self.pki.keys, None, self.replay, FACTS)

    def ctx(self) -> BootContext:
        return BootContext(self.tmp / "work", 10.0, self.console, MountStack())

    def choice(self) -> FrameChoice:
        verifier = self.verifier
        return FrameChoice(verifier.signed_index, lambda frames: machine_frames(frames, FACTS))

    def fetch(self, url: str) -> Fetched:
        return fetch_frames(url, self.dest, self.ctx(), self.choice())

    def channel(self, url: str) -> Fetched:
        return HttpChannel(url, self.choice()).fetch(self.dest, self.ctx())

    @property
    def dest(self) -> Path:
        return self.tmp / "fetched" / "bundle.ovl"

    def applied(self, fetched: Fetched) -> dict[str, tuple[object, ...]]:
        opened = self.verifier.open(fetched, self.ctx())
        target = self.tmp / "applied"
        with opened.path.open("rb") as source:
            apply_bundle(source, FACTS, target, split=False)
        return snapshot(target, root_mtime=False)

    def left_behind(self) -> list[str]:
        return sorted(p.name for p in self.dest.parent.iterdir())


@pytest.fixture
def agent(tmp_path: Path, pki: Pki) -> Agent:
    (tmp_path / "fetched").mkdir()
    return Agent(tmp_path, pki, Console(stream=io.StringIO()), tmp_path / "replay.json")


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def _serve(server: LoopbackServer, sealed: Sealed, **route: object) -> str:
    server.serve("/fleet.ovl.minisig", sealed.signature)
    return server.serve("/fleet.ovl", sealed.bundle, **route)


def _whole(tmp: Path, sealed: Sealed) -> dict[str, tuple[object, ...]]:
    target = tmp / "whole"
    apply_bundle(io.BytesIO(sealed.bundle), FACTS, target, split=False)
    return snapshot(target, root_mtime=False)


def _ranges(server: LoopbackServer) -> list[tuple[str | None, str | None]]:
    return [
        (headers.get("Range"), headers.get("If-Range"))
        for path, headers in server.log.seen
        if path == "/fleet.ovl"
    ]


def test_only_this_machines_frames_are_fetched_checked_and_applied_as_the_whole_bundle(
    agent: Agent, server: LoopbackServer, v5: Sealed, tmp_path: Path
) -> None:
    url = _serve(server, v5)
    fetched = agent.fetch(url)
    frames = v5.frames
    numbers = machine_frames(frames, FACTS)
    assert fetched.frames is not None
    assert (fetched.frames.frames, fetched.frames.of) == (len(numbers), len(frames))
    assert fetched.frames.bundle_bytes == len(v5.bundle)
    assert agent.applied(fetched) == _whole(tmp_path, v5)
    index = len(v5.bundle) - sum(frame.compressed for frame in frames)
    needed = index + sum(frames[n].compressed for n in numbers)
    assert needed <= server.log.body_bytes <= needed + len(v5.signature)
    assert server.log.body_bytes < len(v5.bundle) / 3
    asked = _ranges(server)
    assert asked[0] == (f"bytes=-{index}", None)  # the index first, from the end
    assert all(if_range == '"v1"' for _, if_range in asked[1:])  # the frames: this version's
    assert len(asked) <= 1 + len(numbers)
    assert agent.left_behind() == ["bundle.ovl", "bundle.ovl.minisig"]


def test_a_server_that_ignores_range_gets_the_whole_bundle_asked_for_once(
    agent: Agent, server: LoopbackServer, v5: Sealed, tmp_path: Path
) -> None:
    url = _serve(server, v5, ranges=False)
    fetched = agent.channel(url)
    assert fetched.frames is None and fetched.size == len(v5.bundle)
    line = f"ovl: fetch: {url}: the server ignores Range (HTTP 200); fetching the whole bundle"
    assert line in agent.console.lines
    assert agent.applied(fetched) == _whole(tmp_path, v5)


def test_a_bundle_without_a_signed_index_or_signature_is_fetched_whole(
    agent: Agent, server: LoopbackServer, pki: Pki, tmp_path: Path
) -> None:
    armoured = _pack_and_seal(pki, tmp_path / "armoured", 5, armor=True)
    url = _serve(server, armoured)
    assert agent.channel(url).frames is None
    assert (
        f"ovl: fetch: {url}: its signature names no frame index (an encrypted or armoured"
        " bundle, or one sealed without it); fetching the whole bundle"
    ) in agent.console.lines
    url = server.serve("/unsigned.ovl", armoured.bundle)
    with pytest.raises(FullDownload, match="no signature beside it"):
        agent.fetch(url)


def test_a_bundle_replaced_while_its_frames_are_fetched_is_fetched_again(
    agent: Agent, server: LoopbackServer, v5: Sealed, v6: Sealed, tmp_path: Path
) -> None:
    """The server publishes v6 after the agent read v5's index: the next frame request's
    If-Range no longer matches, the server answers 200, and the agent starts over."""
    url = _serve(server, v5)

    def publish_v6(path: str) -> None:
        if path == "/fleet.ovl":
            server.on_response = lambda path: None
            _serve(server, v6, etag='"v2"')

    server.on_response = publish_v6
    fetched = agent.fetch(url)
    assert f"ovl: fetch: {url}: the bundle changed on the server (another validator);" in (
        " ".join(agent.console.lines)
    )
    assert any("starting over (1 of 2)" in line for line in agent.console.lines)
    assert agent.verifier.open(fetched, agent.ctx()).serial == 6
    assert agent.applied(fetched) == _whole(tmp_path, v6)


def test_a_bundle_that_keeps_changing_is_fetched_whole_after_two_restarts(
    agent: Agent, server: LoopbackServer, v5: Sealed, v6: Sealed
) -> None:
    url = _serve(server, v5)
    published = [1]

    def publish_another(path: str) -> None:
        """A new version after every response to the bundle, until the fetch gives up."""
        if path == "/fleet.ovl" and published[0] < 6:
            published[0] += 1
            _serve(server, (v5, v6)[published[0] % 2], etag=f'"v{published[0]}"')

    server.on_response = publish_another
    with pytest.raises(FullDownload, match="the bundle changed on the server 3 times"):
        agent.fetch(url)
    assert agent.left_behind() == []


def _tampered_frame(sealed: Sealed, number: int) -> bytes:
    """The bundle with one byte of frame `number` changed, index and all else as signed."""
    data = bytearray(sealed.bundle)
    frames = sealed.frames
    data[sum(f.compressed for f in frames[:number]) + frames[number].compressed // 2] ^= 1
    return bytes(data)


def test_a_frame_whose_bytes_are_not_the_signed_ones_is_refused_in_one_line(
    agent: Agent, server: LoopbackServer, v5: Sealed
) -> None:
    mine = machine_frames(v5.frames, FACTS)[1]  # this machine's layer, not a base frame
    url = _serve(server, Sealed(_tampered_frame(v5, mine), v5.signature))
    with pytest.raises(OvlError) as caught:
        agent.channel(url)
    assert caught.value.line == (
        f"{url}: frame {mine} does not match its sha256 in the signed frame index (tampered or"
        " replaced); refused"
    )
    assert agent.left_behind() == []


def test_an_index_that_is_not_the_signed_one_is_refused_before_it_is_read(
    agent: Agent, server: LoopbackServer, v5: Sealed
) -> None:
    """A server (or cache) serving an index of its own: say, one that hides this machine's
    layer by labelling its frame as another's."""
    frames = v5.frames
    mine = machine_frames(frames, FACTS)[1]
    lying = [*frames[:mine], Frame(frames[mine].compressed, 0, False, ("99",)), *frames[mine + 1 :]]
    body = v5.bundle[: sum(frame.compressed for frame in frames)] + encode_index(lying)
    url = _serve(server, Sealed(body, v5.signature))
    with pytest.raises(OvlError, match="frame index does not match its signature"):
        agent.channel(url)
    assert [r for r, _ in _ranges(server) if r and not r.startswith("bytes=-")] == []


def test_a_server_that_says_another_size_is_refused(
    agent: Agent, server: LoopbackServer, v5: Sealed
) -> None:
    """The right index at the end of other bytes: the index's frames do not lead to it."""
    url = _serve(server, Sealed(b"\0" * 4096 + v5.bundle, v5.signature))
    with pytest.raises(OvlError) as caught:
        agent.fetch(url)
    described = len(v5.bundle)
    assert caught.value.line == (
        f"{url}: the server's file is {described + 4096} bytes, its signed frame index describes"
        f" {described}; refused"
    )


def test_ranges_answered_with_other_bytes_mean_restarts_then_the_whole_bundle(
    agent: Agent, server: LoopbackServer, v5: Sealed, tmp_path: Path
) -> None:
    """A 206 whose Content-Range is not what was asked: nothing of it is used; after the
    restarts the whole bundle is fetched, and verified whole."""
    url = _serve(server, v5, wrong_content_range=True)
    fetched = agent.channel(url)
    assert fetched.frames is None
    assert any("the bundle changed on the server 3 times" in line for line in agent.console.lines)
    assert agent.applied(fetched) == _whole(tmp_path, v5)


def test_an_older_serial_is_refused_before_any_frame_is_fetched(
    agent: Agent, server: LoopbackServer, v5: Sealed
) -> None:
    agent.replay.write_text(json.dumps({"version": 1, "serials": {"fleet": 9}}))
    url = _serve(server, v5)
    with pytest.raises(OvlError, match="serial 5 of bundle 'fleet' is older than the last"):
        agent.channel(url)
    assert _ranges(server) == []


def test_a_connection_dropped_inside_a_frame_resumes_where_it_stopped(
    agent: Agent, server: LoopbackServer, v5: Sealed, tmp_path: Path
) -> None:
    # The first two responses are cut after 270 kB: the index (smaller: whole), then the
    # first frames, of which one chunk (CHUNK, 256 KiB) had arrived whole.
    url = _serve(server, v5, drops=2, drop_after=270_000)
    fetched = agent.fetch(url)
    assert fetched.frames is not None
    assert agent.applied(fetched) == _whole(tmp_path, v5)
    first, again = [r for r, _ in _ranges(server)][1:3]
    assert first is not None and again is not None
    start, end = map(int, first.removeprefix("bytes=").split("-"))
    assert end - start > 270_000 > CHUNK
    assert again == f"bytes={start + CHUNK}-{end}"
    truncated = [line for line in agent.console.lines if "failed: truncated" in line]
    assert len(truncated) == 1 and f"at byte {start + CHUNK}" in truncated[0]
