"""Boot metrics: per-boot milestone times from fresh boots, the kernel's own banner, and the processes after boot.

Most figures come from :meth:`MetricContext.boots` (``boot_rounds`` fresh boots to the
harness prompt, shared by all boot metrics): seconds from QMP ``cont`` to milestones the
guest profile's markers find on the console. MINIX's kernel-ready time needs boots of its
own (``cttyline=0``).
"""

from __future__ import annotations

import re
from typing import Literal

from pytest_minix.guest.pool import VMOptions
from pytest_minix.measure.measurement import Conditions, Measurement
from pytest_minix.measure.registry import METRICS, Metric, MetricContext, metric


def _milestone_samples(
    ctx: MetricContext,
    m: Metric,
    end: str,
    start: str | None = None,
    *,
    note: str = "",
    bound: Literal["upper", "lower"] | None = None,
) -> Measurement:
    """Per-boot seconds from ``start`` (default: QMP cont) to milestone ``end``, as metric ``m`` (unit s, timing)."""
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
            m.id,
            "s",
            samples,
            cond,
            timing=True,
            unmeasurable=(f"milestone {what} was not seen in {len(missing)} of {len(boots)} boots (e.g. {missing[0]})"),
        )
    phases = [{p.name: round(p.duration, 4) for p in b.timeline.phases()} for b in boots]
    return Measurement(
        m.id,
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
def boot_to_login(ctx: MetricContext, m: Metric) -> Measurement:
    note = "includes firmware, kernel, servers, rc scripts and their real-time waits"
    return _milestone_samples(ctx, m, "login", note=note)


@metric("boot.to_shell", "s", "timing", "QMP cont to the harness prompt after logging in as root, per fresh boot")
def boot_to_shell(ctx: MetricContext, m: Metric) -> Measurement:
    return _milestone_samples(ctx, m, "shell", note="to_login plus login, motd and the harness set-up")


@metric("boot.login_share", "ratio", "ratio", "(shell - login) / shell: the share of boot-to-shell spent logging in")
def boot_login_share(ctx: MetricContext, m: Metric) -> Measurement:
    shell = _milestone_samples(ctx, m, "shell")
    if shell.unmeasurable:
        return shell
    login = [b.timeline.get("login") for b in ctx.boots()]
    if any(x is None for x in login):
        return m.measurement([], shell.conditions, unmeasurable="no login milestone")
    shell.samples = [(s - lg.t) / s for s, lg in zip(shell.samples, login, strict=True) if lg is not None]
    shell.unit, shell.timing = m.unit, m.timing  # both ends measured in the same boot: emulation speed cancels out
    return shell


@metric("boot.firmware", "s", "timing", "QMP cont to SeaBIOS's 'Booting from ROM' on its debug console (x86)")
def boot_firmware(ctx: MetricContext, m: Metric) -> Measurement:
    if ctx.arch != "i386":
        return m.unmeasurable(
            ctx, "QEMU boots the ARM kernel directly (-kernel on -M virt): there is no firmware stage to observe"
        )
    return _milestone_samples(ctx, m, "firmware", note="SeaBIOS POST until it jumps to the boot ROM")


@metric("boot.firmware_share", "ratio", "ratio", "firmware / to_login within each boot (x86)")
def boot_firmware_share(ctx: MetricContext, m: Metric) -> Measurement:
    fw = METRICS["boot.firmware"].measure(ctx)
    if fw.unmeasurable:
        return m.measurement([], fw.conditions, unmeasurable=fw.unmeasurable)
    login = _milestone_samples(ctx, METRICS["boot.to_login"], "login")
    if login.unmeasurable:
        return m.measurement([], fw.conditions, unmeasurable=login.unmeasurable)
    # Both ends come from the same boot, so host speed and emulation largely cancel out.
    share = [f / t for f, t in zip(fw.samples, login.samples, strict=True)]
    note = "firmware time over boot-to-login time"
    return m.measurement(share, fw.conditions, note=note)


# Which milestone marks "the kernel has finished initialising and runs its first process",
# per guest. MINIX prints its banner in announce() just before the first process runs
# (minix/kernel/main.c), but with console=tty00 that line reaches the serial port only when
# TTY replays it; the reference guest's init prints its first line as soon as Linux starts it.
_KERNEL_READY = {"reference": "init"}


@metric("boot.kernel_ready", "s", "timing", "QMP cont until the kernel hands over to its first process")
def boot_kernel_ready(ctx: MetricContext, m: Metric) -> Measurement:
    end = _KERNEL_READY.get(ctx.guest_name)
    if end is None:
        return _kernel_banner(ctx, m, relative_to_firmware=False)
    return _milestone_samples(ctx, m, end, note="the reference guest's init prints its first line as soon as it runs")


@metric("boot.kernel_init", "s", "timing", "firmware hand-over until the kernel hands over to its first process")
def boot_kernel_init(ctx: MetricContext, m: Metric) -> Measurement:
    end = _KERNEL_READY.get(ctx.guest_name)
    if end is None:
        return _kernel_banner(ctx, m, relative_to_firmware=True)
    start = "firmware" if ctx.arch == "i386" else None
    return _milestone_samples(
        ctx,
        m,
        end,
        start,
        bound="upper",
        note="includes the boot ROM loading the kernel and initrd, and kernel decompression"
        + ("" if start else "; on ARM measured from QMP cont (no firmware stage)"),
    )


def _kernel_banner(ctx: MetricContext, m: Metric, *, relative_to_firmware: bool) -> Measurement:
    """MINIX: timing-only boots with ``cttyline=0``, so the kernel itself prints its banner on COM1.

    That is the one use of cttyline: it silences everything after the kernel's own lines
    (no login ever comes), so these boots stop at the banner and are separate from the
    boots that reach a shell.
    """
    if ctx.guest_name != "minix":
        return m.unmeasurable(ctx, f"no kernel-ready marker is defined for guest {ctx.guest_name!r}")
    if ctx.arch != "i386":
        return m.unmeasurable(ctx, "the ARM lane does not boot here")
    banner = next((mk for mk in ctx.pool.profile.markers if mk.name == "kernel"), None)
    if banner is None:
        return m.unmeasurable(ctx, "the guest profile has no 'kernel' marker")
    samples: list[float] = []
    cond: Conditions | None = None
    logs: list[str] = []
    for i in range(ctx.boot_rounds):
        if ctx.progress:
            ctx.progress(f"kernel timing boot {i + 1}/{ctx.boot_rounds} (cttyline=0)")
        spec = ctx.pool.spec(ctx.arch, VMOptions(boot_args="cttyline=0 cttybaud=115200"))
        with ctx.pool.create(spec) as vm:  # launched without a login: cttyline=0 silences everything after the banner
            vm.launch()
            seen = vm.console.expect(banner.regex, 120, what="the MINIX kernel banner", exited=vm.life.exit_reason)
            t = seen.t
            if relative_to_firmware:
                dbg = vm.machine.debugcon
                rom = next((ln for ln in dbg.head() if ln.text.startswith("Booting from ROM")), None) if dbg else None
                if rom is None:
                    return m.unmeasurable(ctx, "SeaBIOS's 'Booting from ROM' line was not seen")
                t -= rom.t
            samples.append(t)
            logs.append(str(vm.log_path))
            cond = ctx.conditions(vm)
    assert cond is not None
    return m.measurement(
        samples,
        cond,
        bound="upper" if relative_to_firmware else None,
        note="the kernel's own banner (announce(), just before the first process runs), printed "
        "on COM1 by the kernel with cttyline=0"
        + ("; includes the boot ROM loading the kernel and modules" if relative_to_firmware else ""),
        extra={"logs": logs},
    )


@metric("boot.phases", "count", "count", "distinct boot phases the harness can observe on the console")
def boot_phases(ctx: MetricContext, m: Metric) -> Measurement:
    boots = ctx.boots()
    counts = [float(len(b.timeline.phases())) for b in boots]
    names = [mk.name for mk in boots[0].timeline.milestones]
    why = (
        f"the harness can only count phases between its own markers ({' -> '.join(names)}); the whitepaper's "
        "phases (bootloader ... shell ready) are not defined by anything the guest prints"
    )
    return m.measurement(counts, boots[0].conditions, inconclusive=why, extra={"milestones": names})


_PS_BOOT = re.compile(r"^\s*\d+\s+\S+\s+\S+\s+[\d:.]+\s+(\[[^\]]+\]|\([^)]+\))\s*$")


def count_boot_image_processes(ps_output: str) -> int:
    """Lines of MINIX ``ps -ax`` whose command is ``[kernel]`` or a parenthesised boot-image name."""
    return sum(1 for line in ps_output.splitlines() if _PS_BOOT.match(line))


# -- the running system -----------------------------------------------------------------------
@metric("proc.count", "count", "count", "processes in the guest after boot (entries /proc/<pid>)")
def proc_count(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    out = vm.shell.run("ls -d /proc/[0-9]* | wc -l", timeout=30).check().stdout.strip()
    return m.measurement(
        [float(out)], ctx.conditions(vm), note="includes the shell, ls and wc of the measurement itself"
    )


__all__ = ["count_boot_image_processes"]
