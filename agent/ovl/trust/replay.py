"""Replay protection: the highest serial accepted per bundle and image name, in a JSON file.

Shape: {"version": 1, "serials": {"<bundle name>" | "image <image name>": <highest serial>}}.
"""

from __future__ import annotations

import json
from pathlib import Path

from ovl.core.errors import OvlError
from ovl.core.fs import write_atomic

_VERSION = 1


class ReplayState:
    """Reads on construction; `accept` writes through (temp file + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._serials = self._load()
        self.written = False  # whether `accept` recorded a new highest serial

    def _load(self) -> dict[str, int]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise OvlError(f"replay state {self.path}: unreadable ({exc})") from exc
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            raise OvlError(f"replay state {self.path}: not a version {_VERSION} state file")
        serials = data.get("serials")
        if not isinstance(serials, dict):
            raise OvlError(f"replay state {self.path}: not a version {_VERSION} state file")
        if not all(isinstance(k, str) and isinstance(v, int) for k, v in serials.items()):
            raise OvlError(f"replay state {self.path}: serials must map names to integers")
        return dict(serials)

    def highest(self, name: str, what: str = "bundle") -> int | None:
        """The highest serial accepted for the `what` ("bundle" or "image") called `name`."""
        return self._serials.get(_key(name, what))

    def check(self, name: str, serial: int, where: str, what: str = "bundle") -> None:
        """Refuse a serial below the highest accepted one (an equal serial is a re-fetch)."""
        last = self.highest(name, what)
        if last is not None and serial < last:
            raise OvlError(
                f"{where}: serial {serial} of {what} {name!r} is older than the last accepted"
                f" ({last}); refusing a replay (ovl.require=...,allow-rollback overrides)"
            )

    def accept(self, name: str, serial: int, what: str = "bundle") -> None:
        """Record `serial` as accepted when it is the highest seen for that name."""
        key = _key(name, what)
        if serial <= self._serials.get(key, serial - 1):
            return
        self._serials[key] = serial
        write_atomic(
            self.path, json.dumps({"version": _VERSION, "serials": self._serials}, indent=1)
        )
        self.written = True


def _key(name: str, what: str) -> str:
    # Bundles keep their bare names (existing state files); images are "image <name>": signed
    # names hold no spaces, so no bundle name can take an image's place.
    return name if what == "bundle" else f"{what} {name}"
