"""Which boot a requesting machine gets: pure functions over the request and the profiles.

A machine is what its request says: `mac=` (any spelling normalize_mac reads) and `uuid=` (its
SMBIOS UUID, what iPXE's `${uuid}` gives). Its profile is the one whose `machines/` entries
match it, by the same favor rule as bundle layers (ovl.format.favors); every matching entry of
that profile applies in layer order over the profile's boot.json: kernel, initrd and images
replace, cmdline is appended.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from urllib.parse import parse_qs

from ovl.core.errors import BadInput
from ovl.core.facts import Facts, normalize_mac
from ovl.format.favors import apply_order, layer_matches
from ovl.tools.netboot.config import BootSpec, Entry, ProfileBoot
from ovl.trust.keynames import uuid_key_name


@dataclass(frozen=True)
class Request:
    mac: str | None = None  # lower-case colon form
    uuid: str | None = None  # lower case; None when absent or a firmware placeholder
    profile: str | None = None  # asked for by name (the fallback menu's choice)

    @property
    def facts(self) -> Facts:
        return Facts(macs=(self.mac,) if self.mac else (), product_uuid=self.uuid)

    def describe(self) -> str:
        return " ".join(x for x in (self.mac, self.uuid) if x) or "a machine without MAC or UUID"


@dataclass(frozen=True)
class Chosen:
    profile: ProfileBoot
    spec: BootSpec  # kernel and initrd set
    entries: tuple[str, ...]  # the machine entries applied, in order


@dataclass(frozen=True)
class Unmatched:
    reason: str


def parse_request(query: str) -> Request:
    """The query of `GET /boot.ipxe?mac=...&uuid=...[&profile=...]`; BadInput naming a bad one."""
    values = {key: found[-1] for key, found in parse_qs(query).items()}
    mac = values.get("mac", "").strip()
    try:
        mac = normalize_mac(mac) if mac else ""
    except BadInput:
        raise BadInput(f"mac={mac!r}: not a MAC address") from None
    uuid = values.get("uuid", "").strip()
    if uuid and not is_uuid(uuid):
        raise BadInput(f"uuid={uuid!r}: not a UUID")
    profile = values.get("profile", "").strip() or None
    return Request(mac or None, uuid_key_name(uuid) if uuid else None, profile)


def is_uuid(text: str) -> bool:
    """8-4-4-4-12 hex digits."""
    parts = text.split("-")
    return [len(p) for p in parts] == [8, 4, 4, 4, 12] and all(
        c in "0123456789abcdefABCDEF" for c in "".join(parts)
    )


def merge(boot: BootSpec, entries: tuple[Entry, ...]) -> BootSpec:
    """The profile's boot with each entry over it in turn."""
    spec = boot
    for entry in entries:
        change = entry.spec
        spec = replace(
            spec,
            kernel=change.kernel or spec.kernel,
            initrd=change.initrd or spec.initrd,
            images=change.images if change.images is not None else spec.images,
            cmdline=" ".join(x for x in (spec.cmdline, change.cmdline) if x),
        )
    return spec


def matching(profile: ProfileBoot, request: Request) -> tuple[Entry, ...]:
    facts = request.facts
    found = [entry for entry in profile.entries if layer_matches(entry.layer, facts)]
    return tuple(sorted(found, key=lambda entry: apply_order(entry.layer)))


def choose(request: Request, profiles: list[ProfileBoot]) -> Chosen | Unmatched:
    """The boot for this machine, or why it has none (then it gets the fallback)."""
    if request.profile is not None:
        named = [p for p in profiles if p.profile == request.profile]
        if not named:
            return Unmatched(f"no netboot profile {request.profile!r}")
        entries = matching(named[0], request)
        return Chosen(named[0], merge(named[0].boot, entries), _names(entries))
    matched = [(p, matching(p, request)) for p in profiles]
    matched = [(p, entries) for p, entries in matched if entries]
    if not matched:
        return Unmatched(f"no netboot entry matches {request.describe()}")
    if len(matched) > 1:
        names = ", ".join(p.profile for p, _ in matched)
        return Unmatched(f"{request.describe()} is a machine of several profiles ({names})")
    profile, entries = matched[0]
    return Chosen(profile, merge(profile.boot, entries), _names(entries))


def _names(entries: tuple[Entry, ...]) -> tuple[str, ...]:
    return tuple(entry.layer.dirname for entry in entries)
