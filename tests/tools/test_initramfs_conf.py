"""mkinitramfs.conf parsing: sh quoting, defaults, and errors that name the key and the line."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ovl.core.errors import BadInput
from ovl.tools.initramfs.conf import (
    SETTINGS,
    Compression,
    ExtraBinary,
    load_config,
    parse_assignments,
)

REPO = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, text: str) -> Path:
    conf = tmp_path / "mkinitramfs.conf"
    conf.write_text(text)
    return conf


def test_shipped_conf_documents_every_key_and_sets_only_defaults() -> None:
    text = (REPO / "mkinitramfs.conf").read_text()
    values = parse_assignments(text, "mkinitramfs.conf")
    for setting in SETTINGS:
        assert f"\n# {setting.key}: " in text, f"{setting.key} is not documented"
        if setting.key in values:
            assert values[setting.key][0].split() == setting.default.split()


def test_defaults_apply_and_relative_paths_follow_the_conf_file(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, "# nothing set\n\n"))
    assert config.compress is Compression.ZSTD
    assert config.compress_level is None
    assert config.keys == tmp_path / "keys"
    assert config.busybox == Path("/bin/busybox")
    assert "overlay" in config.modules and "btrfs" in config.modules
    assert ExtraBinary("btrfs", optional=True) in config.extra_binaries
    assert config.agent is None


def test_quoted_values_may_span_lines_and_carry_comments(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            'MODULES="overlay\n  squashfs\n"  # the root image\n'
            "CMDLINE='ovl=http://10.0.0.1/fleet.ovl ip=dhcp'  # default channel\n"
            "COMPRESS=xz\nCOMPRESS_LEVEL=9\nAGENT=build/agent\n"
            "EXTRA_FILES='a.txt extra/b.txt:/etc/b.txt'\nEXTRA_BINARIES=/usr/bin/true\n",
        )
    )
    assert config.modules == ("overlay", "squashfs")
    assert config.cmdline == "ovl=http://10.0.0.1/fleet.ovl ip=dhcp"
    assert config.compress is Compression.XZ
    assert config.compress_level == 9
    assert config.agent == tmp_path / "build/agent"
    assert [f.dest for f in config.extra_files] == [str(tmp_path / "a.txt"), "/etc/b.txt"]
    assert config.extra_binaries == (ExtraBinary("/usr/bin/true", optional=False),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "MODULES=overlay\nMODULE=loop\n",
            "mkinitramfs.conf:2: MODULE: unknown key (did you mean MODULES?)",
        ),
        (
            "\n\nCOMPRESS=lz4\n",
            "mkinitramfs.conf:3: COMPRESS: 'lz4' is not one of zstd, gzip, xz, none",
        ),
        ("COMPRESS_LEVEL=high\n", "mkinitramfs.conf:1: COMPRESS_LEVEL: 'high' is not a number"),
        ('CMDLINE="ovl=x\n', "mkinitramfs.conf:1: CMDLINE: unterminated quote"),
        ("CMDLINE=a b\n", "mkinitramfs.conf:1: CMDLINE: quote a value that contains spaces"),
        ('KEYS="$HOME/keys"\n', "mkinitramfs.conf:1: KEYS: variable expansion is not supported"),
        ("export MODULES=loop\n", "mkinitramfs.conf:1: expected KEY=value"),
        ("MODULES=kernel/fs/btrfs.ko\n", "MODULES: 'kernel/fs/btrfs.ko': give module names"),
        ("EXTRA_FILES=a:relative\n", "EXTRA_FILES: 'a:relative': destination must be absolute"),
    ],
)
def test_errors_name_the_line_and_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(BadInput) as caught:
        load_config(write(tmp_path, text))
    assert message in caught.value.line
    assert "\n" not in caught.value.line


def test_missing_file_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="cannot read"):
        load_config(tmp_path / "absent.conf")


@given(
    st.text(
        alphabet=st.characters(
            # the quote itself, line breaks (str.splitlines' set) and lone surrogates
            exclude_characters="'\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029",
            exclude_categories=["Cs"],
        )
    )
)
def test_single_quoted_values_come_back_verbatim(value: str) -> None:
    assert parse_assignments(f"CMDLINE='{value}'\n", "t")["CMDLINE"] == (value, 1)
