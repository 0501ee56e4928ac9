"""What a machine accepts, from `ovl.require=LEVEL[,allow-rollback][,allow-legacy]`."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from ovl.core.errors import BadInput


class Require(enum.Enum):
    """The level: each one accepts a subset of what the one below it accepts."""

    NONE = "none"
    SIGNED = "signed"
    ENCRYPTED = "encrypted"


_FLAGS = ("allow-rollback", "allow-legacy")


@dataclass(frozen=True)
class Policy:
    """`level` plus two escape hatches, both off by default.

    allow_rollback: accept a signed serial older than the highest accepted one.
    allow_legacy: accept the unauthenticated `openssl enc` format of ovl's predecessor.
    """

    level: Require = Require.SIGNED
    allow_rollback: bool = False
    allow_legacy: bool = False

    @property
    def needs_signature(self) -> bool:
        return self.level is not Require.NONE

    @property
    def needs_encryption(self) -> bool:
        return self.level is Require.ENCRYPTED

    def __str__(self) -> str:
        flags = [
            f for f, on in zip(_FLAGS, (self.allow_rollback, self.allow_legacy), strict=True) if on
        ]
        return ",".join([self.level.value, *flags])


def parse_policy(text: str) -> Policy:
    """`signed`, `encrypted,allow-rollback`, `none,allow-legacy`, ...; BadInput names the word."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        raise BadInput("ovl.require: empty (expected signed, encrypted or none)")
    try:
        level = Require(words[0])
    except ValueError as exc:
        raise BadInput(
            f"ovl.require: unknown level {words[0]!r} (expected signed, encrypted or none)"
        ) from exc
    for flag in words[1:]:
        if flag not in _FLAGS:
            raise BadInput(f"ovl.require: unknown flag {flag!r} (expected {' or '.join(_FLAGS)})")
    return Policy(
        level=level,
        allow_rollback="allow-rollback" in words[1:],
        allow_legacy="allow-legacy" in words[1:],
    )
