"""Pure helpers of the in-guest latency metrics: parsers of guest output and the per-operation arithmetic.

Nothing here talks to a VM, so all of it is unit-tested on captured or source-derived text
(tests/harness/test_syscall_metrics.py).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

# Linux i386 prints "cpu MHz\t\t: 2592.296"; MINIX's procfs prints "%-16s: %d", i.e.
# "cpu MHz         : 2593" (minix/fs/procfs/cpuinfo.c, print_cpu(), __i386__ only).
_CPU_MHZ = re.compile(r"^cpu MHz\s*:\s*([0-9]+(?:\.[0-9]*)?)\s*$", re.MULTILINE)


def cpu_mhz(cpuinfo: str) -> float | None:
    """The first CPU's ``cpu MHz`` from /proc/cpuinfo (Linux or MINIX), or None if there is none.

    ARM Linux and MINIX on ARM print no such line, and the value is the rate the kernel
    calibrated its TSC at (MINIX: estimate_cpu_freq() in minix/kernel/arch/i386/arch_clock.c,
    truncated to whole MHz), which under TCG is QEMU's emulated TSC rate, not a real clock.
    """
    m = _CPU_MHZ.search(cpuinfo)
    if m is None:
        return None
    mhz = float(m.group(1))
    return mhz if mhz > 0 else None


@dataclass(frozen=True)
class DdRecords:
    """One ``N+M records in|out`` line of dd's summary: full and partial blocks."""

    direction: str  # "in" or "out"
    full: int
    partial: int


_DD_RECORDS = re.compile(r"^(\d+)\+(\d+) records (in|out)\s*$", re.MULTILINE)


def dd_records(stderr: str) -> list[DdRecords]:
    """Every records line of dd summaries in ``stderr``, in order.

    busybox dd prints only the two records lines; NetBSD/MINIX dd adds a ``bytes transferred``
    line (bin/dd/misc.c, posix_summary()). Several dd of one pipeline share stderr, and their
    lines may interleave, so the lines are not paired per process.
    """
    return [DdRecords(m.group(3), int(m.group(1)), int(m.group(2))) for m in _DD_RECORDS.finditer(stderr)]


def dd_mismatch(stderr: str, count: int, processes: int, *, exact: bool = True) -> str | None:
    """Why ``processes`` dd did not each move ``count`` whole blocks, or None if they did.

    ``exact``: every records line must read ``count+0``; otherwise at least one process
    (the writer) must have read and written ``count+0`` (a pipe reader may see partial blocks).
    """
    recs = dd_records(stderr)
    want = DdRecords("", count, 0)
    lines = [f"{r.full}+{r.partial} records {r.direction}" for r in recs]
    if len(recs) != 2 * processes:
        return f"expected {2 * processes} dd records lines, got {len(recs)}: {lines}"
    ok = [r for r in recs if (r.full, r.partial) == (want.full, want.partial)]
    if (exact and len(ok) != len(recs)) or (not exact and {r.direction for r in ok} != {"in", "out"}):
        return f"dd did not move {count} whole blocks: {lines}"
    return None


def ops_in(count: int, base_count: int | None, per_count: int = 1) -> int:
    """Operations in the difference between a workload run with ``count`` and its baseline.

    ``base_count`` None: the baseline runs the same ``count`` iterations with a no-op body,
    so all ``count`` iterations' operations remain. Otherwise the baseline is the same command
    with ``base_count`` (dd's count=1, since NetBSD dd exits before opening its files on
    count=0: bin/dd/args.c, f_count()), and only the extra ``count - base_count`` remain.
    """
    n = count if base_count is None else count - base_count
    return per_count * n


def per_op(work_s: Sequence[float], base_s: Sequence[float], ops: int, scale: float = 1e6) -> list[float]:
    """Per-operation cost of each (work, baseline) pair: ``(work - base) / ops * scale``.

    Pairs are taken in order (each work run with the baseline run next to it), so slow
    drifts of the host's speed affect both halves of a pair alike. ``scale`` converts
    seconds to the metric's unit (1e6: microseconds).
    """
    if ops <= 0:
        raise ValueError(f"ops must be positive, got {ops}")
    if len(work_s) != len(base_s):
        raise ValueError(f"{len(work_s)} workload runs but {len(base_s)} baseline runs")
    return [(w - b) / ops * scale for w, b in zip(work_s, base_s, strict=True)]


def choose_count(
    pilot_work_s: float,
    pilot_base_s: float,
    pilot_ops: int,
    target_s: float,
    *,
    base_count: int | None,
    per_count: int = 1,
    lo: int = 2,
    hi: int = 10**7,
) -> int | None:
    """The count whose workload exceeds its baseline by about ``target_s``, from one pilot pair.

    None if the pilot's difference was not positive (too small to extrapolate from: run a
    bigger pilot). The result is clamped to [lo, hi].
    """
    extra = pilot_work_s - pilot_base_s
    if extra <= 0 or pilot_ops <= 0:
        return None
    ops_needed = target_s / (extra / pilot_ops)
    count = math.ceil(ops_needed / per_count) + (base_count or 0)
    return max(lo, min(hi, count))


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence."""
    s = sorted(values)
    if not s:
        raise ValueError("median of nothing")
    mid = len(s) // 2
    return s[mid] if len(s) % 2 else (s[mid - 1] + s[mid]) / 2


def us_to_cycles(us: float, mhz: float) -> float:
    """Microseconds at ``mhz`` in cycles (1 MHz = 1 cycle per microsecond)."""
    return us * mhz


__all__ = [
    "DdRecords",
    "choose_count",
    "cpu_mhz",
    "dd_mismatch",
    "dd_records",
    "median",
    "ops_in",
    "per_op",
    "us_to_cycles",
]
