"""A 10,000-layer fleet bundle served by `ovl server serve` and by the shipped nginx config on the
real nginx: each machine (the agent's own fetch, verify and apply) transfers no more than the
index, the base frames and its own frames, plus 5%, counted on the server's side (a counting
WSGI middleware; nginx's `$body_bytes_sent`), and gets what the whole bundle gives it."""

from __future__ import annotations

import contextlib
import io
import json
import os
import random
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
import requests

from ovl.agent.console import Console
from ovl.agent.context import BootContext
from ovl.agent.download.frames import FrameChoice, fetch_frames
from ovl.agent.fetched import Fetched
from ovl.agent.mounts import MountStack
from ovl.agent.verify import Verifier
from ovl.core.errors import OvlError
from ovl.core.facts import Facts
from ovl.format.apply import apply_bundle, machine_frames
from ovl.format.frameindex import Frame, encode_index, read_index
from ovl.tools.pack import PackOptions, pack_directory
from ovl.tools.seal import seal_bundle
from ovl.tools.server.app import ServerApp
from ovl.tools.server.store import Store
from ovl.trust.policy import Policy
from tests.format.bundle_build import snapshot
from tests.tools.server_fixtures import free_port, ovl
from tests.tools.test_server_static import nginx_main_conf
from tests.trust.trust_pki import Pki, make_pki

pytestmark = pytest.mark.subprocess

LAYERS = 10_000
BUNDLE = "/profiles/fleet/current/bundle.ovl"
MACHINES = [0, 1, 4_999, 9_998, 9_999, None]  # None: a machine with no layer of its own
SLACK = 1.05


def _mac(index: int) -> str:
    return f"52:54:00:{index >> 16 & 255:02x}:{index >> 8 & 255:02x}:{index & 255:02x}"


def _facts(index: int | None) -> Facts:
    return Facts(macs=(_mac(index) if index is not None else "52:54:00:ff:ff:ff",))


@dataclass(frozen=True)
class Fleet:
    pki: Pki
    root: Path  # the server root: profile `fleet`, version 1, the sealed bundle
    bundle: Path  # as published


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Fleet:
    """10,000 one-machine layers (a config file and ~2 kB of key material each, ~25 MB in
    all) and a base, packed by `ovl pack`, sealed, imported into an ovl server root."""
    work = tmp_path_factory.mktemp("fleet")
    rng = random.Random(12)
    tree = work / "tree"
    (tree / "etc").mkdir(parents=True)
    (tree / "etc/fleet.conf").write_text("fleet = test\n")
    (tree / "ovl.json").write_text(json.dumps({"name": "fleet", "serial": 1}))
    for index in range(LAYERS):
        folder = tree / "layers" / f"10-mac={_mac(index)}" / "etc"
        folder.mkdir(parents=True)
        (folder / "host.conf").write_bytes(f"host = {index}\n".encode() + rng.randbytes(2000))
    pki = make_pki(work / "pki")
    plain = work / "plain.ovl"
    pack_directory(tree, plain, PackOptions())
    sealed = work / "ship" / "fleet.ovl"
    seal_bundle(
        plain, sealed, signer_key=pki.signer_key, certificate=pki.cert, name="fleet", serial=1
    )
    root = work / "srv"
    done = ovl("server", "--root", str(root), "import", "fleet", str(sealed))
    assert done.returncode == 0, done.stderr
    bundle = root / "profiles/fleet/versions/000001/bundle.ovl"
    assert bundle.read_bytes() == sealed.read_bytes()
    return Fleet(pki, root, bundle)


class CountingApp:
    """WSGI middleware: the response body bytes the app hands the server, all requests."""

    def __init__(self, app: Callable[..., Iterable[bytes]]) -> None:
        self._app = app
        self._lock = threading.Lock()
        self.bytes = 0
        self.requests = 0

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self._lock:
            self.requests += 1
        for chunk in self._app(environ, start_response):
            with self._lock:
                self.bytes += len(chunk)
            yield chunk

    def reset(self) -> None:
        self.bytes = self.requests = 0


@dataclass
class Served:
    url: str
    counted: Callable[[], tuple[int, int]]  # (body bytes, requests) since the last reset
    reset: Callable[[], None]


@contextmanager
def _ovl_server(root: Path) -> Iterator[Served]:
    """`ovl server serve`'s app under waitress, in this process, its bytes counted."""
    from waitress.server import create_server

    counting = CountingApp(ServerApp(Store(root)))
    server = create_server(counting, host="127.0.0.1", port=0, threads=4)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        port = server.effective_port  # type: ignore[union-attr]
        yield Served(
            f"http://127.0.0.1:{port}",
            lambda: (counting.bytes, counting.requests),
            counting.reset,
        )
    finally:
        server.close()
        thread.join(timeout=10)


@contextmanager
def _nginx(server_block: str, port: int, work: Path, probe: bool = True) -> Iterator[Served]:
    """The real nginx running `server_block`, with an access log of `$body_bytes_sent`; up
    once a HEAD of the bundle is answered (`probe`, which a cache forwards), or its port."""
    work.mkdir()
    log = work / "access.log"
    conf = nginx_main_conf(work, server_block).replace(
        "    access_log off;\n",
        f"    log_format sent '$request $status $body_bytes_sent';\n    access_log {log} sent;\n",
    )
    (work / "nginx.conf").write_text(conf)
    proc = subprocess.Popen(
        ["nginx", "-p", str(work), "-c", str(work / "nginx.conf"), "-g", "daemon off;"],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    seen = [0]

    def lines() -> list[str]:
        return log.read_text().splitlines() if log.exists() else []

    def counted() -> tuple[int, int]:
        time.sleep(0.2)  # nginx writes the line once the response is sent
        new = lines()[seen[0] :]
        return sum(int(line.rsplit(" ", 1)[1]) for line in new), len(new)

    def reset() -> None:
        seen[0] = len(lines())

    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                requests.head(url + (BUNDLE if probe else "/"), timeout=2)
                break
            except requests.ConnectionError:
                assert proc.poll() is None and time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.05)
        while not lines():  # the probe's line, written once its response is sent
            assert time.monotonic() < deadline, "nginx logged no request"
            time.sleep(0.05)
        reset()
        yield Served(url, counted, reset)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _shipped_nginx(root: Path, work: Path) -> contextlib.AbstractContextManager[Served]:
    """The shipped config (`ovl server nginx-conf`); its upstream is never asked for bundles."""
    port = free_port()
    block = ovl("server", "--root", str(root), "nginx-conf", "--listen", f"127.0.0.1:{port}",
                "--upstream", f"127.0.0.1:{free_port()}")  # fmt: skip
    assert block.returncode == 0, block.stderr
    return _nginx(block.stdout, port, work)


@pytest.fixture(params=["ovl server", "nginx"])
def served(request: pytest.FixtureRequest, fleet: Fleet, tmp_path: Path) -> Iterator[Served]:
    if request.param == "nginx":
        with _shipped_nginx(fleet.root, tmp_path / "nginx") as nginx:
            yield nginx
    else:
        with _ovl_server(fleet.root) as server:
            yield server


@dataclass(frozen=True)
class Agent:
    """The agent's fetch for `machine` into `work`: its verifier, frame choice and console."""

    fleet: Fleet
    machine: int | None
    work: Path
    index_read: Callable[[], None] = lambda: None  # called once the signed index is read

    @property
    def facts(self) -> Facts:
        return _facts(self.machine)

    @property
    def verifier(self) -> Verifier:
        return Verifier(Policy(), self.fleet.pki.keys, None, None, self.facts)

    def ctx(self) -> BootContext:
        return BootContext(self.work, 30.0, Console(stream=io.StringIO()), MountStack())

    def fetch(self, url: str, ctx: BootContext) -> Fetched:
        def choose(frames: list[Frame]) -> list[int]:
            self.index_read()
            return machine_frames(frames, self.facts)

        (self.work / "fetched").mkdir(parents=True, exist_ok=True)
        choice = FrameChoice(self.verifier.signed_index, choose)
        return fetch_frames(url + BUNDLE, self.work / "fetched/bundle.ovl", ctx, choice)

    def left_behind(self) -> list[str]:
        return sorted(path.name for path in (self.work / "fetched").iterdir())


def _boot(
    fleet: Fleet,
    url: str,
    machine: int | None,
    work: Path,
    index_read: Callable[[], None] = lambda: None,
) -> Console:
    """The agent's fetch, verify and apply for `machine`, checked against what the whole
    bundle gives it; its console."""
    facts = _facts(machine)
    agent = Agent(fleet, machine, work, index_read)
    ctx = agent.ctx()
    fetched = agent.fetch(url, ctx)
    opened = agent.verifier.open(fetched, ctx)
    with opened.path.open("rb") as source:
        apply_bundle(source, facts, work / "partial", split=False)
    with fleet.bundle.open("rb") as source:
        apply_bundle(source, facts, work / "whole", split=False)
    got = snapshot(work / "partial", root_mtime=False)
    assert got == snapshot(work / "whole", root_mtime=False)
    assert ("etc/host.conf" in got) == (machine is not None)
    return ctx.console


def _budget(fleet: Fleet, machine: int | None) -> tuple[int, int]:
    """(index + this machine's frames, frames) of the published bundle."""
    with fleet.bundle.open("rb") as raw:
        frames = read_index(raw)
    assert frames is not None
    index = fleet.bundle.stat().st_size - sum(frame.compressed for frame in frames)
    numbers = machine_frames(frames, _facts(machine))
    return index + sum(frames[n].compressed for n in numbers), len(numbers)


def test_each_machine_transfers_only_the_index_base_and_its_own_frames(
    fleet: Fleet, served: Served, tmp_path: Path
) -> None:
    size = fleet.bundle.stat().st_size
    for number, machine in enumerate(MACHINES):
        served.reset()
        _boot(fleet, served.url, machine, tmp_path / f"machine-{number}")
        sent, asked = served.counted()
        needed, frames = _budget(fleet, machine)
        assert needed <= sent <= needed * SLACK, (machine, sent, needed)
        assert asked <= 2 + frames  # the signature, the index, runs of frames
        assert sent < size / 20


CACHE_BLOCK = """
    proxy_cache_path {cache} levels=1:2 keys_zone=ovl:10m max_size=1g inactive=1h
                     use_temp_path=off;
    upstream ovl_origin {{ server {origin}; keepalive 16; }}
    server {{
        listen 127.0.0.1:{port};
        location /profiles/ {{
            slice 1m;
            proxy_cache ovl;
            proxy_cache_key $uri$slice_range;
            proxy_set_header Range $slice_range;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_ignore_headers Cache-Control;
            proxy_cache_valid 200 206 5s;
            proxy_cache_revalidate on;
            proxy_cache_lock on;
            proxy_pass http://ovl_origin;
        }}
    }}
"""


def test_a_caching_proxy_serves_each_machine_its_frames_and_asks_the_origin_once(
    fleet: Fleet, tmp_path: Path
) -> None:
    """nginx as an HTTP cache (proxy_cache, slice 1m) in front of `ovl server serve`: machines
    get their frames through it within the same budget, and the origin sends each slice of
    the bundle at most once however many machines ask (docs/SERVER.md, "Caches and CDNs")."""
    port = free_port()
    with _ovl_server(fleet.root) as origin:
        block = CACHE_BLOCK.format(
            cache=tmp_path / "cache", origin=origin.url.removeprefix("http://"), port=port
        )
        with _nginx(block, port, tmp_path / "nginx", probe=False) as cache:
            origin.reset()
            for round_ in range(2):
                for number, machine in enumerate(MACHINES):
                    cache.reset()
                    _boot(fleet, cache.url, machine, tmp_path / f"round-{round_}-{number}")
                    sent, _ = cache.counted()
                    needed, _ = _budget(fleet, machine)
                    assert needed <= sent <= needed * SLACK, (machine, sent, needed)
                if round_ == 0:
                    first_round, _ = origin.counted()
            asked_origin, _ = origin.counted()
    assert first_round <= fleet.bundle.stat().st_size  # each slice once, at most
    assert asked_origin - first_round < 10_000  # the second round: revalidations at most


def _published(fleet: Fleet, where: Path, body: bytes) -> Path:
    """A server root publishing `body` as the fleet's current bundle beside the genuine
    signature."""
    current = where / "profiles/fleet/current"
    current.mkdir(parents=True)
    (current / "bundle.ovl").write_bytes(body)
    shutil.copy(fleet.bundle.with_name("bundle.ovl.minisig"), current)
    return where


MACHINE = 4_999


def _own_frame(fleet: Fleet) -> tuple[list[Frame], int, int]:
    """The index, MACHINE's own frame (not a base one) and its offset."""
    with fleet.bundle.open("rb") as raw:
        frames = read_index(raw)
    assert frames is not None
    own = next(n for n in machine_frames(frames, _facts(MACHINE)) if not frames[n].base)
    return frames, own, sum(frame.compressed for frame in frames[:own])


def _tampered_frame(fleet: Fleet) -> tuple[bytes, str]:
    frames, own, offset = _own_frame(fleet)
    data = bytearray(fleet.bundle.read_bytes())
    data[offset + frames[own].compressed // 2] ^= 1
    return bytes(data), f"frame {own} does not match its sha256 in the signed frame index"


def _other_bytes_for_a_range(fleet: Fleet) -> tuple[bytes, str]:
    """The frame's range holds other genuine bytes of the bundle (a cache keyed wrongly, say):
    those of the frames just before it."""
    frames, own, offset = _own_frame(fleet)
    data = bytearray(fleet.bundle.read_bytes())
    length = frames[own].compressed
    data[offset : offset + length] = data[offset - length : offset]
    return bytes(data), f"frame {own} does not match its sha256 in the signed frame index"


def _index_hiding_the_machines_layer(fleet: Fleet) -> tuple[bytes, str]:
    """An index whose entry for MACHINE's frame names another machine's layer instead."""
    frames, own, _ = _own_frame(fleet)
    lying = [*frames[:own], replace(frames[own], layers=(f"10-mac={_mac(LAYERS + 1)}",))]
    lying += frames[own + 1 :]
    body = fleet.bundle.read_bytes()[: sum(frame.compressed for frame in frames)]
    return body + encode_index(lying), "frame index does not match its signature (tampered)"


@pytest.mark.parametrize(
    "hostile", [_tampered_frame, _other_bytes_for_a_range, _index_hiding_the_machines_layer]
)
def test_a_hostile_server_is_refused_in_one_line_with_nothing_left(
    fleet: Fleet, tmp_path: Path, hostile: Callable[[Fleet], tuple[bytes, str]]
) -> None:
    """The genuine signature beside bytes the signer did not sign, served by the real nginx
    (shipped config): the fetch is refused (OvlError, one line: the boot tries its next
    channel) before any byte is decoded, and leaves nothing behind."""
    body, reason = hostile(fleet)
    root = _published(fleet, tmp_path / "srv", body)
    agent = Agent(fleet, MACHINE, tmp_path / "machine")
    with _shipped_nginx(root, tmp_path / "nginx") as nginx:
        ctx = agent.ctx()
        with pytest.raises(OvlError) as caught:
            agent.fetch(nginx.url, ctx)
    assert reason in caught.value.line and "\n" not in caught.value.line
    assert agent.left_behind() == []


def test_a_bundle_replaced_on_nginx_mid_fetch_is_detected_and_fetched_again(
    fleet: Fleet, tmp_path: Path
) -> None:
    """The file is replaced (same bytes, another inode and mtime: nginx's strong ETag changes)
    after the agent read its index: the frames' If-Range no longer matches, nginx answers 200,
    and the agent starts over, getting what the whole bundle gives it."""
    root = _published(fleet, tmp_path / "srv", fleet.bundle.read_bytes())
    current = root / "profiles/fleet/current/bundle.ovl"
    replaced = []

    def republish() -> None:
        if not replaced:
            fresh = current.with_name("bundle.ovl.new")
            shutil.copy(current, fresh)
            later = current.stat().st_mtime + 10
            os.utime(fresh, (later, later))
            os.replace(fresh, current)
            replaced.append(True)

    with _shipped_nginx(root, tmp_path / "nginx") as nginx:
        console = _boot(fleet, nginx.url, MACHINE, tmp_path / "machine", republish)
        _, asked = nginx.counted()
    said = " ".join(console.lines)
    assert "the bundle changed on the server (another validator); starting over (1 of 2)" in said
    assert replaced and asked <= 2 * (
        2 + len(machine_frames(_own_frame(fleet)[0], _facts(MACHINE)))
    )
