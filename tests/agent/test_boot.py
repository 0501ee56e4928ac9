"""The whole boot on the host: real squashfs image, real HTTP on 127.0.0.1, real sealed bundles,
real mounts. Every assertion about the root reads the mounted /sysroot."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from ovl.agent.boot import BootPaths, Handover, boot
from ovl.agent.cmdline import Phase, parse_cmdline
from ovl.agent.console import Console
from ovl.tools.cli import main as ovl
from ovl.tools.pack import PackOptions, pack_directory
from ovl.tools.seal import load_recipients, seal_bundle
from tests.agent.bootkit import (
    MAC,
    LoopbackServer,
    fake_sysfs,
    free_port,
    make_bundle,
    make_fs_image,
    make_squashfs,
)
from tests.agent.syslog5424 import Receiver
from tests.conftest import Mounts
from tests.trust.trust_pki import Pki, make_pki

pytestmark = pytest.mark.subprocess

OTHER_MAC = "52:54:00:99:99:99"
LAYERS = {
    "10": {"etc/motd": "layer 10"},
    f"20-mac={MAC}": {"etc/hostname": "node-1"},
    f"30-mac={OTHER_MAC}": {"etc/hostname": "someone else"},
}
BASE = {"etc/fleet": "base", "etc/.wh.gone": ""}


@dataclass
class Booted:
    handover: Handover
    report: dict[str, Any]
    lines: list[str]
    sysroot: Path

    def read(self, path: str) -> str | None:
        target = self.sysroot / path
        return target.read_text() if target.exists() else None


@dataclass
class Machine:
    tmp: Path
    mounts: Mounts
    pki: Pki
    image: str  # loop device holding the squashfs root image
    paths: BootPaths

    def bundle(
        self,
        serial: int = 5,
        *,
        signed: bool = True,
        encrypt: bool = False,
        layers: dict[str, dict[str, str]] | None = None,
        pad: int = 0,
    ) -> Path:
        """A bundle made by GNU tar + zstd, sealed by the test PKI's signer when `signed`."""
        base = dict(BASE)
        if pad:
            base["var/pad"] = os.urandom(pad).hex()
        plain = make_bundle(self.tmp / f"plain-{serial}-{pad}.ovl", base, layers or LAYERS, serial)
        if not signed:
            return plain
        out = self.tmp / "ship" / f"fleet-{serial}{'-enc' if encrypt else ''}.ovl"
        seal_bundle(
            plain,
            out,
            signer_key=self.pki.signer_key,
            certificate=self.pki.cert,
            name="fleet",
            serial=serial,
            recipients=load_recipients(self.pki.node_recipient) if encrypt else [],
        )
        return out

    def boot(self, cmdline: str, *, root: bool = True) -> Booted:
        text = (f"ovl.root={self.image} " if root else "") + cmdline
        console = Console(stream=io.StringIO())
        handover = boot(parse_cmdline(text), self.paths, console)
        report = json.loads((self.paths.run_dir / "report.json").read_text())
        assert (self.paths.run_dir / "handover").read_text() == handover.render()
        return Booted(handover, report, console.lines, self.paths.sysroot)


@pytest.fixture
def machine(tmp_path: Path, mounts: Mounts) -> Iterator[Machine]:
    run = mounts.mount("tmpfs", tmp_path / "run", "-t", "tmpfs", "-o", "size=64m")
    image = make_squashfs(
        tmp_path / "root.sqfs",
        {"etc/os-release": "the image", "etc/hostname": "image", "etc/gone": "image file"},
    )
    paths = BootPaths(
        run_dir=run / "ovl",
        sysroot=tmp_path / "sysroot",
        sysfs=fake_sysfs(tmp_path / "sys"),
        keys_dir=(pki := make_pki(tmp_path / "pki")).keys,
        kmsg=None,
    )
    yield Machine(tmp_path, mounts, pki, mounts.loop(image), paths)


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as srv:
        yield srv


def _serve(server: LoopbackServer, bundle: Path, path: str = "/fleet.ovl") -> str:
    url = server.serve(path, bundle.read_bytes())
    sig = bundle.with_name(bundle.name + ".minisig")
    if sig.exists():
        server.serve(path + ".minisig", sig.read_bytes())
    return url


def _assert_fleet_root(booted: Booted) -> None:
    assert booted.handover.root == booted.sysroot and booted.handover.init == "/sbin/init"
    assert booted.read("etc/os-release") == "the image"
    assert booted.read("etc/fleet") == "base"
    assert booted.read("etc/motd") == "layer 10"
    assert booted.read("etc/hostname") == "node-1"  # the layer for this MAC, not the other
    assert booted.read("etc/gone") is None  # the base's whiteout hides the image's file


def _assert_bare_image(booted: Booted) -> None:
    assert booted.handover.root == booted.sysroot
    assert booted.read("etc/hostname") == "image"
    assert booted.read("etc/fleet") is None
    assert booted.report["bundle"] is None


def test_signed_bundle_over_http_boots_image_and_matched_layers(
    machine: Machine, server: LoopbackServer
) -> None:
    bundle = machine.bundle()
    booted = machine.boot(f"ovl={_serve(server, bundle)}")
    _assert_fleet_root(booted)
    report = booted.report
    assert report["bundle"]["serial"] == 5 and report["bundle"]["signer"] == "alice"
    assert (
        report["bundle"]["sha256"] == __import__("hashlib").sha256(bundle.read_bytes()).hexdigest()
    )
    assert report["layers"] == ["base", "10", f"20-mac={MAC}"]
    assert report["facts"]["macs"] == [MAC]
    assert set(report["timings_ms"]) >= {"facts", "fetch", "verify", "apply", "stack", "total"}
    assert report["errors"] == []
    assert booted.handover.render() == f"ROOT={booted.sysroot}\nINIT=/sbin/init\n"
    assert any(
        line.startswith("ovl: fetch: http://127.0.0.1") and " ok " in line for line in booted.lines
    )
    # Writes land in the tmpfs upper, reachable under the run dir after hand-over.
    (booted.sysroot / "etc" / "new").write_text("x")
    assert (machine.paths.run_dir / "upper" / "etc" / "new").exists()


def test_channels_fall_back_in_order_and_each_says_why(
    machine: Machine, server: LoopbackServer
) -> None:
    bundle = machine.bundle()
    failing = server.serve("/broken.ovl", b"", status=500)
    down = f"http://127.0.0.1:{free_port()}/fleet.ovl"
    booted = machine.boot(f"ovl={failing},{down},file:{bundle} ovl.timeout=2")
    _assert_fleet_root(booted)
    attempts = [(a["channel"], a["outcome"], a["reason"]) for a in booted.report["channels"]]
    # Each http channel is retried for ovl.timeout, then the next is tried.
    assert attempts[0][:2] == (failing, "fetch")
    assert re.fullmatch(r"HTTP 500 \(\d+ attempts\)", attempts[0][2])
    assert attempts[1][:2] == (down, "fetch")
    assert re.fullmatch(r"connection failed \(\d+ attempts\)", attempts[1][2])
    assert attempts[2][:2] == (f"file:{bundle}", "ok")
    assert 2000 <= booted.report["channels"][0]["ms"] < 4000


def test_tampered_bundle_is_refused_and_the_next_channel_wins(
    machine: Machine, server: LoopbackServer
) -> None:
    bundle = machine.bundle()
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered = server.serve("/fleet.ovl", bytes(data))
    server.serve("/fleet.ovl.minisig", bundle.with_name(bundle.name + ".minisig").read_bytes())
    booted = machine.boot(f"ovl={tampered},file:{bundle}")
    _assert_fleet_root(booted)
    first = booted.report["channels"][0]
    assert first["outcome"] == "verify" and "signature" in first["reason"]


def test_unsigned_bundle_is_refused_when_signing_is_required_so_the_image_boots(
    machine: Machine, server: LoopbackServer
) -> None:
    url = _serve(server, machine.bundle(signed=False))
    booted = machine.boot(f"ovl={url}")
    _assert_bare_image(booted)
    assert booted.report["channels"][0]["reason"].endswith("unsigned, refused (ovl.require=signed)")
    assert any("booting the bare image" in e for e in booted.report["recoverable_errors"])


def test_unsigned_bundle_applies_under_require_none(machine: Machine) -> None:
    booted = machine.boot(f"ovl=file:{machine.bundle(signed=False)} ovl.require=none")
    _assert_fleet_root(booted)
    assert booted.report["bundle"]["signer"] is None


def test_encrypted_bundle_opens_with_the_node_key(machine: Machine) -> None:
    bundle = machine.bundle(encrypt=True)
    booted = machine.boot(
        f"ovl=file:{bundle} ovl.require=encrypted ovl.key={machine.pki.node_identity}"
    )
    _assert_fleet_root(booted)
    assert booted.report["bundle"]["encrypted"] is True
    assert not [p for p in bundle.parent.iterdir() if p.name.endswith(".plain")]


def test_encrypted_bundle_without_the_key_falls_back_to_the_image(machine: Machine) -> None:
    booted = machine.boot(f"ovl=file:{machine.bundle(encrypt=True)} ovl.require=encrypted")
    _assert_bare_image(booted)
    assert booted.report["channels"][0]["outcome"] == "verify"


def _key_directory(machine: Machine, name: str) -> Path:
    """A directory of node keys (as on a CIK stick) holding this machine's key as `name`."""
    keys = machine.tmp / "keys"
    keys.mkdir(exist_ok=True)
    (keys / name).write_bytes(machine.pki.node_identity.read_bytes())
    (keys / "52-54-00-99-99-99").write_text("AGE-SECRET-KEY-1 not this machine's\n")
    return keys


def test_key_directory_gives_the_key_named_by_this_machines_mac(machine: Machine) -> None:
    keys = _key_directory(machine, MAC.replace(":", "-"))
    bundle = machine.bundle(encrypt=True)
    booted = machine.boot(f"ovl=file:{bundle} ovl.require=encrypted ovl.key={keys}/")
    _assert_fleet_root(booted)
    assert booted.report["bundle"]["encrypted"] is True


def test_key_directory_without_this_machines_key_refuses_the_bundle(machine: Machine) -> None:
    keys = _key_directory(machine, "52-54-00-00-00-01")
    bundle = machine.bundle(encrypt=True)
    booted = machine.boot(f"ovl=file:{bundle} ovl.require=encrypted ovl.key={keys}/")
    _assert_bare_image(booted)
    reason = booted.report["channels"][0]["reason"]
    assert reason == f"no key for this machine in {keys} (looked for {MAC.replace(':', '-')})"


def _with_disk(machine: Machine, loop: str) -> Machine:
    """The machine's sysfs lists one disk, vdz, whose device node is the loop device `loop`."""
    block = machine.paths.sysfs / "block" / "vdz"
    block.mkdir(parents=True)
    (block / "size").write_text("65536\n")
    dev = machine.tmp / "dev"
    dev.mkdir()
    (dev / "vdz").symlink_to(loop)
    machine.paths = replace(machine.paths, dev=dev)
    return machine


def test_cik_boot_refuses_a_machine_without_a_key_and_hands_over_a_rescue_shell(
    machine: Machine,
) -> None:
    disk = machine.mounts.loop(make_fs_image(machine.tmp / "data.img", "ext4", "data", 16))
    _with_disk(machine, disk)
    keys = _key_directory(machine, "52-54-00-00-00-01")
    bundle = machine.bundle(encrypt=True)
    try:
        booted = machine.boot(f"ovl=file:{bundle} ovl.key={keys}/ ovl.cik=boot")
        assert Path(f"/sys/block/{Path(disk).name}/ro").read_text().strip() == "1"
    finally:
        subprocess.run(["blockdev", "--setrw", disk], check=True)
    refusal = f"no key for this machine in {keys} (looked for {MAC.replace(':', '-')})"
    assert booted.lines[1] == f"ovl: key: this machine is refused: {refusal}"
    assert booted.handover == Handover(rescue=f"refused: {refusal}")
    assert booted.handover.render() == f"RESCUE='refused: {refusal}'\n"
    assert "ovl: rescue: vdz 32.0 MiB (read-only): ext4 LABEL=data" in booted.lines
    assert booted.report["rescue"]["disks"] == [
        {"name": "vdz", "size": 32 << 20, "model": "", "removable": False, "partitions": [],
         "read_only": True}
    ]  # fmt: skip
    assert booted.report["channels"] == [] and booted.report["bundle"] is None
    assert not os.path.ismount(booted.sysroot)


def test_cik_rescue_fetches_nothing_and_lists_the_disks(
    machine: Machine, server: LoopbackServer
) -> None:
    url = _serve(server, machine.bundle())
    booted = machine.boot(f"ovl={url} ovl.cik=rescue")
    assert booted.handover == Handover(rescue="ovl.cik=rescue")
    assert booted.report["rescue"] == {"reason": "ovl.cik=rescue", "disks": []}
    assert server.log.seen == []
    assert [line for line in booted.lines if line.startswith("ovl: fetch")] == []


def test_layer_that_fails_to_apply_falls_back_to_the_next_candidate(machine: Machine) -> None:
    bad = machine.bundle(serial=6, signed=False, layers={"not-a-number": {"etc/x": "x"}})
    good = machine.bundle(signed=False)
    booted = machine.boot(f"ovl=file:{bad},file:{good} ovl.require=none")
    _assert_fleet_root(booted)
    assert booted.report["channels"][0]["outcome"] == "apply"
    assert list((machine.paths.run_dir / "layers").iterdir()) != []


def test_full_tmpfs_is_one_line_and_the_image_still_boots(
    machine: Machine, server: LoopbackServer
) -> None:
    machine.mounts.mount("tmpfs", machine.paths.run_dir, "-t", "tmpfs", "-o", "size=1m")
    url = _serve(server, machine.bundle(signed=False, pad=2 * 1024 * 1024))
    booted = machine.boot(f"ovl={url} ovl.require=none")
    _assert_bare_image(booted)
    reason = booted.report["channels"][0]["reason"]
    assert "No space left on device" in reason and "\n" not in reason


def test_last_known_good_from_the_cache_when_every_channel_fails(
    machine: Machine, server: LoopbackServer
) -> None:
    state = machine.mounts.loop(
        make_fs_image(machine.tmp / "state.img", "ext4", "lkg" + os.urandom(4).hex(), 32)
    )
    cache = f"ovl.cache=part:{state}:/ovl"
    first = machine.boot(f"ovl={_serve(server, machine.bundle())} {cache}")
    _assert_fleet_root(first)
    assert any(line.startswith("ovl: cache: kept") for line in first.lines)
    server.routes.clear()
    second = machine.boot(f"ovl={server.base}/fleet.ovl {cache}")
    _assert_fleet_root(second)
    assert second.report["bundle"]["source"] == f"cache:part:{state}:/ovl/last-good.ovl"
    assert second.report["bundle"]["serial"] == 5


def test_replayed_older_bundle_is_refused_and_last_known_good_boots(
    machine: Machine, server: LoopbackServer
) -> None:
    state = machine.mounts.loop(
        make_fs_image(machine.tmp / "state.img", "ext4", "rp" + os.urandom(4).hex(), 32)
    )
    cache = f"ovl.cache=part:{state}:/ovl"
    machine.boot(f"ovl={_serve(server, machine.bundle(serial=5))} {cache}")
    older = machine.bundle(serial=4, layers={"10": {"etc/motd": "old"}})
    booted = machine.boot(f"ovl={_serve(server, older)} {cache}")
    _assert_fleet_root(booted)
    assert "older than the last accepted" in booted.report["channels"][0]["reason"]
    assert booted.report["bundle"]["serial"] == 5


def _net_image(
    machine: Machine, *, signed: bool = True, serial: int = 5, name: str = "base.sqfs"
) -> Path:
    """A squashfs root image, with `<image>.minisig` by the test PKI's signer when `signed`."""
    text = f"from the network, serial {serial}"
    image = make_squashfs(machine.tmp / "net.sqfs", {"etc/os-release": text})
    if signed:
        argv = ["sign", str(image), "--sign", str(machine.pki.signer_key), "--name", name]
        assert ovl([*argv, "--cert", str(machine.pki.cert), "--serial", str(serial)]) == 0
    return image


def _assert_image_refused(booted: Booted, machine: Machine, line: str) -> None:
    assert booted.handover.emergency == line
    assert booted.lines.count(f"ovl: emergency: {line}") == 1
    assert not os.path.ismount(booted.sysroot)
    assert not any((machine.paths.run_dir / "image-files").iterdir())  # no copy left in RAM


def _assert_signed_image_boots(booted: Booted, url: str) -> None:
    assert booted.read("etc/os-release") == "from the network, serial 5"
    assert f"ovl: stack: image {url}: signed by alice, serial 5" in booted.lines
    assert booted.report["recoverable_errors"] == []


def _assert_image_boots_with(booted: Booted, warning: str) -> None:
    assert booted.read("etc/os-release") == "from the network, serial 5"
    assert f"ovl: stack: {warning}" in booted.lines
    assert booted.report["recoverable_errors"] == [f"stack: {warning}"]


def test_image_downloaded_over_http_into_ram(machine: Machine, server: LoopbackServer) -> None:
    url = _serve(server, _net_image(machine), "/base.sqfs")
    _assert_signed_image_boots(machine.boot(f"ovl.root={url}", root=False), url)


def test_unsigned_image_over_http_is_refused_before_it_is_mounted(
    machine: Machine, server: LoopbackServer
) -> None:
    url = _serve(server, _net_image(machine, signed=False), "/base.sqfs")
    booted = machine.boot(f"ovl.root={url}", root=False)
    _assert_image_refused(booted, machine, f"image {url}: unsigned, refused (ovl.require=signed)")


def test_tampered_image_over_http_is_refused(machine: Machine, server: LoopbackServer) -> None:
    image = _net_image(machine)
    url = _serve(server, image, "/base.sqfs")
    server.serve("/base.sqfs", image.read_bytes()[:-1] + b"\xff")
    booted = machine.boot(f"ovl.root={url}", root=False)
    line = f"image {url}: signature does not match (tampered or truncated)"
    _assert_image_refused(booted, machine, line)


def test_unsigned_image_boots_with_a_warning_under_require_none(
    machine: Machine, server: LoopbackServer
) -> None:
    url = _serve(server, _net_image(machine, signed=False), "/base.sqfs")
    booted = machine.boot(f"ovl.root={url} ovl.require=none", root=False)
    _assert_image_boots_with(booted, f"image {url}: unsigned, accepted (ovl.require=none)")


def test_image_signed_under_another_name_is_refused_unless_the_url_names_it(
    machine: Machine, server: LoopbackServer
) -> None:
    url = _serve(server, _net_image(machine, name="other"), "/base.sqfs")
    refused = machine.boot(f"ovl.root={url}", root=False)
    line = (
        f"image {url}: signed as image 'other', expected 'base.sqfs'; refused"
        " (ovl.require=signed; the URL's fragment #name=other expects that name)"
    )
    _assert_image_refused(refused, machine, line)
    _assert_signed_image_boots(machine.boot(f"ovl.root={url}#name=other", root=False), url)


def test_image_signed_under_another_name_boots_with_a_warning_under_require_none(
    machine: Machine, server: LoopbackServer
) -> None:
    url = _serve(server, _net_image(machine, name="other"), "/base.sqfs")
    booted = machine.boot(f"ovl.root={url} ovl.require=none", root=False)
    warning = "signed as image 'other', expected 'base.sqfs', accepted (ovl.require=none)"
    _assert_image_boots_with(booted, f"image {url}: {warning}")


@pytest.mark.parametrize("bundle", [True, False], ids=["with-bundle", "image-only"])
def test_older_image_serial_is_refused_unless_rollback_is_allowed(
    machine: Machine, server: LoopbackServer, bundle: bool
) -> None:
    state = machine.mounts.loop(
        make_fs_image(machine.tmp / "state.img", "ext4", "ir" + os.urandom(4).hex(), 32)
    )
    # The replay state lives on the cache partition: saved with the last-known-good bundle,
    # or alone when the boot kept no new bundle.
    cache = f"ovl.cache=part:{state}:/ovl"
    fleet = f"ovl={_serve(server, machine.bundle())} {cache}" if bundle else cache
    url = _serve(server, _net_image(machine, serial=5), "/base.sqfs")
    first = machine.boot(f"ovl.root={url} {fleet}", root=False)
    assert first.read("etc/os-release") == "from the network, serial 5"
    replay = json.loads((machine.paths.run_dir / "replay.json").read_text())
    assert replay["serials"] == {"image base.sqfs": 5, **({"fleet": 5} if bundle else {})}
    kept = "kept as last-known-good" if bundle else "replay state (image serials) kept"
    assert f"ovl: cache: {kept} on part:{state}:/ovl" in first.lines
    _serve(server, _net_image(machine, serial=4), "/base.sqfs")
    second = machine.boot(f"ovl.root={url} {fleet}", root=False)
    line = (
        f"image {url}: serial 4 of image 'base.sqfs' is older than the last accepted (5);"
        " refusing a replay (ovl.require=...,allow-rollback overrides)"
    )
    _assert_image_refused(second, machine, line)
    third = machine.boot(f"ovl.root={url} {fleet} ovl.require=signed,allow-rollback", root=False)
    assert third.read("etc/os-release") == "from the network, serial 4"
    warning = f"image {url}: serial 4 older than 5, accepted (allow-rollback)"
    assert f"ovl: stack: {warning}" in third.lines
    assert f"stack: {warning}" in third.report["recoverable_errors"]
    assert not any("replay state" in line for line in third.lines)  # nothing new to keep


def test_nothing_to_boot_is_an_emergency_with_the_reason(machine: Machine) -> None:
    booted = machine.boot(f"ovl=file:{machine.tmp}/none.ovl", root=False)
    assert booted.handover.emergency == "no read-only image and no bundle layer: nothing to boot"
    assert booted.handover.render().startswith("EMERGENCY='no read-only image")
    assert not os.path.ismount(machine.paths.sysroot)


def test_require_bundle_forbids_booting_the_bare_image(machine: Machine) -> None:
    booted = machine.boot(f"ovl=file:{machine.tmp}/none.ovl ovl.require=signed,bundle")
    assert booted.handover.emergency is not None and "forbids" in booted.handover.emergency
    assert not os.path.ismount(machine.paths.sysroot)


@pytest.mark.parametrize("phase", list(Phase))
def test_break_stops_before_its_phase_and_a_rerun_boots(machine: Machine, phase: Phase) -> None:
    bundle = machine.bundle()
    stopped = machine.boot(f"ovl=file:{bundle} ovl.break={phase.value}")
    assert stopped.handover == Handover(break_at=phase)
    assert stopped.handover.render() == f"BREAK={phase.value}\n"
    assert os.path.ismount(machine.paths.sysroot) == (phase is Phase.HANDOVER)
    _assert_fleet_root(machine.boot(f"ovl=file:{bundle}"))


def test_persistent_upper_that_is_missing_falls_back_to_tmpfs(machine: Machine) -> None:
    booted = machine.boot(
        f"ovl=file:{machine.bundle()} ovl.upper=part:LABEL=absent{os.getpid()}:/u ovl.timeout=0.3"
    )
    _assert_fleet_root(booted)
    assert booted.report["root"]["upper"] == "tmpfs"
    assert "using tmpfs" in booted.report["root"]["notes"][0]
    assert any("using tmpfs" in e for e in booted.report["recoverable_errors"])


def test_missing_cache_disk_is_waited_for_once_and_the_boot_goes_on(machine: Machine) -> None:
    booted = machine.boot(
        f"ovl=file:{machine.tmp}/none.ovl ovl.cache=part:LABEL=absent{os.getpid()}:/c ovl.timeout=1"
    )
    _assert_bare_image(booted)
    assert any("did not appear within 1 s" in e for e in booted.report["recoverable_errors"])
    cache_attempt = booted.report["channels"][-1]
    assert cache_attempt["channel"].startswith("cache:")
    assert "did not appear" in cache_attempt["reason"]
    assert cache_attempt["ms"] < 500  # told at once: the disk was already waited for


def test_every_line_and_the_report_reach_the_log_host(
    machine: Machine, server: LoopbackServer
) -> None:
    with Receiver() as receiver:
        log = f"ovl.log=udp://127.0.0.1:{receiver.port}"
        booted = machine.boot(f"ovl={_serve(server, machine.bundle())} {log}")
        *lines, report = receiver.drain()  # sent before boot() returned
    _assert_fleet_root(booted)
    assert [m.msg for m in lines] == booted.lines
    assert {(m.app, m.facility) for m in lines} == {("ovl", 3)}
    assert [m.msgid for m in lines] == [line.split(": ")[1] for line in booted.lines]
    assert (report.msgid, report.severity) == ("report", 6)
    sent = json.loads(report.msg)
    assert sent["bundle"] == booted.report["bundle"] and sent["layers"] == booted.report["layers"]


def test_failed_boots_are_kept_on_the_cache_and_told_by_the_next_good_boot(
    machine: Machine, server: LoopbackServer
) -> None:
    state = machine.mounts.loop(
        make_fs_image(machine.tmp / "state.img", "ext4", "fb" + os.urandom(4).hex(), 32)
    )
    cache = f"ovl.cache=part:{state}:/ovl"
    unattended = f"{cache} ovl.require=signed,bundle ovl.emergency=reboot:5"
    first = machine.boot(f"ovl={server.base}/missing.ovl {unattended}")
    second = machine.boot(f"ovl={server.base}/missing.ovl {unattended}")
    reason = (
        "no bundle verified and applied, and ovl.require=...,bundle forbids booting without one"
    )
    assert first.handover.emergency == second.handover.emergency == reason
    assert first.handover.render().endswith("EMERGENCY_ACTION=reboot\nEMERGENCY_DELAY=5\n")
    told = (
        f"rebooting in 5 s (ovl.emergency); failed boot 2 in a row, recorded on part:{state}:/ovl"
    )
    assert f"ovl: emergency: {told}" in second.lines
    good = machine.boot(f"ovl={_serve(server, machine.bundle())} {unattended}")
    _assert_fleet_root(good)
    previous = good.report["previous_failures"]
    assert previous["count"] == 2
    assert [(r["reason"], r["action"]) for r in previous["reasons"]] == [(reason, "reboot")] * 2
    assert f"ovl: boot: 2 failed boot(s) before this one; the last: {reason}" in good.lines
    assert (
        machine.boot(f"ovl={_serve(server, machine.bundle())} {cache}").report["previous_failures"]
        is None
    )  # told once, then forgotten


def test_armoured_bundle_pasted_into_a_gist_boots(machine: Machine, server: LoopbackServer) -> None:
    raw = machine.bundle(signed=False).read_bytes()
    text = base64.encodebytes(raw).decode()
    armoured = f"-----BEGIN OVL BUNDLE-----\n{text}-----END OVL BUNDLE-----\n"
    server.serve("/gists/abc123/raw/fleet.txt", armoured.encode())
    booted = machine.boot(
        f"ovl=gist:abc123/fleet.txt ovl.gist_base={server.base}/gists ovl.require=none"
    )
    _assert_fleet_root(booted)
    assert booted.report["bundle"]["source"] == "gist:abc123/fleet.txt"


def _packed(machine: Machine, serial: int = 5) -> Path:
    """A bundle written by `ovl pack` (a frame index) and sealed (the index signed): LAYERS
    plus six other machines' layers big enough to sit in frames of their own."""
    tree = machine.tmp / f"packed-{serial}"
    for name, text in {**BASE, "ovl.json": json.dumps({"name": "fleet", "serial": serial})}.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    for layer, files in LAYERS.items():
        for name, text in files.items():
            (tree / "layers" / layer / name).parent.mkdir(parents=True, exist_ok=True)
            (tree / "layers" / layer / name).write_text(text)
    for index in range(6):
        other = tree / "layers" / f"40-mac=52:54:00:77:00:{index:02x}"
        other.mkdir(parents=True)
        (other / "blob").write_bytes(os.urandom(300_000))
    plain = machine.tmp / f"packed-{serial}.ovl"
    pack_directory(tree, plain, PackOptions())
    out = machine.tmp / "ship" / f"packed-{serial}.ovl"
    seal_bundle(
        plain,
        out,
        signer_key=machine.pki.signer_key,
        certificate=machine.pki.cert,
        name="fleet",
        serial=serial,
    )
    return out


def test_only_this_machines_frames_are_fetched_and_kept_for_offline_boots(
    machine: Machine, server: LoopbackServer
) -> None:
    """The cache keeps the partial bundle: the next boot verifies it offline, frame by frame;
    a machine whose facts changed is refused it (its own layer would be missing)."""
    state = machine.mounts.loop(
        make_fs_image(machine.tmp / "state.img", "ext4", "fr" + os.urandom(4).hex(), 32)
    )
    cache = f"ovl.cache=part:{state}:/ovl"
    bundle = _packed(machine)
    url = _serve(server, bundle)
    first = machine.boot(f"ovl={url} {cache}")
    _assert_fleet_root(first)
    fetched = first.report["bundle"]
    frames = fetched["frames"]
    assert frames["bundle_bytes"] == bundle.stat().st_size and frames["fetched"] < frames["of"]
    assert fetched["bytes"] < bundle.stat().st_size / 4
    line = next(line for line in first.lines if line.startswith(f"ovl: fetch: {url} ok "))
    shown = f"of {frames['bundle_bytes'] / 1e6:.1f} MB ({frames['fetched']} of {frames['of']}"
    assert shown in line and line.endswith(" ms") and " signed " in line
    assert any(line.startswith("ovl: cache: kept") for line in first.lines)

    server.routes.clear()
    offline = machine.boot(f"ovl={url} {cache}")
    _assert_fleet_root(offline)
    assert offline.report["bundle"]["source"] == f"cache:part:{state}:/ovl/last-good.ovl"

    new_nic = ("52:54:00:77:00:03",)  # a layer in a frame of its own, not fetched
    stranger = replace(
        machine, paths=replace(machine.paths, sysfs=fake_sysfs(machine.tmp / "sys2", new_nic))
    )
    refused = stranger.boot(f"ovl={url} {cache}")
    assert refused.read("etc/hostname") == "image" and refused.report["bundle"] is None
    reason = refused.report["channels"][-1]["reason"]
    assert "lacks 1 frame(s) this machine reads" in reason and "other facts" in reason


def test_a_frame_the_signer_did_not_sign_is_refused_and_nothing_is_applied(
    machine: Machine, server: LoopbackServer
) -> None:
    bundle = _packed(machine)
    data = bytearray(bundle.read_bytes())
    data[len(data) // 2] ^= 1  # inside another machine's frame: not fetched, no harm
    data[200] ^= 1  # inside the first frame (the base): every machine's
    server.serve("/fleet.ovl", bytes(data))
    server.serve("/fleet.ovl.minisig", bundle.with_name(bundle.name + ".minisig").read_bytes())
    booted = machine.boot(f"ovl={server.base}/fleet.ovl")
    _assert_bare_image(booted)
    attempt = booted.report["channels"][0]
    assert attempt["outcome"] == "fetch"
    assert attempt["reason"] == (
        f"{server.base}/fleet.ovl: frame 0 does not match its sha256 in the signed frame index"
        " (tampered or replaced); refused"
    )
    assert not (machine.paths.run_dir / "fetched" / "bundle.ovl").exists()


def test_fetch_full_downloads_an_indexed_bundle_whole(
    machine: Machine, server: LoopbackServer
) -> None:
    bundle = _packed(machine)
    booted = machine.boot(f"ovl={_serve(server, bundle)} ovl.fetch=full")
    _assert_fleet_root(booted)
    assert "frames" not in booted.report["bundle"]
    assert booted.report["bundle"]["bytes"] == bundle.stat().st_size
    assert [headers.get("Range") for _, headers in server.log.seen] == [None, None]
