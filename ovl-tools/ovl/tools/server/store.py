"""The server's on-disk layout (docs/SERVER.md) and its atomic writes.

    ROOT/machines/<id>.json                  registered machine: profile, mac, node public key
    ROOT/profiles/<name>/versions/<NNNNNN>/  bundle.ovl, bundle.ovl.minisig, version.json
    ROOT/profiles/<name>/current             symlink to versions/<NNNNNN>, swapped atomically
    ROOT/deltas/<id>/<sha256>.tar.zst        accepted delta, with .minisig and .json beside
    ROOT/tmp/                                every write starts here, then is renamed in place

Readers never see a half-written file: files are written to ROOT/tmp (same filesystem),
fsynced, renamed into place and the directory fsynced. A delta counts as accepted only once
its `.json` exists, which is written last.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovl.core.errors import BadInput, OvlError
from ovl.core.facts import normalize_mac
from ovl.core.fs import fsync_dir, fsync_file, write_atomic

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA = re.compile(r"^[0-9a-f]{64}$")
_VERSION_DIGITS = 6


def check_name(kind: str, value: str) -> str:
    """Machine ids and profile names become path components: keep them boring."""
    if not _ID.match(value):
        raise BadInput(f"{kind} {value!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return value


def check_sha(value: str) -> str:
    if not _SHA.match(value):
        raise BadInput(f"{value!r}: not a sha256 in lower-case hex")
    return value


@dataclass(frozen=True)
class Machine:
    id: str
    profile: str
    mac: str
    public_key: str  # minisign public key text

    def to_json(self) -> dict[str, str]:
        return {"profile": self.profile, "mac": self.mac, "public_key": self.public_key}


@dataclass(frozen=True)
class Delta:
    machine: str
    sha256: str
    created_ns: int
    received_ns: int
    path: Path

    @property
    def ref(self) -> str:
        return f"{self.machine}/{self.sha256}"


@dataclass(frozen=True)
class Version:
    profile: str
    number: int
    path: Path
    meta: dict[str, Any]

    @property
    def bundle(self) -> Path:
        return self.path / "bundle.ovl"

    @property
    def signature(self) -> Path:
        return self.path / "bundle.ovl.minisig"

    @property
    def signed(self) -> bool:
        return self.signature.is_file()


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise BadInput(f"{path}: not JSON ({exc.msg} at line {exc.lineno})") from exc


class Store:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    @staticmethod
    def given(root: Path | None) -> Path:
        """The server root --root or OVL_SERVER_ROOT named; BadInput when neither did."""
        if root is None:
            raise BadInput("no server directory: give --root DIR or set OVL_SERVER_ROOT")
        return root

    @classmethod
    def existing(cls, root: Path) -> Store:
        """The store at `root`, which must already be a server root (`profiles/` in it): a
        mistyped --root must not serve or change an empty new one."""
        if not (root / "profiles").is_dir():
            what = "no such directory" if not root.exists() else "no profiles/ in it"
            raise BadInput(
                f"--root {root}: not an ovl server root ({what}); publish a first version with"
                f" `ovl server --root {root} import PROFILE BUNDLE`"
            )
        return cls(root)

    # -- writing ---------------------------------------------------------------------------

    def temp_file(self, suffix: str = "") -> Path:
        """A fresh file under ROOT/tmp, on the same filesystem as everything it will replace."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=self.tmp, suffix=suffix)
        os.close(fd)
        return Path(name)

    def sweep_tmp(self, older_than: float = 86400.0) -> None:
        """Drop what killed writers left in ROOT/tmp; young entries may belong to a live one."""
        cutoff = time.time() - older_than
        for item in self.tmp.iterdir() if self.tmp.is_dir() else ():
            if item.lstat().st_mtime < cutoff:
                if item.is_dir() and not item.is_symlink():
                    shutil.rmtree(item, ignore_errors=True)
                else:
                    item.unlink(missing_ok=True)

    def temp_dir(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=self.tmp))

    def install(self, temp: Path, final: Path) -> None:
        """Move a finished file from ROOT/tmp into place, durably."""
        fsync_file(temp)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(temp, final)
        fsync_dir(final.parent)

    def write_atomic(self, final: Path, data: bytes) -> None:
        write_atomic(final, data, scratch=self.tmp)

    @contextmanager
    def profile_lock(self, profile: str) -> Iterator[None]:
        """One writer per profile at a time (bake, rollback, cherry-pick, watch)."""
        directory = self.profile_dir(profile)
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- machines --------------------------------------------------------------------------

    def machine_path(self, machine_id: str) -> Path:
        return self.root / "machines" / f"{check_name('machine', machine_id)}.json"

    def add_machine(self, machine: Machine) -> None:
        check_name("profile", machine.profile)
        data = json.dumps(machine.to_json(), indent=2) + "\n"
        self.write_atomic(self.machine_path(machine.id), data.encode())

    def machine(self, machine_id: str) -> Machine | None:
        path = self.machine_path(machine_id)
        if not path.is_file():
            return None
        data = _read_json(path)
        try:
            return Machine(
                id=machine_id,
                profile=check_name("profile", data["profile"]),
                mac=normalize_mac(data["mac"]),
                public_key=str(data["public_key"]),
            )
        except (KeyError, TypeError) as exc:
            raise BadInput(f"{path}: needs profile, mac and public_key") from exc

    def machine_with_mac(self, mac: str) -> Machine | None:
        return next((m for m in self.machines() if m.mac == mac), None)

    def machines(self) -> list[Machine]:
        found = []
        for path in sorted((self.root / "machines").glob("*.json")):
            machine = self.machine(path.stem)
            if machine is not None:
                found.append(machine)
        return found

    # -- deltas ----------------------------------------------------------------------------

    def delta_path(self, machine_id: str, sha256: str) -> Path:
        return self.root / "deltas" / check_name("machine", machine_id) / f"{check_sha(sha256)}"

    def has_delta(self, machine_id: str, sha256: str) -> bool:
        return self.delta_path(machine_id, sha256).with_suffix(".json").is_file()

    def accept_delta(
        self, machine_id: str, sha256: str, body: Path, signature: str, created_ns: int
    ) -> None:
        """Move a verified upload into place: data, then signature, then the record (last)."""
        base = self.delta_path(machine_id, sha256)
        self.install(body, base.with_suffix(".tar.zst"))
        self.write_atomic(base.with_suffix(".minisig"), signature.encode())
        record = {"created_ns": created_ns, "received_ns": time.time_ns()}
        self.write_atomic(base.with_suffix(".json"), json.dumps(record).encode() + b"\n")

    def deltas(self, machine_id: str) -> list[Delta]:
        """Accepted deltas of one machine, in the order the machine made them."""
        found = []
        directory = self.root / "deltas" / check_name("machine", machine_id)
        for record in directory.glob("*.json"):
            data = _read_json(record)
            found.append(
                Delta(
                    machine=machine_id,
                    sha256=record.stem,
                    created_ns=int(data["created_ns"]),
                    received_ns=int(data["received_ns"]),
                    path=record.with_suffix(".tar.zst"),
                )
            )
        return sorted(found, key=lambda d: (d.created_ns, d.received_ns))

    def find_delta(self, ref: str) -> Delta:
        """A delta by `<machine>/<sha256>` or by a unique sha256 prefix."""
        machine_id, _, sha = ref.rpartition("/")
        candidates = [
            d
            for m in ([machine_id] if machine_id else [m.id for m in self.machines()])
            for d in self.deltas(m)
            if d.sha256.startswith(sha)
        ]
        if len(candidates) != 1:
            what = "no" if not candidates else "more than one"
            raise BadInput(f"delta {ref!r}: {what} accepted delta matches")
        return candidates[0]

    # -- profiles and versions -------------------------------------------------------------

    def profile_dir(self, profile: str) -> Path:
        return self.root / "profiles" / check_name("profile", profile)

    def profiles(self) -> list[str]:
        directory = self.root / "profiles"
        return (
            sorted(p.name for p in directory.iterdir() if p.is_dir()) if directory.is_dir() else []
        )

    def published_profile(self, profile: str) -> str:
        """`profile` when it has a published version; BadInput naming the known ones (and the
        closest, for a typo) otherwise."""
        check_name("profile", profile)
        if self.versions(profile):
            return profile
        from ovl.core.cli import did_you_mean

        known = [p for p in self.profiles() if self.versions(p)]
        listing = f"profiles here: {', '.join(known)}" if known else "no profile published yet"
        raise BadInput(
            f"profile {profile!r}: no such profile{did_you_mean(profile, known)} ({listing})"
        )

    def versions(self, profile: str) -> list[Version]:
        directory = self.profile_dir(profile) / "versions"
        found = []
        for path in directory.iterdir() if directory.is_dir() else ():
            if path.name.isdigit() and (path / "version.json").is_file():
                meta = _read_json(path / "version.json")
                found.append(Version(profile, int(path.name), path, meta))
        return sorted(found, key=lambda v: v.number)

    def last_signed(self, profile: str) -> Version | None:
        """The newest signed version: a profile that has one is a signed profile, and stays
        one (publishing unsigned into it takes --allow-unsigned)."""
        return next((v for v in reversed(self.versions(profile)) if v.signed), None)

    def current(self, profile: str) -> Version | None:
        link = self.profile_dir(profile) / "current"
        try:
            number = int(os.readlink(link).rsplit("/", 1)[-1])
        except FileNotFoundError:
            return None
        return next((v for v in self.versions(profile) if v.number == number), None)

    def version(self, profile: str, number: int) -> Version:
        for version in self.versions(profile):
            if version.number == number:
                return version
        raise BadInput(f"profile {profile}: no version {number}")

    def next_version(self, profile: str) -> int:
        """The number the next publish gets; stable while the caller holds profile_lock."""
        existing = self.versions(profile)
        return existing[-1].number + 1 if existing else 1

    def publish(self, profile: str, number: int, staged: Path, meta: dict[str, Any]) -> Version:
        """Turn a staged dir (bundle.ovl, bundle.ovl.minisig) into version `number`, then make
        it current: rename the dir into versions/, then swap the `current` symlink."""
        versions = self.profile_dir(profile) / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        published = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        meta = {**meta, "version": number, "published": published}
        (staged / "version.json").write_text(json.dumps(meta, indent=2) + "\n")
        stamp = self._next_stamp(profile)
        for item in staged.iterdir():
            os.utime(item, (stamp, stamp))
            with item.open("rb") as handle:
                os.fsync(handle.fileno())
        fsync_dir(staged)
        final = versions / f"{number:0{_VERSION_DIGITS}d}"
        os.rename(staged, final)
        fsync_dir(versions)
        self.point_current(profile, number)
        return Version(profile, number, final, meta)

    def _next_stamp(self, profile: str) -> int:
        """A whole-second mtime later than the current version's: HTTP validators are mtimes
        in seconds (nginx's ETag is mtime-size, Last-Modified a date), so two versions of one
        size published within a second must still differ for If-Range and caches."""
        current = self.current(profile)
        previous = int(current.bundle.stat().st_mtime) if current is not None else 0
        return max(int(time.time()), previous + 1)

    def point_current(self, profile: str, number: int) -> None:
        directory = self.profile_dir(profile)
        temp = directory / ".current.tmp"
        temp.unlink(missing_ok=True)
        os.symlink(f"versions/{number:0{_VERSION_DIGITS}d}", temp)
        os.rename(temp, directory / "current")
        fsync_dir(directory)

    def os_error(self, exc: OSError, what: str) -> OvlError:
        """One line for the user; a full disk is the common case worth naming."""
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return OvlError(f"{what}: server store {self.root} is full (no space left on device)")
        return OvlError(f"{what}: {exc.strerror or exc}")
