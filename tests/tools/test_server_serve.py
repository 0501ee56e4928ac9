"""`ovl server serve` as an admin runs it: a log line per request, a read-only status page at
`/`, one line and exit 1 on an occupied port, exit 130 on Ctrl-C."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from ovl.tools.cli import main
from ovl.tools.keys import new_signing_pair
from ovl.tools.server.store import Store
from tests.tools.server_fixtures import OVL, accept, delta_file, free_port, make_bundle

pytestmark = pytest.mark.subprocess

MAC = "52:54:00:aa:bb:01"
ZERO_SHA = "0" * 64


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """Profile lab (version 1, unsigned) and machine alpha with one delta."""
    srv = tmp_path / "srv"
    assert (
        main(
            [
                "server",
                "--root",
                str(srv),
                "import",
                "lab",
                str(make_bundle(tmp_path / "v1.ovl", {})),
            ]
        )
        == 0
    )
    _, pub = new_signing_pair(tmp_path / "node", "alpha", "node")
    argv = ["add-machine", "alpha", "--profile", "lab", "--mac", MAC, "--key", str(pub)]
    assert main(["server", "--root", str(srv), *argv]) == 0
    accept(Store(srv), "alpha", delta_file(tmp_path, "a", {"etc/x": b"x\n"}), 1)
    return srv


@pytest.fixture
def served(root: Path, tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """The server on a free port: (url, process, its stderr file); killed at the end."""
    port = free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as err:
        proc = subprocess.Popen(
            [*OVL, "server", "--root", str(root), "serve", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while b"serving" not in log.read_bytes():
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the server did not say it is serving"
            time.sleep(0.05)
        yield url, proc, log
    finally:
        proc.kill()
        proc.wait()


def log_lines(log: Path, count: int) -> list[str]:
    """The request lines once `count` of them are written (they follow the response start)."""
    deadline = time.monotonic() + 10
    while True:
        lines = [line for line in log.read_text().splitlines() if " machine=" in line]
        if len(lines) >= count or time.monotonic() > deadline:
            return lines
        time.sleep(0.05)


def test_every_request_is_logged_with_method_path_status_machine_and_bytes(
    served: tuple[str, subprocess.Popen[bytes], Path], root: Path
) -> None:
    url, _, log = served
    requests.get(f"{url}/", timeout=10)
    bundle = requests.get(f"{url}/profiles/lab/current/bundle.ovl", timeout=10)
    requests.head(f"{url}/profiles/lab/current/bundle.ovl", timeout=10)
    requests.put(f"{url}/deltas/alpha/{ZERO_SHA}.tar.zst", data=b"x" * 10, timeout=10)
    requests.get(f"{url}/no/such%0Aline", timeout=10)
    lines = log_lines(log, 5)
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ 127\.0\.0\.1"
    size = len(bundle.content)
    expected = [
        rf"{stamp} GET / 200 machine=- bytes=\d+",
        rf"{stamp} GET /profiles/lab/current/bundle\.ovl 200 machine=- bytes={size}",
        rf"{stamp} HEAD /profiles/lab/current/bundle\.ovl 200 machine=- bytes=0",
        rf"{stamp} PUT /deltas/alpha/{ZERO_SHA}\.tar\.zst 403 machine=alpha bytes=10",
        rf"{stamp} GET /no/such%0Aline 404 machine=- bytes=\d+",
    ]
    assert len(lines) == 5, lines
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)


def test_the_status_page_shows_profiles_versions_and_machines(
    served: tuple[str, subprocess.Popen[bytes], Path], root: Path
) -> None:
    url, _, _ = served
    page = requests.get(f"{url}/", timeout=10)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    text = re.sub(r"<[^>]+>", " ", page.text)
    assert "profile lab" in text
    assert re.search(r"\b1 +current +1 +\S+Z +import +unsigned\b", text), text
    delta_time = Store(root).deltas("alpha")[0].received_ns
    received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(delta_time / 1e9))
    assert re.search(rf"\balpha +lab +{MAC} +[0-9A-F]{{16}} +1 +1 +{received}\b", text), text
    assert "<script" not in page.text and "<form" not in page.text
    assert requests.post(f"{url}/", timeout=10).status_code == 405


def test_ctrl_c_stops_the_server_with_exit_130(
    served: tuple[str, subprocess.Popen[bytes], Path],
) -> None:
    _, proc, log = served
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 130
    assert log.read_text().splitlines()[-1] == "ovl: interrupted"


def test_an_occupied_port_is_one_line_and_exit_1(root: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [*OVL, "server", "--root", str(root), "serve", "--listen", f"127.0.0.1:{port}"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr == (
        f"ovl: error: --listen 127.0.0.1:{port}: cannot listen (Address already in use)\n"
    )
