"""Machine facts: the values layer favors are matched against.

JSON shape (docs/FACTS.md):
  {"macs": ["52:54:00:aa:bb:cc"], "product_uuid": "...", "volume_uuids": ["..."],
   "kernel": "Linux", "kernel_release": "6.1.0-56-cloud-amd64", "arch": "x86_64"}
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from ovl.core.errors import BadInput


def normalize_mac(value: str) -> str:
    """Lower-case colon form of a MAC given with ':' '-' or no separators."""
    hexdigits = value.replace(":", "").replace("-", "").lower()
    if len(hexdigits) != 12 or any(c not in "0123456789abcdef" for c in hexdigits):
        raise BadInput(f"not a MAC address: {value!r}")
    return ":".join(hexdigits[i : i + 2] for i in range(0, 12, 2))


@dataclass(frozen=True)
class Facts:
    """What this machine is, as far as layer matching is concerned."""

    macs: tuple[str, ...] = ()
    product_uuid: str | None = None
    volume_uuids: tuple[str, ...] = ()
    kernel: str = "Linux"
    kernel_release: str = ""
    arch: str = ""
    extra: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["macs"] = list(self.macs)
        data["volume_uuids"] = list(self.volume_uuids)
        data["extra"] = {k: list(v) for k, v in self.extra.items()}
        return data

    @classmethod
    def from_json(cls, data: Any, where: str = "facts") -> Facts:
        if not isinstance(data, dict):
            raise BadInput(f"{where}: expected a JSON object")

        def strings(key: str) -> tuple[str, ...]:
            value = data.get(key, [])
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise BadInput(f"{where}.{key}: expected a list of strings")
            return tuple(value)

        def optional_string(key: str, default: str | None) -> str | None:
            value = data.get(key, default)
            if value is not None and not isinstance(value, str):
                raise BadInput(f"{where}.{key}: expected a string")
            return value

        extra_raw = data.get("extra", {})
        if not isinstance(extra_raw, dict):
            raise BadInput(f"{where}.extra: expected an object of string lists")
        extra: dict[str, tuple[str, ...]] = {}
        for key, values in extra_raw.items():
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise BadInput(f"{where}.extra.{key}: expected a list of strings")
            extra[key] = tuple(values)
        return cls(
            macs=tuple(normalize_mac(m) for m in strings("macs")),
            product_uuid=optional_string("product_uuid", None),
            volume_uuids=strings("volume_uuids"),
            kernel=optional_string("kernel", "Linux") or "Linux",
            kernel_release=optional_string("kernel_release", "") or "",
            arch=optional_string("arch", "") or "",
            extra=extra,
        )

    @classmethod
    def loads(cls, text: str, where: str = "facts") -> Facts:
        try:
            return cls.from_json(json.loads(text), where)
        except json.JSONDecodeError as exc:
            raise BadInput(f"{where}: not JSON ({exc.msg} at line {exc.lineno})") from exc
