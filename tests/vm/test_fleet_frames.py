"""Real boots fetching only their frames of a fleet bundle from Debian's nginx (Range, strong
ETag, If-Range as nginx does them): the agent's fetch line says how many bytes and frames of
the total it fetched, nginx's access log counts what it sent, and a hostile server (a frame or
an index the signer did not sign) is refused in one line with nothing applied."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from ovl.format.frameindex import Frame, encode_index, read_index
from tests.vm.conftest import Guests
from tests.vm.test_boot import ALPHA_MAC, ON_IMAGE, alpha, fleet_tree
from tests.vmkit.nginx import NginxStatic

pytestmark = pytest.mark.vm

PackBundle = Callable[..., Path]
URL = "http://10.0.2.100/fleet.ovl"
# tests/vmkit/nginx.py's access log line
ACCESS = re.compile(
    r'GET /fleet\.ovl HTTP/1\.1 "(?P<range>[^"]*)" "(?P<if_range>[^"]*)" (?P<status>\d+)'
    r" (?P<sent>\d+)"
)
FETCHED = re.compile(
    rf"ovl: fetch: {re.escape(URL)} ok (?P<got>[\d.]+) of (?P<total>[\d.]+) MB"
    r" \((?P<frames>\d+) of (?P<of>\d+) frames\) signed .* ms"
)


def _big_fleet(pack_bundle: PackBundle) -> Path:
    """fleet_tree's alpha and beta beside 40 other machines' layers of ~120 kB each (a few
    layers per frame): ~2.5 MB, of which alpha needs the base's frames and its own."""
    tree = fleet_tree()
    for index in range(40):
        tree[f"layers/10-52:54:00:0b:00:{index:02x}/etc/key"] = os.urandom(60_000).hex() + "\n"
    return pack_bundle("fleet.ovl", tree)


def _frames(bundle: Path) -> list[Frame]:
    with bundle.open("rb") as raw:
        frames = read_index(raw)
    assert frames is not None
    return frames


def _sent(nginx: NginxStatic) -> list[re.Match[str]]:
    return [m for m in map(ACCESS.fullmatch, nginx.requests()) if m]


def test_a_boot_fetches_only_its_frames_from_nginx_and_says_how_much(
    guests: Guests, pack_bundle: PackBundle, test_root: Path, tmp_path: Path
) -> None:
    bundle = _big_fleet(pack_bundle)
    size = bundle.stat().st_size
    with NginxStatic(bundle.parent, tmp_path / "nginx") as nginx:
        seen = guests.finish(guests.start(ON_IMAGE, nginx.port, alpha(test_root)))
        fetches = _sent(nginx)
    assert seen.files["/etc/hostname"] == "alpha" and seen.files["/etc/role"] == "web"
    assert seen.files["/etc/motd"] == "fleet motd"
    line = next(m for m in map(FETCHED.fullmatch, seen.agent_lines()) if m)
    assert int(line["of"]) == len(_frames(bundle)) >= 10
    assert 2 <= int(line["frames"]) <= 4
    assert float(line["total"]) == round(size / 1e6, 1)
    # every request a range (the index from the end, then runs of frames), all 206
    assert fetches and all(f["range"].startswith("bytes=") for f in fetches)
    assert {f["status"] for f in fetches} == {"206"}
    assert all(f["if_range"] != "-" for f in fetches[1:])  # nginx's strong ETag
    sent = sum(int(f["sent"]) for f in fetches)
    assert sent < size / 4, (sent, size)
    assert seen.report is not None
    frames = seen.report["bundle"]["frames"]
    assert frames["bundle_bytes"] == size and frames["fetched"] == int(line["frames"])


def _tampered_base(bundle: Path) -> str:
    """One byte of the first frame (the base: every machine's) changed."""
    data = bytearray(bundle.read_bytes())
    data[_frames(bundle)[0].compressed // 2] ^= 1
    bundle.write_bytes(bytes(data))
    return (
        f"{URL}: frame 0 does not match its sha256 in the signed frame index (tampered or"
        " replaced); refused"
    )


def _lying_index(bundle: Path) -> str:
    """The index rewritten to hide alpha's layer: its frame labelled as nobody's."""
    frames = _frames(bundle)
    alphas = [n for n, f in enumerate(frames) if any(ALPHA_MAC in name for name in f.layers)]
    assert alphas
    lying = [
        replace(f, layers=("10-52:54:00:ff:ff:ff",)) if n in alphas else f
        for n, f in enumerate(frames)
    ]
    body = bundle.read_bytes()[: sum(f.compressed for f in frames)]
    bundle.write_bytes(body + encode_index(lying))
    return f"{URL}: frame index does not match its signature (tampered)"


@pytest.mark.parametrize("hostile", [_tampered_base, _lying_index])
def test_a_hostile_server_is_refused_in_one_line_and_nothing_is_applied(
    guests: Guests,
    pack_bundle: PackBundle,
    test_root: Path,
    tmp_path: Path,
    hostile: Callable[[Path], str],
) -> None:
    """The genuine signature beside a bundle whose bytes are not the signed ones, on a server
    that serves ranges: refused before anything is decoded, the bare image boots."""
    bundle = _big_fleet(pack_bundle)
    reason = hostile(bundle)
    with NginxStatic(bundle.parent, tmp_path / "nginx") as nginx:
        seen = guests.finish(guests.start(ON_IMAGE, nginx.port, alpha(test_root)))
        fetches = _sent(nginx)
    assert seen.booted
    assert seen.files["/etc/hostname"] == "base-image"
    assert seen.files["/etc/motd"] == "<missing>"
    failed = f"ovl: fetch: {URL} failed: "
    assert [line for line in seen.agent_lines() if line.startswith(failed)] == [failed + reason]
    assert seen.report is not None and seen.report["bundle"] is None
    assert all(f["status"] == "206" for f in fetches)  # never fell back to the whole file
