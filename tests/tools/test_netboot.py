"""Netboot: which script a machine gets (favors, fallback), what the script says, the files
that configure it (errors naming the JSON path, schemas that agree), `ovl netboot`'s bad input,
and the dnsmasq config checked by dnsmasq itself."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ovl.core.errors import BadInput
from ovl.tools.cli import main
from ovl.tools.netboot.answer import answer
from ovl.tools.netboot.app import host_url
from ovl.tools.netboot.choose import Chosen, Request, Unmatched, choose, parse_request
from ovl.tools.netboot.config import load_profile, load_settings
from ovl.tools.netboot.dnsmasq import ProxySettings, render
from ovl.tools.netboot.script import ECHO_WIDTH, kernel_cmdline
from ovl.tools.server.app import ServerApp
from ovl.tools.server.store import Store

MAC_A, MAC_B, MAC_X = "52:54:00:0d:00:01", "52:54:00:0d:00:02", "52:54:00:0d:00:09"
UUID_B = "d2d2d2d2-0000-4000-8000-000000000002"
BASE = "http://10.0.2.100"
SCHEMAS = resources.files("ovl.tools.netboot")


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return path


def profile(root: Path, name: str, boot: dict[str, Any], machines: dict[str, Any]) -> None:
    directory = root / "profiles" / name / "netboot"
    write(directory / "boot.json", boot)
    for file in ("vmlinuz", "initrd.img", "big-initrd.img", "base.sqfs", "extra.sqfs"):
        write(directory / file, "x")
    for entry, data in machines.items():
        write(directory / "machines" / f"{entry}.json", data)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """lab: alpha by MAC (two entries), a machine by UUID; web: beta's MAC."""
    root = tmp_path / "srv"
    boot = {"kernel": "vmlinuz", "initrd": "initrd.img", "images": ["base.sqfs"],
            "cmdline": "console=ttyS0"}  # fmt: skip
    profile(root, "lab", boot, {
        f"10-{MAC_A}": {"cmdline": "ovl.debug"},
        f"20-mac={MAC_A}": {"initrd": "big-initrd.img", "images": ["base.sqfs", "extra.sqfs"]},
        f"10-machine={UUID_B}": {},
    })  # fmt: skip
    profile(root, "web", {**boot, "cmdline": "quiet"}, {f"10-{MAC_B.replace(':', '')}": {}})
    return root


def profiles(root: Path) -> list[Any]:
    return [load_profile(root, name) for name in ("lab", "web")]


def test_a_machine_gets_every_matching_entry_of_its_profile_in_order(root: Path) -> None:
    chosen = choose(parse_request(f"mac={MAC_A}"), profiles(root))
    assert isinstance(chosen, Chosen)
    assert chosen.profile.profile == "lab"
    assert chosen.entries == (f"10-{MAC_A}", f"20-mac={MAC_A}")
    assert chosen.spec.kernel == "vmlinuz" and chosen.spec.initrd == "big-initrd.img"
    assert chosen.spec.images == ("base.sqfs", "extra.sqfs")
    assert chosen.spec.cmdline == "console=ttyS0 ovl.debug"


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        (f"mac={MAC_B.replace(':', '-')}", ("web", (f"10-{MAC_B.replace(':', '')}",))),
        (f"mac={MAC_X}&uuid={UUID_B.upper()}", ("lab", (f"10-machine={UUID_B}",))),
        (f"mac={MAC_X}&profile=web", ("web", ())),
    ],
)
def test_profile_by_mac_in_any_spelling_by_uuid_or_by_name(
    root: Path, query: str, expected: tuple[str, tuple[str, ...]]
) -> None:
    chosen = choose(parse_request(query), profiles(root))
    assert isinstance(chosen, Chosen)
    assert (chosen.profile.profile, chosen.entries) == expected


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        (f"mac={MAC_X}", f"no netboot entry matches {MAC_X}"),
        ("", "no netboot entry matches a machine without MAC or UUID"),
        (f"mac={MAC_B}&uuid={UUID_B}", f"{MAC_B} {UUID_B} is a machine of several profiles"),
        ("profile=nope", "no netboot profile 'nope'"),
    ],
)
def test_machines_without_one_profile_get_a_reason(root: Path, query: str, reason: str) -> None:
    chosen = choose(parse_request(query), profiles(root))
    assert isinstance(chosen, Unmatched) and chosen.reason.startswith(reason)


@pytest.mark.parametrize(
    ("query", "message"),
    [("mac=52:54:00", "mac='52:54:00': not a MAC address"), ("uuid=1234", "uuid='1234'")],
)
def test_malformed_request_values_are_bad_input(query: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        parse_request(query)


def test_placeholder_uuid_is_no_uuid() -> None:
    assert parse_request("uuid=00000000-0000-0000-0000-000000000000") == Request()


def test_the_command_line_adds_what_ovl_needs_unless_given(root: Path) -> None:
    request = parse_request(f"mac={MAC_A}")
    chosen = choose(request, profiles(root))
    assert isinstance(chosen, Chosen)
    assert kernel_cmdline(chosen, BASE, request) == (
        f"initrd=initrd.img ip=dhcp console=ttyS0 ovl.debug "
        f"ovl={BASE}/profiles/lab/current/bundle.ovl "
        f"ovl.root={BASE}/profiles/lab/netboot/base.sqfs,{BASE}/profiles/lab/netboot/extra.sqfs "
        "BOOTIF=01-52-54-00-0d-00-01"
    )
    (root / "profiles/lab/netboot/machines" / f"30-{MAC_A}.json").write_text(
        json.dumps({"cmdline": "ip=eth0:dhcp ovl=http://elsewhere/x.ovl ovl.root=/dev/vda"})
    )
    chosen = choose(request, profiles(root))
    assert isinstance(chosen, Chosen)
    line = kernel_cmdline(chosen, BASE, Request())
    assert "ip=dhcp" not in line and f"ovl={BASE}" not in line and "ovl.root=http" not in line
    assert line.endswith("BOOTIF=01-${net0/mac:hexhyp}")


def test_every_request_is_answered_with_a_script_never_an_error(root: Path) -> None:
    for query in (f"mac={MAC_A}", f"mac={MAC_X}", "mac=zz", "profile=web", "uuid=$%7Bx%7D"):
        script = answer(root, query, BASE).script
        assert script.startswith("#!ipxe\n") and script.endswith("\n")
        assert all(len(line) <= 80 for line in script.splitlines() if line.startswith("echo "))


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_any_query_gets_a_script_without_expansions_it_did_not_put_there(query: str) -> None:
    root = Path("/nonexistent-ovl-root")
    script = answer(root, query, BASE).script
    assert script.startswith("#!ipxe\n")
    assert "\n#" not in script[1:] and "${" not in script.replace("${net0/mac:hexhyp}", "")


def test_fallback_menu_or_default_profile_as_netboot_json_says(root: Path) -> None:
    menu = answer(root, f"mac={MAC_X}", BASE)
    assert menu.profile is None and "item lab lab\nitem web web\n" in menu.script
    assert f"choose profile || goto retry\nchain --replace --autofree {BASE}/boot.ipxe" in (
        menu.script
    )
    assert f"?mac={MAC_X}&profile=${{profile}}" in menu.script
    write(root / "netboot.json", {"unknown": "menu", "default_profile": "web", "menu_timeout": 30})
    timed = answer(root, f"mac={MAC_X}", BASE)
    assert "choose --default web --timeout 30000 profile" in timed.script
    write(root / "netboot.json", {"unknown": "default", "default_profile": "web"})
    default = answer(root, f"mac={MAC_X}", BASE)
    assert default.profile == "web"
    assert default.note == f"no netboot entry matches {MAC_X}; booting the default profile web"
    assert f"kernel {BASE}/profiles/web/netboot/vmlinuz initrd=initrd.img" in default.script


def test_a_file_missing_on_the_server_is_said_on_the_machines_console(root: Path) -> None:
    (root / "profiles/lab/netboot/big-initrd.img").unlink()
    missing = answer(root, f"mac={MAC_A}", BASE)
    assert missing.profile is None
    assert missing.note == "profile lab: big-initrd.img is not on the server"
    assert "echo ovl netboot: profile lab: big-initrd.img is not on the server" in missing.script


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"unknown": "guess"}, "$.unknown: expected menu or default"),
        ({"unknown": "default"}, "$.unknown: 'default' needs default_profile"),
        ({"menu_timeout": -1}, "$.menu_timeout: expected whole seconds"),
        ({"server_url": "https://x"}, "$.server_url: expected http://host"),
        ({"colour": "blue"}, "$.colour: unknown key"),
        ([], "$: expected a JSON object"),
    ],
)
def test_settings_errors_name_the_json_path_and_the_schema_agrees(
    tmp_path: Path, data: Any, message: str
) -> None:
    write(tmp_path / "netboot.json", data)
    with pytest.raises(BadInput) as caught:
        load_settings(tmp_path)
    assert message in caught.value.line and str(tmp_path / "netboot.json") in caught.value.line
    schema = json.loads(SCHEMAS.joinpath("netboot.schema.json").read_text())
    if data != {"unknown": "default"}:  # a rule across keys: the parser's alone
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"initrd": "i"}, "$.kernel: required"),
        ({"kernel": "../etc/passwd", "initrd": "i"}, "$.kernel: expected a file name"),
        ({"kernel": "k", "initrd": "i", "images": ["a b"]}, "$.images[0]: expected a file name"),
        ({"kernel": "k", "initrd": "i", "cmdline": "x=${y}"}, "'$' and '\"' cannot go"),
        ({"kernel": "k", "initrd": "i", "cmdline": "a\nb"}, "control characters"),
    ],
)
def test_boot_json_errors_name_the_json_path_and_the_schema_agrees(
    tmp_path: Path, data: Any, message: str
) -> None:
    write(tmp_path / "profiles/lab/netboot/boot.json", data)
    with pytest.raises(BadInput, match=message.replace("$", r"\$").replace("[", r"\[")):
        load_profile(tmp_path, "lab")
    schema = json.loads(SCHEMAS.joinpath("boot.schema.json").read_text())
    if "required" not in message:  # boot.json's required keys: the parser's (entries share it)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(data, schema)


def test_a_machine_entry_with_a_malformed_name_names_its_file(root: Path) -> None:
    bad = write(root / "profiles/lab/netboot/machines/ten-x.json", {})
    with pytest.raises(BadInput, match=f"{bad}: malformed layer name 'ten-x'"):
        load_profile(root, "lab")
    assert "echo ovl netboot: " in answer(root, f"mac={MAC_A}", BASE).script


def wsgi(root: Path, method: str, query: str, host: str = "10.0.2.100") -> tuple[str, bytes]:
    status: list[str] = []
    environ = {"REQUEST_METHOD": method, "PATH_INFO": "/boot.ipxe", "QUERY_STRING": query,
               "HTTP_HOST": host, "SERVER_NAME": "127.0.0.1", "SERVER_PORT": "8470"}  # fmt: skip
    body = b"".join(ServerApp(Store(root))(environ, lambda s, h: status.append(s)))
    return status[0], body


def test_the_server_answers_boot_ipxe_and_logs_a_fallback(
    root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    status, body = wsgi(root, "GET", f"mac={MAC_A}")
    assert status == "200 OK" and body.startswith(b"#!ipxe\n")
    assert f"{BASE}/profiles/lab/netboot/vmlinuz".encode() in body
    with caplog.at_level(logging.WARNING, logger="ovl.netboot"):
        status, body = wsgi(root, "GET", "mac=zz", host="bad host\n")
    assert status == "200 OK" and b"http://127.0.0.1:8470/boot.ipxe" in body
    assert caplog.messages == ["netboot: mac='zz': not a MAC address; answered with the menu"]
    assert wsgi(root, "HEAD", f"mac={MAC_A}") == ("200 OK", b"")
    assert wsgi(root, "POST", "")[0] == "405 Method Not Allowed"


def test_host_header_or_socket_address_makes_the_base_url() -> None:
    assert host_url({"HTTP_HOST": "boot.example:8080"}) == "http://boot.example:8080"
    assert host_url({"HTTP_HOST": "[fd00::1]:80"}) == "http://[fd00::1]:80"
    assert host_url({"HTTP_HOST": "x/y", "SERVER_NAME": "s", "SERVER_PORT": "1"}) == "http://s:1"


def ovl(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def test_publish_refuses_a_kernel_that_is_not_a_bzimage_and_writes_nothing(
    tmp_path: Path,
) -> None:
    initrd = write(tmp_path / "initrd.img", "not a kernel either")
    code, _, err = ovl("netboot", "publish", "--root", tmp_path / "srv", "lab",
                       "--kernel", initrd, "--initrd", initrd)  # fmt: skip
    assert code == 2
    reason = "not a bzImage (no Linux boot header 'HdrS' at 0x202)"
    assert err == f"ovl: error: kernel {initrd}: {reason}\n"
    assert not (tmp_path / "srv").exists()


def test_publish_then_add_machine_then_script(tmp_path: Path) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(bytes(0x202) + b"HdrS" + bytes(64))
    initrd, image = write(tmp_path / "initrd.img", "i"), write(tmp_path / "base.sqfs", "s")
    write(tmp_path / "base.sqfs.minisig", "sig")
    root = tmp_path / "srv"
    code, out, err = ovl("netboot", "publish", "--root", root, "lab", "--kernel", kernel,
                         "--initrd", initrd, "--image", image, "--cmdline", "quiet",
                         "--json")  # fmt: skip
    assert code == 0, err
    assert json.loads(out) == {"kernel": "vmlinuz", "initrd": "initrd.img",
                               "images": ["base.sqfs"], "cmdline": "quiet"}  # fmt: skip
    assert "has no published bundle yet" in err
    assert sorted(p.name for p in (root / "profiles/lab/netboot").iterdir()) == [
        "base.sqfs", "base.sqfs.minisig", "boot.json", "initrd.img", "vmlinuz"
    ]  # fmt: skip
    assert ovl("netboot", "add-machine", "--root", root, "lab", "--uuid", UUID_B.upper())[0] == 0
    code, out, err = ovl("netboot", "script", "--root", root, "--uuid", UUID_B,
                         "--server-url", "http://boot:8470")  # fmt: skip
    assert code == 0 and err == ""
    assert "echo ovl netboot: entries 10-machine=" + UUID_B in out
    kernel_line = "kernel http://boot:8470/profiles/lab/netboot/vmlinuz initrd=initrd.img"
    assert f"{kernel_line} ip=dhcp quiet" in out
    code, out, err = ovl("netboot", "script", "--root", root, "--mac", MAC_X)
    assert code == 0
    assert err == f"ovl: warning: no netboot entry matches {MAC_X}; answered with the menu\n"
    assert out.startswith("#!ipxe\n")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["script", "--mac", "52-54"], "mac='52-54': not a MAC address"),
        (["script", "--server-url", "https://x"], "--server-url 'https://x': expected http://"),
        (["add-machine", "lab", "--mac", MAC_A], "profile lab: no netboot yet"),
        (["publish", "bad/name", "--kernel", "k", "--initrd", "i"], "profile 'bad/name'"),
    ],
)
def test_netboot_bad_input_is_one_line(tmp_path: Path, argv: list[str], message: str) -> None:
    code, _, err = ovl("netboot", argv[0], "--root", tmp_path / "srv", *argv[1:])
    assert code == 2 and err.startswith("ovl: error: ") and message in err and err.count("\n") == 1


@pytest.mark.subprocess
def test_dnsmasq_reads_the_config_it_is_given(tmp_path: Path) -> None:
    tftp = tmp_path / "tftp"
    tftp.mkdir()
    code, out, err = ovl("netboot", "dnsmasq-conf", "--server", "192.168.7.1:8470",
                         "--network", "192.168.7.0", "--interface", "br0",
                         "--tftp-root", tftp)  # fmt: skip
    assert code == 0
    assert "undionly.kpxe missing: copy it from /usr/lib/ipxe/undionly.kpxe" in err
    assert "dhcp-range=192.168.7.0,proxy\n" in out
    script = "http://192.168.7.1:8470/boot.ipxe?mac=${net0/mac}&uuid=${uuid}"
    assert f'pxe-service=tag:ipxe,X86PC,"ovl",{script}\n' in out
    assert f'pxe-service=tag:ipxe,X86-64_EFI,"ovl",{script}\n' in out
    conf = write(tmp_path / "dnsmasq.conf", out)
    checked = subprocess.run(["dnsmasq", "--test", "-C", str(conf)], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert "syntax check OK" in checked.stderr


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (ProxySettings("boot", "192.168.7"), "--network '192.168.7'"),
        (ProxySettings("https://boot", "10.0.0.0"), "https is beyond"),
        (ProxySettings("boot,x", "10.0.0.0"), "--server 'boot,x'"),
        (ProxySettings("boot", "10.0.0.0", "eth0;x"), "--interface"),
        (ProxySettings("boot", "10.0.0.0", None, Path("tftp")), "--tftp-root 'tftp'"),
    ],
)
def test_dnsmasq_config_refuses_what_would_break_it(settings: ProxySettings, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        render(settings)


def test_echo_width_keeps_bios_lines_within_80_columns() -> None:
    assert len("echo ovl netboot: ") + ECHO_WIDTH <= 80
