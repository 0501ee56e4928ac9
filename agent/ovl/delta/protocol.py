"""What a node and the server agree on when a delta is shipped (docs/DELTA.md).

`PUT /deltas/<machine-id>/<sha256>.tar.zst`, body the delta, header `X-Ovl-Signature` the
base64 of a minisign signature by the node key, whose trusted comment is `trusted_comment(...)`:
it names the machine, the hash and the creation time, so a signature cannot be replayed for
another machine or another delta.
"""

from __future__ import annotations

import re

SIGNATURE_HEADER = "X-Ovl-Signature"
DELTA_PATH = re.compile(r"^/deltas/(?P<machine>[^/]+)/(?P<sha>[0-9a-f]{64})\.tar\.zst$")
_CREATED = re.compile(r" created=(?P<created>\d{1,19})$")


def delta_path(machine_id: str, sha256: str) -> str:
    """The URL path a delta is PUT to (matched by DELTA_PATH)."""
    return f"/deltas/{machine_id}/{sha256}.tar.zst"


def trusted_comment(machine_id: str, sha256: str, created_ns: int) -> str:
    """What the node signs besides the bytes: the server checks it names the URL's machine."""
    return f"ovl-delta machine={machine_id} sha256={sha256} created={created_ns}"


def signed_creation(comment: str) -> int:
    """The creation time a trusted comment states; -1 when it states none."""
    match = _CREATED.search(comment)
    return int(match["created"]) if match else -1
