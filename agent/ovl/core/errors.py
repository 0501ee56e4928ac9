"""The one exception type for expected failures."""


class OvlError(Exception):
    """An expected failure, carrying one line a user can act on.

    Exit codes: 2 bad input (usage, malformed files), 1 any other failure.
    """

    def __init__(self, message: str, *, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    @property
    def line(self) -> str:
        return str(self)


class BadInput(OvlError):
    """Malformed or hostile input (exit code 2)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, exit_code=2)


def error_line(exc: BaseException) -> str:
    """One line for any exception: an OvlError's own line; an OSError's reason, with the file
    when it names one; anything else (a bug) as its type and message."""
    if isinstance(exc, OvlError):
        return exc.line
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.filename}: {exc.strerror}" if exc.filename else exc.strerror
    return f"{type(exc).__name__}: {exc}"
