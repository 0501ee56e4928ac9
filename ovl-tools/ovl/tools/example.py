"""The example fleet `ovl init DIR` writes: a bundle tree with a base and one layer per kind of
favor (a MAC, a kernel release, a DMI product UUID), the fleet file that names its machines,
and a keys/ directory with the trust layout explained. It packs and lints clean as written.

Staged in a temporary directory beside DIR and renamed into place, so DIR is either the whole
example or as it was.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from ovl.core.errors import BadInput

MAC = "52:54:00:aa:bb:01"
UUID = "4c4c4544-0042-3510-8051-b4c04f4d3232"
RELEASE = "6.1.0-56-cloud-amd64"

README = f"""\
# An ovl fleet

Made by `ovl init`. Each part, and what to do with it:

    bundle/                 the bundle's tree: everything a machine may get
      ovl.json              the manifest: name and serial (raise the serial for every
                            release: machines refuse a serial lower than one they took)
      etc/motd              outside layers/: every machine gets it (the base)
      layers/10-{MAC}/
                            only the machine with this MAC (web-1)
      layers/20-release={RELEASE}/
                            only machines running this kernel release (all three here)
      layers/30-machine={UUID}/
                            only the machine with this DMI product UUID (web-2)
    fleet.json              every machine you deploy to, with its facts (MACs, UUID, kernel
                            release, arch), for `ovl lint --fleet` and `ovl plan --fleet`
    keys/                   what every machine trusts (see keys/README.md)

A layer folder is `NN-FAVOR[-FAVOR...]`: an order number, then values of a machine's facts;
it applies to a machine when every favor holds, in order after the base (docs/FORMAT.md).
Write `key=value` favors (`mac=`, `machine=`, `release=`, `arch=`...) when a value could be
read two ways, and put plain favors before typed ones: a typed value runs on to the next
`key=`.

## Next (from this directory)

    ovl pack bundle -o fleet.ovl              # refuses what machines would refuse
    ovl lint fleet.ovl --fleet fleet.json     # 0 errors, 0 warnings as written
    ovl plan fleet.ovl --fleet fleet.json     # what each machine gets
    ovl keys root-new site-root -d ~/offline  # then: keys/README.md
    ovl seal fleet.ovl --sign-key SIGNER.key -o public/fleet.ovl
    ovl server --root /srv/ovl import fleet public/fleet.ovl

`ovl --help` lists every command; docs/CLI.md describes them.
"""

KEYS_README = """\
# keys/: what every machine trusts

Copy each trusted **root** public key (`NAME.pub` from `ovl keys root-new`) here; the
initramfs carries this directory (`KEYS=` in mkinitramfs.conf) to `/etc/ovl/keys/`. Every
`.pub` here is a root: never put a signer's or a node's key here. `ovl keys revoke` keeps
`revoked` and `revoked.minisig` here.

Which key is which (docs/TRUST.md has the full table):

| file | made by | kept where | does |
| --- | --- | --- | --- |
| `root.key` / `root.pub` | `ovl keys root-new` | `.key` offline; `.pub` here | certifies signers |
| `alice.key` / `alice.pub` | `ovl keys signer-new` | the admin | signs bundles (`ovl seal`) |
| `alice.cert` | `ovl keys certify` | beside `alice.key` | the root's word for alice's key |
| `web-1.age` / `.age.pub` | `ovl keys node-new` | `.age` on the machine | bundles sealed to it |
| `web-1-node.key` / `.pub` | `ovl keys signer-new` | `.key` on the machine | signs its deltas |

    ovl keys root-new site-root -d ~/offline --password
    cp ~/offline/site-root.pub keys/
    ovl keys signer-new alice -d ~/.ovl
    ovl keys certify --root ~/offline/site-root.key ~/.ovl/alice.pub --name alice \\
        --expires 2027-06-30 -o ~/.ovl/alice.cert
    ovl keys list keys ~/.ovl
"""

FLEET = {
    "version": 1,
    "defaults": {"kernel": "Linux", "kernel_release": RELEASE, "arch": "x86_64"},
    "machines": {
        "web-1": {"macs": [MAC]},
        "web-2": {"macs": ["52:54:00:aa:bb:02"], "product_uuid": UUID},
        "build-1": {"macs": ["52:54:00:aa:bb:03"]},
    },
}

TREE = {
    "ovl.json": json.dumps(
        {"name": "fleet", "serial": 1, "description": "the example fleet from ovl init"},
        indent=2,
    )
    + "\n",
    "etc/motd": "Configured by ovl: every machine gets this file (it is outside layers/).\n",
    f"layers/10-{MAC}/etc/hostname": "web-1\n",
    f"layers/20-release={RELEASE}/etc/modules-load.d/ovl-example.conf": (
        "# Only machines running kernel release "
        f"{RELEASE} get this file:\n# modules to load at boot, one a line.\n"
    ),
    f"layers/30-machine={UUID}/etc/hostname": "web-2\n",
}


def write_example(directory: Path) -> list[Path]:
    """Write the example fleet into `directory` (new, or empty); returns the files written.
    BadInput when `directory` holds anything, or its parent does not exist."""
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BadInput(f"{directory}: not empty; ovl init writes into a new or empty directory")
    if not directory.parent.is_dir():
        raise BadInput(f"{directory}: directory {directory.parent} does not exist")
    files = {
        "README.md": README,
        "fleet.json": json.dumps(FLEET, indent=2) + "\n",
        "keys/README.md": KEYS_README,
        **{f"bundle/{path}": text for path, text in TREE.items()},
    }
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        for relative, text in files.items():
            path = staging / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        os.chmod(staging, 0o755)
        os.rename(staging, directory)  # over an empty directory too
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return [directory / relative for relative in files]
