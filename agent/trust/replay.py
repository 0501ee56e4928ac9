"""Replay protection: the highest serial accepted per bundle name, in a small JSON state file.

Shape: {"version": 1, "serials": {"<bundle name>": <highest accepted serial>}}.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from agent.errors import OvlError

_VERSION = 1


class ReplayState:
    """Reads on construction; `accept` writes through (temp file + rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._serials = self._load()

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

    def highest(self, name: str) -> int | None:
        return self._serials.get(name)

    def check(self, name: str, serial: int, where: str) -> None:
        """Refuse a serial below the highest accepted one (an equal serial is a re-fetch)."""
        last = self._serials.get(name)
        if last is not None and serial < last:
            raise OvlError(
                f"{where}: serial {serial} of bundle {name!r} is older than the last accepted"
                f" ({last}); refusing a replay (ovl.require=...,allow-rollback overrides)"
            )

    def accept(self, name: str, serial: int) -> None:
        """Record `serial` as accepted when it is the highest seen for `name`."""
        if serial <= self._serials.get(name, serial - 1):
            return
        self._serials[name] = serial
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        tmp.write_text(json.dumps({"version": _VERSION, "serials": self._serials}, indent=1))
        with tmp.open("rb") as written:
            os.fsync(written.fileno())
        tmp.replace(self.path)
