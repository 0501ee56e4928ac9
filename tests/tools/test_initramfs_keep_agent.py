"""KEEP_AGENT: /init's copy of the frozen agent into /run/ovl/agent, run in a chroot of a built
image (its /run a real tmpfs), and the copy running after the initramfs's own agent is gone."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from ovl.core.errors import BadInput
from ovl.tools.cli import main
from ovl.tools.initramfs.conf import load_config
from ovl.tools.initramfs.freeze import frozen_agent
from tests.conftest import Mounts
from tests.tools.initramfs_fixtures import debian_cloud_kernel
from tests.tools.server_fixtures import keypair, running_server, server_with_machine

pytestmark = pytest.mark.subprocess

SHIM = Path(__file__).resolve().parents[2] / "initramfs/init"


def _shell_function(name: str) -> str:
    """One function's definition cut from initramfs/init: one line, or up to a '}' line."""
    found = re.search(rf"^{name}\(\) {{(?: .*?}}\n|\n.*?^}}\n)", SHIM.read_text(), re.M | re.S)
    assert found, f"{name} not in {SHIM}"
    return found.group(0)


@pytest.fixture(scope="module")
def image_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default configuration's image (KEEP_AGENT unset), unpacked."""
    kernel = debian_cloud_kernel()
    base = tmp_path_factory.mktemp("keep-agent")
    conf = base / "mkinitramfs.conf"
    conf.write_text(f'MODULES="overlay"\nCOMPRESS=none\nKEYS=keys\nAGENT={frozen_agent()}\n')
    image = base / "initrd.img"
    code = main(["initramfs", "build", "-c", str(conf), "--kernel-version", kernel.version,
                 "--modules-dir", str(kernel.modules), "-o", str(image)])  # fmt: skip
    assert code == 0
    root = base / "root"
    root.mkdir()
    with image.open("rb") as cpio:
        subprocess.run(["cpio", "-i", "-d", "--quiet"], stdin=cpio, cwd=root, check=True)
    return root


@pytest.fixture
def root(image_root: Path, mounts: Mounts) -> Path:
    """The image with a fresh tmpfs on /run (unmounted by `mounts`), as /init has it."""
    mounts.mount("tmpfs", image_root / "run", "-t", "tmpfs", "-o", "mode=0755")
    (image_root / "run/ovl").mkdir()
    return image_root


def _keep_agent(root: Path) -> subprocess.CompletedProcess[str]:
    # As /init: applets installed first, then the step itself.
    script = "/usr/bin/busybox --install -s\n" + _shell_function("say")
    script += _shell_function("keep_agent") + "keep_agent\n"
    return subprocess.run(
        ["/usr/sbin/chroot", str(root), "/bin/sh", "-c", script],
        capture_output=True, text=True, check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
    )  # fmt: skip


def _tmpfs_used_kib(path: Path) -> int:
    st = os.statvfs(path)
    return (st.f_blocks - st.f_bfree) * st.f_frsize // 1024


def test_default_image_says_keep_agent_yes(image_root: Path) -> None:
    assert (image_root / "etc/ovl/init.conf").read_text() == "KEEP_AGENT=yes\n"


def test_agent_copied_to_run_runs_without_the_initramfs_agent(root: Path) -> None:
    before = _tmpfs_used_kib(root / "run")
    done = _keep_agent(root)
    cost = _tmpfs_used_kib(root / "run") - before
    print(f"KEEP_AGENT RAM cost: {cost} KiB of tmpfs")
    assert re.fullmatch(r"ovl-init: agent kept in /run/ovl/agent \(\d+ KiB\)\n", done.stdout)
    assert not (root / "run/ovl/agent.tmp").exists()
    # After switch_root only /run survives: hide the initramfs's own agent and run the copy.
    hidden = root / "ovl/agent.hidden"
    (root / "ovl/agent").rename(hidden)
    try:
        help_text = subprocess.run(
            ["/usr/sbin/chroot", str(root), "/run/ovl/agent/ovl-agent", "delta", "--help"],
            capture_output=True, text=True, check=True, env={"PATH": "/usr/bin"},
        ).stdout  # fmt: skip
    finally:
        hidden.rename(root / "ovl/agent")
    assert "pack" in help_text and "ship" in help_text


def test_keep_agent_no_copies_nothing(root: Path) -> None:
    conf = root / "etc/ovl/init.conf"
    conf.write_text("KEEP_AGENT=no\n")
    try:
        done = _keep_agent(root)
    finally:
        conf.write_text("KEEP_AGENT=yes\n")
    assert done.stdout == ""
    assert list((root / "run/ovl").iterdir()) == []


def test_a_full_run_leaves_no_partial_copy(root: Path, mounts: Mounts) -> None:
    small = mounts.mount("tmpfs", root / "run/ovl", "-t", "tmpfs", "-o", "size=1m")
    done = _keep_agent(root)
    assert "could not keep the agent in /run/ovl/agent" in done.stdout
    # No half copy; the line saying so is in the shim's log (for ovl.log=) as on the console.
    assert [p.name for p in small.iterdir()] == ["init.log"]
    assert (
        (small / "init.log")
        .read_text()
        .endswith(
            "ovl-init: could not keep the agent in /run/ovl/agent; delta shipping needs an"
            " installed one\n"
        )
    )


def test_keep_agent_takes_yes_or_no_only(tmp_path: Path) -> None:
    conf = tmp_path / "mkinitramfs.conf"
    conf.write_text("KEEP_AGENT=no\n")
    assert load_config(conf).keep_agent is False
    conf.write_text("\nKEEP_AGENT=maybe\n")
    with pytest.raises(BadInput, match=r":2: KEEP_AGENT: 'maybe' is not yes or no$"):
        load_config(conf)


def test_kept_agent_packs_and_ships_a_delta_without_python_or_minisign(
    root: Path, tmp_path: Path
) -> None:
    _keep_agent(root)
    agent = str(root / "run/ovl/agent/ovl-agent")
    upper, spool = tmp_path / "upper", str(tmp_path / "spool")
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/hostname").write_text("node1\n")
    pub, sec = keypair(tmp_path / "keys", "node1")
    server_with_machine(tmp_path / "srv", pub)
    bare = {"PATH": str(tmp_path / "empty")}
    pack = [agent, "delta", "--spool", spool, "pack", "--upper", str(upper), "--rules", "/none"]
    subprocess.run(pack, env=bare, check=True, capture_output=True)
    with running_server(tmp_path / "srv") as url:
        ship = subprocess.run(
            [agent, "delta", "--spool", spool, "ship", "--server", url,
             "--machine-id", "node1", "--key", str(sec)],
            env=bare, capture_output=True, text=True, check=False,
        )  # fmt: skip
    assert ship.returncode == 0, ship.stderr
    assert ship.stdout == "ovl-agent: shipped 1 delta(s)\n"
