"""`ovl lint`'s check run by `ovl pack` on what it writes, as it writes it.

Each tar member pack writes goes, as it is about to be written, through the rules machines
apply when they read it (ovl.format.membercheck.MemberCheck: what the bundle reader checks of
every member it parses), ovl.json's bytes with it; the entries become the BundleInfo lint's
rules look at (ovl.format.scan.BundleContents, as scan_bundle builds it). Nothing is read back:
what is checked is built from the very values written into each header."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from ovl.core.errors import BadInput, OvlError
from ovl.format.codec import Compression, Encoding, sniff
from ovl.format.membercheck import DEFAULT_LIMITS, MemberCheck
from ovl.format.scan import BundleContents
from ovl.format.tarread import Member
from ovl.format.tarwrite import BLOCK
from ovl.tools.lint import Finding, Severity, lint_bundle, refusal_findings

# Compared here for every member, MemberCheck.stream_bytes refusing only what is over it.
_MAX_STREAM_BYTES = DEFAULT_LIMITS.max_total_bytes


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


class PackCheck:
    """The check of the bundle written from the tree at `root`, fed its members in order.

    A refusal raises BundleRefused at once when `stop_on_refusal`; otherwise (--force) the
    members after it go unchecked, as machines stop at the first problem, and `findings()`
    reports it. `layer_dirnames` lists every folder under layers/, for the findings of a
    refusal (the check stops at the first malformed name).
    """

    def __init__(
        self,
        root: Path,
        encoding: Encoding,
        layer_dirnames: Callable[[], Iterable[str]],
        *,
        stop_on_refusal: bool,
    ) -> None:
        self._root = root
        self._encoding = encoding
        self._layer_dirnames = layer_dirnames
        self._stop = stop_on_refusal
        self._members = MemberCheck(DEFAULT_LIMITS, self._read_manifest)
        self._contents = BundleContents()
        self._refusal: BadInput | None = None
        self._manifest: bytes | None = None
        self._written = 0

    def member(self, member: Member) -> bytes | None:
        """Check `member`, the next one written. Returns the data to write for it when the
        check had to read it (ovl.json: what is written is then what was checked); None when
        the data is the file's, read as it is written."""
        if self._refusal is None:
            try:
                entry = self._members.entry(member)
                end = member.offset_data + member.size
                if end > _MAX_STREAM_BYTES:
                    self._members.stream_bytes(end)
            except BadInput as exc:
                self._refuse(exc)
            else:
                if entry is not None:
                    self._contents.add(entry)
        if self._manifest is None:
            return None
        data, self._manifest = self._manifest, None
        return data

    def end(self, stream_bytes: int, members: int) -> None:
        """The tar stream is complete: `members` members, `stream_bytes` long."""
        self._written = stream_bytes
        if self._refusal is None:
            try:
                self._members.stream_bytes(stream_bytes)
                if not members and self._encoding.compression is Compression.NONE:
                    # An empty tar is its end-of-archive zeros: no reader can tell it for a tar.
                    sniff(bytes(min(stream_bytes, BLOCK)))
            except BadInput as exc:
                self._refuse(exc)

    def findings(self) -> list[Finding]:
        """After `end`: what `ovl lint` reports of the bundle written (errors only when the
        check does not stop on them)."""
        if self._refusal is not None:
            return refusal_findings(self._refusal, self._layer_dirnames)
        # The frame index is not read back: lint's rules look at the entries.
        info = self._contents.info(self._encoding, self._members.manifest, self._written, None)
        return lint_bundle(info, None)

    def _refuse(self, exc: BadInput) -> None:
        self._refusal = exc
        if self._stop:
            raise BundleRefused(str(self._root), self.findings())

    def _read_manifest(self, member: Member) -> bytes:
        path = os.path.join(self._root, member.name)
        with open(path, "rb") as source:
            data = source.read(member.size)
        if len(data) != member.size:
            raise OvlError(f"{path}: changed while packing (unexpected end of data)")
        self._manifest = data
        return data
