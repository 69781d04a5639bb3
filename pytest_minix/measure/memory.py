"""Memory metrics: the guest's view (/proc/meminfo), the host's view of QEMU, and the smallest RAM that boots."""

from __future__ import annotations

import re
import time
from pathlib import Path

from pytest_minix.errors import BootStalled, BootTimeout, GuestPanic, HarnessError
from pytest_minix.guest.pool import VMOptions
from pytest_minix.guest.vm import VM
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import Metric, MetricContext, metric

# Lines that make a boot that reached login "unclean": it got there, but not without trouble.
_TROUBLE = re.compile(r"(?i)out of memory|oom-kill|cannot allocate|not enough memory|page allocation failure")


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


def meminfo_free_mib(text: str) -> float | None:
    """Free RAM in MiB: Linux ``MemAvailable`` (else ``MemFree``), or MINIX's free pages times the page size."""
    for key in ("MemAvailable", "MemFree"):
        m = re.search(rf"^{key}:\s+(\d+) kB", text, re.MULTILINE)
        if m:
            return int(m.group(1)) / 1024
    nums = text.split()
    if len(nums) == 5 and all(x.isdigit() for x in nums):  # pagesize total free largest cached
        return int(nums[0]) * int(nums[2]) / 2**20
    return None


MINIX_MEMINFO = ("pagesize", "total_pages", "free_pages", "largest_free_pages", "cached_pages")


def parse_meminfo(text: str) -> dict[str, float]:
    """Every field of /proc/meminfo: Linux ``Key: N kB`` lines as MiB (counts as they are), or
    MINIX's one line of five numbers (page size, total, free, largest free, cached pages) with
    ``total_mib``/``free_mib``/``cached_mib`` derived."""
    out: dict[str, float] = {}
    for m in re.finditer(r"^(\w[\w()]*):\s+(\d+)(?: (kB))?\s*$", text, re.MULTILINE):
        out[m.group(1)] = int(m.group(2)) / 1024 if m.group(3) else float(m.group(2))
    nums = text.split()
    if not out and len(nums) == 5 and all(x.isdigit() for x in nums):
        out = dict(zip(MINIX_MEMINFO, map(float, nums), strict=True))
        for key in ("total", "free", "cached"):
            out[f"{key}_mib"] = out["pagesize"] * out[f"{key}_pages"] / 2**20
    return out


@metric("mem.total_ram", "MiB", "size", "RAM the guest kernel reports as total, after boot")
def mem_total_ram(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    text = vm.shell.run("cat /proc/meminfo", timeout=30).check().stdout
    mib = meminfo_total_mib(text)
    if mib is None:
        return m.unmeasurable(ctx, f"/proc/meminfo has an unknown format: {text[:80]!r}")
    return m.measurement(
        [mib],
        ctx.conditions(vm),
        extra={"meminfo": text[:2000], "qemu_memory_mib": vm.machine.spec.memory},
    )


@metric("mem.free_ram", "MiB", "size", "free RAM the guest reports after boot (and around a workload, in extra)")
def mem_free_ram(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()

    def free() -> tuple[float | None, str]:
        text = vm.shell.run("cat /proc/meminfo", timeout=30).check().stdout
        return meminfo_free_mib(text), text

    before, text = free()
    if before is None:
        return m.unmeasurable(ctx, f"/proc/meminfo has an unknown format: {text[:80]!r}")
    # A workload that holds memory: 8 MiB written to /tmp (tmpfs on the reference guest, a RAM disk on
    # the MINIX live CD) and read back.
    vm.shell.run(
        "dd if=/dev/zero of=/tmp/.pm-mem bs=65536 count=128 2>/dev/null; cat /tmp/.pm-mem > /dev/null", timeout=120
    ).check()
    during, _ = free()
    vm.shell.run("rm -f /tmp/.pm-mem", timeout=30)
    after, _ = free()
    return m.measurement(
        [before],
        ctx.conditions(vm),
        note="MemAvailable on Linux; free pages x page size on MINIX",
        extra={
            "after_boot": before,
            "with_8MiB_in_tmp": during,
            "after_cleanup": after,
            "total": meminfo_total_mib(text),
        },
    )


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def qemu_faults(pid: int) -> tuple[int, int]:
    """(minor, major) page faults of a host process, from /proc/<pid>/stat (fields 10 and 12)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[7]), int(fields[9])


@metric("mem.host_rss", "MiB", "size", "resident memory of the QEMU process on the host, after boot")
def mem_host_rss(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    pid = vm.machine.pid
    if pid is None:
        return m.unmeasurable(ctx, "QEMU is not running")
    status = proc_status(pid)
    rss_kib = int(status["VmRSS"].split()[0])
    minor, major = qemu_faults(pid)
    return m.measurement(
        [rss_kib / 1024],
        ctx.conditions(vm),
        note="QEMU's VmRSS: the guest RAM it has touched plus QEMU's own code and buffers",
        extra={
            "VmRSS_kB": rss_kib,
            "VmHWM": status.get("VmHWM"),
            "minor_faults": minor,
            "major_faults": major,
            "guest_ram_mib": vm.machine.spec.memory,
        },
    )


@metric("mem.host_faults", "count", "count", "page faults of the QEMU process on the host since it started")
def mem_host_faults(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    if vm.machine.pid is None:
        return m.unmeasurable(ctx, "QEMU is not running")
    minor, major = qemu_faults(vm.machine.pid)
    return m.measurement(
        [float(minor + major)],
        ctx.conditions(vm),
        note="minor + major faults of the QEMU process (host view, not the guest's own faults)",
        extra={"minor": minor, "major": major},
    )


def kvm_stats(vm: VM, target: str) -> dict[str, float]:
    """KVM's numeric counters from QMP ``query-stats`` for ``target`` ("vm" or "vcpu"), summed over vCPUs."""
    totals: dict[str, float] = {}
    for row in vm.qmp.execute("query-stats", {"target": target}):
        for st in row.get("stats", []):
            if isinstance(st.get("value"), int | float):
                totals[st["name"]] = totals.get(st["name"], 0) + st["value"]
    return totals


@metric("mem.guest_page_faults", "count", "count", "guest page faults seen by KVM (QMP query-stats, vCPU)")
def mem_guest_page_faults(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    if vm.accel != "kvm":
        why = f"QMP query-stats reports KVM's per-vCPU counters only; this VM runs under {vm.accel}"
        return m.unmeasurable(ctx, why)
    totals = kvm_stats(vm, "vcpu")
    pf = sum(v for k, v in totals.items() if k in ("pf_taken", "pf_guest", "pf_fixed"))
    return m.measurement(
        [float(pf)],
        ctx.conditions(vm),
        note="sum over vCPUs of KVM's page-fault counters",
        extra={"vcpu_stats": totals},
    )


# How long a min_ram trial may stay silent once it has printed: a clean boot's longest gap
# under TCG was about 2 s (MINIX); a starved one prints an out-of-memory line and stops.
TRIAL_STALL_S = 30.0


def trial_outcome(exc: HarnessError | None, console_text: str, shell_ok: bool) -> tuple[str, str]:
    """What one boot with a given -m did, as (outcome, evidence).

    Outcomes: ``nothing printed``, ``panic``, ``out of memory`` (a starvation line, then no
    shell), ``stalled`` (output stopped, no such line), ``no shell`` (other failures),
    ``degraded`` (a shell, but starvation lines on the way) and ``clean``.
    """
    trouble = next((ln.strip() for ln in console_text.splitlines() if _TROUBLE.search(ln)), "")
    if exc is None:
        if shell_ok and not trouble:
            return "clean", ""
        return "degraded", trouble or "the shell did not answer `echo ok`"
    first = str(exc).splitlines()[0][:200]
    if isinstance(exc, BootTimeout) and not console_text.strip():
        return "nothing printed", first
    if isinstance(exc, GuestPanic):
        return "panic", first
    if trouble:
        return "out of memory", trouble[:200]
    if isinstance(exc, BootStalled):
        return "stalled", first
    return "no shell", first


def _read_log(path: Path | None) -> str:
    try:
        return path.read_text(errors="replace") if path else ""
    except OSError:
        return ""


def _boots_cleanly(ctx: MetricContext, memory: int, log: list[dict[str, object]]) -> bool:
    """One fresh boot with ``memory`` MiB: True if it reached a shell with no out-of-memory trouble."""
    opts = VMOptions(memory=memory, first_output_timeout=10.0, stall_timeout=TRIAL_STALL_S)
    started = time.monotonic()
    try:
        vm = ctx.pool.boot(ctx.arch, opts)
    except HarnessError as exc:
        log_path = getattr(exc, "log_path", None)
        outcome, why = trial_outcome(exc, _read_log(log_path), False)
        secs = round(time.monotonic() - started, 1)
        log.append({"memory_mib": memory, "outcome": outcome, "why": why, "seconds": secs, "log": str(log_path or "")})
        return False
    try:
        text = "\n".join(ln.text for ln in vm.console.lines())
        ok = vm.shell.run("echo ok", timeout=30).stdout.strip() == "ok"
        outcome, why = trial_outcome(None, text, ok)
        secs = round(time.monotonic() - started, 1)
        log.append({"memory_mib": memory, "outcome": outcome, "why": why, "seconds": secs, "log": str(vm.log_path)})
        return outcome == "clean"
    finally:
        ctx.pool.release(vm)


@metric("mem.min_ram", "MiB", "size", "the smallest -m (MiB) with which the guest boots cleanly to a shell")
def mem_min_ram(ctx: MetricContext, m: Metric) -> Measurement:
    """Bisection over -m between a floor that fails and the profile's default, to 2 MiB resolution.

    A clean boot reaches the shell with no out-of-memory lines on the console; one that gets
    there with such errors counts as a failure (it is recorded as "shell with errors"). A
    boot that prints nothing fails after 10 s, not after the whole boot timeout.
    """
    log: list[dict[str, object]] = []
    hi = ctx.pool.config.memory or ctx.pool.profile.memory
    lo = 4  # QEMU itself refuses less than about 2 MiB on -M pc; 4 MiB is the whitepaper's figure
    if _boots_cleanly(ctx, lo, log):
        hi = lo
    elif not _boots_cleanly(ctx, hi, log):
        return m.unmeasurable(ctx, f"the guest does not boot cleanly even with {hi} MiB")
    while hi - lo > 2:
        mid = (lo + hi) // 2
        if _boots_cleanly(ctx, mid, log):
            hi = mid
        else:
            lo = mid
    # The true minimum lies in (lo, hi]; hi, the smallest size seen to work, is the figure.
    return m.measurement(
        [float(hi)],
        ctx.conditions(),
        note=f"bisection to 2 MiB: boots cleanly with {hi} MiB, not with {lo} MiB",
        extra={"trials": log, "fails_at_mib": lo},
    )


def elf_text_size(path: Path) -> tuple[int, dict[str, int]]:
    """Bytes of executable sections (SHF_EXECINSTR) of an ELF file, and their sizes by name (pyelftools)."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.constants import SH_FLAGS
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        try:
            elf = ELFFile(f)
            sections = {
                s.name: int(s["sh_size"]) for s in elf.iter_sections() if int(s["sh_flags"]) & SH_FLAGS.SHF_EXECINSTR
            }
        except ELFError as exc:
            raise ValueError(f"{path} is not an ELF file ({exc})") from None
    return sum(sections.values()), sections


@metric("mem.kernel_text", "KiB", "size", "executable sections of the kernel image that was booted (ELF)")
def mem_kernel_text(ctx: MetricContext, m: Metric) -> Measurement:
    kernel = ctx.pool.media(ctx.arch).files.get("kernel")
    if kernel is None:
        return m.unmeasurable(ctx, "the guest boots no separate kernel file (SD image)")
    try:
        size, sections = elf_text_size(Path(kernel))
    except ValueError as exc:
        return m.unmeasurable(ctx, f"the kernel has no ELF section headers to measure: {exc}")
    return m.measurement(
        [size / 1024],
        ctx.conditions(),
        note="sum of the kernel ELF's executable sections (SHF_EXECINSTR)",
        extra={"sections": sections, "kernel": str(kernel)},
    )
