"""System-call metrics: parsers on real and source-derived output, the timing arithmetic on a fake shell,
and every metric measured on the reference guest (each arch)."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pytest

import pytest_minix.measure.syscalls as ms
from pytest_minix import VM
from pytest_minix.guest.shell import Result
from pytest_minix.measure.guest_timing import (
    DdRecords,
    choose_count,
    cpu_mhz,
    dd_mismatch,
    dd_records,
    median,
    ops_in,
    per_op,
    us_to_cycles,
)
from pytest_minix.measure.registry import METRICS

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "reference" / "syscalls"

# MINIX /proc/cpuinfo, derived from minix/fs/procfs/cpuinfo.c print_cpu() ("%-16s: %d\n" per field,
# i386 only; the frequency is the TSC rate estimate_cpu_freq() calibrated, in whole MHz). Not captured.
MINIX_CPUINFO_I386 = (
    "processor       : 0\nvendor_id       : GenuineIntel\nmodel name      : Intel\ncpu family      : 6\n"
    "model           : 6\nstepping        : 3\ncpu MHz         : 2593\nflags           : fpu de pse tsc msr \n\n"
)
# On earm print_cpu() prints only the processor line (the rest is under #if defined(__i386__)).
MINIX_CPUINFO_ARM = "processor       : 0\n"
# MINIX dd's summary, derived from bin/dd/misc.c posix_summary(). Not captured.
MINIX_DD = "1000+0 records in\n1000+0 records out\n1000 bytes transferred in 0.017 secs (58823 bytes/sec)\n"

SYSCALL_IDS = ["syscall.read_write_byte", "syscall.stat", "ipc.pipe_byte", "sched.context_switch"]
PROCESS_IDS = ["proc.fork", "proc.fork_exec", "proc.exec", "ipc.pipe_block"]
IMPLEMENTED = [*SYSCALL_IDS, *PROCESS_IDS, "syscall.roundtrip_cycles"]


# -- parsers --------------------------------------------------------------------------------------
def test_cpu_mhz_on_real_and_source_derived_cpuinfo() -> None:
    assert cpu_mhz((FIXTURES / "cpuinfo-i386.txt").read_text()) == 2596.123  # Linux i386, real
    assert cpu_mhz((FIXTURES / "cpuinfo-arm.txt").read_text()) is None  # ARM Linux: no clock rate, real
    assert cpu_mhz(MINIX_CPUINFO_I386) == 2593.0
    assert cpu_mhz(MINIX_CPUINFO_ARM) is None
    assert cpu_mhz("cpu MHz\t\t: 0.000\n") is None
    two = "processor\t: 0\ncpu MHz\t\t: 1000.5\n\nprocessor\t: 1\ncpu MHz\t\t: 2000.0\n"
    assert cpu_mhz(two) == 1000.5  # the first CPU's


def test_dd_records_on_real_busybox_and_minix_summaries() -> None:
    one = dd_records((FIXTURES / "dd-bs1-count1000.stderr").read_text())
    assert one == [DdRecords("in", 1000, 0), DdRecords("out", 1000, 0)]
    assert dd_records(MINIX_DD) == one  # the "bytes transferred" line is not a records line
    pipe = dd_records((FIXTURES / "dd-pipe-bs1-count500.stderr").read_text())
    assert [(r.full, r.partial) for r in pipe] == [(500, 0)] * 4
    assert dd_records("dd: can't open '/x': No such file or directory\n") == []


def test_dd_mismatch() -> None:
    assert dd_mismatch((FIXTURES / "dd-bs1-count1000.stderr").read_text(), 1000, 1) is None
    assert dd_mismatch(MINIX_DD, 1000, 1) is None
    assert dd_mismatch((FIXTURES / "dd-ring-count300.stderr").read_text(), 300, 2) is None
    assert dd_mismatch((FIXTURES / "dd-pipe-bs65536-count20.stderr").read_text(), 20, 2, exact=False) is None
    # A pipe reader may see partial blocks; the writer's lines must be whole.
    assert (
        dd_mismatch("20+0 records in\n20+0 records out\n35+10 records in\n35+10 records out\n", 20, 2, exact=False)
        is None
    )
    assert "did not move 20 whole blocks" in str(dd_mismatch("20+0 records in\n19+1 records out\n", 20, 1))
    # One dd of two printed nothing (killed by SIGPIPE, say): refused, not silently accepted.
    assert "expected 4 dd records lines, got 2" in str(dd_mismatch(MINIX_DD.replace("1000", "300"), 300, 2))
    assert "did not move 999" in str(dd_mismatch(MINIX_DD, 999, 1))


# -- arithmetic ------------------------------------------------------------------------------------
def test_ops_between_a_workload_and_its_baseline() -> None:
    assert ops_in(1000, None) == 1000  # a loop against the same loop with a no-op body
    assert ops_in(1000, 1) == 999  # dd count=1000 against dd count=1
    assert ops_in(1000, 1, per_count=2) == 1998  # the ring: two hops per byte
    assert ops_in(100, None, per_count=10) == 1000  # ten unrolled tests per iteration


def test_per_op_subtracts_the_adjacent_baseline() -> None:
    # Work 0.25 s and 0.27 s over baselines 0.05 s and 0.06 s, 100000 ops: 2.0 and 2.1 us per op.
    assert per_op([0.25, 0.27], [0.05, 0.06], 100_000) == pytest.approx([2.0, 2.1])
    assert per_op([0.3], [0.1], 100, scale=1e3) == pytest.approx([2.0])  # ms
    assert per_op([0.1], [0.2], 10) == pytest.approx([-10_000.0])  # kept: the caller calls it inconclusive
    with pytest.raises(ValueError, match="2 workload runs but 1 baseline"):
        per_op([1.0, 1.0], [0.5], 10)
    with pytest.raises(ValueError, match="positive"):
        per_op([1.0], [0.5], 0)


def test_choose_count_extrapolates_from_the_pilot() -> None:
    # Pilot: 2000 ops took 0.04 s more than the baseline (20 us each); 0.2 s needs 10000 ops, count 10001.
    assert choose_count(0.05, 0.01, 2000, 0.2, base_count=1) == 10_000 + 1
    assert choose_count(0.05, 0.01, 1000, 0.2, base_count=None, per_count=10) == 500
    assert choose_count(0.05, 0.01, 1000, 0.2, base_count=None, hi=300) == 300
    assert choose_count(0.05, 0.01, 1000, 1e-9, base_count=None, lo=7) == 7
    assert choose_count(0.01, 0.02, 1000, 0.2, base_count=None) is None  # no signal: a bigger pilot is needed


def test_cycles_from_half_a_read_write_pair() -> None:
    # 2.28 us per read+write pair at 2596.123 MHz: one system call is 1.14 us, 2959.58 cycles.
    assert us_to_cycles(2.28 / 2, 2596.123) == pytest.approx(2959.58, abs=0.01)
    assert median([3.0, 1.0, 2.0]) == 2.0 and median([1.0, 2.0, 3.0, 4.0]) == 2.5


# -- the orchestration, on a fake shell --------------------------------------------------------------
class FakeShell:
    """Durations from the command: 10 ms of framing plus 2 us per dd block or 50 us per ( : )."""

    def __init__(self, records: str | None = None, status: int = 0) -> None:
        self.calls: list[str] = []
        self.records = records
        self.status = status

    def run(self, cmd: str, timeout: float = 60.0) -> Result:
        self.calls.append(cmd)
        if m := re.search(r"count=(\d+)", cmd):
            n = int(m.group(1))
            err = self.records or f"{n}+0 records in\n{n}+0 records out\n"
            return Result(cmd, self.status, "", err, 0.010 + n * 2e-6)
        n = int(re.search(r"-lt (\d+)", cmd).group(1))  # type: ignore[union-attr]
        per = 50e-6 if "( : )" in cmd else 1e-6
        return Result(cmd, self.status, "", "", 0.010 + n * per)


def _fake_ctx() -> SimpleNamespace:
    return SimpleNamespace(progress=None, guest_name="reference", arch="i386")


def test_time_workload_pilots_chooses_a_count_and_alternates() -> None:
    shell = FakeShell()
    vm = SimpleNamespace(shell=shell)
    t = ms.time_workload(_fake_ctx(), vm, "t", ms.READ_WRITE_BYTE, ms.Settings(samples=4, target_s=0.2))  # type: ignore[arg-type]
    assert t.error is None
    assert t.per_op() == pytest.approx([2.0] * 4)  # exactly the 2 us per block the fake charges
    assert 95_000 <= t.count <= 105_000 and t.ops == t.count - 1  # ~0.2 s of work over the count=1 baseline
    assert t.pilot["count"] > ms.READ_WRITE_BYTE.pilot  # the first pilot's 4 ms was too little to trust
    sampled = [c for c in shell.calls if f"count={t.count}" in c or c.endswith("count=1")][-8:]
    is_work = [f"count={t.count}" in c for c in sampled]
    assert is_work == [True, False, False, True, True, False, False, True]  # ABBA
    extra = t.as_extra()
    assert extra["samples"] == 4 and len(extra["baseline_s"]) == 4 and extra["baseline_median_s"] == 0.010002
    assert extra["baseline_cmd"] == "dd if=/dev/zero of=/dev/null bs=1 count=1"


def test_time_workload_loops_share_the_count_with_their_baseline() -> None:
    shell = FakeShell()
    t = ms.time_workload(_fake_ctx(), SimpleNamespace(shell=shell), "t", ms.FORK, ms.Settings(samples=2))  # type: ignore[arg-type]
    assert t.error is None and t.ops == t.count
    assert t.per_op() == pytest.approx([49.0, 49.0])  # 50 us per ( : ) minus 1 us per :
    assert t.base_cmd == f"i=0; while [ $i -lt {t.count} ]; do :; i=$((i+1)); done >/dev/null"


def test_time_workload_refuses_failed_commands_and_short_dd() -> None:
    failed = ms.time_workload(_fake_ctx(), SimpleNamespace(shell=FakeShell(status=127)), "t", ms.READ_WRITE_BYTE)  # type: ignore[arg-type]
    assert failed.error is not None and "exited with status 127" in failed.error and failed.work_s == []
    short = ms.time_workload(
        _fake_ctx(),
        SimpleNamespace(shell=FakeShell(records="5+0 records in\n5+0 records out\n")),
        "t",
        ms.READ_WRITE_BYTE,
    )  # type: ignore[arg-type]
    assert short.error is not None and "did not move" in short.error


def test_workload_commands() -> None:
    assert ms.READ_WRITE_BYTE.work(5) == "dd if=/dev/zero of=/dev/null bs=1 count=5"
    assert ms.PIPE_BLOCK.work(3) == "dd if=/dev/zero bs=65536 count=3 | dd of=/dev/null bs=65536"
    ring = ms.RING.work(7)
    assert "{ printf x; dd bs=1 count=7 </tmp/.pmring; }" in ring and "cat >/dev/null" in ring
    stat_work, stat_base = ms.STAT.work(2), ms.STAT.base(2)
    assert stat_work.startswith("f=/etc/passwd; ") and stat_work.count("[ -f $f ]") == 10
    assert stat_work.replace("-f", "-n") == stat_base  # the same text but for the one operator
    assert ms.exec_workload("/bin/echo").base(3) == ms.FORK.work(3)
    assert "/usr/bin/true" not in ms.EXEC_CANDIDATES  # a shell script on MINIX


def test_commands_fit_minix_tty_input_queue() -> None:
    # MINIX's tty queue holds 256 bytes (TTY_IN_BYTES) and drops the rest; the harness's framing
    # shares it, so every command must stay short even with seven-digit counts.
    workloads = [
        ms.READ_WRITE_BYTE,
        ms.PIPE_BYTE,
        ms.PIPE_BLOCK,
        ms.RING,
        ms.STAT,
        ms.FORK,
        ms.fork_exec_workload("/usr/bin/env"),
        ms.exec_workload("/usr/bin/env"),
    ]
    for w in workloads:
        for cmd in (w.work(w.max_count), w.base(w.max_count)):
            assert len(cmd) <= ms.MAX_COMMAND, cmd
    assert len(ms.EXEC_PROBE) <= ms.MAX_COMMAND


def test_metrics_registered_under_their_ids() -> None:
    for mid in IMPLEMENTED:
        assert not METRICS[mid].description.startswith("not yet measurable"), mid
        assert METRICS[mid].timing
    assert METRICS["proc.exec"].unit == "ms" and METRICS["syscall.roundtrip_cycles"].unit == "cycles"


# -- on the reference guest ------------------------------------------------------------------------------
def _check_timed(m, mid: str, guest: VM, scale: float) -> None:  # type: ignore[no-untyped-def]
    assert m.unmeasurable is None, m.unmeasurable
    assert m.inconclusive is None, m.inconclusive
    assert m.metric == mid and m.timing and m.conditions.accel in ("tcg", "kvm")
    assert m.conditions.guest == guest.profile.name and m.conditions.arch == guest.arch
    e = m.extra
    assert len(m.samples) == e["samples"] == ms.SETTINGS.samples == len(e["work_s"]) == len(e["baseline_s"])
    assert e["count"] >= 2 and e["ops_per_sample"] >= 1 and e["pilot"]["count"] >= 1
    assert all(x > 0 for x in m.samples)
    # Each sample is its own pair's difference over the ops (extra rounds the seconds to 1 us).
    for x, w, b in zip(m.samples, e["work_s"], e["baseline_s"], strict=True):
        assert x == pytest.approx((w - b) / e["ops_per_sample"] * scale, rel=0.01, abs=2e-6 * scale)


@pytest.mark.parametrize("mid", SYSCALL_IDS)
def test_syscall_level_metrics_on_the_reference_guest(guest: VM, minix_measure, mid: str) -> None:
    m = minix_measure(mid, guest.arch)
    _check_timed(m, mid, guest, 1e6)
    # A system call is microseconds; the harness's round trip (the baseline) is milliseconds.
    assert median(m.samples) * 1e-6 < median(m.extra["baseline_s"]) / 10


@pytest.mark.parametrize("mid", PROCESS_IDS)
def test_process_level_metrics_on_the_reference_guest(guest: VM, minix_measure, mid: str) -> None:
    m = minix_measure(mid, guest.arch)
    scale = 1e3 if m.unit == "ms" else 1e6
    _check_timed(m, mid, guest, scale)
    # Many operations per run: one operation is a small part of the timed command.
    assert median(m.samples) / scale < median(m.extra["work_s"]) / 10
    if mid in ("proc.fork_exec", "proc.exec"):
        assert m.extra["binary"] == "/bin/echo" and "busybox" in m.extra["binary_ls"]


def test_roundtrip_cycles_on_the_reference_guest(guest: VM, minix_measure) -> None:
    m = minix_measure("syscall.roundtrip_cycles", guest.arch)
    if guest.arch == "arm":
        assert m.unmeasurable is not None and "'cpu MHz'" in m.unmeasurable and m.samples == []
        return
    mhz = m.extra["cpu_mhz"]
    assert mhz > 0 and m.bound == "upper"
    _check_timed(m, "syscall.roundtrip_cycles", guest, 1e6 * mhz / 2)  # us per pair, halved, in cycles
