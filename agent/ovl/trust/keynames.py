"""Node keys kept for many machines in one directory (a CIK stick's `keys/`): the file of a
machine's key is named by its MAC or its DMI product UUID (docs/CIK.md).

Names: each MAC lower-case with dashes (`52-54-00-0a-00-01`: FAT has no colons), then the
product UUID lower-case. A UUID of all zeros or all `f`s is what firmware without one reports:
never a name, or every such machine would share a key.
"""

from __future__ import annotations

from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.core.facts import Facts, normalize_mac

_PLACEHOLDER_UUIDS = {f"{c * 8}-{c * 4}-{c * 4}-{c * 4}-{c * 12}" for c in "0f"}


def mac_key_name(mac: str) -> str:
    """The key file name for a MAC given in any spelling normalize_mac reads."""
    return normalize_mac(mac).replace(":", "-")


def uuid_key_name(product_uuid: str) -> str | None:
    """The key file name for a DMI product UUID; None for a firmware placeholder."""
    name = product_uuid.strip().lower()
    return None if name in _PLACEHOLDER_UUIDS else name


def key_names(facts: Facts) -> tuple[str, ...]:
    """The names this machine's key may have, in the order they are looked for."""
    names = [mac_key_name(mac) for mac in facts.macs]
    by_uuid = uuid_key_name(facts.product_uuid) if facts.product_uuid else None
    return tuple(names + ([by_uuid] if by_uuid else []))


def find_key(directory: Path, facts: Facts, where: str) -> Path:
    """This machine's key file in `directory` (described to the user as `where`)."""
    names = key_names(facts)
    for name in names:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    if not directory.is_dir():
        raise BadInput(f"key directory {where}: no such directory")
    tried = ", ".join(names) if names else "nothing: this machine has no MAC and no product UUID"
    raise OvlError(f"no key for this machine in {where} (looked for {tried})")
