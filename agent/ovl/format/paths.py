"""Path safety for bundle entries: pure functions, no filesystem access."""

from __future__ import annotations

from ovl.core.errors import BadInput

Parts = tuple[str, ...]


def member_parts(name: str) -> Parts:
    """Split a tar member name into relative components ('' and '.' dropped).

    Absolute names and '..' components are refused: an entry must stay inside the bundle.
    """
    if name.startswith("/"):
        raise BadInput(f"bundle entry {name!r}: absolute path")
    pieces = name.split("/")
    if "" in pieces or "." in pieces:
        pieces = [part for part in pieces if part not in ("", ".")]
    parts = tuple(pieces)
    if ".." in parts:
        raise BadInput(f"bundle entry {name!r}: '..' in path")
    return parts


def symlink_climbs_out(link: Parts, target: str) -> bool:
    """True when a relative symlink at `link` climbs above the root it lives in.

    Absolute targets resolve against the root of the booted system, so they stay inside it.
    The check is lexical; ovl never follows a link while writing.
    """
    if target.startswith("/"):
        return False
    depth = len(link) - 1
    for part in target.split("/"):
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def show(parts: Parts) -> str:
    return "/".join(parts) or "."
