"""One validating pass over a bundle's tar stream: the stream decoded (cut down to the wanted
layers' frames when a frame index allows), parsed member by member (`tarread`), and every member
checked by `membercheck.MemberCheck`, which refuses hostile ones with one line naming the entry
and the reason. Nothing is written here."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import BinaryIO, cast

from ovl.core.errors import BadInput
from ovl.format.codec import DecodedStream, Encoding, open_decoded
from ovl.format.favors import LayerName, parse_layer_name
from ovl.format.frameindex import FrameRanges, frame_ranges, read_index, wanted_frames
from ovl.format.manifest import Manifest

# The reader's vocabulary (its limits, the entries it yields), importable from here as before.
from ovl.format.membercheck import DEFAULT_LIMITS as DEFAULT_LIMITS
from ovl.format.membercheck import Entry as Entry
from ovl.format.membercheck import Kind as Kind
from ovl.format.membercheck import Limits as Limits
from ovl.format.membercheck import MemberCheck
from ovl.format.tarread import Member, SparseMember, TarDamage, TarReader

_COPY_CHUNK = 1 << 20


def folder_filter(
    wanted: Callable[[LayerName], bool], may_want: Callable[[str], bool]
) -> Callable[[str], bool]:
    """A frame index's layer folder name → whether `wanted` takes that layer; BadInput naming
    a malformed name."""

    def wanted_name(dirname: str) -> bool:
        if not may_want(dirname):
            return False
        try:
            layer = parse_layer_name(dirname)
        except BadInput as exc:
            raise BadInput(f"bundle frame index: layer {dirname!r}: {exc}") from None
        return wanted(layer)

    return wanted_name


class BundleReader:
    """Reads a bundle once, in stream order. Use `entries()`, and read an entry's data with
    `copy_data()` before asking for the next entry.

    `wanted`: the layers whose entries are yielded and fully checked (the base always is);
    other layers' entries get only the per-entry checks and nothing of them is kept.
    `may_want`: False for a folder name `wanted` is sure to refuse, so that a frame index's
    thousands of names need not all be parsed.
    """

    def __init__(
        self,
        source: BinaryIO,
        limits: Limits,
        wanted: Callable[[LayerName], bool] | None = None,
        may_want: Callable[[str], bool] = lambda dirname: True,
    ) -> None:
        # (frames decoded, frames in the bundle) when a frame index let this reader skip some.
        self.frames_read: tuple[int, int] | None = None
        if wanted is not None:
            source = self._only_wanted_frames(source, wanted, may_want)
        self._decoded: DecodedStream = open_decoded(source, max_bytes=limits.max_total_bytes)
        self.encoding: Encoding = self._decoded.encoding
        self._check = MemberCheck(limits, self._manifest_data, wanted)
        self._tar: TarReader | None = None
        self._last = "(start of the archive)"

    def _only_wanted_frames(
        self, source: BinaryIO, wanted: Callable[[LayerName], bool], may_want: Callable[[str], bool]
    ) -> BinaryIO:
        """`source` cut down to its base frames and `wanted` layers' frames when it is a seekable
        bundle with a frame index; `source` itself otherwise. Layers not read this way get none of
        the per-entry checks: `ovl lint` and `ovl inspect` read every frame."""
        if not source.seekable() or source.tell() != 0:
            return source
        frames = read_index(source)
        source.seek(0)
        if frames is None:
            return source

        numbers = wanted_frames(frames, folder_filter(wanted, may_want))
        self.frames_read = (len(numbers), len(frames))
        return cast(BinaryIO, FrameRanges(source, frame_ranges(frames, numbers)))

    def entries(self) -> Iterator[Entry]:
        self._tar = TarReader(self._decoded)
        try:
            for member in self._tar.members():
                self._last = member.name
                entry = self._check.entry(member)
                if entry is not None:
                    yield entry
            # To the end of the stream, past the end-of-archive blocks: decoders notice a
            # stream cut short only there.
            while self._decoded.read(_COPY_CHUNK):
                pass
        except TarDamage as exc:
            raise BadInput(f"bundle: {exc} after entry {self._last!r}") from None
        except SparseMember as exc:
            raise BadInput(f"bundle entry {exc.name!r}: sparse files are not supported") from None
        finally:
            self._tar = None

    @property
    def manifest(self) -> Manifest | None:
        """The bundle's `ovl.json`, once `entries()` has passed it."""
        return self._check.manifest

    @property
    def decoded_bytes(self) -> int:
        """Bytes of tar stream decoded so far."""
        return self._decoded.decoded_bytes

    def copy_data(self, entry: Entry, fd: int) -> int:
        """Write a regular file's data to `fd`; returns the byte count."""
        member = entry.member
        remaining = member.size
        while remaining:
            chunk = self._read(member, min(remaining, _COPY_CHUNK))
            assert chunk, "copy_data() of an entry other than the one just yielded"
            remaining -= len(chunk)
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        return member.size

    def _read(self, member: Member, size: int) -> bytes:
        assert self._tar is not None, "entry data read outside entries()"
        try:
            return self._tar.read_data(size)
        except TarDamage as exc:
            raise BadInput(f"bundle entry {member.name!r}: {exc}") from None

    def _manifest_data(self, member: Member) -> bytes:
        return self._read(member, member.size)
