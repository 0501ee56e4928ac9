"""The initramfs network, brought up while the boot's other phases run and waited for only by
what needs it (http(s) channels and images, `ovl.log=`), within `ovl.timeout` of its start.

DHCP runs on every NIC the command line allows, each once its carrier is seen (links are set
up first: the carrier of a down link cannot be read), in parallel; BOOTIF's NIC gets a head
start. The first lease wins; the other clients are stopped; the winner keeps renewing until
stop() just before the hand-over. Static entries are applied as soon as their NIC exists and
count once it has a carrier. Every event is one `ovl: net:` line, and while something waits a
status line says what each NIC lacks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ovl.agent.console import Console, Level
from ovl.agent.deadline import Deadline, window_words
from ovl.agent.net.dhcp import DhcpRace, Lease
from ovl.agent.net.ipconfig import Dhcp, Entry, NetConfig, NicRef, Static
from ovl.agent.net.links import AnyLinkUp, Link, has_carrier, list_links, set_up
from ovl.agent.net.static import apply_static, set_hostname, write_resolv_conf
from ovl.core.errors import OvlError

HEAD_START = 3.0  # seconds BOOTIF's NIC runs DHCP before the others join
STATUS_SECONDS = 5.0  # between "waiting" lines
POLL_SECONDS = 0.1


def start_network(
    config: NetConfig | None, paths: NetPaths, console: Console, window: float
) -> BringUp | AnyLinkUp:
    """The agent's own bring-up, started, when the command line asks for one (ip=); else the
    network someone else configures (AnyLinkUp: any interface up)."""
    if config is None:
        return AnyLinkUp(paths.sysfs)
    network = BringUp(config, paths, console, window)
    network.start()
    return network


@dataclass(frozen=True)
class NetPaths:
    sysfs: Path = Path("/sys")
    run_dir: Path = Path("/run/ovl")
    script: Path = Path("/etc/ovl/udhcpc.script")
    resolv_conf: Path = Path("/etc/resolv.conf")


class BringUp:
    """This boot's network: start() it early, then up() to ask and wait() to need it."""

    def __init__(self, config: NetConfig, paths: NetPaths, console: Console, window: float):
        self.config = config
        self.paths = paths
        self.console = console
        self.deadline = Deadline(window)
        self.began = time.monotonic()
        servers = config.nameservers + tuple(str(d) for s in config.static for d in s.dns)
        self._dhcp = DhcpRace(paths.run_dir, paths.script, servers)
        self._raised: set[str] = set()
        self._started: dict[str, float] = {}  # NIC -> when its DHCP client started
        self._static_done: set[str] = set()
        self._problems: dict[str, str] = {}  # NIC -> why it cannot be used
        self._lease: Lease | None = None
        self._up_at: float | None = None
        self._shown = self.began
        self._polling = False  # a console line can reach poll() again (ovl.log= asks up())

    def start(self) -> None:
        """Say what is asked for, and take the first step (lo is the /init shim's)."""
        self.console.line("net", f"{describe(self.config)}, {window_words(self.deadline.window)}")
        self.poll()

    def up(self) -> bool:
        return self.poll()

    def wait(self, deadline: Deadline) -> None:
        """Return once the network is up; OvlError naming what each NIC lacks when `deadline`
        or the bring-up's own window passes first."""
        until = min(deadline.at, self.deadline.at)
        while not self.poll():
            now = time.monotonic()
            if now >= until:
                raise OvlError(f"network not up after {now - self.began:.0f} s: {self.lacking()}")
            if now - self._shown >= STATUS_SECONDS:
                self._shown = now
                self.console.line(
                    "net",
                    f"waiting: {self.lacking()}"
                    f" ({now - self.began:.0f} s, {self.deadline.describe()})",
                )
            time.sleep(min(POLL_SECONDS, max(0.0, until - now)))

    def poll(self) -> bool:
        """One step: new NICs set up, DHCP started where a carrier appeared, static addresses
        applied, the winning lease taken. True once the network is up."""
        if self._up_at is not None or self._polling:
            return self._up_at is not None
        self._polling = True
        try:
            self._step_all()
        finally:
            self._polling = False
        return self._up_at is not None

    def _step_all(self) -> None:
        links = list_links(self.paths.sysfs)
        wanted = self._wanted(links)
        for link, entry in wanted:
            if link.name in self._problems:
                continue
            try:
                self._step(link, entry)
            except OvlError as exc:
                self._problems[link.name] = exc.line
                self.console.line("net", f"{link.name}: {exc.line}", Level.WARNING)
        self._take_lease()
        if self._ready(wanted):
            self._up_at = time.monotonic()
            if not self.config.dhcp:
                names = ", ".join(sorted(self._static_done))
                self.console.line("net", f"up on {names} after {self._up_at - self.began:.1f} s")

    def stop(self) -> None:
        """Stop every DHCP client (the address stays), before the hand-over."""
        stopped = self._dhcp.stop_all()
        if stopped:
            self.console.line(
                "net",
                f"DHCP stopped on {', '.join(stopped)}; the address stays for the booted system",
            )

    def lacking(self) -> str:
        """What keeps each wanted NIC from being up, e.g. 'eth0 no carrier, eth1 no DHCP offer'."""
        links = list_links(self.paths.sysfs)
        wanted = self._wanted(links)
        parts = [f"{link.name} {self._lack(link, entry)}" for link, entry in wanted]
        parts += [f"no NIC {ref}" for ref in self._missing(links)]
        return ", ".join(parts) or "no network interface"

    def describe(self) -> dict[str, Any]:
        """For report.json: what was asked, and what came of it."""
        doc: dict[str, Any] = {"asked": describe(self.config), "up": self._up_at is not None}
        if self._up_at is not None:
            doc["seconds"] = round(self._up_at - self.began, 2)
        if self._lease is not None:
            lease = self._lease
            doc["dhcp"] = {
                "interface": lease.interface,
                "address": lease.address,
                "router": lease.router,
                "dns": list(lease.dns),
                "lease_seconds": lease.seconds,
                "server": lease.server,
            }
        if self._static_done:
            doc["static"] = sorted(self._static_done)
        if self._up_at is None:
            doc["lacking"] = self.lacking()
        return doc

    def _step(self, link: Link, entry: Entry) -> None:
        if link.name not in self._raised:
            set_up(link.name, entry.mtu)
            self._raised.add(link.name)
        if isinstance(entry, Static):
            if link.name not in self._static_done:
                self._apply_static(link, entry)
            return
        if link.name in self._started or self._lease is not None:
            return
        if self._dhcp.running(link.name):  # started by an earlier agent run (ovl.break)
            self._started[link.name] = time.monotonic()
            return
        if not has_carrier(self.paths.sysfs, link.name) or not self._may_start(link):
            return
        self._dhcp.start(link.name)
        now = time.monotonic()
        self._started[link.name] = now
        self.console.line(
            "net", f"{link.name}: carrier after {now - self.began:.1f} s, DHCP started"
        )

    def _apply_static(self, link: Link, entry: Static) -> None:
        apply_static(entry, link.name)
        self._static_done.add(link.name)
        if entry.hostname:
            set_hostname(entry.hostname)
        if not self.config.dhcp:  # with DHCP too, the udhcpc script writes resolv.conf
            servers = self.config.nameservers + tuple(str(d) for d in entry.dns)
            write_resolv_conf(self.paths.resolv_conf, servers)
        via = f" via {entry.gateway}" if entry.gateway else ""
        self.console.line("net", f"{link.name}: static {entry.address}{via}")

    def _take_lease(self) -> None:
        if self._lease is not None:
            return
        lease = self._dhcp.lease()
        if lease is None:
            return
        self._lease = lease
        losers = self._dhcp.stop_all(keep=lease.interface)
        started = self._started.get(lease.interface, self.began)
        details = f"router {lease.router or 'none'}, dns {' '.join(lease.dns) or 'none'}"
        also = f"; DHCP stopped on {', '.join(losers)}" if losers else ""
        self.console.line(
            "net",
            f"{lease.interface}: lease {lease.address}, {details}"
            f" after {time.monotonic() - started:.1f} s{also}",
        )

    def _ready(self, wanted: list[tuple[Link, Entry]]) -> bool:
        if self.config.dhcp and self._lease is None:
            return False
        statics = [link for link, entry in wanted if isinstance(entry, Static)]
        if len(statics) < len(self.config.static):
            return False
        return all(
            link.name in self._static_done and has_carrier(self.paths.sysfs, link.name)
            for link in statics
        )

    def _may_start(self, link: Link) -> bool:
        bootif = self.config.bootif
        if bootif is None or link.mac == bootif:
            return True
        return time.monotonic() - self.began >= HEAD_START

    def _wanted(self, links: list[Link]) -> list[tuple[Link, Entry]]:
        """The NICs the command line wants configured, each with its entry; BOOTIF's first."""
        pairs: list[tuple[Link, Entry]] = []
        named = {id(entry): self._ref(entry) for entry in self.config.entries}
        for link in links:
            for entry in self.config.entries:
                ref = named[id(entry)]
                if ref is None and isinstance(entry, Dhcp):  # every Ethernet NIC
                    if link.ethernet:
                        pairs.append((link, entry))
                elif ref is not None and _matches(ref, link):
                    pairs.append((link, entry))
        return sorted(pairs, key=lambda pair: pair[0].mac != self.config.bootif)

    def _missing(self, links: list[Link]) -> list[NicRef]:
        refs = [self._ref(entry) for entry in self.config.entries]
        return [
            ref
            for ref in refs
            if ref is not None and not any(_matches(ref, link) for link in links)
        ]

    def _ref(self, entry: Entry) -> NicRef | None:
        if entry.nic is not None:
            return entry.nic
        if isinstance(entry, Static):  # the parser made sure BOOTIF names it
            return NicRef(mac=self.config.bootif)
        return None

    def _lack(self, link: Link, entry: Entry) -> str:
        if link.name in self._problems:
            return self._problems[link.name]
        if not has_carrier(self.paths.sysfs, link.name):
            return "no carrier"
        if isinstance(entry, Static):
            return "configured" if link.name in self._static_done else "not configured yet"
        if link.name not in self._started:
            return "waiting for BOOTIF's NIC"
        event = self._dhcp.event(link.name)
        if event == "nak":
            return "DHCP refused (NAK)"
        if not self._dhcp.running(link.name):
            return "DHCP client exited"
        return "no DHCP offer"


def _matches(ref: NicRef, link: Link) -> bool:
    return link.name == ref.name if ref.name else link.mac == ref.mac


def describe(config: NetConfig) -> str:
    """The configuration in a few words: 'ip=dhcp on every NIC (BOOTIF 52:54:... first)'."""
    words = []
    for entry in config.entries:
        if isinstance(entry, Dhcp):
            words.append(f"DHCP on {entry.nic or 'every NIC'}")
        else:
            words.append(f"{entry.address} on {entry.nic or 'BOOTIF NIC'}")
    first = f" (BOOTIF {config.bootif} first)" if config.bootif else ""
    return ", ".join(words) + first
