"""Sizes and durations as people read them (exact numbers stay in --json output)."""

from __future__ import annotations

_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(count: int) -> str:
    """`512 B`, `1.5 KiB`, `23.4 MiB`, `1.20 GiB`: binary units, three significant digits."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in _UNITS:
        value /= 1024
        if value < 1024 or unit == _UNITS[-1]:
            break
    digits = 2 if value < 10 else 1 if value < 100 else 0
    return f"{value:.{digits}f} {unit}"


def human_duration(seconds: float) -> str:
    """`0:05`, `12:34`, `1:02:03` (hours only when there are some)."""
    whole = max(0, round(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"
