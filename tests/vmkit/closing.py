"""The context manager the harness's servers share: `with Server(...) as s:` closes s however
the block ends."""

from __future__ import annotations

from typing import Self


class ClosedOnExit:
    """Subclasses define close()."""

    def close(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
