"""The kernel command line (docs/CMDLINE.md), parsed once into a frozen BootConfig."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from ovl.agent.devices import DeviceRef, PartPath
from ovl.agent.emergency import Emergency
from ovl.agent.sources import Source, parse_source
from ovl.core.errors import BadInput
from ovl.trust.policy import Policy, parse_policy

if TYPE_CHECKING:
    from ovl.agent.net.ipconfig import NetConfig
    from ovl.agent.remotelog import LogTarget

# gist.github.com/<id>/raw redirects to the raw file without needing the owner name.
DEFAULT_GIST_BASE = "https://gist.github.com"


class Mode(enum.Enum):
    OVERLAY = "overlay"
    BTRFS = "btrfs"
    ZFS = "zfs"


class Phase(enum.Enum):
    """Points `ovl.break=` can stop before, in boot order."""

    FACTS = "facts"
    FETCH = "fetch"
    APPLY = "apply"
    STACK = "stack"
    HANDOVER = "handover"


class Fetch(enum.Enum):
    """`ovl.fetch=`: what an http(s) channel downloads of an indexed, signed bundle."""

    FRAMES = "frames"  # only the frames this machine reads (and the index): docs/TRUST.md
    FULL = "full"  # the whole bundle, as every other channel does


class Cik(enum.Enum):
    """`ovl.cik=`: what a boot from a CIK stick does (docs/CIK.md)."""

    BOOT = "boot"  # this machine's key must be in the ovl.key= directory, else: refused, rescue
    RESCUE = "rescue"  # nothing fetched or applied: every disk read-only, listed, and a shell


PRE_AGENT = "pre-agent"  # ovl.break= value the /init shim stops at, before the agent runs


@dataclass(frozen=True)
class Url:
    """A read-only image downloaded into RAM from `value`, expected to be signed as `name`."""

    value: str
    name: str

    @classmethod
    def parse(cls, text: str) -> Url:
        """`value` is the URL without its fragment; the name is `#name=N`, else the URL's last
        path component, percent-decoded (what `ovl sign FILE` names the image by default)."""
        value, _, fragment = text.partition("#")
        if fragment:
            key, sep, name = fragment.partition("=")
            if key != "name" or not sep or not name:
                raise BadInput("expected the fragment #name=<signed image name>")
            return cls(value, name)
        name = unquote(urlsplit(value).path.rpartition("/")[2])
        if not name:
            raise BadInput("no file name in the URL path; add #name=<signed image name>")
        return cls(value, name)

    def __str__(self) -> str:
        return self.value


# A read-only image: a device holding squashfs/erofs, a file on a partition, or a URL.
Image = DeviceRef | PartPath | Url


@dataclass(frozen=True)
class Upper:
    """Where overlay writes go: tmpfs (part is None) or a directory on a partition."""

    part: PartPath | None = None
    wipe: bool = False


@dataclass(frozen=True)
class BootConfig:
    sources: tuple[Source, ...] = ()  # ovl=, in order
    images: tuple[Image, ...] = ()
    mode: Mode = Mode.OVERLAY
    upper: Upper = Upper()
    btrfs: PartPath | None = None
    zfs: str | None = None
    require: Policy = field(default_factory=Policy)
    require_bundle: bool = False  # ovl.require=...,bundle: no booting without a bundle
    key: Path | PartPath | None = None  # a file, or a directory of keys named by MAC or UUID
    timeout: float = 30.0  # math.inf for ovl.timeout=0: wait forever
    fetch: Fetch = Fetch.FRAMES
    proxy: str | None = None
    cache: PartPath | None = None
    break_at: Phase | None = None
    debug: bool = False
    init: str = "/sbin/init"
    gist_base: str = DEFAULT_GIST_BASE
    network: NetConfig | None = None  # ip=, BOOTIF=, nameserver=; None: not the agent's job
    emergency: Emergency = field(default_factory=Emergency)
    log: LogTarget | None = None
    cik: Cik | None = None
    warnings: tuple[str, ...] = field(default=(), compare=False)


def split_cmdline(text: str) -> list[str]:
    """Split like the kernel: on whitespace, double quotes group, quotes are dropped."""
    words: list[str] = []
    current: list[str] = []
    quoted = in_word = False
    for char in text:
        if char == '"':
            quoted = not quoted
            in_word = True
        elif char.isspace() and not quoted:
            if in_word:
                words.append("".join(current))
            current, in_word = [], False
        else:
            current.append(char)
            in_word = True
    if in_word:
        words.append("".join(current))
    return words


def _items(value: str) -> list[str]:
    return [item for item in value.split(",") if item]


def _image(text: str) -> Image:
    if text.startswith(("http://", "https://")):
        return Url.parse(text)
    if text.startswith("part:"):
        return PartPath.parse(text)
    return DeviceRef.parse(text)


def _upper(value: str) -> Upper:
    if value == "tmpfs":
        return Upper()
    location, *options = value.split(",")
    unknown = [o for o in options if o != "wipe"]
    if unknown:
        raise BadInput(f"unknown option {unknown[0]!r} (only 'wipe')")
    return Upper(PartPath.parse(location), wipe=bool(options))


def _require(value: str) -> dict[str, Any]:
    words = value.split(",")
    trust_words = [w for w in words if w != "bundle"]
    return {"require": parse_policy(",".join(trust_words)), "require_bundle": "bundle" in words}


def _key(value: str) -> Path | PartPath:
    if value.startswith("part:"):
        return PartPath.parse(value)
    path = value.removeprefix("file:")
    if not path.startswith("/"):
        raise BadInput("expected file:/path, /path or part:<device>:/path")
    return Path(path)


def _seconds(value: str) -> float:
    """Seconds up to an hour; 0 is forever (as Ignition's timeouts)."""
    try:
        seconds = float(value)
    except ValueError:
        raise BadInput("expected a number of seconds") from None
    if not 0 <= seconds <= 3600:
        raise BadInput("expected seconds between 0 (forever) and 3600")
    return seconds or math.inf


def _proxy(value: str) -> str:
    if not value.startswith(("http://", "https://", "socks5://", "socks5h://")):
        raise BadInput("expected http://host:port")
    return value


def _zfs(value: str) -> str:
    dataset, sep, snap = value.partition("@")
    if not sep or "/" not in dataset.strip("/") or not snap or dataset.startswith("/"):
        raise BadInput("expected pool/dataset@snapshot")
    return value


def _log(value: str) -> LogTarget:
    from ovl.agent.remotelog import LogTarget  # only boots with ovl.log= pay for it

    return LogTarget.parse(value)


def _enum(kind: type[enum.Enum], value: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        names = ", ".join(m.value for m in kind)
        raise BadInput(f"expected one of {names}") from None


def _break(value: str | None) -> dict[str, Any]:
    """The phase to stop before; `pre-agent` is the /init shim's own, already past: as if absent."""
    if value == PRE_AGENT:
        return {}
    return {"break_at": _enum(Phase, value) if value else Phase.HANDOVER}


def _init(value: str) -> str:
    if not value.startswith("/"):
        raise BadInput("expected an absolute path")
    return value


# key -> (BootConfig field(s), parser of the value; None when the key is given without '=').
_SETTINGS: dict[str, Callable[[str | None], dict[str, Any]]] = {
    "ovl.root": lambda v: {"images": tuple(_image(i) for i in _items(v or ""))},
    "ovl.mode": lambda v: {"mode": _enum(Mode, v or "")},
    "ovl.upper": lambda v: {"upper": _upper(v or "")},
    "ovl.btrfs": lambda v: {"btrfs": PartPath.parse(v or "")},
    "ovl.zfs": lambda v: {"zfs": _zfs(v or "")},
    "ovl.require": lambda v: _require(v or ""),
    "ovl.key": lambda v: {"key": _key(v or "")},
    "ovl.timeout": lambda v: {"timeout": _seconds(v or "")},
    "ovl.fetch": lambda v: {"fetch": _enum(Fetch, v or "")},
    "ovl.proxy": lambda v: {"proxy": _proxy(v or "")},
    "ovl.cache": lambda v: {"cache": PartPath.parse(v or "")},
    "ovl.break": _break,
    "ovl.debug": lambda v: {"debug": v in (None, "1", "yes", "true")},
    "ovl.gist_base": lambda v: {"gist_base": (v or "").rstrip("/")},
    "ovl.emergency": lambda v: {"emergency": Emergency.parse(v or "")},
    "ovl.log": lambda v: {"log": _log(v or "")},
    "ovl.cik": lambda v: {"cik": _enum(Cik, v or "")},
    "init": lambda v: {"init": _init(v or "")},
}


# Keys that may be given more than once, each time adding a value (dracut's network keys).
_REPEATED = ("ip", "nameserver")


def parse_cmdline(text: str, *, own_network: bool = True) -> BootConfig:
    """Parse a kernel command line; malformed ovl values raise BadInput naming the key.

    `own_network`: the agent brings the network up, so ip=, BOOTIF= and nameserver= are its to
    parse; when the initramfs does it (initramfs-tools, dracut) they are left to it."""
    values: dict[str, Any] = {}
    warnings: list[str] = []
    channel_specs: list[str] = []
    repeated: dict[str, list[str]] = {key: [] for key in _REPEATED}
    bootif: str | None = None
    for word in split_cmdline(text):
        key, sep, value = word.partition("=")
        raw = value if sep else None
        if key == "ovl":
            channel_specs = _items(raw or "")
            continue
        if key in _REPEATED and raw is not None:
            repeated[key].append(raw)
            continue
        if key == "BOOTIF" and raw is not None:
            bootif = raw
            continue
        setting = _SETTINGS.get(key)
        if setting is None:
            if key.startswith("ovl."):
                warnings.append(f"unknown setting {key} ignored")
            continue
        try:
            values.update(setting(raw))
        except BadInput as exc:
            raise BadInput(f"{word}: {str(exc).removeprefix(key + ': ')}") from None
    sources = []
    for spec in channel_specs:
        try:
            sources.append(parse_source(spec))
        except BadInput as exc:
            raise BadInput(f"ovl={spec}: {exc}") from None
    if own_network and repeated["ip"]:
        from ovl.agent.net.ipconfig import parse_network  # only boots with ip=

        network = parse_network(repeated["ip"], bootif, repeated["nameserver"])
        if network is not None:
            values["network"] = network
    mode = values.get("mode", Mode.OVERLAY)
    for key, field_name in (("ovl.root", "images"), ("ovl.upper", "upper")):
        if mode is not Mode.OVERLAY and field_name in values:
            warnings.append(f"{key} ignored with ovl.mode={mode.value}")
    config = BootConfig(sources=tuple(sources), warnings=tuple(warnings), **values)
    _check_consistent(config)
    return config


def _check_consistent(config: BootConfig) -> None:
    if config.mode is Mode.BTRFS and config.btrfs is None:
        raise BadInput("ovl.mode=btrfs needs ovl.btrfs=part:<device>:/<subvolume>")
    if config.mode is Mode.ZFS and config.zfs is None:
        raise BadInput("ovl.mode=zfs needs ovl.zfs=pool/dataset@snapshot")
    if config.cik is Cik.BOOT and config.key is None:
        raise BadInput("ovl.cik=boot needs ovl.key=<directory of node keys>/")


def emergency_setting(text: str) -> Emergency:
    """`ovl.emergency=` alone, for a command line that failed to parse: what the shim does with
    that failure (the default, a shell, when the setting is missing or malformed too)."""
    value = None
    for word in split_cmdline(text):
        key, sep, raw = word.partition("=")
        if key == "ovl.emergency" and sep:
            value = raw
    try:
        return Emergency.parse(value) if value is not None else Emergency()
    except BadInput:
        return Emergency()


def has_ovl_keys(text: str) -> bool:
    return any(w == "ovl" or w.startswith(("ovl=", "ovl.")) for w in split_cmdline(text))


def read_cmdline(proc_cmdline: Path, defaults: Path) -> str:
    """The command line to parse: /proc/cmdline, after the initramfs defaults when it has no
    ovl keys (so init= and the like from the boot loader still win)."""
    text = proc_cmdline.read_text()
    if has_ovl_keys(text) or not defaults.is_file():
        return text
    return defaults.read_text() + " " + text
