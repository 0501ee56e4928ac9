"""`ovl cik make|update|list`: the stick image read back with sfdisk, mtools, objcopy and a
real vfat mount; byte-identical rebuilds; updates of images (all or nothing) and of a device;
every bad input one line with nothing written."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from ovl.tools.cik.fat import cluster_size
from ovl.tools.cik.stick import parse_size
from ovl.tools.cli import main
from tests.conftest import Mounts
from tests.tools.initramfs_fixtures import Kernel, debian_cloud_kernel

pytestmark = pytest.mark.subprocess

MAC_A, UUID_B = "52:54:00:0c:00:01", "c2c2c2c2-0000-4000-8000-000000000002"
EPOCH = "1700000000"


def ovl(*argv: str | Path) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([str(a) for a in argv])
    return code, out.getvalue(), err.getvalue()


def mtools(*argv: str) -> str:
    env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
    return subprocess.run(argv, check=True, capture_output=True, env=env).stdout.decode()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    return debian_cloud_kernel()


@pytest.fixture
def inputs(tmp_path: Path) -> Path:
    """A bundle with its signature, an image, an initramfs stand-in and node keys."""
    src = tmp_path / "in"
    src.mkdir()
    (src / "fleet.ovl").write_bytes(os.urandom(300_000))
    (src / "fleet.ovl.minisig").write_text("untrusted comment: sig\nRW...\n")
    (src / "base.sqfs").write_bytes(os.urandom(2_000_000))
    (src / "initrd.img").write_bytes(b"\x28\xb5\x2f\xfd" + os.urandom(100_000))
    keys = src / "keys"
    for name in ("alpha", UUID_B):
        code, _, err = ovl("keys", "node-new", name, "-d", keys)
        assert code == 0, err
    (src / "fleet.json").write_text(json.dumps({"machines": {"alpha": {"macs": [MAC_A]}}}))
    return src


def make(kernel: Kernel, inputs: Path, out: Path, *extra: str | Path) -> tuple[int, str, str]:
    return ovl(
        "cik", "make", out, "--size", "300M", "--kernel", kernel.vmlinuz,
        "--initrd", inputs / "initrd.img", "--bundle", inputs / "fleet.ovl",
        "--image", inputs / "base.sqfs", "--node-keys", inputs / "keys",
        "--fleet", inputs / "fleet.json", "--cmdline", "console=ttyS0 quiet", *extra,
    )  # fmt: skip


def partitions(image: Path) -> list[dict[str, object]]:
    table = json.loads(subprocess.run(["sfdisk", "--json", str(image)], check=True,
                                      capture_output=True).stdout)  # fmt: skip
    parts: list[dict[str, object]] = table["partitiontable"]["partitions"]
    return parts


def drive(image: Path, index: int) -> str:
    return f"{image}@@{int(str(partitions(image)[index]['start'])) * 512}"


def attach(image: Path, mounts: Mounts, *flags: str) -> str:
    """A loop device for `image` with its partitions scanned; waits for their device nodes."""
    loop = subprocess.run(["losetup", "--find", "--show", "--partscan", *flags, str(image)],
                          check=True, capture_output=True, text=True).stdout.strip()  # fmt: skip
    mounts.loops.append(loop)
    # Some kernels (this host's) do not read GPTs themselves: partx adds the partitions.
    if not Path(f"{loop}p2").exists():
        subprocess.run(["partx", "--add", loop], check=True)
    deadline = time.monotonic() + 10
    while not Path(f"{loop}p2").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    return loop


def cmdline_of(image: Path, path: str, tmp_path: Path) -> str:
    efi, section = tmp_path / "boot.efi", tmp_path / "cmdline"
    efi.write_bytes(subprocess.run(
        ["mtype", "-i", drive(image, 0), f"::{path}"], check=True, capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout)  # fmt: skip
    subprocess.run(["objcopy", "-O", "binary", "--only-section=.cmdline", str(efi),
                    str(section)], check=True)  # fmt: skip
    return section.read_text()


STICK_CMDLINE = (
    "ovl=part:LABEL=OVLCIK:/fleet.ovl ovl.root=part:LABEL=OVLCIK:/images/base.sqfs "
    "ovl.key=part:LABEL=OVLCIK:/keys/ ovl.cik=boot console=ttyS0 quiet"
)


def test_stick_has_a_gpt_an_esp_with_the_ukis_and_the_data_partition(
    kernel: Kernel, inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cik.img"
    code, stdout, err = make(kernel, inputs, out, "--json")
    assert code == 0, err
    made = json.loads(stdout)
    assert made["cmdline"] == STICK_CMDLINE
    assert out.stat().st_size == 300 << 20
    esp, data = partitions(out)
    assert esp["type"] == "C12A7328-F81F-11D2-BA4B-00A0C93EC93B" and esp["name"] == "OVLESP"
    assert data["type"] == "EBD0A0A2-B9E5-4433-87C0-68B6B72699C7" and data["name"] == "OVLCIK"
    assert int(str(esp["start"])) * 512 == 1 << 20
    assert sorted(mtools("mdir", "-i", drive(out, 0), "-/", "-b", "::/").split()) == [
        "::/EFI/", "::/EFI/BOOT/", "::/EFI/BOOT/BOOTX64.EFI", "::/EFI/ovl/",
        "::/EFI/ovl/rescue.efi",
    ]  # fmt: skip
    assert cmdline_of(out, "/EFI/BOOT/BOOTX64.EFI", tmp_path) == STICK_CMDLINE
    assert cmdline_of(out, "/EFI/ovl/rescue.efi", tmp_path) == f"{STICK_CMDLINE} ovl.cik=rescue"
    listing = sorted(mtools("mdir", "-i", drive(out, 1), "-/", "-b", "::/").split())
    assert listing == [
        "::/fleet.ovl", "::/fleet.ovl.minisig", "::/images/", "::/images/base.sqfs",
        "::/keys/", f"::/keys/{MAC_A.replace(':', '-')}", f"::/keys/{UUID_B}",
    ]  # fmt: skip
    volume = subprocess.run(["blkid", "-p", "-O", str(int(str(data["start"])) * 512), str(out)],
                            check=True, capture_output=True, text=True).stdout  # fmt: skip
    assert 'LABEL="OVLCIK"' in volume and 'TYPE="vfat"' in volume and 'VERSION="FAT32"' in volume


def has_vfat() -> bool:
    with open("/proc/filesystems") as known:
        return any(line.split()[-1] == "vfat" for line in known if line.strip())


def test_the_data_partition_holds_the_inputs_byte_for_byte(
    kernel: Kernel, inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cik.img"
    assert make(kernel, inputs, out)[0] == 0

    def read(path: str) -> bytes:
        env = {**os.environ, "MTOOLS_SKIP_CHECK": "1"}
        return subprocess.run(["mtype", "-i", drive(out, 1), f"::{path}"], check=True,
                              capture_output=True, env=env).stdout  # fmt: skip

    assert read("/fleet.ovl") == (inputs / "fleet.ovl").read_bytes()
    assert read("/images/base.sqfs") == (inputs / "base.sqfs").read_bytes()
    assert read(f"/keys/{MAC_A.replace(':', '-')}") == (inputs / "keys/alpha.age").read_bytes()
    assert read(f"/keys/{UUID_B}") == (inputs / f"keys/{UUID_B}.age").read_bytes()


@pytest.mark.root
def test_linux_mounts_the_data_partition_and_reads_the_same_files(
    kernel: Kernel, inputs: Path, tmp_path: Path, mounts: Mounts
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices")
    if not has_vfat():
        pytest.skip("this host's kernel has no vfat (the VM test tests/vm/test_cik.py mounts it)")
    out = tmp_path / "cik.img"
    assert make(kernel, inputs, out)[0] == 0
    loop = attach(out, mounts, "--read-only")
    point = mounts.mount(f"{loop}p2", tmp_path / "mnt", "-o", "ro")
    assert (point / "fleet.ovl").read_bytes() == (inputs / "fleet.ovl").read_bytes()
    assert (point / "images/base.sqfs").read_bytes() == (inputs / "base.sqfs").read_bytes()


def test_same_inputs_and_epoch_give_the_same_image(
    kernel: Kernel, inputs: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    first, second = tmp_path / "a.img", tmp_path / "b.img"
    assert make(kernel, inputs, first)[0] == 0
    assert make(kernel, inputs, second)[0] == 0
    assert sha256(first) == sha256(second)
    (inputs / "fleet.ovl").write_bytes(b"another bundle")
    third = tmp_path / "c.img"
    assert make(kernel, inputs, third)[0] == 0
    assert sha256(third) != sha256(first)
    assert partitions(third)[1]["uuid"] != partitions(first)[1]["uuid"]


def bad_make_cases(kernel: Kernel, inputs: Path) -> list[tuple[list[str | Path], str]]:
    initrd = ["--initrd", inputs / "initrd.img"]
    good = ["--kernel", kernel.vmlinuz, *initrd, "--size", "300M"]
    (inputs / "odd").mkdir()
    (inputs / "odd" / "web-9.age").write_bytes((inputs / "keys/alpha.age").read_bytes())
    return [
        (["--kernel", inputs / "initrd.img", *initrd, "--size", "300M"], "not a bzImage"),
        (["--kernel", kernel.vmlinuz, *initrd, "--size", "40M"], "--size 40M is too small for"),
        ([*good, "--stub", inputs / "no-stub.efi"], "EFI stub"),
        ([*good, "--size", "lots"], "--size 'lots': expected a size such as 2G or 512M"),
        ([*good, "--bundle", inputs / "missing.ovl"], "bundle"),
        ([*good, "--node-keys", inputs / "odd"], "web-9.age: not named by a MAC, a product UUID"),
        ([*good, "--fleet", inputs / "fleet.json"], "--fleet names the machines of --node-keys"),
        ([*good, "--bundle", inputs / "fleet.ovl", "--bundle", inputs / "fleet.ovl"], "twice"),
        ([*good, "--sign-key", inputs / "fleet.ovl"], "signing needs both"),
    ]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    kernel: Kernel, inputs: Path, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for flags, message in bad_make_cases(kernel, inputs):
        code, _, err = ovl("cik", "make", out_dir / "cik.img", *flags)
        assert code == 2, (flags, err)
        assert err.startswith("ovl: error: ") and message in err, (flags, err)
        assert err.count("\n") == 1
        assert list(out_dir.iterdir()) == [], flags


def test_too_small_names_what_the_stick_needs(kernel: Kernel, inputs: Path, tmp_path: Path) -> None:
    code, _, err = ovl(
        "cik", "make", tmp_path / "small.img", "--size", "64M", "--kernel", kernel.vmlinuz,
        "--initrd", inputs / "initrd.img", "--image", inputs / "base.sqfs",
    )  # fmt: skip
    assert code == 2
    assert "--size 64M is too small for this stick: it needs at least " in err
    assert "(ESP 64M for the UKIs, data 64M for 1 files)" in err


def test_update_replaces_a_bundle_adds_a_key_and_removes_one(
    kernel: Kernel, inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cik.img"
    assert make(kernel, inputs, out)[0] == 0
    newer = tmp_path / "new" / "fleet.ovl"
    newer.parent.mkdir()
    newer.write_bytes(b"the next serial")
    (newer.parent / "fleet.ovl.minisig").write_text("another signature\n")
    more = tmp_path / "more"
    assert ovl("keys", "node-new", "52-54-00-0c-00-07", "-d", more)[0] == 0
    code, stdout, err = ovl(
        "cik", "update", out, "--bundle", newer, "--node-keys", more,
        "--remove", f"/keys/{UUID_B}", "--json",
    )  # fmt: skip
    assert code == 0, err
    updated = json.loads(stdout)
    assert updated["written"] == ["/fleet.ovl", "/fleet.ovl.minisig", "/keys/52-54-00-0c-00-07"]
    assert updated["removed"] == [f"/keys/{UUID_B}"]
    assert mtools("mtype", "-i", drive(out, 1), "::/fleet.ovl") == "the next serial"
    code, stdout, _ = ovl("cik", "list", out, "--json")
    listed = json.loads(stdout)
    assert f"/keys/{UUID_B}" not in listed["paths"]
    assert "/keys/52-54-00-0c-00-07" in listed["paths"]
    assert listed["cmdline"] == STICK_CMDLINE
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cik.img", "in", "more", "new"]


def test_an_update_that_does_not_fit_leaves_the_image_as_it_was(
    kernel: Kernel, inputs: Path, tmp_path: Path
) -> None:
    out = tmp_path / "cik.img"
    assert make(kernel, inputs, out)[0] == 0
    before = sha256(out)
    huge = tmp_path / "huge.sqfs"
    with huge.open("wb") as sparse:
        sparse.truncate(400 << 20)
    code, _, err = ovl("cik", "update", out, "--image", huge)
    assert code == 2 and "not enough room: 400.0M to write" in err
    code, _, err = ovl("cik", "update", out, "--remove", "/keys/nobody")
    assert code == 2 and "--remove /keys/nobody: not on the stick" in err
    code, _, err = ovl("cik", "update", inputs / "base.sqfs", "--image", huge)
    assert code == 2 and "no partition table" in err
    assert sha256(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cik.img", "huge.sqfs", "in"]


@pytest.mark.root
def test_update_writes_a_stick_device_in_place_and_refuses_a_mounted_one(
    kernel: Kernel, inputs: Path, tmp_path: Path, mounts: Mounts
) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root for loop devices")
    out = tmp_path / "cik.img"
    assert make(kernel, inputs, out)[0] == 0
    loop = attach(out, mounts)
    newer = tmp_path / "new" / "fleet.ovl"
    newer.parent.mkdir()
    newer.write_bytes(b"written in place")
    code, _, err = ovl("cik", "update", loop, "--bundle", newer)
    assert code == 0, err
    assert mtools("mtype", "-i", f"{loop}p2", "::/fleet.ovl") == "written in place"
    assert ".fleet.ovl.new" not in mtools("mdir", "-i", f"{loop}p2", "-/", "-b", "::/").lower()
    # A partition of the stick mounted by the host (ext4 here: any filesystem will do).
    subprocess.run(["mkfs.ext4", "-q", f"{loop}p1"], check=True)
    mounts.mount(f"{loop}p1", tmp_path / "mnt", "-o", "ro")
    code, _, err = ovl("cik", "update", loop, "--bundle", newer)
    assert code == 2 and f"{loop}: mounted on {tmp_path / 'mnt'}; unmount it first" in err


@pytest.mark.parametrize(
    ("text", "size"),
    [("2G", 2 << 30), ("512M", 512 << 20), ("1.5GiB", 3 << 29), ("4096K", 4 << 20), ("100", 100)],
)
def test_sizes_are_binary(text: str, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("size", "cluster"),
    [(64 << 20, 512), (256 << 20, 2048), (2 << 30, 4096), (12 << 30, 8192), (64 << 30, 32768)],
)
def test_clusters_keep_fat32_above_its_minimum_count(size: int, cluster: int) -> None:
    assert cluster_size(size) == cluster
    assert size // cluster >= 65525
