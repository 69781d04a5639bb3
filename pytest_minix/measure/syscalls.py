"""System-call, process and pipe latencies, measured in the guest without a compiler.

Method (the same for every metric here): a workload runs ``count`` times inside ONE shell
command (a ``dd`` with ``count=``, or a shell loop), and the harness times that command on
the HOST as the round trip of ``vm.shell.run`` (``Result.duration``). A baseline command with
the same framing and no work is timed the same way: the same loop with a no-op body, or the
same dd pipeline with ``count=1`` (NetBSD dd, MINIX's, exits before opening its files on
``count=0``: bin/dd/args.c, f_count()). Workload and baseline runs alternate, in ABBA order,
and each sample is ``(T_work - T_base) / ops`` of one adjacent pair.

Why not time inside the guest: MINIX's clock ticks at 60 Hz (16.7 ms resolution),
/usr/bin/time is not a shell keyword and times only the first command of a pipeline; host
timing has neither problem and makes the harness's own overhead (serial I/O, command framing)
explicit: it is the baseline, reported in ``extra["baseline_s"]``.

``count`` is chosen per guest and arch from a pilot run so that the workload exceeds its
baseline by about ``Settings.target_s``: guests differ tenfold in speed (TCG on ARM, MINIX
sending every system call as a message), so a fixed count would be either noise or minutes.

Every figure is a duration on an emulated CPU (``timing=True``): under TCG it says how fast
QEMU emulates the guest, not how fast the OS would be on hardware.

Implemented ids: syscall.read_write_byte, syscall.stat, syscall.roundtrip_cycles, proc.fork,
proc.fork_exec, proc.exec, ipc.pipe_byte, ipc.pipe_block, sched.context_switch. Not
ipc.roundtrip: it claims MINIX's kernel message primitive (56-byte messages), which a shell
reaches only through system calls that are each several messages, so the placeholder stays.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from pytest_minix.errors import CommandTimeout
from pytest_minix.guest.vm import VM
from pytest_minix.measure.guest_timing import choose_count, cpu_mhz, dd_mismatch, median, ops_in, per_op, us_to_cycles
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import Metric, MetricContext, metric


@dataclass(frozen=True)
class Settings:
    """Sampling parameters. The defaults keep a whole run of these metrics at a few seconds per
    metric per arch under TCG; raise ``samples`` and ``target_s`` for steadier figures."""

    samples: int = 5
    target_s: float = 0.2  # host seconds by which each workload run should exceed its baseline
    max_run_s: float = 30.0  # the count is capped so that one workload run is estimated to take at most this


SETTINGS = Settings()


@dataclass(frozen=True)
class Workload:
    """A workload command and its baseline, both as functions of the count.

    ``base_count``: None if the baseline runs the same count with a no-op body; else the count
    the baseline runs with (dd: 1). ``per_count``: operations per unit of count (2 for a ring
    where each byte makes two hops). ``dd``: how many dd processes each run has, to check their
    summaries (0: none); ``dd_exact``: whether every dd must report ``count+0`` records.
    """

    work: Callable[[int], str]
    base: Callable[[int], str]
    pilot: int
    max_count: int
    base_count: int | None = None
    per_count: int = 1
    dd: int = 0
    dd_exact: bool = True

    def commands(self, count: int) -> tuple[str, str]:
        """The workload and baseline commands for ``count``."""
        return self.work(count), self.base(count if self.base_count is None else self.base_count)


@dataclass
class Timed:
    """Host-timed runs of one workload: what the Measurement is made from."""

    count: int
    ops: int
    work_s: list[float]
    base_s: list[float]
    pilot: dict[str, Any]
    work_cmd: str
    base_cmd: str
    error: str | None = None  # why the runs cannot be used (a command failed, dd moved too little)
    stderr: str = ""

    @classmethod
    def failed(cls, error: str, w: Workload, count: int, *, ops: int, pilot: dict[str, Any], stderr: str = "") -> Timed:
        """Runs that cannot be used, for ``error``, before any sample was taken."""
        work_cmd, base_cmd = w.commands(count)
        return cls(
            count=count,
            ops=ops,
            work_s=[],
            base_s=[],
            pilot=pilot,
            work_cmd=work_cmd,
            base_cmd=base_cmd,
            error=error,
            stderr=stderr,
        )

    def per_op(self, scale: float = 1e6) -> list[float]:
        return per_op(self.work_s, self.base_s, self.ops, scale)

    def as_extra(self) -> dict[str, Any]:
        return {
            "method": "host round-trip time of one shell command running `count` iterations, minus a baseline "
            "command with the same framing, alternating (ABBA); per op = (work - baseline) / ops",
            "count": self.count,
            "ops_per_sample": self.ops,
            "samples": len(self.work_s),
            "work_s": [round(x, 6) for x in self.work_s],
            "baseline_s": [round(x, 6) for x in self.base_s],
            "baseline_median_s": round(median(self.base_s), 6) if self.base_s else None,
            "work_cmd": self.work_cmd,
            "baseline_cmd": self.base_cmd,
            "pilot": self.pilot,
            "dd_stderr": self.stderr[:1000],
        }


def _run(vm: VM, cmd: str, timeout: float) -> tuple[float, str | None, str]:
    """Run ``cmd``; its duration, why it failed (None if it did not) and its stderr."""
    try:
        r = vm.shell.run(cmd, timeout=timeout)
    except CommandTimeout as exc:  # the harness interrupted it and resynchronised; a dead VM still raises
        return timeout, str(exc).splitlines()[0], ""
    if r.status != 0:
        return r.duration, f"`{cmd}` exited with status {r.status}: {(r.stderr or r.stdout).strip()[:300]!r}", r.stderr
    return r.duration, None, r.stderr


@dataclass(frozen=True)
class _Pilot:
    """The last pilot run: its count, the host seconds of its workload and baseline runs, and the count it suggests."""

    w: Workload
    count: int
    work_s: float
    base_s: float
    chosen: int
    record: dict[str, Any]  # what Timed.pilot keeps of it

    def estimate(self, n: int) -> float:
        """Seconds a workload run with count ``n`` should take, extrapolated from the pilot."""
        w = self.w
        base = self.base_s * n / self.count if w.base_count is None else self.base_s  # a loop baseline grows with n
        work = self.work_s - self.base_s
        return base + work * ops_in(n, w.base_count, w.per_count) / ops_in(self.count, w.base_count, w.per_count)


def time_workload(ctx: MetricContext, vm: VM, label: str, w: Workload, settings: Settings | None = None) -> Timed:
    """Pilot, choose the count, then ``settings.samples`` alternating workload/baseline pairs."""
    s = settings or SETTINGS

    def show(text: str) -> None:
        if ctx.progress:
            ctx.progress(f"{label} ({ctx.guest_name} {ctx.arch}): {text}")

    pilot = _run_pilots(vm, w, s, show)
    if isinstance(pilot, Timed):
        return pilot
    count = pilot.chosen
    if pilot.estimate(count) > s.max_run_s:
        count = max(pilot.count, math.floor(count * s.max_run_s / pilot.estimate(count)))
    work_cmd, base_cmd = w.commands(count)
    timed = Timed(
        count=count,
        ops=ops_in(count, w.base_count, w.per_count),
        work_s=[],
        base_s=[],
        pilot=pilot.record,
        work_cmd=work_cmd,
        base_cmd=base_cmd,
    )
    return _take_samples(vm, w, s, timed, max(60.0, 10 * pilot.estimate(count)), show)


def _run_pilots(vm: VM, w: Workload, s: Settings, show: Callable[[str], None]) -> _Pilot | Timed:
    """Pilot runs from ``w.pilot`` up until the workload stands out from its baseline; failed Timed if it never does.

    The pilots also warm caches (the binaries, dd's pages) so that the first sample is not an outlier.
    """
    count = w.pilot
    pilot: dict[str, Any] = {}
    timeout = 120.0
    while True:
        show(f"pilot, count {count}")
        work_cmd, base_cmd = w.commands(count)
        tb, err, _ = _run(vm, base_cmd, timeout)
        tw, err2, stderr = _run(vm, work_cmd, timeout)
        error = err or err2
        if error:
            return Timed.failed(error, w, count, ops=0, pilot=pilot, stderr=stderr)
        ops = ops_in(count, w.base_count, w.per_count)
        pilot = {"count": count, "work_s": round(tw, 6), "baseline_s": round(tb, 6)}
        chosen = choose_count(
            tw, tb, ops, s.target_s, base_count=w.base_count, per_count=w.per_count, lo=count, hi=w.max_count
        )
        if count >= w.max_count or (chosen is not None and tw - tb >= s.target_s / 10):
            break
        # Too little difference to extrapolate from reliably: a pilot of about a quarter of the target.
        count = min(w.max_count, max(count * 2, (chosen or count * 40) // 4))
    if chosen is None:
        why = f"even {count} iterations did not take longer than the baseline"
        return Timed.failed(why, w, count, ops=ops, pilot=pilot)
    return _Pilot(w, count, work_s=tw, base_s=tb, chosen=chosen, record=pilot)


def _take_samples(vm: VM, w: Workload, s: Settings, t: Timed, timeout: float, show: Callable[[str], None]) -> Timed:
    """``s.samples`` alternating workload/baseline pairs into ``t``; at the first failure, ``t`` with its error."""
    for i in range(s.samples):
        show(f"sample {i + 1}/{s.samples}, count {t.count}")
        order = [(t.work_cmd, t.work_s, True), (t.base_cmd, t.base_s, False)]
        if i % 2:
            order.reverse()  # ABBA: a linear drift of host speed cancels over two pairs
        for cmd, into, is_work in order:
            secs, err, stderr = _run(vm, cmd, timeout)
            if err:
                t.error, t.stderr = err, stderr
                return t
            if is_work:
                t.stderr = stderr
                bad = dd_mismatch(stderr, t.count, w.dd, exact=w.dd_exact) if w.dd else None
                if bad:
                    t.error = bad
                    return t
            into.append(secs)
    return t


def _measurement(
    ctx: MetricContext,
    vm: VM,
    m: Metric,
    t: Timed,
    *,
    scale: float = 1e6,
    bound: Literal["upper", "lower"] | None = None,
    note: str = "",
    extra: dict[str, Any] | None = None,
) -> Measurement:
    """The Measurement of timed runs; inconclusive when the work did not stand out from the baseline."""
    if t.error:
        return m.unmeasurable(ctx, t.error)
    samples = t.per_op(scale)
    info = {**t.as_extra(), **(extra or {})}
    inconclusive = None
    if any(x <= 0 for x in samples):
        inconclusive = (
            f"{sum(x <= 0 for x in samples)} of {len(samples)} workload runs were not slower than their "
            "baseline: host noise exceeds the work; raise Settings.target_s"
        )
    return m.measurement(
        samples,
        ctx.conditions(vm),
        bound=bound,
        note=note,
        inconclusive=inconclusive,
        extra=info,
    )


# -- workloads ------------------------------------------------------------------------------------
def _loop(n: int, body: str) -> str:
    """``n`` iterations of ``body`` in the shell itself, stdout discarded once for the whole loop.

    Redirecting the loop, not each command, keeps an open() per iteration out of both halves.
    """
    return f"i=0; while [ $i -lt {n} ]; do {body}; i=$((i+1)); done >/dev/null"


def _dd_bytes(n: int) -> str:
    return f"dd if=/dev/zero of=/dev/null bs=1 count={n}"


READ_WRITE_BYTE = Workload(_dd_bytes, _dd_bytes, pilot=2000, max_count=5_000_000, base_count=1, dd=1)


def _pipe(bs: int) -> Callable[[int], str]:
    return lambda n: f"dd if=/dev/zero bs={bs} count={n} | dd of=/dev/null bs={bs}"


PIPE_BYTE = Workload(_pipe(1), _pipe(1), pilot=1000, max_count=2_000_000, base_count=1, dd=2)
PIPE_BLOCK = Workload(_pipe(65536), _pipe(65536), pilot=10, max_count=100_000, base_count=1, dd=2, dd_exact=False)

# Every command stays well under MINIX's 256-byte tty input queue (TTY_IN_BYTES; a full queue
# drops input), which the harness's framing shares: hence short paths and variables.
MAX_COMMAND = 200
FIFO = "/tmp/.pmring"


def _ring(n: int) -> str:
    # One byte circulates: right dd reads it from the pipe and writes it to the FIFO, left dd
    # reads it back and writes it to the pipe. With one byte in flight the process holding it is
    # the only one that can run, so every hop is a context switch. cat drains the last byte
    # left dd writes after right dd is done (else left would die of SIGPIPE).
    f = shlex.quote(FIFO)
    return f"{{ printf x; dd bs=1 count={n} <{f}; }} | {{ dd bs=1 count={n} >{f}; cat >/dev/null; }}"


RING = Workload(_ring, _ring, pilot=200, max_count=1_000_000, base_count=1, per_count=2, dd=2)

STAT_FILE = "/etc/passwd"
_UNROLL = 10  # tests per loop iteration: the loop's own cost is paid once per ten


def _tests(op: str) -> Callable[[int], str]:
    body = "; ".join([f"[ {op} $f ]"] * _UNROLL)
    return lambda n: f"f={STAT_FILE}; " + _loop(n, body)


STAT = Workload(_tests("-f"), _tests("-n"), pilot=100, max_count=1_000_000, per_count=_UNROLL)

FORK = Workload(lambda n: _loop(n, "( : )"), lambda n: _loop(n, ":"), pilot=20, max_count=100_000)

# Real binaries tried for fork+exec, in order; scripts (MINIX's /usr/bin/true) are skipped.
EXEC_CANDIDATES = ("/bin/echo", "/usr/bin/env", "/bin/cat", "/bin/ls")


def fork_exec_workload(binary: str) -> Workload:
    return Workload(lambda n: _loop(n, binary), lambda n: _loop(n, ":"), pilot=10, max_count=100_000)


def exec_workload(binary: str) -> Workload:
    """fork+exec of ``binary`` against a subshell fork: the difference is exec and the image's run."""
    return Workload(lambda n: _loop(n, binary), lambda n: _loop(n, "( : )"), pilot=10, max_count=100_000)


EXEC_PROBE = (
    f"for p in {' '.join(EXEC_CANDIDATES)}; do [ -f $p ] && [ -x $p ] && "
    '[ "$(dd if=$p bs=2 count=1 2>/dev/null)" != "#!" ] && echo $p; done; :'
)


def find_exec_binary(vm: VM) -> tuple[str | None, str]:
    """The first of EXEC_CANDIDATES that is an executable regular file and not a script, and ``ls -l`` of it."""
    found = vm.shell.run(EXEC_PROBE, timeout=60).stdout.split()
    if not found:
        return None, ""
    return found[0], vm.shell.run(f"ls -l {found[0]}", timeout=60).stdout.strip()


# -- metrics ----------------------------------------------------------------------------------------
@metric("syscall.read_write_byte", "us", "timing", "one read+write pair of a bs=1 dd from /dev/zero to /dev/null")
def read_write_byte(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    t = time_workload(ctx, vm, m.id, READ_WRITE_BYTE)
    return _measurement(
        ctx,
        vm,
        m,
        t,
        bound="upper",
        note="per dd block of one byte: read(2) of /dev/zero, write(2) to /dev/null and dd's own "
        "loop around them; an upper bound on one read+write pair",
    )


@metric(
    "syscall.roundtrip_cycles",
    "cycles",
    "timing",
    "half a bs=1 dd read+write pair, in cycles at the guest's reported CPU MHz",
)
def roundtrip_cycles(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    info = vm.shell.run("cat /proc/cpuinfo", timeout=60)
    mhz = cpu_mhz(info.stdout) if info.status == 0 else None
    if mhz is None:
        return m.unmeasurable(
            ctx,
            f"the {ctx.guest_name} {ctx.arch} guest's /proc/cpuinfo gives no "
            "'cpu MHz' (ARM kernels do not report a clock rate), so microseconds cannot be "
            "converted to cycles",
        )
    t = time_workload(ctx, vm, m.id, READ_WRITE_BYTE)
    if t.error:
        return m.unmeasurable(ctx, t.error)
    out = _measurement(
        ctx,
        vm,
        m,
        t,
        bound="upper",
        note=f"half of one bs=1 dd read+write pair (/dev/zero to /dev/null, dd's loop included) times "
        f"the guest's 'cpu MHz' {mhz:g}: its TSC rate, which under TCG is QEMU's emulated TSC, not a "
        "real clock; an upper bound on one system call",
        extra={"cpu_mhz": mhz, "cpuinfo": info.stdout[:2000]},
    )
    out.extra["read_write_pair_us"] = out.samples
    out.samples = [us_to_cycles(us / 2, mhz) for us in out.samples]
    return out


@metric("syscall.stat", "us", "timing", "one stat(2) by the shell's test builtin ([ -f FILE ]), in one process")
def stat_latency(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    if vm.shell.run(f"[ -f {STAT_FILE} ]", timeout=60).status != 0:
        return m.unmeasurable(ctx, f"{STAT_FILE} is not a regular file on this guest")
    t = time_workload(ctx, vm, m.id, STAT)
    return _measurement(
        ctx,
        vm,
        m,
        t,
        bound="upper",
        note=f"`[ -f $f ]` with f={STAT_FILE} (the test builtin: one stat(2) of a two-component "
        "path, in the shell's own process) minus `[ -n $f ]` (no system call); no process is "
        "spawned, unlike stat(1) or ls(1); includes the builtin's dispatch",
        extra={"file": STAT_FILE, "tests_per_iteration": _UNROLL},
    )


@metric("proc.fork", "us", "timing", "a subshell ( : ) in a shell loop: fork, exit and wait")
def fork_latency(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    t = time_workload(ctx, vm, m.id, FORK)
    return _measurement(
        ctx,
        vm,
        m,
        t,
        bound="upper",
        note="per subshell `( : )` minus a `:` loop iteration: fork of the shell, the child's exit "
        "and the parent's wait; an upper bound on fork",
    )


def _with_binary(ctx: MetricContext, m: Metric) -> tuple[VM, str, str] | Measurement:
    vm = ctx.guest()
    binary, listing = find_exec_binary(vm)
    if binary is None:
        return m.unmeasurable(
            ctx,
            f"none of {', '.join(EXEC_CANDIDATES)} is an executable binary on this guest",
        )
    return vm, binary, listing


@metric("proc.fork_exec", "us", "timing", "fork+exec+exit+wait of a small real binary in a shell loop")
def fork_exec_latency(ctx: MetricContext, m: Metric) -> Measurement:
    got = _with_binary(ctx, m)
    if isinstance(got, Measurement):
        return got
    vm, binary, listing = got
    t = time_workload(ctx, vm, m.id, fork_exec_workload(binary))
    return _measurement(
        ctx,
        vm,
        m,
        t,
        bound="upper",
        note=f"per `{binary}` run by the shell minus a `:` loop iteration: the shell's fork (or "
        "vfork), exec, the binary's start-up, run and exit, and the wait",
        extra={"binary": binary, "binary_ls": listing},
    )


@metric("proc.exec", "ms", "timing", "fork+exec of a small binary minus a subshell fork, per iteration")
def exec_latency(ctx: MetricContext, m: Metric) -> Measurement:
    got = _with_binary(ctx, m)
    if isinstance(got, Measurement):
        return got
    vm, binary, listing = got
    t = time_workload(ctx, vm, m.id, exec_workload(binary))
    return _measurement(
        ctx,
        vm,
        m,
        t,
        scale=1e3,
        note=f"a loop running `{binary}` minus a loop running `( : )`: exec plus the binary's "
        "start-up, run and exit, minus a forked shell's exit; not a strict bound either way, since "
        "a shell may spawn commands with vfork but subshells with fork",
        extra={"binary": binary, "binary_ls": listing},
    )


@metric("ipc.pipe_byte", "us", "timing", "one byte through a pipe between two bs=1 dd processes")
def pipe_byte(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    t = time_workload(ctx, vm, m.id, PIPE_BYTE)
    return _measurement(
        ctx,
        vm,
        m,
        t,
        note="per byte of `dd bs=1 | dd bs=1`: the writer's read of /dev/zero and write(2) into "
        "the pipe, the reader's read(2) and write to /dev/null; the writer runs ahead until the "
        "pipe fills, so context switches are shared by many bytes (see sched.context_switch for "
        "one per hop)",
    )


@metric("ipc.pipe_block", "us", "timing", "one 64 KiB block through a pipe between two dd processes")
def pipe_block(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    t = time_workload(ctx, vm, m.id, PIPE_BLOCK)
    return _measurement(
        ctx,
        vm,
        m,
        t,
        note="per 64 KiB block of `dd bs=65536 | dd bs=65536`: reading it from /dev/zero, copying "
        "it into and out of the pipe, the context switches the pipe's capacity forces, and the "
        "write to /dev/null; report-only",
    )


@metric(
    "sched.context_switch",
    "us",
    "timing",
    "one hop of a byte ping-ponged between two dd processes through a pipe and a FIFO",
)
def context_switch(ctx: MetricContext, m: Metric) -> Measurement:
    vm = ctx.guest()
    f = shlex.quote(FIFO)
    made = vm.shell.run(f"rm -f {f} && mkfifo {f}", timeout=60)
    if made.status != 0:
        return m.unmeasurable(
            ctx,
            f"cannot make a FIFO with mkfifo: {(made.stderr or made.stdout).strip()[:200]!r}",
        )
    try:
        t = time_workload(ctx, vm, m.id, RING)
    finally:
        vm.shell.run(f"rm -f {f}", timeout=60)
    return _measurement(
        ctx,
        vm,
        m,
        t,
        bound="upper",
        note="byte-wise pipe ping-pong: one byte circulates between two bs=1 dd processes (pipe one "
        "way, FIFO back), so each hop is one write(2), one read(2) and a switch to the process that "
        "was blocked reading; an upper bound on a context switch plus two system calls",
        extra={"hops_per_byte": 2},
    )


__all__ = ["EXEC_CANDIDATES", "SETTINGS", "Settings", "Timed", "Workload", "find_exec_binary", "time_workload"]
