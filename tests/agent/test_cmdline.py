"""The kernel command line contract (docs/CMDLINE.md), parsed into BootConfig."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.agent.channels import open_channel
from ovl.agent.channels.gist import GistChannel
from ovl.agent.cmdline import (
    BootConfig,
    Cik,
    Fetch,
    Mode,
    Phase,
    Upper,
    Url,
    emergency_setting,
    parse_cmdline,
    read_cmdline,
    split_cmdline,
)
from ovl.agent.devices import DeviceKind, DeviceRef, PartPath
from ovl.agent.emergency import Action, Emergency
from ovl.agent.remotelog import LogTarget
from ovl.agent.sources import FileSource, GistSource, HttpSource
from ovl.core.errors import BadInput
from ovl.trust.policy import Policy, Require


def test_no_ovl_keys_gives_the_defaults() -> None:
    config = parse_cmdline("console=ttyS0 root=/dev/vda quiet")
    assert config == BootConfig()
    assert config.mode is Mode.OVERLAY
    assert config.upper == Upper()
    assert config.require == Policy(Require.SIGNED)
    assert config.init == "/sbin/init"


def test_channels_of_every_kind_keep_their_order() -> None:
    config = parse_cmdline(
        "ovl=https://h/fleet.ovl,file:/etc/ovl/b.ovl,part:LABEL=data:/@ovls/fleet.ovl,gist:abc123/f.txt"
    )
    assert config.sources == (
        HttpSource("https://h/fleet.ovl"),
        FileSource(Path("/etc/ovl/b.ovl")),
        PartPath(DeviceRef(DeviceKind.LABEL, "data"), "/@ovls/fleet.ovl"),
        GistSource("abc123", "f.txt"),
    )


def test_gist_base_moves_the_gist_url() -> None:
    config = parse_cmdline("ovl=gist:abc123 ovl.gist_base=http://127.0.0.1:8080/g/")
    channel = open_channel(config.sources[0], gist_base=config.gist_base)
    assert isinstance(channel, GistChannel)
    assert channel.url == "http://127.0.0.1:8080/g/abc123/raw"


@pytest.mark.parametrize(
    ("text", "image"),
    [
        ("/dev/vda", DeviceRef(DeviceKind.PATH, "/dev/vda")),
        ("LABEL=base", DeviceRef(DeviceKind.LABEL, "base")),
        ("UUID=1234-abcd", DeviceRef(DeviceKind.UUID, "1234-abcd")),
        (
            "part:UUID=1234:/images/base.sqfs",
            PartPath(DeviceRef(DeviceKind.UUID, "1234"), "/images/base.sqfs"),
        ),
        ("https://h/base.sqfs", Url("https://h/base.sqfs", "base.sqfs")),
    ],
)
def test_each_image_form_parses(text: str, image: object) -> None:
    assert parse_cmdline(f"ovl.root={text}").images == (image,)


@pytest.mark.parametrize(
    ("text", "image"),
    [
        ("http://boot/images/base.sqfs?x=1", Url("http://boot/images/base.sqfs?x=1", "base.sqfs")),
        (
            "http://boot/a%20b/debian%2D12.sqfs",
            Url("http://boot/a%20b/debian%2D12.sqfs", "debian-12.sqfs"),
        ),
        ("http://boot/base-2026-11.sqfs#name=base", Url("http://boot/base-2026-11.sqfs", "base")),
        ("http://boot/?img=1#name=base", Url("http://boot/?img=1", "base")),
    ],
)
def test_an_image_url_expects_its_file_name_unless_its_fragment_names_one(
    text: str, image: Url
) -> None:
    assert parse_cmdline(f"ovl.root={text}").images == (image,)


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("http://boot/images/", "no file name in the URL path; add #name="),
        ("http://boot/base.sqfs#base", "expected the fragment #name="),
        ("http://boot/base.sqfs#name=", "expected the fragment #name="),
    ],
)
def test_an_image_url_without_a_name_is_refused(text: str, reason: str) -> None:
    with pytest.raises(BadInput) as exc:
        parse_cmdline(f"ovl.root={text}")
    assert str(exc.value) == f"ovl.root={text}: {reason}<signed image name>"


def test_images_stack_bottom_to_top_in_the_given_order() -> None:
    config = parse_cmdline("ovl.root=/dev/vda,LABEL=extra")
    assert [str(i) for i in config.images] == ["/dev/vda", "LABEL=extra"]


def test_device_path_with_colons_splits_at_the_path() -> None:
    part = PartPath.parse("part:/dev/disk/by-path/pci-0000:00:04.0:/b/fleet.ovl")
    assert part.device.value == "/dev/disk/by-path/pci-0000:00:04.0"
    assert part.path == "/b/fleet.ovl"


def test_persistent_upper_with_and_without_wipe() -> None:
    kept = parse_cmdline("ovl.upper=part:LABEL=state:/upper").upper
    wiped = parse_cmdline("ovl.upper=part:LABEL=state:/upper,wipe").upper
    assert kept.part == wiped.part == PartPath(DeviceRef(DeviceKind.LABEL, "state"), "/upper")
    assert (kept.wipe, wiped.wipe) == (False, True)


def test_every_setting_reaches_its_field() -> None:
    config = parse_cmdline(
        "ovl.mode=btrfs ovl.btrfs=part:LABEL=pool:/@root"
        " ovl.require=encrypted,allow-rollback,bundle ovl.key=part:LABEL=keys:/node.key"
        " ovl.timeout=2.5 ovl.proxy=http://127.0.0.1:3128"
        " ovl.cache=part:LABEL=state:/ovl ovl.break=apply ovl.debug init=/lib/systemd/systemd"
    )
    assert config.mode is Mode.BTRFS
    assert config.btrfs == PartPath(DeviceRef(DeviceKind.LABEL, "pool"), "/@root")
    assert config.require == Policy(Require.ENCRYPTED, allow_rollback=True)
    assert config.require_bundle
    assert config.key == PartPath(DeviceRef(DeviceKind.LABEL, "keys"), "/node.key")
    assert config.timeout == 2.5
    assert config.proxy == "http://127.0.0.1:3128"
    assert config.cache == PartPath(DeviceRef(DeviceKind.LABEL, "state"), "/ovl")
    assert config.break_at is Phase.APPLY
    assert config.debug
    assert config.init == "/lib/systemd/systemd"


def test_break_without_a_value_stops_before_handover() -> None:
    assert parse_cmdline("ovl.break").break_at is Phase.HANDOVER


def test_zfs_mode_takes_a_snapshot() -> None:
    config = parse_cmdline("ovl.mode=zfs ovl.zfs=tank/root@pristine")
    assert (config.mode, config.zfs) == (Mode.ZFS, "tank/root@pristine")


def test_overlay_settings_in_another_mode_are_warned_about() -> None:
    config = parse_cmdline("ovl.mode=zfs ovl.zfs=tank/root@p ovl.root=/dev/vda ovl.upper=tmpfs")
    assert config.warnings == (
        "ovl.root ignored with ovl.mode=zfs",
        "ovl.upper ignored with ovl.mode=zfs",
    )


def test_cik_boot_takes_a_key_directory_on_the_stick_and_rescue_stands_alone() -> None:
    config = parse_cmdline(
        "ovl=part:LABEL=OVLCIK:/fleet.ovl ovl.key=part:LABEL=OVLCIK:/keys/ ovl.cik=boot"
    )
    assert config.cik is Cik.BOOT
    assert config.key == PartPath(DeviceRef(DeviceKind.LABEL, "OVLCIK"), "/keys/")
    assert str(config.key) == "part:LABEL=OVLCIK:/keys/"
    assert parse_cmdline("ovl.cik=rescue").cik is Cik.RESCUE
    assert parse_cmdline("quiet").cik is None


def test_the_image_name_ipxe_puts_first_on_an_efi_command_line_is_ignored() -> None:
    config = parse_cmdline(
        "vmlinuz initrd=initrd.img ip=dhcp ovl=http://10.0.2.100/profiles/lab/current/bundle.ovl "
        "BOOTIF=01-52-54-00-0a-00-01"
    )
    assert config.sources == (HttpSource("http://10.0.2.100/profiles/lab/current/bundle.ovl"),)
    assert config.warnings == ()


def test_unknown_ovl_key_is_a_warning_not_an_error() -> None:
    config = parse_cmdline("ovl.colour=blue ovl.mode=overlay")
    assert config.warnings == ("unknown setting ovl.colour ignored",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("ovl.mode=ext4", "ovl.mode=ext4: expected one of overlay, btrfs, zfs"),
        ("ovl.timeout=soon", "ovl.timeout=soon: expected a number of seconds"),
        ("ovl.timeout=-1", "ovl.timeout=-1: expected seconds between 0 (forever) and 3600"),
        (
            "ovl.emergency=halt",
            "ovl.emergency=halt: expected shell, reboot[:SECONDS] or poweroff",
        ),
        (
            "ovl.emergency=reboot:soon",
            "ovl.emergency=reboot:soon: expected reboot:SECONDS, whole seconds from 0 to 86400",
        ),
        (
            "ovl.emergency=poweroff:5",
            "ovl.emergency=poweroff:5: expected shell, reboot[:SECONDS] or poweroff",
        ),
        ("ovl.log=tcp://10.0.0.1", "ovl.log=tcp://10.0.0.1: expected udp://HOST[:PORT]"),
        ("ovl.log=udp://h:99999", "ovl.log=udp://h:99999: port: expected 1 to 65535"),
        ("ip=dhcp6", "ip=dhcp6: dhcp6 is not supported (IPv4 DHCP or static addresses only)"),
        ("ip=dhcp BOOTIF=01-aa-bb", "BOOTIF=01-aa-bb: expected 01-aa-bb-cc-dd-ee-ff"),
        ("nameserver=dns.example ip=dhcp", "nameserver=dns.example: expected an IP address"),
        (
            "ovl.root=sda1",
            "ovl.root=sda1: 'sda1': not a device (expected LABEL=x, UUID=y or /dev/x)",
        ),
        (
            "ovl.upper=part:LABEL=x:/u,keep",
            "ovl.upper=part:LABEL=x:/u,keep: unknown option 'keep' (only 'wipe')",
        ),
        (
            "ovl=ftp://h/x",
            "ovl=ftp://h/x: expected http(s)://, file:/path, part:<device>:/path or gist:<id>",
        ),
        (
            "ovl.require=paranoid",
            "ovl.require=paranoid: unknown level 'paranoid' (expected signed, encrypted or none)",
        ),
        ("ovl.zfs=tank@snap", "ovl.zfs=tank@snap: expected pool/dataset@snapshot"),
        ("ovl.mode=btrfs", "ovl.mode=btrfs needs ovl.btrfs=part:<device>:/<subvolume>"),
        (
            "ovl.cache=LABEL=x",
            "ovl.cache=LABEL=x: 'LABEL=x': expected part:<LABEL=x|UUID=y|/dev/x>:/path",
        ),
        ("init=sbin/init", "init=sbin/init: expected an absolute path"),
        (
            "ovl.break=later",
            "ovl.break=later: expected one of facts, fetch, apply, stack, handover",
        ),
        ("ovl.cik=maybe", "ovl.cik=maybe: expected one of boot, rescue"),
        ("ovl.fetch=some", "ovl.fetch=some: expected one of frames, full"),
        ("ovl.cik=boot", "ovl.cik=boot needs ovl.key=<directory of node keys>/"),
    ],
)
def test_malformed_value_is_one_line_naming_the_key(text: str, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        parse_cmdline(text)
    assert caught.value.line == message
    assert "\n" not in caught.value.line


def test_fetch_takes_only_this_machines_frames_unless_told_full() -> None:
    assert parse_cmdline("quiet").fetch is Fetch.FRAMES
    assert parse_cmdline("ovl.fetch=full").fetch is Fetch.FULL


def test_timeout_zero_is_forever() -> None:
    assert parse_cmdline("ovl.timeout=0").timeout == math.inf


def test_emergency_and_log_settings_reach_their_fields() -> None:
    config = parse_cmdline("ovl.emergency=reboot:5 ovl.log=udp://[fd00::1]:5514")
    assert config.emergency == Emergency(Action.REBOOT, 5)
    assert config.log == LogTarget("fd00::1", 5514)
    assert str(config.log) == "udp://[fd00::1]:5514"
    assert parse_cmdline("ovl.emergency=reboot").emergency == Emergency(Action.REBOOT, 10)
    assert parse_cmdline("ovl.emergency=poweroff").emergency.action is Action.POWEROFF
    assert parse_cmdline("ovl.log=udp://loghost").log == LogTarget("loghost", 514)


def test_emergency_setting_survives_a_command_line_that_does_not_parse() -> None:
    text = "ovl.mode=ext4 ovl.emergency=reboot:7"
    with pytest.raises(BadInput):
        parse_cmdline(text)
    assert emergency_setting(text) == Emergency(Action.REBOOT, 7)
    assert emergency_setting("ovl.emergency=sometimes") == Emergency()


def test_network_keys_are_left_to_an_initramfs_that_brings_the_network_up() -> None:
    text = "ip=dhcp6 BOOTIF=zz nameserver=x ovl=http://h/f.ovl"
    assert parse_cmdline(text, own_network=False).network is None
    with pytest.raises(BadInput):
        parse_cmdline(text)


def test_network_keys_reach_the_network_config() -> None:
    config = parse_cmdline(
        "ip=eth0:dhcp ip=10.9.0.2::10.9.0.1:24::eth1:none BOOTIF=01-52-54-00-0A-00-02"
        " nameserver=10.9.0.53 nameserver=10.9.0.54"
    )
    assert config.network is not None
    assert [str(entry.nic) for entry in config.network.entries] == ["eth0", "eth1"]
    assert config.network.bootif == "52:54:00:0a:00:02"
    assert config.network.nameservers == ("10.9.0.53", "10.9.0.54")
    assert parse_cmdline("ip=off").network is None
    assert parse_cmdline("ovl=http://h/f.ovl").network is None


def test_quotes_group_a_value_and_are_dropped() -> None:
    assert split_cmdline('a "b c" d="e f" "g=h i"') == ["a", "b c", "d=e f", "g=h i"]


@given(st.lists(st.text(alphabet="abcxyz=.,:/-_0123456789", min_size=1), max_size=8))
def test_splitting_unquoted_words_gives_them_back(words: list[str]) -> None:
    assert split_cmdline("  ".join(words)) == words


@given(st.text(max_size=200))
def test_any_text_parses_or_fails_with_bad_input(text: str) -> None:
    try:
        parse_cmdline(text)
    except BadInput as exc:
        assert "\n" not in exc.line


def test_defaults_file_applies_only_without_ovl_keys(tmp_path: Path) -> None:
    defaults = tmp_path / "cmdline"
    defaults.write_text("ovl=file:/etc/ovl/fleet.ovl ovl.require=none init=/sbin/default\n")
    plain = tmp_path / "plain"
    plain.write_text("console=ttyS0 init=/bin/sh\n")
    configured = tmp_path / "configured"
    configured.write_text("ovl=http://h/x.ovl\n")
    from_defaults = parse_cmdline(read_cmdline(plain, defaults))
    assert from_defaults.sources == (FileSource(Path("/etc/ovl/fleet.ovl")),)
    assert from_defaults.init == "/bin/sh"  # the boot loader's word wins
    assert parse_cmdline(read_cmdline(configured, defaults)).sources == (
        HttpSource("http://h/x.ovl"),
    )


def test_pre_agent_break_is_the_shims_and_ignored_by_the_agent() -> None:
    assert parse_cmdline("ovl=file:/b ovl.break=pre-agent").break_at is None
    assert parse_cmdline("ovl.break=pre-agent").warnings == ()


def test_pre_agent_break_does_not_cancel_an_agent_break() -> None:
    assert parse_cmdline("ovl.break=apply ovl.break=pre-agent").break_at is Phase.APPLY
    assert parse_cmdline("ovl.break=pre-agent ovl.break=stack").break_at is Phase.STACK
