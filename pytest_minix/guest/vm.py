"""A booted guest: machine + console + shell + timeline, and the boot procedure.

A VM's health is one :class:`~pytest_minix.guest.lifecycle.Lifecycle` (created -> booting
-> ready -> broken / stopped, with the reason), shared with its shell. Used as a context
manager, a VM is always shut down.
"""

from __future__ import annotations

import datetime
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_minix.errors import BootStalled, BootTimeout, ConfigError, GuestPanic, VMError
from pytest_minix.guest.lifecycle import Lifecycle, State
from pytest_minix.guest.shell import Shell
from pytest_minix.guest.timeline import Milestone, Timeline
from pytest_minix.profiles import GuestProfile
from pytest_minix.qemu.console import Console, ConsoleStalled
from pytest_minix.qemu.machine import Incoming, Machine
from pytest_minix.qemu.qmp import QMP

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmStart:
    """How a VM started from a saved state instead of booting (the report and benchmarks say so)."""

    state: str  # the boot cache entry (its key)
    saved_at: float  # wall clock of the save
    seconds: float  # QEMU start to a working shell
    clock_lag: float  # seconds the guest clock was behind the host's when it resumed
    clock_set: bool  # whether the guest clock was set to the host's (the profile's clock_set)


@dataclass
class BootResult:
    timeline: Timeline
    login_prompt: float  # t of the login prompt
    shell_ready: float  # t when the harness prompt appeared


class VM:
    """What a test gets: ``.shell``, ``.qmp``, ``.console``, ``.timeline``, ``.arch``, ``.profile``."""

    def __init__(self, machine: Machine, profile: GuestProfile) -> None:
        self.machine = machine
        self.profile = profile
        self.arch = machine.spec.arch
        self.accel = machine.spec.accel
        self.console: Console = machine.console
        self.qmp: QMP = machine.qmp
        self.life = Lifecycle(machine.name, exited=machine.exit_reason)
        self.shell = Shell(self.console, profile, life=self.life)
        self.boot: BootResult | None = None
        self.warm: WarmStart | None = None
        self._snapshots: set[str] = set()

    def __enter__(self) -> VM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        return f"<VM {self.machine.name} {self.state.value}{': ' + self.life.reason if self.life.reason else ''}>"

    @property
    def log_path(self) -> Path:
        return self.machine.serial_log

    @property
    def timeline(self) -> Timeline:
        """The boot's milestones; a VM started from the boot cache never booted, so it has none."""
        if self.boot is None:
            how = "started from a saved state (the boot cache)" if self.warm else "has not booted"
            raise VMError(
                f"VM {self.machine.name} {how}, so it has no boot timeline. A test that reads the timeline "
                "takes the booted_guest fixture (a VM that booted in this session), or run with --minix-cold-boot."
            )
        return self.boot.timeline

    @property
    def state(self) -> State:
        """Where the VM is in its life (polls QEMU: a VM whose QEMU died is BROKEN)."""
        return self.life.state

    @property
    def broken(self) -> str | None:
        """Why this VM can no longer be trusted, or None while it is healthy."""
        return self.life.broken

    def mark_broken(self, reason: str) -> None:
        self.life.fail(reason)

    def launch(self) -> None:
        """Start QEMU and let the guest run, without waiting for anything (BOOTING).

        For callers that watch the console themselves (``pytest-minix console``, the kernel
        banner timing); :meth:`start` is launch plus the login.
        """
        self.life.to(State.BOOTING, "launching QEMU")
        try:
            self.machine.launch()
            self.machine.cont()
        except VMError as exc:
            raise self.life.with_exit(exc) from None

    def resume(self, incoming: Incoming, key: str = "", saved_at: float = 0.0) -> WarmStart:
        """Start QEMU from a saved, logged-in state instead of booting (READY); set the guest clock.

        The guest's shell is where it was at the save (idle at the harness prompt); one command
        resynchronises the console and sets the guest clock, which stood still while the state
        sat in the cache. There is no boot timeline: ``boot`` stays None.
        """
        self.life.to(State.BOOTING, f"starting from saved state {key[:12] or incoming.state}")
        start = time.monotonic()
        try:
            self.machine.launch(incoming)
            self.machine.cont()
            lag = max(0.0, time.time() - saved_at) if saved_at else 0.0
            template = self.profile.clock_set
            now = datetime.datetime.now(datetime.UTC)
            command = template.format(epoch=int(now.timestamp()), utc=now) if template else ":"
            r = self.shell.run(command, timeout=30.0)
        except VMError as exc:
            raise self.life.with_exit(exc) from None
        if r.status != 0:
            self.life.fail(f"the shell answered badly after the restore: {r}")
            raise VMError(
                f"After starting from a saved state, `{command}` exited {r.status}: {r.stderr.strip()[:200]}",
                self.log_path,
            )
        self.warm = WarmStart(key, saved_at, time.monotonic() - start, lag, bool(template))
        self.life.to(State.READY, f"started from a saved state in {self.warm.seconds:.2f} s")
        log.info("VM %s: started from saved state %s in %.2f s", self.machine.name, key[:12], self.warm.seconds)
        return self.warm

    def start(self, boot_timeout: float, first_output_timeout: float, stall_timeout: float | None = None) -> BootResult:
        """Launch, resume, wait for the login prompt, log in; fill in the timeline (READY).

        ``stall_timeout``: give up once the guest, having started to print, prints nothing
        more for that long (a hung or starved boot), instead of waiting out ``boot_timeout``.
        On any failure the VM is BROKEN with the reason, and the error names the serial log.
        """
        self.launch()
        try:
            boot = self._boot(boot_timeout, first_output_timeout, stall_timeout)
        except VMError as exc:
            raise self.life.with_exit(exc) from None
        self.life.to(State.READY, f"logged in {boot.shell_ready:.2f} s after cont")
        log.info(
            "VM %s: login prompt at %.2f s, shell at %.2f s", self.machine.name, boot.login_prompt, boot.shell_ready
        )
        return boot

    def _boot(self, boot_timeout: float, first_output_timeout: float, stall_timeout: float | None) -> BootResult:
        p = self.profile
        first = min(first_output_timeout, boot_timeout)
        try:
            # A boot that prints nothing at all fails fast instead of waiting out the boot timeout.
            self.console.expect(".", first, what="any console output", exited=self.life.exit_reason)
        except TimeoutError:
            raise BootTimeout(
                f"The {p.name} guest ({self.arch}, accel {self.accel}) printed nothing on its serial console "
                f"within {first:.0f} s of starting. Check the kernel and machine type "
                f"(command: {' '.join(self.machine.argv)}). QEMU said: {self.machine.qemu_stderr() or 'nothing'}.",
                self.log_path,
            ) from None
        remaining = boot_timeout - (time.monotonic() - (self.machine.t0 or time.monotonic()))
        try:
            m = self.console.expect(
                p.login.prompt,
                max(remaining, 1.0),
                what="the login prompt",
                fail_on=p.panic_patterns,
                exited=self.life.exit_reason,
                idle=stall_timeout,
            )
        except ConsoleStalled as exc:
            raise BootStalled(
                f"The {p.name} guest ({self.arch}, accel {self.accel}) stopped printing before its login prompt: "
                f"nothing for {exc.quiet:.0f} s. {exc}It hung or is starved (too little memory?). Raise the "
                f"profile's boot_stall_timeout if this guest is only slow here.",
                self.log_path,
            ) from None
        except TimeoutError as exc:
            raise BootTimeout(
                f"The {p.name} guest ({self.arch}, accel {self.accel}) never reached its login prompt "
                f"within --minix-boot-timeout={boot_timeout:.0f} s. {exc}Raise --minix-boot-timeout "
                "if the machine is just slow.",
                self.log_path,
            ) from None
        login_t = m.t
        try:
            shell_t = self.shell.login()
        except TimeoutError as exc:
            raise BootTimeout(f"Login as {p.login.user!r} failed: {exc}", self.log_path) from None
        if p.uname_s:
            # The prompt alone does not prove which OS answered: a wrong image would pass it.
            got = self.shell.run("uname -s", timeout=30.0).stdout.strip()
            if got != p.uname_s:
                raise VMError(
                    f"The guest booted as {p.name!r} is not what the profile expects: `uname -s` printed "
                    f"{got!r}, not {p.uname_s!r}. Check the image (--minix-image / --minix-guest).",
                    self.log_path,
                )
        lines = self.console.head()
        extra = [Milestone("first_output", lines[0].t, lines[0].text)] if lines else []
        extra += self._firmware_milestones()
        extra.append(Milestone("shell", shell_t, "harness prompt"))
        timeline = Timeline.from_lines(lines, p.markers, extra)
        if "login" not in timeline:
            timeline = Timeline((*timeline.milestones, Milestone("login", login_t, m.text)))
            timeline = Timeline(tuple(sorted(timeline.milestones, key=lambda x: x.t)))
        self.boot = BootResult(timeline, login_t, shell_t)
        return self.boot

    def _firmware_milestones(self) -> list[Milestone]:
        """SeaBIOS's start and its hand-over to the boot ROM, from the debug console (x86)."""
        dbg = self.machine.debugcon
        if dbg is None:
            return []
        out: list[Milestone] = []
        fw = dbg.head()
        if fw:
            out.append(Milestone("bios", fw[0].t, fw[0].text))
        rom = next((ln for ln in fw if ln.text.startswith("Booting from ROM")), None)
        if rom is not None:
            out.append(Milestone("firmware", rom.t, rom.text))
        return out

    # -- fresh state without a reboot ---------------------------------------------
    SNAPSHOT = "pm-fresh"
    # Snapshot names go into HMP command lines: letters, digits and ._- only, so none can add words.
    _SNAPSHOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")

    @property
    def has_snapshot(self) -> bool:
        return self.SNAPSHOT in self._snapshots

    @property
    def snapshots(self) -> list[str]:
        """Names of the snapshots saved in this VM."""
        return sorted(self._snapshots)

    def _snapshot_name(self, name: str) -> str:
        if not self._SNAPSHOT_NAME.fullmatch(name):
            raise ConfigError(
                f"Snapshot name {name!r} is not allowed: use 1-64 letters, digits, '.', '_' or '-', "
                "starting with a letter or digit."
            )
        return name

    def save_snapshot(self, name: str = SNAPSHOT) -> float:
        """Save the whole VM (RAM, devices, disks) as an internal snapshot; returns the seconds it took.

        Taken at the idle harness prompt, so a restore lands exactly there. Saving under an
        existing name replaces that snapshot.
        """
        name = self._snapshot_name(name)
        start = time.monotonic()
        self.shell.run(":", timeout=30).check()  # the shell is idle and in sync
        out = self.qmp.hmp(f"savevm {name}", timeout=120)
        if out.strip():
            raise VMError(f"savevm failed: {out.strip()}", self.log_path)
        self._snapshots.add(name)
        return time.monotonic() - start

    def restore_snapshot(self, name: str = SNAPSHOT) -> float:
        """Return to a saved state (also after a crashed shell); resync the console and shell."""
        name = self._snapshot_name(name)
        if name not in self._snapshots:
            saved = ", ".join(self.snapshots) or "none"
            raise ConfigError(f"No snapshot named {name!r} in this VM (saved: {saved}); save one first.")
        start = time.monotonic()
        out = self.qmp.hmp(f"loadvm {name}", timeout=120)
        if out.strip():
            self.mark_broken(f"loadvm failed: {out.strip()}")
            raise VMError(f"loadvm failed: {out.strip()}", self.log_path)
        # Whatever the console held belongs to the abandoned state; the guest's shell is back at
        # the prompt it printed before the snapshot, so a marker command resyncs both sides.
        self.console.discard()
        self.shell.forget_guest_state()
        if self.life.state is State.BROKEN:
            self.life.to(State.READY, f"snapshot {name} restored")
        r = self.shell.run(":", timeout=30)
        if r.status != 0:
            self.mark_broken(f"the shell did not answer after loadvm: {r}")
            raise VMError("The shell did not answer after restoring the snapshot.", self.log_path)
        log.debug("VM %s: snapshot %s restored in %.3f s", self.machine.name, name, time.monotonic() - start)
        return time.monotonic() - start

    def shutdown(self) -> None:
        """Stop QEMU (the machine's shutdown ladder); the VM is STOPPED for good. Idempotent."""
        if self.life.state is not State.STOPPED:
            reason = self.life.broken or "shut down"
            self.machine.shutdown()
            self.life.to(State.STOPPED, reason)


__all__ = ["VM", "BootResult", "BootTimeout", "GuestPanic", "VMError", "WarmStart"]
