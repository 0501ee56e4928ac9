"""The initramfs-tools hook and the dracut module put a working agent into the images those
tools build (Debian's initramfs-tools-core and dracut-core install side by side)."""

from __future__ import annotations

import contextlib
import io
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ovl.tools.cli import main
from tests.tools.initramfs_fixtures import Kernel, debian_cloud_kernel

pytestmark = [pytest.mark.subprocess, pytest.mark.root, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def kernel() -> Kernel:
    return debian_cloud_kernel()


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The agent as a user installs it for the hooks: `ovl initramfs freeze -o DIR`."""
    target = tmp_path_factory.mktemp("lib") / "ovl" / "agent"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["initramfs", "freeze", "-o", str(target)]) == 0
    assert out.getvalue().startswith(f"{target}: agent ")
    return target


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "fleet.pub").write_text("untrusted comment: fleet\nRWQ=\n")
    (tmp_path / "keys" / "revoked").write_text("# no key revoked\n")
    (tmp_path / "keys" / "README.md").write_text("stays on the host\n")
    return tmp_path / "keys"


def unpack(image: Path, into: Path) -> Path:
    """Unpack with the tool's own reader (early cpio segments included)."""
    into.mkdir()
    subprocess.run(["unmkinitramfs", str(image), str(into)], check=True)
    main_root = into / "main"
    return main_root if main_root.is_dir() else into


def assert_agent_runs(root: Path) -> None:
    assert sorted(p.name for p in (root / "etc/ovl/keys").iterdir()) == ["fleet.pub", "revoked"]
    assert (root / "etc/ssl/certs/ca-certificates.crt").is_file()
    run = subprocess.run(
        ["/usr/sbin/chroot", str(root), "/ovl/agent/ovl-agent", "--help"],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert run.returncode == 0, run.stderr
    assert "boot" in run.stdout
    modules = list(root.glob("usr/lib/modules/*/kernel/fs/overlayfs/overlay.ko*"))
    modules += list(root.glob("lib/modules/*/kernel/fs/overlayfs/overlay.ko*"))
    assert modules


@contextlib.contextmanager
def usr_lib_modules() -> Iterator[None]:
    """mkinitramfs reads /lib/modules/VERSION; the test binds the kernel there in a private
    mount namespace, which needs the mount point to exist on the host."""
    point = Path("/usr/lib/modules")
    created = not point.exists()
    point.mkdir(exist_ok=True)
    try:
        yield
    finally:
        if created:
            point.rmdir()


def test_initramfs_tools_hook_adds_the_agent(
    kernel: Kernel, agent: Path, keys: Path, tmp_path: Path
) -> None:
    conf = tmp_path / "initramfs-tools"
    (conf / "hooks").mkdir(parents=True)
    (conf / "scripts").mkdir()
    shutil.copy(REPO / "initramfs/initramfs-tools/hooks/ovl", conf / "hooks/ovl")
    shutil.copy(REPO / "initramfs/initramfs-tools/scripts/ovl", conf / "scripts/ovl")
    (conf / "initramfs.conf").write_text("MODULES=list\nBUSYBOX=y\nCOMPRESS=zstd\n")
    image = tmp_path / "initrd.img"
    config = kernel.modules.parents[2] / "boot" / f"config-{kernel.version}"
    script = (
        "set -e; mount -t tmpfs tmpfs /usr/lib/modules; "
        f"mkdir /usr/lib/modules/{kernel.version}; "
        f"mount --bind {kernel.modules} /usr/lib/modules/{kernel.version}; "
        f"mount -t tmpfs tmpfs /boot; cp {config} /boot/; "
        f"mkinitramfs -d {conf} -o {image} {kernel.version}"
    )
    with usr_lib_modules():
        subprocess.run(
            ["unshare", "--mount", "sh", "-c", script],
            check=True,
            env={
                "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
                "OVL_AGENT_DIR": str(agent),
                "OVL_KEYS_DIR": str(keys),
            },
        )
    root = unpack(image, tmp_path / "unpacked")
    assert_agent_runs(root)
    assert (root / "scripts/ovl").is_file()
    assert "overlay" in (root / "conf/modules").read_text().split()


def test_initramfs_tools_hook_refuses_without_an_agent(tmp_path: Path) -> None:
    run = subprocess.run(
        ["sh", str(REPO / "initramfs/initramfs-tools/hooks/ovl")],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "OVL_AGENT_DIR": str(tmp_path), "DESTDIR": str(tmp_path)},
    )
    assert run.returncode == 1
    assert run.stderr == (
        f"E: ovl: no frozen agent in {tmp_path} (make one: ovl initramfs freeze -o {tmp_path})\n"
    )


def test_dracut_module_adds_the_agent_and_its_hooks(
    kernel: Kernel, agent: Path, keys: Path, tmp_path: Path
) -> None:
    # dracut takes its modules from $dracutbasedir/modules.d: the stock ones plus 90ovl.
    base = tmp_path / "dracut"
    (base / "modules.d").mkdir(parents=True)
    for entry in Path("/usr/lib/dracut").iterdir():
        if entry.name != "modules.d":
            (base / entry.name).symlink_to(entry)
    for module in Path("/usr/lib/dracut/modules.d").iterdir():
        (base / "modules.d" / module.name).symlink_to(module)
    (base / "modules.d/90ovl").symlink_to(REPO / "initramfs/dracut/90ovl")
    (tmp_path / "confdir").mkdir()
    (tmp_path / "scratch").mkdir()
    image = tmp_path / "initrd.img"
    subprocess.run(
        ["dracut", "--quiet", "--force", "--no-hostonly", "--no-hostonly-cmdline",
         "--modules", "base ovl", "--kver", kernel.version, "--kmoddir", str(kernel.modules),
         "--conf", "/dev/null", "--confdir", str(tmp_path / "confdir"),
         "--tmpdir", str(tmp_path / "scratch"), "--no-early-microcode", "--zstd", str(image)],
        check=True,
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "dracutbasedir": str(base),
            "OVL_AGENT_DIR": str(agent),
            "OVL_KEYS_DIR": str(keys),
        },
    )  # fmt: skip
    root = unpack(image, tmp_path / "unpacked")
    assert_agent_runs(root)
    hooks = root / "usr/lib/dracut/hooks"
    assert (hooks / "cmdline/90-parse-ovl.sh").is_file()
    assert (hooks / "mount/90-mount-ovl.sh").is_file()
