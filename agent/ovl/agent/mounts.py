"""Mount and unmount through `mount(8)` (busybox or util-linux), remembering what was mounted."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ovl.agent.devices import is_btrfs
from ovl.core.run import run


def mount(
    source: str | Path, target: Path, *, fstype: str | None = None, options: Sequence[str] = ()
) -> Path:
    """Mount `source` on `target` (created if missing)."""
    target.mkdir(parents=True, exist_ok=True)
    argv: list[str | Path] = ["mount"]
    if fstype:
        argv += ["-t", fstype]
    if options:
        argv += ["-o", ",".join(options)]
    run([*argv, source, target])
    return target


def umount(target: Path) -> None:
    """Unmount `target`, detaching it lazily if it is busy."""
    if run(["umount", target], check=False).returncode != 0:
        run(["umount", "-l", target])


def is_mounted(target: Path) -> bool:
    """Whether something is mounted exactly on `target`."""
    wanted = str(target.resolve())
    with open("/proc/self/mounts") as table:
        return any(line.split()[1] == wanted for line in table)


class MountStack:
    """Mounts made during one boot, released innermost first when the boot gives up on them."""

    def __init__(self) -> None:
        self._points: list[Path] = []

    def mount(
        self,
        source: str | Path,
        target: Path,
        *,
        fstype: str | None = None,
        options: Sequence[str] = (),
    ) -> Path:
        mount(source, target, fstype=fstype, options=options)
        self._points.append(target)
        return target

    def release(self) -> None:
        while self._points:
            point = self._points.pop()
            if is_mounted(point):
                umount(point)

    def unmount(self, target: Path) -> None:
        """Unmount one of this stack's mounts now."""
        self._points.remove(target)
        umount(target)


def mount_partition(
    stack: MountStack, device: str, target: Path, *, writable: bool = False
) -> Path:
    """Mount the filesystem on `device`; btrfs at its top level so subvolume paths resolve."""
    options = ["rw" if writable else "ro"]
    if is_btrfs(device):
        # The default subvolume may have been changed; paths like /@ovls/x are from the top.
        return stack.mount(device, target, fstype="btrfs", options=[*options, "subvolid=5"])
    return stack.mount(device, target, options=options)


def umount_below(path: Path, *, including: bool = True) -> None:
    """Unmount whatever is mounted below `path` (and on it, when `including`), deepest first."""
    top = str(path.resolve())
    with open("/proc/self/mounts") as table:
        points = [line.split()[1] for line in table]
    below = [p for p in points if (including and p == top) or p.startswith(top + "/")]
    for point in sorted(set(below), key=len, reverse=True):
        umount(Path(point))
