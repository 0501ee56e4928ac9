"""The test root image: busybox plus an /sbin/init that reports what it sees, as squashfs."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

from ovl.core.run import run

BUSYBOX = Path("/bin/busybox")


def build_test_root(
    output: Path, *, files: Mapping[str, str] | None = None, probes: Sequence[str] = ()
) -> Path:
    """Write a squashfs root to `output`: busybox, the reporting init, `files` (path -> text).

    The init prints `OVL-TEST file <path>=<content>` for each path in `probes`.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=output.parent, prefix=".root-") as tmp:
        root = Path(tmp) / "root"
        _populate(root, dict(files or {}), probes)
        run(["mksquashfs", root, output, "-noappend", "-all-root", "-comp", "gzip", "-quiet"])
    return output


def reporting_init_script() -> str:
    """The reporting init: POSIX sh, needing only busybox or a minimal Debian."""
    return resources.files("tests.vmkit").joinpath("test-init.sh").read_text()


def _populate(root: Path, files: dict[str, str], probes: Sequence[str]) -> None:
    for name in ("bin", "sbin", "usr/bin", "usr/sbin", "etc", "proc", "sys", "dev", "run", "var"):
        (root / name).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir()
    (root / "tmp").chmod(0o1777)  # mkdir's mode would be cut by the umask
    (root / "bin/busybox").write_bytes(BUSYBOX.read_bytes())
    (root / "bin/busybox").chmod(0o755)
    applets = run([BUSYBOX, "--list-full"]).stdout.decode().split()
    for applet in applets:
        link = root / applet
        if not link.exists() and not link.is_symlink():
            link.symlink_to("/bin/busybox")
    init = root / "sbin/init"
    init.unlink(missing_ok=True)
    init.write_text(reporting_init_script())
    init.chmod(0o755)
    files.setdefault("/etc/hostname", "base-image\n")
    for path, text in files.items():
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    (root / "etc/ovl-probe").write_text("".join(f"{p}\n" for p in probes))
