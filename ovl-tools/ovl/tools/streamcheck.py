"""The bundle check (`ovl.tools.lint.check_bundle`) run on a tar stream while it is written.

`ovl pack` hands its tar stream to the compressor through a `CheckedEncoder`, which copies
every byte into a pipe that a thread scans: the check reads what machines will read (the tar
before compression) without a second pass over the bundle, and a refusal stops the pack at
once instead of after the whole tree is written.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
from collections.abc import Callable
from typing import BinaryIO

from ovl.core.errors import BadInput
from ovl.format.encode import Encoder
from ovl.tools.lint import Finding, Severity

_PIPE_BYTES = 1 << 20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)

Check = Callable[[BinaryIO], list[Finding]]


class BundleRefused(BadInput):
    """The check found errors: machines would refuse the bundle."""

    def __init__(self, what: str, findings: list[Finding]) -> None:
        errors = [f for f in findings if f.severity is Severity.ERROR]
        first = errors[0]
        more = f" (and {len(errors) - 1} more: `ovl lint` lists them)" if len(errors) > 1 else ""
        super().__init__(
            f"{what}: machines would refuse the bundle: {first.where}: {first.message}{more};"
            " nothing written (--force writes it anyway)"
        )
        self.findings = findings


class CheckedEncoder(Encoder):
    """An Encoder that also feeds everything written to it to `check`, on a thread.

    With `stop_on_error`, a check that ends early (it stops at the first refusal) makes the
    next write raise BundleRefused. `finish()` waits for the check; `findings` is its result.
    Use as a context manager: leaving it always ends the pipe and the thread.
    """

    def __init__(self, inner: Encoder, check: Check, what: str, stop_on_error: bool) -> None:
        self._inner = inner
        self.framed = inner.framed
        self._what = what
        self._stop_on_error = stop_on_error
        read_end, self._pipe = os.pipe()
        with contextlib.suppress(OSError):  # a smaller pipe only costs more context switches
            fcntl.fcntl(self._pipe, _F_SETPIPE_SZ, _PIPE_BYTES)
        self._feeding = True
        self._result: list[Finding] | None = None
        self._failure: BaseException | None = None
        source = os.fdopen(read_end, "rb", buffering=_PIPE_BYTES)
        self._thread = threading.Thread(
            target=self._run, args=(check, source), name="bundle check", daemon=True
        )
        self._thread.start()

    def _run(self, check: Check, source: BinaryIO) -> None:
        try:
            self._result = check(source)
        except BaseException as exc:  # handed to the writing thread by findings()
            self._failure = exc
        finally:
            source.close()  # a writer still feeding gets EPIPE: the check has its answer

    def write(self, data: bytes | memoryview, /) -> int:
        written = self._inner.write(data)
        if self._feeding:
            view = memoryview(data)
            try:
                while view:
                    view = view[os.write(self._pipe, view) :]
            except BrokenPipeError:
                self._stop_feeding()
                if self._stop_on_error:
                    self._raise_if_refused()
        return written

    def finish(self) -> None:
        self._inner.finish()
        self._stop_feeding()

    def findings(self) -> list[Finding]:
        """The check's findings, once the stream has ended (after `finish`)."""
        self._stop_feeding()
        if self._failure is not None:
            raise self._failure
        assert self._result is not None
        return self._result

    def _raise_if_refused(self) -> None:
        findings = self.findings()
        if any(f.severity is Severity.ERROR for f in findings):
            raise BundleRefused(self._what, findings)

    def _stop_feeding(self) -> None:
        if self._feeding:
            self._feeding = False
            os.close(self._pipe)
        self._thread.join()

    def __enter__(self) -> CheckedEncoder:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop_feeding()
