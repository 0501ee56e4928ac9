"""A throw-away PKI for trust tests: a root in a keys/ dir, a certified signer, a node key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ovl.tools.keys import certify, new_node_identity, new_signing_pair


@dataclass(frozen=True)
class Pki:
    keys: Path  # the trust store: root .pub (+ revocations)
    root_key: Path
    signer_key: Path
    signer_pub: Path
    cert: Path
    node_identity: Path
    node_recipient: str


def make_pki(tmp_path: Path) -> Pki:
    secret = tmp_path / "secret"
    keys = tmp_path / "keys"
    keys.mkdir(parents=True)
    root_key, root_pub = new_signing_pair(secret, "root", "root")
    root_pub.rename(keys / "root.pub")
    signer_key, signer_pub = new_signing_pair(secret, "alice", "signer")
    cert = secret / "alice.cert"
    when = datetime.now(UTC) + timedelta(days=30)
    certify(root_key, signer_pub, "alice", when, cert)
    identity, recipient = new_node_identity(secret, "node1")
    return Pki(
        keys, root_key, signer_key, signer_pub, cert, identity, recipient.read_text().strip()
    )
