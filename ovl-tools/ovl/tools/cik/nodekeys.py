"""The node keys a CIK carries: a directory of age (or SSH) identities, each written to the
stick's `keys/` under the names the agent looks for (ovl.trust.keynames).

A key file is named by a MAC or a DMI product UUID, or by a machine of the fleet file
(`ovl keys node-new web-1` writes `web-1.age`), which then gives it all its MACs and its UUID.
`*.pub` files (the recipients) and dot-files are left out.
"""

from __future__ import annotations

import re
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.tools.fleet import Fleet
from ovl.trust.age import load_identity_file
from ovl.trust.keynames import key_names, mac_key_name, uuid_key_name

_UUID = re.compile(r"^[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}$")


def collect_node_keys(directory: Path, fleet: Fleet | None = None) -> dict[str, Path]:
    """Key file name on the stick -> the host file holding that machine's identity."""
    if not directory.is_dir():
        raise BadInput(f"--node-keys {directory}: no such directory")
    keys: dict[str, Path] = {}
    for path in sorted(directory.iterdir()):
        if not path.is_file() or path.name.startswith(".") or path.name.endswith(".pub"):
            continue
        load_identity_file(path)  # an age or SSH identity, not a recipient or a stray file
        for name in _names_for(path, fleet):
            if name in keys and keys[name] != path:
                raise BadInput(f"--node-keys: {keys[name].name} and {path.name} both name {name}")
            keys[name] = path
    if not keys:
        raise BadInput(f"--node-keys {directory}: no key files in it")
    return keys


def _names_for(path: Path, fleet: Fleet | None) -> tuple[str, ...]:
    stem = path.name.removesuffix(".age")
    if _UUID.match(stem):
        name = uuid_key_name(stem)
        if name is None:
            raise BadInput(f"{path}: {stem} is a placeholder firmware UUID; name it by MAC")
        return (name,)
    try:
        return (mac_key_name(stem),)
    except BadInput:
        pass
    if fleet is not None and stem in fleet.machines:
        names = key_names(fleet.machines[stem])
        if not names:
            raise BadInput(f"{path}: fleet machine {stem!r} has no MAC and no product UUID")
        return names
    hint = "" if fleet is not None else "; --fleet maps machine names to their MACs"
    raise BadInput(f"{path}: not named by a MAC, a product UUID or a fleet machine{hint}")
