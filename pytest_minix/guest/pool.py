"""The VM pool: at most one healthy VM per arch, booted lazily, rebooted when broken."""

from __future__ import annotations

import itertools
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from pytest_minix.errors import ConfigError, GuestUnavailable, HarnessError, VMError
from pytest_minix.guest.bootcache import BadState, BootCache, state_key
from pytest_minix.guest.vm import VM
from pytest_minix.media.bootmedia import BootMedia
from pytest_minix.media.minix import MinixSource
from pytest_minix.media.providers import PROVIDERS
from pytest_minix.profiles import GuestProfile, load_profile
from pytest_minix.qemu.accel import KVM_FAILURE_SIGNS, AccelChooser, KvmMemory
from pytest_minix.qemu.binary import check_devices, find_qemu, qemu_machines
from pytest_minix.qemu.console import Line
from pytest_minix.qemu.machine import Machine, MachineSpec
from pytest_minix.qemu.statedir import StateDir

log = logging.getLogger(__name__)


@dataclass
class HarnessConfig:
    """The session's settings (from options and ini), shared by every VM."""

    guest: str = "minix"
    arches: tuple[str, ...] = ("i386",)
    accel: str = "auto"
    boot_timeout: float | None = None
    memory: int | None = None
    log_dir: Path = field(default_factory=lambda: Path("vm-logs"))
    qemu_binaries: dict[str, str] = field(default_factory=dict)
    network: bool = False
    minix: MinixSource = field(default_factory=MinixSource)
    # Remember a KVM failure in the cache for later sessions (off for tests of the fallback itself).
    remember_kvm: bool = True
    # Start the shared VMs from a saved logged-in state when the boot cache has one (and save
    # one after a cold boot); off: every VM boots (--minix-cold-boot).
    warm_start: bool = True
    boot_cache: Path | None = None  # default: <cache>/states
    # Progress and trust-on-first-use messages (fetching an image); default: stderr.
    notify: Callable[[str], None] | None = field(default=None, compare=False)


class WarmStartWarning(UserWarning):
    """A saved VM state could not be used or saved; the session booted (or will boot) instead."""


@dataclass(frozen=True)
class VMStart:
    """How one shared VM came up: booted ("cold") or started from a saved state ("warm")."""

    guest: str
    arch: str
    accel: str
    how: str  # "cold" or "warm"
    seconds: float  # QEMU start to a working shell
    state: str = ""  # the boot cache entry used (warm) or written (cold), if any
    saved_at: float = 0.0  # warm: when that state was saved (wall clock)
    clock_lag: float = 0.0  # warm: how far the guest clock was behind when it resumed
    note: str = ""  # why a warm start was not possible, or why no state was saved

    def as_dict(self) -> dict[str, object]:
        return {k: v for k, v in self.__dict__.items() if v not in ("", None)}


@dataclass(frozen=True)
class VMOptions:
    """Per-VM overrides (from ``@pytest.mark.vm``)."""

    memory: int | None = None
    boot_args: str = ""
    qemu_args: tuple[str, ...] = ()
    boot_timeout: float | None = None
    first_output_timeout: float | None = None  # fail fast when nothing at all is printed (e.g. too little RAM)
    stall_timeout: float | None = None  # give up a boot that stops printing this long (default: the profile's)


class VMPool:
    """Owns every VM of a session (or of one xdist worker)."""

    def __init__(self, config: HarnessConfig) -> None:
        self.config = config
        self.profile: GuestProfile = load_profile(config.guest)
        for arch in config.arches:
            self.profile.arch(arch)  # unknown arch: clear error now, not at first boot
        self.accel = AccelChooser(config.accel, KvmMemory() if config.remember_kvm else None)
        self.state = StateDir()
        self._vms: dict[str, VM] = {}
        self._booted: dict[str, VM] = {}  # per arch, a VM booted for its timeline when the shared one started warm
        self._all: list[VM] = []
        self._counter = itertools.count(1)
        self._lock = threading.RLock()
        self._media: dict[str, BootMedia | GuestUnavailable] = {}
        self._machines: list[Machine] = []
        self.line_listeners: list[Callable[[Line], None]] = []  # every new machine's console lines (progress)
        self.boots: list[VM] = []
        self.starts: list[VMStart] = []  # the shared VMs' starts, cold or warm (report, benchmarks)
        self.cache = BootCache(config.boot_cache) if config.warm_start else None
        self.worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        self.closed = False

    def media(self, arch: str) -> BootMedia:
        """The arch's boot media, resolved once (fetching or extracting as needed).

        Raises GuestUnavailable (tests skip) when the guest cannot be had here: the
        QEMU binary lacks the machine, or no image can be found or downloaded. The
        answer, good or bad, is kept for the session so that every test gets the same
        one without a new download attempt.
        """
        with self._lock:
            if arch not in self._media:
                try:
                    self._media[arch] = self._resolve(arch)
                except GuestUnavailable as exc:
                    self._media[arch] = exc
            got = self._media[arch]
            if isinstance(got, GuestUnavailable):
                raise got
            return got

    def unavailable(self) -> dict[str, str]:
        """Arch -> why the guest could not be had there (tests skipped)."""
        return {a: str(m) for a, m in self._media.items() if isinstance(m, GuestUnavailable)}

    def _resolve(self, arch: str) -> BootMedia:
        conf = self.profile.arch(arch)
        qemu = find_qemu(self.config.qemu_binaries.get(arch) or conf.qemu, arch)
        if conf.machine not in qemu_machines(qemu):
            raise GuestUnavailable(
                f"The {self.profile.name} guest on {arch} needs QEMU machine {conf.machine!r}, which {qemu} "
                f"does not have (`{qemu} -machine help` does not list it). {conf.machine_hint}".strip()
            )
        check_devices(qemu, conf.devices, self.profile.name)
        provider = PROVIDERS.get(self.profile.artifacts)
        if provider is None:
            raise ConfigError(
                f"Guest {self.profile.name!r} names unknown artifacts {self.profile.artifacts!r}; "
                f"known: {', '.join(sorted(PROVIDERS))}."
            )
        return provider(arch, self.config.minix, self.config.notify)

    def get(self, arch: str) -> VM:
        """The arch's shared VM, booting (or rebooting a broken one) as needed."""
        with self._lock:
            vm = self._vms.get(arch)
            if vm is not None and vm.broken:
                vm.shutdown()
                del self._vms[arch]
                vm = None
            if vm is None:
                vm = self.boot(arch, warm=True)
                self._vms[arch] = vm
            return vm

    def booted(self, arch: str) -> VM:
        """A VM that booted in this session (its timeline is real): the shared VM if it booted, else one booted now."""
        with self._lock:
            vm = self.get(arch)
            if vm.boot is not None:
                return vm
            cold = self._booted.get(arch)
            if cold is None or cold.broken:
                if cold is not None:
                    cold.shutdown()
                cold = self._booted[arch] = self.boot(arch)
            return cold

    def spec(self, arch: str, options: VMOptions | None = None) -> MachineSpec:
        """The machine to start for ``arch``: profile, boot media, accelerator and overrides."""
        options = options or VMOptions()
        media = self.media(arch)
        conf = self.profile.arch(arch).variant(media.variant)
        qemu = find_qemu(self.config.qemu_binaries.get(arch) or conf.qemu, arch)
        return MachineSpec(
            arch=arch,
            config=conf,
            files=media.files,
            disks=media.disks,
            disk_formats=media.disk_formats,
            accel=self.accel.choose(conf, qemu),
            memory=options.memory or self.config.memory or self.profile.memory,
            qemu_binary=qemu,
            boot_args=options.boot_args,
            qemu_args=options.qemu_args,
            network=self.config.network,
        )

    def machine(self, spec: MachineSpec) -> Machine:
        """A Machine (not yet launched) named and placed like the pool's own; ``close`` stops it too."""
        name = f"{self.profile.name}-{spec.arch}-{self.worker}-{next(self._counter)}"
        machine = Machine(spec, self.state, name, self.config.log_dir)
        machine.console.listeners.extend(self.line_listeners)
        self._machines.append(machine)
        return machine

    def create(self, spec: MachineSpec) -> VM:
        """A VM (CREATED: not launched) for ``spec``, closed with the pool. ``VM.start`` boots it to a shell;
        ``VM.launch`` only starts it, for callers that watch the console themselves."""
        if self.closed:
            # A caller still running after close() (an abandoned measurement) must not start new QEMUs.
            raise VMError("This VM pool was closed (its session ended or was aborted); no new VM is started.")
        vm = VM(self.machine(spec), self.profile)
        self._all.append(vm)
        return vm

    def fresh(self, arch: str) -> VM:
        """The arch's shared VM in its just-booted state: snapshot on first use, restored on every later one."""
        with self._lock:
            vm = self.get(arch)
            if not vm.has_snapshot:
                vm.save_snapshot()
                return vm
            try:
                vm.restore_snapshot()
            except HarnessError:
                vm.mark_broken("could not restore its snapshot")
                vm = self.get(arch)  # a new boot, and a new snapshot
                vm.save_snapshot()
            return vm

    def boot(self, arch: str, options: VMOptions | None = None, *, warm: bool = False) -> VM:
        """A new VM at its harness prompt; under ``--minix-accel=auto`` a KVM failure falls back to TCG once.

        With ``warm`` (the shared VMs, MCP sessions) and the boot cache on, it starts from the
        saved state for this exact machine when there is one, and after a cold boot saves one.
        Without, it always boots: boot metrics time real boots.
        """
        options = options or VMOptions()
        spec = self.spec(arch, options)
        note = ""
        if warm and self.cache is not None:
            vm, note = self._resume(spec)
            if vm is not None:
                return vm
        start = time.monotonic()
        vm = self._cold(arch, spec, options)
        if warm:
            seconds = time.monotonic() - start
            saved, why = self._save(vm) if self.cache is not None else ("", "the boot cache is off (--minix-cold-boot)")
            self.starts.append(
                VMStart(
                    self.profile.name,
                    arch,
                    vm.accel,
                    "cold",
                    seconds,
                    state=saved,
                    note="; ".join(x for x in (note, why) if x),
                )
            )
        return vm

    def _resume(self, spec: MachineSpec) -> tuple[VM | None, str]:
        """A VM started from the boot cache, or None and why not (a bad entry is removed, with a warning)."""
        assert self.cache is not None
        vm = self.create(spec)
        try:
            key = state_key(vm.machine, self.profile)
            entry = self.cache.lookup(key)
        except BadState as exc:
            self._discard(vm)
            self.cache.remove(self.cache.root / key.digest)
            return None, self._warn(f"{exc}; it was removed and the guest booted instead (a new state is saved)")
        except (OSError, HarnessError) as exc:
            self._discard(vm)
            return None, self._warn(f"the boot cache could not be read ({exc}); the guest booted instead")
        if entry is None:
            self._discard(vm)
            log.info("no saved state for %s %s (key %s): booting", self.profile.name, spec.arch, key.digest[:12])
            return None, "no saved state for this machine yet"
        try:
            warm = vm.resume(entry.incoming, entry.key, entry.saved_at)
        except HarnessError as exc:
            vm.shutdown()
            self.cache.remove(entry)
            first = str(exc).splitlines()[0][:300]
            return None, self._warn(
                f"starting the {self.profile.name} {spec.arch} guest from saved state {entry.path} failed ({first}); "
                f"the entry was removed and the guest booted instead (serial log {vm.log_path})"
            )
        self.starts.append(
            VMStart(
                self.profile.name, spec.arch, vm.accel, "warm", warm.seconds, entry.key, entry.saved_at, warm.clock_lag
            )
        )
        return vm, ""

    def _discard(self, vm: VM) -> None:
        """Forget a VM that was created to compute its key and never launched."""
        vm.shutdown()
        with self._lock:
            self._all.remove(vm)
            self._machines.remove(vm.machine)

    def _save(self, vm: VM) -> tuple[str, str]:
        """Save a just-booted shared VM in the boot cache: (entry key or "", why not)."""
        assert self.cache is not None
        try:
            key = state_key(vm.machine, self.profile)
            vm.shell.run(":", timeout=30).check()  # idle at the prompt, console in sync
            entry = self.cache.save(vm.machine, key, self.profile)
        except (OSError, HarnessError, AssertionError) as exc:
            first = str(exc).splitlines()[0][:300]
            return "", self._warn(
                f"the booted {self.profile.name} {vm.arch} VM could not be saved for later sessions: {first}"
            )
        if entry is None:
            return key.digest, "another session saved this machine's state first"
        return entry.key, ""

    @staticmethod
    def _warn(message: str) -> str:
        warnings.warn(WarmStartWarning(f"pytest-minix warm start: {message}"), stacklevel=3)
        log.warning("warm start: %s", message)
        return message

    def _cold(self, arch: str, spec: MachineSpec, options: VMOptions) -> VM:
        try:
            return self._start(spec, options)
        except HarnessError as exc:
            if spec.accel != "kvm":
                raise
            if self.accel.requested == "kvm":
                raise VMError(
                    f"--minix-accel=kvm was given but the {arch} guest cannot boot under KVM: "
                    f"{str(exc).splitlines()[0][:300]} Use --minix-accel=auto (falls back to TCG) "
                    "or --minix-accel=tcg.",
                    getattr(exc, "log_path", None),
                ) from exc
            self.accel.report_failure(arch, f"a boot under KVM failed: {str(exc).splitlines()[0][:300]}")
            return self._start(replace(spec, accel="tcg"), options)

    def _start(self, spec: MachineSpec, options: VMOptions) -> VM:
        vm = self.create(spec)
        log.debug("booting %s (%s, accel %s, %d MiB)", vm.machine.name, spec.arch, spec.accel, spec.memory)
        timeout = options.boot_timeout or self.config.boot_timeout or self.profile.boot_timeout
        first = options.first_output_timeout or self.profile.first_output_timeout
        stall = options.stall_timeout or self.profile.boot_stall_timeout
        if spec.accel == "kvm":
            first = min(first, 15.0)  # a KVM that cannot run the guest usually shows nothing
        try:
            vm.start(timeout, first, stall)
        except HarnessError as exc:
            kvm_lines = [ln for ln in vm.machine.qemu_stderr().splitlines() if any(s in ln for s in KVM_FAILURE_SIGNS)]
            vm.shutdown()
            if spec.accel == "kvm" and kvm_lines:
                raise VMError(f"KVM failed ({kvm_lines[0].strip()}).", vm.log_path) from exc
            raise
        if spec.accel == "kvm":
            self.accel.report_success(spec.arch)
        self.boots.append(vm)
        return vm

    def release(self, vm: VM) -> None:
        """Shut down a VM that was booted for one test."""
        vm.shutdown()

    def close(self) -> None:
        self.closed = True
        with self._lock:
            for machine in self._machines:
                try:
                    machine.shutdown()
                except Exception:  # noqa: BLE001 - best effort: every VM must go
                    continue
            self._vms.clear()
            self._booted.clear()
            self.state.remove()
