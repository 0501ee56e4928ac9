"""What `GET /boot.ipxe?...` answers: always a valid iPXE script, never a 404.

A machine its entries match boots its profile; any other request (no entry matches, several
profiles claim the machine, a malformed MAC, a file missing on the server, a broken netboot
file) gets the fallback of DIR/netboot.json: the menu of profiles, or the default profile's
boot; and the script says why on the machine's console.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from ovl.core.errors import BadInput
from ovl.tools.netboot.choose import Chosen, Request, choose, parse_request
from ovl.tools.netboot.config import (
    ProfileBoot,
    Settings,
    Unknown,
    load_profile,
    load_settings,
    netboot_profiles,
)
from ovl.tools.netboot.script import boot_script, menu_script, message_script


@dataclass(frozen=True)
class Answer:
    script: str
    profile: str | None  # the profile the script boots (None: menu or message)
    note: str | None  # why this machine got the fallback; None when its own entry matched


def answer(root: Path, query: str, host_url: str) -> Answer:
    """The script for the request `query`; `host_url` is how the request reached this server
    (used unless netboot.json names server_url)."""
    try:
        settings = load_settings(root)
    except BadInput as exc:
        return Answer(message_script(exc.line, Request(), host_url), None, exc.line)
    base = settings.server_url or host_url
    try:
        request = parse_request(query)
    except BadInput as exc:
        return _fallback(root, Request(), settings, base, exc.line)
    try:
        profiles = [load_profile(root, name) for name in netboot_profiles(root)]
    except BadInput as exc:
        return Answer(message_script(exc.line, request, base), None, exc.line)
    chosen = choose(request, profiles)
    if isinstance(chosen, Chosen):
        return _boot(chosen, request, base, None)
    return _fallback(root, request, settings, base, chosen.reason, profiles)


def _boot(chosen: Chosen, request: Request, base: str, note: str | None) -> Answer:
    missing = _missing_files(chosen)
    if missing:
        line = f"profile {chosen.profile.profile}: {missing} is not on the server"
        return Answer(message_script(line, request, base), None, line)
    return Answer(boot_script(chosen, base, request, note or ""), chosen.profile.profile, note)


def _fallback(
    root: Path,
    request: Request,
    settings: Settings,
    base: str,
    reason: str,
    profiles: list[ProfileBoot] | None = None,
) -> Answer:
    if profiles is None:
        try:
            profiles = [load_profile(root, name) for name in netboot_profiles(root)]
        except BadInput as exc:
            return Answer(message_script(exc.line, request, base), None, exc.line)
    if settings.unknown is Unknown.DEFAULT and settings.default_profile is not None:
        default = choose(replace(request, profile=settings.default_profile), profiles)
        if isinstance(default, Chosen):
            note = f"{reason}; booting the default profile {settings.default_profile}"
            return _boot(default, request, base, note)
        reason = f"{reason}; and {default.reason}"
    menu = menu_script(reason, request, profiles, settings, base)
    return Answer(menu, None, f"{reason}; answered with the menu")


def _missing_files(chosen: Chosen) -> str | None:
    spec = chosen.spec
    for name in (spec.kernel, spec.initrd, *(spec.images or ())):
        if name is None or not (chosen.profile.directory / name).is_file():
            return name or "a kernel or initramfs"
    return None
