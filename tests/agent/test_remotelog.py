"""ovl.log=udp://...: RFC 5424 messages checked by a strict parser, sent over real UDP to a
receiver on 127.0.0.1; held while the network is down (a fake sysfs says so), then sent in
order, the /init shim's lines first and the report last."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.agent.console import Console, Level
from ovl.agent.net.links import AnyLinkUp
from ovl.agent.remotelog import (
    MAX_DATAGRAM,
    LogTarget,
    RemoteLog,
    Severity,
    fit_report,
    format_message,
    start_remote_log,
)
from tests.agent.bootkit import fake_sysfs, write_tree
from tests.agent.syslog5424 import Receiver, parse_5424

NOW = 1_767_225_600.25  # 2026-01-01T00:00:00.25Z


def _message(text: str, **kw: object) -> bytes:
    fields: dict[str, object] = {
        "severity": Severity.INFO,
        "app": "ovl",
        "procid": "812",
        "msgid": "fetch",
        "hostname": "10.0.2.15",
        "epoch": NOW,
    }
    fields.update(kw)
    return format_message(text, **fields)


def test_a_line_is_one_strict_rfc5424_message() -> None:
    data = _message("ovl: fetch: http://10.0.2.100/fleet.ovl ok 1.2 MB signed 80 ms")
    assert data.startswith(b"<30>1 2026-01-01T00:00:00.250000Z 10.0.2.15 ovl 812 fetch - ")
    parsed = parse_5424(data)
    assert (parsed.facility, parsed.severity) == (3, 6)  # daemon, info
    assert parsed.msg == "ovl: fetch: http://10.0.2.100/fleet.ovl ok 1.2 MB signed 80 ms"
    assert parsed.structured_data == "-"


def test_unknown_fields_are_nil_and_an_unset_clock_gives_no_timestamp() -> None:
    parsed = parse_5424(_message("x", hostname=None, procid=None, msgid=None, epoch=0.0))
    assert (parsed.timestamp, parsed.hostname, parsed.procid, parsed.msgid) == ("-",) * 4


def test_header_fields_are_printable_ascii_within_their_limits() -> None:
    parsed = parse_5424(_message("x", hostname="node one\x07" + "h" * 300, msgid="m" * 40))
    assert parsed.hostname.startswith("node_one_") and len(parsed.hostname) == 255
    assert parsed.msgid == "m" * 32


def test_severities_map_from_the_console_levels() -> None:
    for severity, pri in ((Severity.ERR, 27), (Severity.WARNING, 28), (Severity.INFO, 30)):
        assert _message("x", severity=severity).startswith(f"<{pri}>1 ".encode())


@given(st.text(max_size=3000))
def test_any_line_fits_the_datagram_cut_on_a_character_boundary(text: str) -> None:
    data = _message(text)
    assert len(data) <= MAX_DATAGRAM
    parsed = parse_5424(data)  # strict UTF-8: no character cut in half
    assert text.encode("utf-8", errors="replace").decode().startswith(parsed.msg)


def test_a_report_too_big_for_a_datagram_drops_whole_parts_and_says_which() -> None:
    report = {
        "version": 1,
        "facts": {"macs": [f"52:54:00:00:00:{i:02x}" for i in range(100)]},
        "channels": [{"channel": "http://h/f.ovl", "reason": "x" * 100}] * 5,
        "bundle": {"name": "fleet", "serial": 7},
        "errors": [],
        "recoverable_errors": ["fetch: http://h/f.ovl: connection failed"],
    }
    text = fit_report(report, 900)
    doc = json.loads(text)
    assert len(text.encode()) <= 900
    assert doc["omitted"] == ["facts", "timings_ms", "channels"][: len(doc["omitted"])]
    assert "facts" not in doc and doc["bundle"] == {"name": "fleet", "serial": 7}
    assert json.loads(fit_report({"version": 1, "errors": []}, 900)) == {"version": 1, "errors": []}


@pytest.mark.parametrize(
    ("value", "target"),
    [
        ("udp://10.0.2.2", LogTarget("10.0.2.2", 514)),
        ("udp://logs.example:5514", LogTarget("logs.example", 5514)),
        ("udp://[fd00::2]/", LogTarget("fd00::2", 514)),
    ],
)
def test_log_target_forms(value: str, target: LogTarget) -> None:
    assert LogTarget.parse(value) == target


def test_lines_are_held_until_the_network_is_up_then_sent_in_order(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path / "sys")
    eth0 = sysfs / "class" / "net" / "eth0"
    write_tree(eth0, {"operstate": "down\n"})
    init_log = tmp_path / "init.log"
    init_log.write_text(
        f"{int(NOW)} ovl-init: starting (6.1.0)\n{int(NOW)} ovl-init: running agent\n"
    )
    console = Console(stream=io.StringIO())
    with Receiver() as receiver:
        target = LogTarget("127.0.0.1", receiver.port)
        remote = start_remote_log(target, AnyLinkUp(sysfs), console, init_log)
        assert remote is not None
        console.line("net", "DHCP on every NIC, up to 30 s")
        console.line("fetch", "http://h/f.ovl failed: connection failed", Level.WARNING)
        assert receiver.drain() == []  # the network is down: held
        write_tree(eth0, {"operstate": "up\n"})
        console.line("stack", "overlay root on /sysroot")
        got = [message for _, message in receiver.take(5)]
        remote.finish({"version": 1, "errors": []}, failed=False, window=1)
        report = receiver.take(1)[0][1]
    assert [(m.app, m.procid) for m in got[:2]] == [("ovl-init", "1"), ("ovl-init", "1")]
    assert got[0].msg == "ovl-init: starting (6.1.0)" and got[0].timestamp.startswith("2026-")
    assert [m.msg for m in got[2:]] == [
        "ovl: net: DHCP on every NIC, up to 30 s",
        "ovl: fetch: http://h/f.ovl failed: connection failed",
        "ovl: stack: overlay root on /sysroot",
    ]
    assert [(m.msgid, m.severity) for m in got[2:]] == [("net", 6), ("fetch", 4), ("stack", 6)]
    assert (report.msgid, report.severity) == ("report", 6)
    assert json.loads(report.msg) == {"version": 1, "errors": []}


def test_a_network_that_never_comes_costs_one_line_and_nothing_else(tmp_path: Path) -> None:
    sysfs = fake_sysfs(tmp_path / "sys")
    write_tree(sysfs / "class" / "net" / "eth0", {"operstate": "down\n"})
    console = Console(stream=io.StringIO())
    remote = start_remote_log(LogTarget("127.0.0.1", 9), AnyLinkUp(sysfs), console, tmp_path / "x")
    assert remote is not None
    console.line("fetch", "something")
    remote.finish({"version": 1}, failed=True, window=0.3)
    assert console.lines[-1] == "ovl: log: udp://127.0.0.1:9: network not up; 1 lines not sent"


def test_a_log_host_that_cannot_be_reached_is_one_warning_and_the_boot_goes_on(
    tmp_path: Path,
) -> None:
    console = Console(stream=io.StringIO())
    # Broadcast without SO_BROADCAST: refused by this machine's kernel, nothing is sent.
    remote = RemoteLog(
        LogTarget("255.255.255.255"), AnyLinkUp(fake_sysfs(tmp_path / "sys")), console.lines.append
    )
    remote.line("ovl: fetch: x", "fetch", Severity.INFO)
    remote.line("ovl: fetch: y", "fetch", Severity.INFO)
    assert console.lines == [
        "udp://255.255.255.255:514: Permission denied; boot lines are not sent"
    ]
    assert remote.sent == 0
