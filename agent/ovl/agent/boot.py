"""The boot, top to bottom: command line → facts → channels → verify/decrypt → match+apply →
stack root → report → hand-over file for the /init shim.

Never brick: a channel, signature, decryption or layer that fails is one console line and the
next candidate is tried (the configured channels in order, then the last-known-good cache);
with no bundle at all the bare image boots. Only when no root can be assembled does the
hand-over say EMERGENCY, and the shim drops to a shell. A CIK boot (`ovl.cik=`) may instead say
RESCUE: every disk read-only and listed, and the shim's shell.
"""

from __future__ import annotations

import shlex
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from ovl.agent.cache import Cache, CacheChannel
from ovl.agent.channels import Channel, open_channel
from ovl.agent.cmdline import BootConfig, Cik, Fetch, Phase
from ovl.agent.console import Console, Level
from ovl.agent.context import BootContext, Network
from ovl.agent.download.frames import FrameChoice
from ovl.agent.emergency import NO_FAILURES, Emergency, FailedBoots
from ovl.agent.facts import collect_facts, probe_volume_uuids
from ovl.agent.fetched import Fetched
from ovl.agent.mounts import MountStack, umount_below
from ovl.agent.net.bringup import NetPaths, start_network
from ovl.agent.report import Attempt, Report
from ovl.agent.stack import RootBuilder, make_builder
from ovl.agent.verify import Verifier
from ovl.core.errors import OvlError, error_line
from ovl.core.facts import Facts
from ovl.core.fs import write_atomic

if TYPE_CHECKING:
    from ovl.agent.remotelog import RemoteLog
    from ovl.format.apply import ApplyResult
    from ovl.trust.open import Opened


@dataclass(frozen=True)
class BootPaths:
    """Where the boot reads and writes; host tests point these into a temporary directory."""

    run_dir: Path = Path("/run/ovl")
    sysroot: Path = Path("/sysroot")
    sysfs: Path = Path("/sys")
    keys_dir: Path = Path("/etc/ovl/keys")
    kmsg: Path | None = Path("/dev/kmsg")
    dev: Path = Path("/dev")

    def net(self) -> NetPaths:
        return NetPaths(sysfs=self.sysfs, run_dir=self.run_dir)


@dataclass(frozen=True)
class Handover:
    """What the /init shim does next: switch_root into ROOT, BREAK to a shell, EMERGENCY, or
    RESCUE (a shell with the disks read-only)."""

    root: Path | None = None
    init: str | None = None
    break_at: Phase | None = None
    emergency: str | None = None
    on_emergency: Emergency = field(default_factory=Emergency)  # the shim's next step
    rescue: str | None = None

    def render(self) -> str:
        pairs = {
            "ROOT": str(self.root) if self.root else None,
            "INIT": self.init,
            "BREAK": self.break_at.value if self.break_at else None,
            "EMERGENCY": self.emergency,
            **(self.on_emergency.handover() if self.emergency else {}),
            "RESCUE": self.rescue,
        }
        return "".join(f"{k}={shlex.quote(v)}\n" for k, v in pairs.items() if v is not None)


class _Break(Exception):
    def __init__(self, phase: Phase) -> None:
        self.phase = phase


@dataclass
class _Boot:
    config: BootConfig
    paths: BootPaths
    console: Console
    report: Report
    ctx: BootContext
    cache: Cache | None
    failed_before: FailedBoots = NO_FAILURES

    def stop_before(self, phase: Phase) -> None:
        if self.config.break_at is phase:
            raise _Break(phase)


def boot(
    config: BootConfig,
    paths: BootPaths = BootPaths(),
    console: Console | None = None,
    network: Network | None = None,
) -> Handover:
    """Assemble the root and write report.json and the hand-over file; never raises OvlError.

    The network (ip=) comes up in the background from the start (or from before, when the
    caller started it: `network`), and with ovl.log= every line goes to the log host too."""
    console = console or Console(kmsg=paths.kmsg)
    start = time.monotonic()
    if network is None:
        network = start_network(config.network, paths.net(), console, config.timeout)
    remote = _remote_log(config, network, console, paths.run_dir / "init.log")
    report, mounts = Report(), MountStack()
    ctx = BootContext(
        work_dir=paths.run_dir / "mnt",
        timeout=config.timeout,
        console=console,
        mounts=mounts,
        proxy=config.proxy,
        network=network,
    )
    state = _Boot(
        config, paths, console, report, ctx, Cache(config.cache) if config.cache else None
    )
    try:
        _clean_slate(paths)
        handover = _assemble(state)
    except _Break as stop:
        console.line("break", f"stopping before {stop.phase.value}: shell requested by ovl.break")
        handover = Handover(break_at=stop.phase)
    except Exception as exc:  # never brick: any failure here still reaches the shim
        mounts.release()
        handover = _emergency(state, exc)
    _finish(state, network, remote, handover, start)
    write_handover(paths.run_dir / "handover", handover)
    return handover


def _remote_log(
    config: BootConfig, network: Network, console: Console, init_log: Path
) -> RemoteLog | None:
    if config.log is None:
        return None
    from ovl.agent.remotelog import start_remote_log  # only boots with ovl.log= pay for it

    return start_remote_log(config.log, network, console, init_log)


def _emergency(boot: _Boot, exc: Exception) -> Handover:
    """No root: the reason on the console, in the report and (for the next boot that succeeds)
    on the cache; then what ovl.emergency= asks the shim to do."""
    line, action = error_line(exc), boot.config.emergency
    boot.report.errors.append(line)
    boot.console.line("emergency", line, Level.ERROR)
    if boot.config.debug:
        import traceback

        traceback.print_exc()
    in_a_row = ""
    if boot.cache is not None:
        try:
            record = boot.cache.record_failure(line, action.action, boot.ctx)
            in_a_row = f"; failed boot {record.count} in a row, recorded on {boot.cache.location}"
        except Exception as exc:  # the emergency itself must reach the shim
            in_a_row = f"; not recorded on the cache: {error_line(exc)}"
    boot.console.line("emergency", f"{action.describe()} (ovl.emergency){in_a_row}", Level.ERROR)
    return Handover(emergency=line, on_emergency=action)


def _finish(
    boot: _Boot, network: Network, remote: RemoteLog | None, handover: Handover, start: float
) -> None:
    """report.json; the report to the log host; DHCP stopped before a hand-over to the root."""
    report = boot.report
    report.network = network.describe()
    report.timings_ms["total"] = round((time.monotonic() - start) * 1000)
    try:
        report.write(boot.paths.run_dir / "report.json")
    except OSError as exc:
        boot.console.line("report", f"report.json not written: {exc.strerror or exc}")
    if remote is not None:
        remote.finish(
            report.to_json(), failed=handover.emergency is not None, window=boot.config.timeout
        )
    if handover.root is not None:
        network.stop()


def _clean_slate(paths: BootPaths) -> None:
    """Undo what an earlier run (before an ovl.break, or one that crashed) left behind."""
    umount_below(paths.sysroot)
    umount_below(paths.run_dir, including=False)  # /run/ovl may be a tmpfs of its own
    for stale in ("layers", "fetched", "lower", "upper", "work"):
        shutil.rmtree(paths.run_dir / stale, ignore_errors=True)


@dataclass(frozen=True)
class _Chosen:
    channel: Channel
    fetched: Fetched
    applied: ApplyResult


def _assemble(boot: _Boot) -> Handover:
    config, report, console = boot.config, boot.report, boot.console
    for warning in config.warnings:
        console.line("cmdline", warning)
        report.recoverable_errors.append(warning)
    boot.stop_before(Phase.FACTS)
    with report.phase("facts"):
        facts = _facts(boot)
    if config.cik is Cik.RESCUE:
        return _rescue(boot, "ovl.cik=rescue")
    cache = boot.cache
    verifier = _verifier(boot, cache, facts)
    if config.cik is Cik.BOOT:
        try:
            verifier.load_key(boot.ctx)
        except OvlError as exc:
            console.line("key", f"this machine is refused: {exc.line}")
            report.errors.append(f"key: {exc.line}")
            return _rescue(boot, f"refused: {exc.line}")
    builder = make_builder(config, boot.paths.run_dir, boot.paths.sysroot, boot.ctx, verifier)
    boot.stop_before(Phase.FETCH)
    frames = _frame_choice(verifier, facts) if config.fetch is Fetch.FRAMES else None
    configured = [
        open_channel(s, gist_base=config.gist_base, frames=frames) for s in config.sources
    ]
    candidates: list[Channel] = [*configured, *([CacheChannel(cache)] if cache else [])]
    chosen = None
    for channel in candidates:
        opened = _fetch_and_open(boot, channel, verifier)
        if opened is None:
            continue
        try:
            boot.stop_before(Phase.APPLY)
            applied = _apply(boot, channel, opened, facts, builder)
        finally:
            if opened[1].encrypted:  # no decrypted copy stays in /run, not even at a break
                opened[1].path.unlink(missing_ok=True)
        if applied is not None:
            chosen = _Chosen(channel, opened[0], applied)
            break
    if chosen is None:
        _no_bundle(boot)
    boot.stop_before(Phase.STACK)
    with report.phase("stack"):
        builder.finish(chosen.applied if chosen else None)
    report.root = builder.describe()
    report.recoverable_errors += [f"stack: {note}" for note in report.root.get("notes", [])]
    details = ", ".join(f"{k} {v}" for k, v in report.root.items() if k != "mode" and v)
    console.line("stack", f"{report.root['mode']} root on {boot.paths.sysroot}: {details}")
    if chosen and cache and not isinstance(chosen.channel, CacheChannel):
        source = chosen.channel.describe()
        remember = partial(cache.remember, chosen.fetched, source, verifier.replay, boot.ctx)
        _keep(boot, remember, f"kept as last-known-good on {cache.location}")
    elif cache and verifier.replay and verifier.images_recorded:
        save = partial(cache.save_replay, verifier.replay, boot.ctx)
        _keep(boot, save, f"replay state (image serials) kept on {cache.location}")
    if boot.failed_before.count:
        _report_failed_boots(boot)
    boot.stop_before(Phase.HANDOVER)
    return Handover(root=boot.paths.sysroot, init=config.init)


def _report_failed_boots(boot: _Boot) -> None:
    """The boots that failed before this one, in the report (and the remote log), then
    forgotten on the cache: they have been told."""
    failed = boot.failed_before
    boot.report.previous_failures = failed.to_json()
    boot.console.line(
        "boot",
        f"{failed.count} failed boot(s) before this one; the last: {failed.last_reason}",
        Level.WARNING,
    )
    if boot.cache is not None:
        _keep(boot, partial(boot.cache.clear_failures, boot.ctx), "failed-boot record cleared")


def _facts(boot: _Boot) -> Facts:
    def volumes() -> tuple[str, ...]:
        try:
            return probe_volume_uuids()
        except OvlError as exc:
            boot.report.recoverable_errors.append(f"facts: volume UUIDs unknown: {exc.line}")
            return ()

    facts = collect_facts(boot.paths.sysfs, volume_uuids=volumes)
    boot.report.facts = facts.to_json()
    boot.console.line(
        "facts",
        f"{len(facts.macs)} MACs, product uuid {facts.product_uuid or 'none'},"
        f" {len(facts.volume_uuids)} volumes, {facts.kernel_release} {facts.arch}",
    )
    return facts


def _rescue(boot: _Boot, reason: str) -> Handover:
    """Every disk read-only in the kernel and listed; the shim's shell instead of a root."""
    from ovl.agent.rescue import describe, list_disks, probe_volumes, protect

    boot.ctx.mounts.release()
    paths = boot.paths
    disks, problems = protect(list_disks(paths.sysfs), paths.dev)
    boot.console.line("rescue", f"{reason}; no root is assembled, every disk is read-only")
    volumes = probe_volumes(disks, paths.dev)
    for disk in disks:
        boot.console.line("rescue", describe(disk, volumes))
    for problem in problems:
        _recoverable(boot, "rescue", problem)
    boot.report.rescue = {"reason": reason, "disks": [disk.to_json() for disk in disks]}
    return Handover(rescue=reason)


def _frame_choice(verifier: Verifier, facts: Facts) -> FrameChoice:
    """How an http(s) channel fetches only this machine's frames: the signature checked as for
    the whole bundle names the index, and the index says which frames hold what."""
    from ovl.format.apply import machine_frames

    return FrameChoice(verifier.signed_index, lambda frames: machine_frames(frames, facts))


def _verifier(boot: _Boot, cache: Cache | None, facts: Facts) -> Verifier:
    replay = None
    if cache is not None:
        replay = boot.paths.run_dir / "replay.json"
        replay.unlink(missing_ok=True)
        try:
            boot.failed_before = cache.load_state(replay, boot.ctx)
        except OvlError as exc:
            _recoverable(boot, "cache", f"{cache.location}: {exc.line}")
    return Verifier(boot.config.require, boot.paths.keys_dir, boot.config.key, replay, facts)


def _fetch_and_open(
    boot: _Boot, channel: Channel, verifier: Verifier
) -> tuple[Fetched, Opened] | None:
    name = channel.describe()
    dest = boot.paths.run_dir / "fetched" / "bundle.ovl"
    dest.parent.mkdir(parents=True, exist_ok=True)
    start = time.monotonic()
    with boot.report.phase("fetch"):
        try:
            fetched = channel.fetch(dest, boot.ctx)
        except Exception as exc:
            _failed(boot, name, "fetch", exc, start)
            return None
    ms = _ms(start)
    signed = "signed" if fetched.signature else "unsigned"
    boot.console.line("fetch", f"{name} ok {_fetched_size(fetched)} {signed} {ms} ms")
    start = time.monotonic()
    with boot.report.phase("verify"):
        try:
            opened = verifier.open(fetched, boot.ctx)
        except Exception as exc:
            _failed(boot, name, "verify", exc, start)
            return None
    for warning in opened.warnings:
        _recoverable(boot, "verify", warning)
    boot.console.line(
        "verify",
        f"{name} ok signer {opened.signer or 'none'} serial {opened.serial}"
        f"{' decrypted' if opened.encrypted else ''} {_ms(start)} ms",
    )
    boot.report.bundle = {
        "source": name,
        "sha256": fetched.sha256,
        "bytes": fetched.size,
        "signer": opened.signer,
        "serial": opened.serial,
        "encrypted": opened.encrypted,
    }
    if fetched.frames is not None:
        count = fetched.frames
        boot.report.bundle["frames"] = {
            "fetched": count.frames,
            "of": count.of,
            "bundle_bytes": count.bundle_bytes,
        }
    return fetched, opened


def _fetched_size(fetched: Fetched) -> str:
    """`1.2 MB`, or for a partial bundle `0.5 of 200.6 MB (3 of 910 frames)`."""
    count = fetched.frames
    if count is None:
        return f"{fetched.size / 1e6:.1f} MB"
    return (
        f"{fetched.size / 1e6:.1f} of {count.bundle_bytes / 1e6:.1f} MB"
        f" ({count.frames} of {count.of} frames)"
    )


def _apply(
    boot: _Boot,
    channel: Channel,
    pair: tuple[Fetched, Opened],
    facts: Facts,
    builder: RootBuilder,
) -> ApplyResult | None:
    from ovl.format.apply import apply_bundle

    fetched, opened = pair
    name = channel.describe()
    start = time.monotonic()
    with boot.report.phase("apply"):
        target = builder.prepare()  # no root without it: its failure is not the bundle's
        try:
            with open(opened.path, "rb") as source:
                result = apply_bundle(source, facts, target, split=builder.split)
        except Exception as exc:
            _failed(boot, name, "apply", exc, start)
            return None
    layers = [layer.name for layer in result.layers]
    boot.report.layers = layers
    boot.report.channels.append(Attempt(name, "ok", "", _ms(start), fetched.size))
    manifest = result.manifest
    title = f"{manifest.name} serial {manifest.serial}" if manifest else "bundle without ovl.json"
    frames = result.frames_read
    read = "" if frames is None else f", {frames[0]} of {frames[1]} frames read"
    boot.console.line(
        "apply", f"{title}: {len(layers)} layers ({', '.join(layers)}){read} {_ms(start)} ms"
    )
    if manifest and boot.report.bundle is not None:
        boot.report.bundle["name"] = manifest.name
    return result


def _failed(boot: _Boot, name: str, step: str, exc: Exception, start: float) -> None:
    reason = error_line(exc)
    boot.report.channels.append(Attempt(name, step, reason, _ms(start)))
    boot.report.recoverable_errors.append(f"{step}: {name}: {reason}")
    boot.console.line(step, f"{name} failed: {reason}", Level.WARNING)
    return None


def _no_bundle(boot: _Boot) -> None:
    config = boot.config
    if config.require_bundle:
        raise OvlError(
            "no bundle verified and applied, and ovl.require=...,bundle forbids booting without one"
        )
    if config.sources:
        _recoverable(boot, "fetch", "no bundle verified and applied; booting the bare image")
    boot.report.bundle = None


def _keep(boot: _Boot, write: Callable[[], None], done: str) -> None:
    """Write to the cache; a failure is recoverable (this boot goes on, without it)."""
    with boot.report.phase("cache"):
        try:
            write()
        except OvlError as exc:
            _recoverable(boot, "cache", exc.line)
            return
    boot.console.line("cache", done)


def _recoverable(boot: _Boot, phase: str, line: str) -> None:
    boot.report.recoverable_errors.append(f"{phase}: {line}")
    boot.console.line(phase, line, Level.WARNING)


def _ms(start: float) -> int:
    return round((time.monotonic() - start) * 1000)


def write_handover(path: Path, handover: Handover) -> None:
    write_atomic(path, handover.render(), durable=False)  # /run is RAM
