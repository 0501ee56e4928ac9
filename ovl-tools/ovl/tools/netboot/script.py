"""iPXE scripts: a machine's boot, the menu for machines no entry matches, and a message.

Every script is valid iPXE and ends in a retry (`sleep`, then the same request again), so a
machine that cannot boot now keeps asking instead of stopping at a dead prompt. Everything put
into a script is checked first: profile and file names, command lines without `$`, `"` or
control characters, URLs built from checked parts.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from urllib.parse import urlencode

from ovl.tools.netboot.choose import Chosen, Request
from ovl.tools.netboot.config import ProfileBoot, Settings

INITRD_NAME = "initrd.img"  # the name iPXE gives the initramfs; the EFI stub wants initrd=<it>
RETRY_SECONDS = 10
ECHO_WIDTH = 60  # after "ovl netboot: ": within the 80 columns a BIOS console shows


def request_url(base_url: str, request: Request, *, profile: str | None = None) -> str:
    """`<base>/boot.ipxe?mac=...&uuid=...[&profile=...]` for this machine."""
    query = {"mac": request.mac, "uuid": request.uuid, "profile": profile or request.profile}
    pairs = {key: value for key, value in query.items() if value}
    return f"{base_url}/boot.ipxe" + (f"?{urlencode(pairs, safe=':')}" if pairs else "")


def kernel_cmdline(chosen: Chosen, base_url: str, request: Request) -> str:
    """The machine's command line: the profile's and its entries', then what ovl needs that
    they do not set: `ip=dhcp`, `ovl=` (the profile's current bundle on this server),
    `ovl.root=` (the boot's images), `BOOTIF=` (the NIC that booted, pxelinux's form)."""
    profile, spec = chosen.profile.profile, chosen.spec
    given = {word.partition("=")[0] for word in spec.cmdline.split()}
    files = f"{base_url}/profiles/{profile}/netboot"
    words = [f"initrd={INITRD_NAME}"]
    if "ip" not in given:
        words.append("ip=dhcp")
    words += [spec.cmdline] if spec.cmdline else []
    if "ovl" not in given:
        words.append(f"ovl={base_url}/profiles/{profile}/current/bundle.ovl")
    if spec.images and "ovl.root" not in given:
        words.append("ovl.root=" + ",".join(f"{files}/{image}" for image in spec.images))
    if "BOOTIF" not in given:
        mac = request.mac.replace(":", "-") if request.mac else "${net0/mac:hexhyp}"
        words.append(f"BOOTIF=01-{mac}")
    return " ".join(words)


def echo(text: str) -> list[str]:
    """`echo` lines for `text`: a BIOS console cuts lines at 80 columns, so they are wrapped."""
    lines = textwrap.wrap(safe_text(text), ECHO_WIDTH, break_on_hyphens=False)
    return [f"echo ovl netboot: {line}" for line in lines]


def _retry(base_url: str, request: Request, why: str) -> list[str]:
    return [
        ":retry",
        *echo(f"{why}; asking again in {RETRY_SECONDS} seconds"),
        f"sleep {RETRY_SECONDS}",
        f"chain --replace --autofree {request_url(base_url, request)} || goto retry",
    ]


def boot_script(chosen: Chosen, base_url: str, request: Request, note: str = "") -> str:
    """Boot the chosen kernel and initramfs with the machine's command line."""
    profile = chosen.profile.profile
    files = f"{base_url}/profiles/{profile}/netboot"
    lines = ["#!ipxe", *echo(note), *echo(f"profile {profile} for {request.describe()}")]
    lines += echo(f"entries {' '.join(chosen.entries)}") if chosen.entries else []
    lines += [
        f"kernel {files}/{chosen.spec.kernel} {kernel_cmdline(chosen, base_url, request)}"
        " || goto retry",
        f"initrd --name {INITRD_NAME} {files}/{chosen.spec.initrd} || goto retry",
        "boot || goto retry",
        *_retry(base_url, request, f"booting profile {profile} failed"),
    ]
    return "\n".join(lines) + "\n"


def menu_script(
    reason: str, request: Request, profiles: list[ProfileBoot], settings: Settings, base_url: str
) -> str:
    """For a machine no entry matches: choose a profile (the default one after the timeout)."""
    if not profiles:
        return message_script(f"{reason}, and no profile has a netboot", request, base_url)
    request = replace(request, profile=None)
    default = settings.default_profile
    names = [p.profile for p in profiles]
    choose = "choose"
    if default in names:
        choose += f" --default {default}"
        if settings.menu_timeout:
            choose += f" --timeout {settings.menu_timeout * 1000}"
    lines = [
        "#!ipxe",
        *echo(reason),
        f"menu ovl netboot: choose a profile for {request.describe()}",
        *(f"item {name} {name}" for name in names),
        f"{choose} profile || goto retry",
        f"chain --replace --autofree {request_url(base_url, request)}&profile=${{profile}}"
        if request.mac or request.uuid
        else f"chain --replace --autofree {base_url}/boot.ipxe?profile=${{profile}}",
        *_retry(base_url, request, "no profile chosen"),
    ]
    return "\n".join(lines) + "\n"


def message_script(reason: str, request: Request, base_url: str) -> str:
    """Nothing to boot: say why on the machine's console, and ask again later."""
    lines = ["#!ipxe", *_retry(base_url, request, reason)]
    return "\n".join(lines) + "\n"


def safe_text(text: str) -> str:
    """`text` for an `echo`: no `$` expansions, no line breaks."""
    return " ".join(text.replace("$", "").split())
