"""Metrics: what the harness can measure on a guest, each with an id, a unit and a method.

A metric's ``measure(ctx)`` returns a :class:`Measurement` (samples in the metric's unit,
and the conditions they were taken under). Claims name metrics by id; the claims
suites, users' own tests and other front ends all call the same functions. A metric
that cannot be taken on this guest, arch or accelerator returns a Measurement with
``unmeasurable`` set to the reason, never a made-up number.
"""

from __future__ import annotations

import contextlib
import re
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Literal

from pytest_minix.guest.pool import VMOptions, VMPool
from pytest_minix.guest.timeline import Timeline
from pytest_minix.guest.vm import VM
from pytest_minix.measure.measurement import Conditions, Measurement
from pytest_minix.qemu.binary import qemu_version
from pytest_minix.qemu.console import Line

Kind = Literal["timing", "count", "size", "address", "flag", "ratio"]


@dataclass(frozen=True)
class Metric:
    id: str
    unit: str
    kind: Kind
    description: str
    measure: Callable[[MetricContext], Measurement]

    @property
    def timing(self) -> bool:
        return self.kind == "timing"


METRICS: dict[str, Metric] = {}


Method = Callable[["MetricContext"], Measurement]


def metric(id: str, unit: str, kind: Kind, description: str) -> Callable[[Method], Method]:
    """Register ``fn`` as the method of metric ``id``."""

    def register(fn: Method) -> Method:
        METRICS[id] = Metric(id, unit, kind, description, fn)
        return fn

    return register


def metric_units() -> dict[str, str]:
    """Metric id -> unit, for the claims loader."""
    return {m.id: m.unit for m in METRICS.values()}


# -- conditions -------------------------------------------------------------------------------
def harness_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("pytest-minix")
    except PackageNotFoundError:  # pragma: no cover - running from a checkout without install
        return "unknown"


def conditions_of(vm: VM, image_sha256: str = "") -> Conditions:
    spec = vm.machine.spec
    return Conditions(
        guest=vm.profile.name,
        arch=vm.arch,
        accel=vm.accel,
        cpu=spec.config.cpu or f"{spec.config.machine} default",
        qemu_version=qemu_version(spec.qemu_binary or spec.config.qemu),
        image_sha256=image_sha256,
        harness_version=harness_version(),
    )


# -- boots ------------------------------------------------------------------------------------
@dataclass
class BootRecord:
    """One fresh boot to the harness prompt: its timeline and conditions."""

    timeline: Timeline
    conditions: Conditions
    log_path: str


@dataclass
class MetricContext:
    """What a metric may use: the pool (fresh boots, the shared VM) for one arch, and the session's settings."""

    pool: VMPool
    arch: str
    boot_rounds: int = 3
    progress: Callable[[str], None] | None = None
    _boots: dict[str, list[BootRecord]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def guest_name(self) -> str:
        return self.pool.profile.name

    def guest(self) -> VM:
        return self.pool.get(self.arch)

    def image_sha256(self) -> str:
        return self.pool.media(self.arch).image_sha256

    def conditions(self, vm: VM | None = None) -> Conditions:
        return conditions_of(vm or self.guest(), self.image_sha256())

    def boots(self) -> list[BootRecord]:
        """``boot_rounds`` fresh boots of this arch (made once per session, shared by all boot metrics)."""
        with self._lock:
            if self.arch not in self._boots:
                records = []
                for i in range(self.boot_rounds):
                    label = f"boot round {i + 1}/{self.boot_rounds} ({self.guest_name} {self.arch})"
                    with self._show_phases(label):
                        vm = self.pool.boot(self.arch)
                    try:
                        records.append(BootRecord(vm.timeline, self.conditions(vm), str(vm.log_path)))
                    finally:
                        self.pool.release(vm)
                self._boots[self.arch] = records
            return self._boots[self.arch]

    @contextlib.contextmanager
    def _show_phases(self, label: str) -> Iterator[None]:
        """Progress: the boot's latest milestone, live, while it boots."""
        progress = self.progress
        if progress is None:
            yield
            return
        progress(f"{label}: starting")
        markers = list(self.pool.profile.markers)

        def on_line(line: Line) -> None:
            for m in markers:
                if m.regex.search(line.text):
                    progress(f"{label}: {m.name} at {line.t:.1f} s")

        self.pool.line_listeners.append(on_line)
        try:
            yield
        finally:
            self.pool.line_listeners.remove(on_line)


def _unmeasurable(ctx: MetricContext, m: str, unit: str, reason: str, timing: bool = False) -> Measurement:
    cond = Conditions(
        guest=ctx.guest_name, arch=ctx.arch, accel=ctx.pool.accel.requested, harness_version=harness_version()
    )
    return Measurement(m, unit, [], cond, timing=timing, unmeasurable=reason)


def _milestone_samples(
    ctx: MetricContext,
    metric_id: str,
    end: str,
    start: str | None = None,
    *,
    note: str = "",
    bound: Literal["upper", "lower"] | None = None,
) -> Measurement:
    """Per-boot seconds from ``start`` (default: QMP cont) to milestone ``end``."""
    boots = ctx.boots()
    samples: list[float] = []
    missing: list[str] = []
    for b in boots:
        e = b.timeline.get(end)
        s = b.timeline.get(start) if start else None
        if e is None or (start and s is None):
            missing.append(b.log_path)
            continue
        samples.append(e.t - (s.t if s else 0.0))
    cond = boots[0].conditions
    if missing:
        what = f"'{end}'" + (f" or '{start}'" if start else "")
        return Measurement(
            metric_id,
            "s",
            samples,
            cond,
            timing=True,
            unmeasurable=(f"milestone {what} was not seen in {len(missing)} of {len(boots)} boots (e.g. {missing[0]})"),
        )
    phases = [{p.name: round(p.duration, 4) for p in b.timeline.phases()} for b in boots]
    return Measurement(
        metric_id,
        "s",
        samples,
        cond,
        timing=True,
        bound=bound,
        note=note,
        extra={
            "milestones": [b.timeline.as_dict() for b in boots],
            "phases": phases,
            "logs": [b.log_path for b in boots],
        },
    )


@metric("boot.to_login", "s", "timing", "QMP cont to the first byte of the login prompt, per fresh boot")
def boot_to_login(ctx: MetricContext) -> Measurement:
    note = "includes firmware, kernel, servers, rc scripts and their real-time waits"
    return _milestone_samples(ctx, "boot.to_login", "login", note=note)


@metric("boot.to_shell", "s", "timing", "QMP cont to the harness prompt after logging in as root, per fresh boot")
def boot_to_shell(ctx: MetricContext) -> Measurement:
    return _milestone_samples(ctx, "boot.to_shell", "shell", note="to_login plus login, motd and the harness set-up")


@metric("boot.login_share", "ratio", "ratio", "(shell - login) / shell: the share of boot-to-shell spent logging in")
def boot_login_share(ctx: MetricContext) -> Measurement:
    m = _milestone_samples(ctx, "boot.login_share", "shell")
    if m.unmeasurable:
        return m
    login = [b.timeline.get("login") for b in ctx.boots()]
    if any(x is None for x in login):
        return Measurement("boot.login_share", "ratio", [], m.conditions, unmeasurable="no login milestone")
    m.samples = [(s - lg.t) / s for s, lg in zip(m.samples, login, strict=True) if lg is not None]
    m.unit, m.timing = "ratio", False  # both ends measured in the same boot: emulation speed cancels out
    return m


@metric("boot.firmware", "s", "timing", "QMP cont to SeaBIOS's 'Booting from ROM' on its debug console (x86)")
def boot_firmware(ctx: MetricContext) -> Measurement:
    if ctx.arch != "i386":
        return _unmeasurable(
            ctx,
            "boot.firmware",
            "s",
            "QEMU boots the ARM kernel directly (-kernel on -M virt): there is no firmware stage to observe",
            timing=True,
        )
    return _milestone_samples(ctx, "boot.firmware", "firmware", note="SeaBIOS POST until it jumps to the boot ROM")


@metric("boot.firmware_share", "ratio", "ratio", "firmware / to_login within each boot (x86)")
def boot_firmware_share(ctx: MetricContext) -> Measurement:
    fw = boot_firmware(ctx)
    if fw.unmeasurable:
        return Measurement("boot.firmware_share", "ratio", [], fw.conditions, unmeasurable=fw.unmeasurable)
    login = _milestone_samples(ctx, "boot.to_login", "login")
    if login.unmeasurable:
        return Measurement("boot.firmware_share", "ratio", [], fw.conditions, unmeasurable=login.unmeasurable)
    # Both ends come from the same boot, so host speed and emulation largely cancel out.
    share = [f / t for f, t in zip(fw.samples, login.samples, strict=True)]
    note = "firmware time over boot-to-login time"
    return Measurement("boot.firmware_share", "ratio", share, fw.conditions, note=note)


# Which milestone marks "the kernel has finished initialising and runs its first process",
# per guest. MINIX prints its banner in announce() just before the first process runs
# (minix/kernel/main.c), but with console=tty00 that line reaches the serial port only when
# TTY replays it; the reference guest's init prints its first line as soon as Linux starts it.
_KERNEL_READY = {"reference": "init"}


@metric("boot.kernel_ready", "s", "timing", "QMP cont until the kernel hands over to its first process")
def boot_kernel_ready(ctx: MetricContext) -> Measurement:
    end = _KERNEL_READY.get(ctx.guest_name)
    if end is None:
        return _kernel_banner(ctx, "boot.kernel_ready", relative_to_firmware=False)
    return _milestone_samples(
        ctx, "boot.kernel_ready", end, note="the reference guest's init prints its first line as soon as it runs"
    )


@metric("boot.kernel_init", "s", "timing", "firmware hand-over until the kernel hands over to its first process")
def boot_kernel_init(ctx: MetricContext) -> Measurement:
    end = _KERNEL_READY.get(ctx.guest_name)
    if end is None:
        return _kernel_banner(ctx, "boot.kernel_init", relative_to_firmware=True)
    start = "firmware" if ctx.arch == "i386" else None
    return _milestone_samples(
        ctx,
        "boot.kernel_init",
        end,
        start,
        bound="upper",
        note="includes the boot ROM loading the kernel and initrd, and kernel decompression"
        + ("" if start else "; on ARM measured from QMP cont (no firmware stage)"),
    )


def _kernel_banner(ctx: MetricContext, metric_id: str, *, relative_to_firmware: bool) -> Measurement:
    """MINIX: timing-only boots with ``cttyline=0``, so the kernel itself prints its banner on COM1.

    That is the one use of cttyline: it silences everything after the kernel's own lines
    (no login ever comes), so these boots stop at the banner and are separate from the
    boots that reach a shell.
    """
    if ctx.guest_name != "minix":
        return _unmeasurable(
            ctx, metric_id, "s", f"no kernel-ready marker is defined for guest {ctx.guest_name!r}", timing=True
        )
    if ctx.arch != "i386":
        return _unmeasurable(ctx, metric_id, "s", "the ARM lane does not boot here", timing=True)
    banner = next((m for m in ctx.pool.profile.markers if m.name == "kernel"), None)
    if banner is None:
        return _unmeasurable(ctx, metric_id, "s", "the guest profile has no 'kernel' marker", timing=True)
    samples: list[float] = []
    cond: Conditions | None = None
    logs: list[str] = []
    for i in range(ctx.boot_rounds):
        if ctx.progress:
            ctx.progress(f"kernel timing boot {i + 1}/{ctx.boot_rounds} (cttyline=0)")
        spec = ctx.pool.spec(ctx.arch, VMOptions(boot_args="cttyline=0 cttybaud=115200"))
        machine = ctx.pool.machine(spec)
        try:
            machine.launch()
            machine.cont()
            m = machine.console.expect(banner.regex, 120, what="the MINIX kernel banner")
            t = m.t
            if relative_to_firmware:
                dbg = machine.debugcon
                rom = next((ln for ln in dbg.head() if ln.text.startswith("Booting from ROM")), None) if dbg else None
                if rom is None:
                    return _unmeasurable(
                        ctx, metric_id, "s", "SeaBIOS's 'Booting from ROM' line was not seen", timing=True
                    )
                t -= rom.t
            samples.append(t)
            logs.append(str(machine.serial_log))
            cond = Conditions(
                guest="minix",
                arch=ctx.arch,
                accel=spec.accel,
                cpu=spec.config.cpu or "pc default",
                qemu_version=qemu_version(spec.qemu_binary or spec.config.qemu),
                image_sha256=ctx.image_sha256(),
                harness_version=harness_version(),
            )
        finally:
            machine.shutdown()
    assert cond is not None
    return Measurement(
        metric_id,
        "s",
        samples,
        cond,
        timing=True,
        bound="upper" if relative_to_firmware else None,
        note="the kernel's own banner (announce(), just before the first process runs), printed "
        "on COM1 by the kernel with cttyline=0"
        + ("; includes the boot ROM loading the kernel and modules" if relative_to_firmware else ""),
        extra={"logs": logs},
    )


@metric("boot.phases", "count", "count", "distinct boot phases the harness can observe on the console")
def boot_phases(ctx: MetricContext) -> Measurement:
    boots = ctx.boots()
    counts = [float(len(b.timeline.phases())) for b in boots]
    names = [m.name for m in boots[0].timeline.milestones]
    why = (
        f"the harness can only count phases between its own markers ({' -> '.join(names)}); the whitepaper's "
        "phases (bootloader ... shell ready) are not defined by anything the guest prints"
    )
    return Measurement(
        "boot.phases", "count", counts, boots[0].conditions, inconclusive=why, extra={"milestones": names}
    )


_PS_BOOT = re.compile(r"^\s*\d+\s+\S+\s+\S+\s+[\d:.]+\s+(\[[^\]]+\]|\([^)]+\))\s*$")


def count_boot_image_processes(ps_output: str) -> int:
    """Lines of MINIX ``ps -ax`` whose command is ``[kernel]`` or a parenthesised boot-image name."""
    return sum(1 for line in ps_output.splitlines() if _PS_BOOT.match(line))


# -- the running system -----------------------------------------------------------------------
def meminfo_total_mib(text: str) -> float | None:
    """Total RAM in MiB from /proc/meminfo: Linux's ``MemTotal: N kB``, or MINIX's five numbers
    ``pagesize total free largest cached`` (pages; minix/fs/procfs/root.c). None if neither."""
    m = re.search(r"^MemTotal:\s+(\d+) kB", text, re.MULTILINE)
    if m:
        return int(m.group(1)) / 1024
    nums = text.split()
    if len(nums) == 5 and all(x.isdigit() for x in nums):
        return int(nums[0]) * int(nums[1]) / 2**20
    return None


@metric("mem.total_ram", "MiB", "size", "RAM the guest kernel reports as total, after boot")
def mem_total_ram(ctx: MetricContext) -> Measurement:
    vm = ctx.guest()
    text = vm.shell.run("cat /proc/meminfo", timeout=30).check().stdout
    mib = meminfo_total_mib(text)
    if mib is None:
        return _unmeasurable(ctx, "mem.total_ram", "MiB", f"/proc/meminfo has an unknown format: {text[:80]!r}")
    return Measurement(
        "mem.total_ram",
        "MiB",
        [mib],
        ctx.conditions(vm),
        extra={"meminfo": text[:2000], "qemu_memory_mib": vm.machine.spec.memory},
    )


@metric("proc.count", "count", "count", "processes in the guest after boot (entries /proc/<pid>)")
def proc_count(ctx: MetricContext) -> Measurement:
    vm = ctx.guest()
    out = vm.shell.run("ls -d /proc/[0-9]* | wc -l", timeout=30).check().stdout.strip()
    return Measurement(
        "proc.count",
        "count",
        [float(out)],
        ctx.conditions(vm),
        note="includes the shell, ls and wc of the measurement itself",
    )


# -- claims without a method in this version ----------------------------------------------------
def _no_method(metric_id: str, unit: str, kind: Kind, needs: str) -> None:
    def measure(ctx: MetricContext) -> Measurement:
        return _unmeasurable(
            ctx, metric_id, unit, f"no method in this version of pytest-minix: {needs}", timing=kind == "timing"
        )

    METRICS[metric_id] = Metric(metric_id, unit, kind, f"not yet measurable: {needs}", measure)


for _id, _unit, _kind, _needs in [
    (
        "boot.critical_path",
        "ms",
        "timing",
        "the whitepaper does not say which events bound its 'critical path'; see boot.kernel_ready and boot.to_login",
    ),
    ("ipc.roundtrip", "us", "timing", "a message-passing benchmark inside MINIX"),
    ("mem.resident", "MiB", "size", "MINIX's per-process memory accounting after boot"),
    ("mem.tlb_hit_rate", "percent", "ratio", "TLB statistics, which neither TCG nor KVM's query-stats expose"),
    (
        "perf.microkernel_penalty",
        "percent",
        "ratio",
        "the same workload on MINIX and a monolithic kernel on equal "
        "hardware; two different OSes under TCG do not give a fair ratio",
    ),
]:
    _no_method(_id, _unit, _kind, _needs)  # type: ignore[arg-type]

__all__ = ["METRICS", "BootRecord", "Metric", "MetricContext", "count_boot_image_processes", "metric_units"]

# Methods defined in their own modules register themselves here, replacing placeholders above.
from pytest_minix.measure import layout, memory, minix, syscalls  # noqa: E402, F401
