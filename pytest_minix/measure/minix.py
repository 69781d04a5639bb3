"""MINIX-only metrics: system-call profiles with trace(1), and a crashed driver's restart by RS.

On other guests these return unmeasurable with the reason. Neither could be run against a
live MINIX where this was written; the trace parser is tested on the formats documented in
minix/usr.bin/trace/trace.1.
"""

from __future__ import annotations

import re
import shlex
import time
from collections import Counter

from pytest_minix.guest.vm import VM
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import Metric, MetricContext, metric

# name(params) = result | name(params) for calls that do not return; an optional "<pid>| " or
# "<pid>' " prefix when several processes are traced, and "*" for a resumed (already counted) call.
_CALL = re.compile(r"^(?:\d+[|'] ?)?(\*)?([a-z_][a-z0-9_]*)\(")

# The workloads of the profile: a directory walk, a shell script, a file copy.
WORKLOADS = {
    "ls -lR /etc": "ls -lR /etc > /dev/null",
    "shell script": "i=0; while [ $i -lt 20 ]; do i=$((i+1)); done; echo $i > /dev/null",
    "cp of a file": "cp /etc/passwd /tmp/.pm-cp && rm -f /tmp/.pm-cp",
}


def parse_trace(text: str) -> Counter[str]:
    """System-call counts from trace(1) output (minix/usr.bin/trace/trace.1, OUTPUT FORMAT).

    Status lines (``Tracing ...``, ``Process exited ...``), signals (``** SIGUSR1 **``) and
    context-change markers (``---``) are not calls; a resumed call (``*`` prefix) was counted
    when it started.
    """
    calls: Counter[str] = Counter()
    for line in text.splitlines():
        m = _CALL.match(line.strip())
        if m and not m.group(1):
            calls[m.group(2)] += 1
    return calls


def no_tracer_reason(guest: str) -> str | None:
    """Why ``guest`` has no system-call tracer, or None when it has one (MINIX's trace(1))."""
    if guest == "minix":
        return None
    return f"guest {guest!r} has no system-call tracer (MINIX has trace(1); busybox has no strace)"


def trace_command(vm: VM, script: str, timeout: float = 300) -> tuple[Counter[str], str, str]:
    """Run ``script`` under trace(1), children followed, and count its system calls.

    The script reaches the guest as one quoted argument of ``sh -c``. The trace and the
    script's own output go to separate files (so output that looks like a call is never
    counted), are read back and removed. Returns the counts, the raw trace, and the
    script's output (stdout and stderr together).
    """
    run = f"trace -f -o /tmp/.pm-trace sh -c {shlex.quote(script)} > /tmp/.pm-trace-out 2>&1; cat /tmp/.pm-trace"
    trace = vm.shell.run(run, timeout=timeout).stdout
    output = vm.shell.run("cat /tmp/.pm-trace-out; rm -f /tmp/.pm-trace /tmp/.pm-trace-out", timeout=60).stdout
    return parse_trace(trace), trace, output


@metric("syscall.profile", "count", "count", "system calls made by standard workloads, traced with trace(1)")
def syscall_profile(ctx: MetricContext, m: Metric) -> Measurement:
    why = no_tracer_reason(ctx.guest_name)
    if why:
        return m.unmeasurable(ctx, why)
    vm = ctx.guest()
    per_workload: dict[str, dict[str, int]] = {}
    totals: list[float] = []
    for name, script in WORKLOADS.items():
        calls, _, _ = trace_command(vm, script)
        per_workload[name] = dict(calls.most_common())
        totals.append(float(sum(calls.values())))
    seen = sorted({c for calls in per_workload.values() for c in calls})
    return m.measurement(
        totals,
        ctx.conditions(vm),
        note="calls per workload, children followed (-f); report only",
        extra={"per_workload": per_workload, "distinct_calls": seen},
    )


def _ps_line(ps: str, command: str) -> tuple[int, float] | None:
    """(pid, cpu seconds) of the first ``ps -ax`` line whose command starts with ``command``."""
    for line in ps.splitlines():
        parts = line.split(None, 4)
        if len(parts) == 5 and parts[4].startswith(command) and parts[0].isdigit():
            mins, _, secs = parts[3].partition(":")
            try:
                return int(parts[0]), int(mins) * 60 + float(secs)
            except ValueError:
                return None
    return None


# A read of /dev/random that can never hang the shell: dd itself runs in the background (so
# the PID killed is the reader, not a subshell that would leave it behind) and gets PROBE_WAIT_S.
PROBE_WAIT_S = 3
PROBE = (
    "rm -f /tmp/.pm-rnd; dd if=/dev/random of=/tmp/.pm-rnd bs=16 count=1 2>/dev/null & p=$!; i=0; "
    f"while kill -0 $p 2>/dev/null && [ $i -lt {PROBE_WAIT_S * 10} ]; do sleep 0.1; i=$((i+1)); done; "
    "if kill -0 $p 2>/dev/null; then kill -9 $p; echo blocked; else echo read $(wc -c < /tmp/.pm-rnd); fi"
)
# Readers of /dev/random still in the process table (a killed reader that stays blocked in VFS).
STUCK_READERS = "ps -ax -o pid,stat,args | grep -c '[d]d if=/dev/random'"
# OBSERVED on MINIX 3.4: a reader killed while blocked on the crashed driver stays in the
# process table, and each may hold one of VFS's few worker threads; probing every 0.2 s
# piled them up until the whole shell hung. So after a blocked read the next probe waits
# BLOCKED_PAUSE_S, and at most MAX_BLOCKED blocked reads are made per crash.
MAX_BLOCKED = 4
BLOCKED_PAUSE_S = 10.0
RESTART_WINDOW_S = 60.0


def device_state(probe_output: str) -> str:
    """``works`` (16 bytes read), ``blocked`` (no answer within the probe's wait) or ``fails (...)``."""
    out = probe_output.strip()
    if out == "blocked":
        return "blocked"
    if out.split() == ["read", "16"]:
        return "works"
    return f"fails ({out or 'no output'})"


def _trial_summary(trial: dict[str, object]) -> str:
    back = trial["device_back_after_s"]
    states = " -> ".join(map(str, trial["device_states_after"]))  # type: ignore[call-overload]
    outcome = f"device back after {back:.2f} s" if isinstance(back, float) else "device never worked again"
    return f"{outcome} ({states})"


@metric("rel.driver_restart", "flag", "flag", "a crashed driver is restarted by RS and its device works again")
def driver_restart(ctx: MetricContext, m: Metric) -> Measurement:
    """Crash the random driver twice (``minix-service fi`` and ``kill -9``); does its device work again?

    RS restarts a driver under the same PID and endpoint, so the restart shows as the
    driver's CPU time starting again from zero; what matters to a user is that the device
    works again. Every read of /dev/random is bounded (PROBE_WAIT_S), so a device left
    blocked by the crash is a finding, not a hung harness. The flag is 1 when the device
    worked before and again within RESTART_WINDOW_S after each crash, and the shell answered
    throughout; the seconds until it worked are kept per trial.
    """
    if ctx.guest_name != "minix":
        why = f"guest {ctx.guest_name!r} has no reincarnation server restarting drivers"
        return m.unmeasurable(ctx, why)
    # A VM of its own: the crashes leave the system degraded (a dead device, stuck readers), and
    # OBSERVED, the next metric on the shared VM (syscall.profile's trace run) then hung.
    vm = ctx.pool.boot(ctx.arch)
    try:
        return _driver_restart_trials(ctx, m, vm)
    finally:
        ctx.pool.release(vm)


def _driver_restart_trials(ctx: MetricContext, m: Metric, vm: VM) -> Measurement:
    trials: list[dict[str, object]] = []
    for how in ("minix-service fi random", "kill -9 {pid}"):
        before = _ps_line(vm.shell.run("ps -ax", timeout=60).stdout, "/service/random")
        if before is None:
            return m.unmeasurable(ctx, "no /service/random process in `ps -ax`")
        state_before = device_state(vm.shell.run(PROBE, timeout=PROBE_WAIT_S + 30).stdout)
        start = time.monotonic()
        crash = vm.shell.run(how.format(pid=before[0]), timeout=60)
        back: float | None = None
        states: list[str] = []
        blocked = 0
        while time.monotonic() - start < RESTART_WINDOW_S:
            state = device_state(vm.shell.run(PROBE, timeout=PROBE_WAIT_S + 30).stdout)
            if not states or states[-1] != state:
                states.append(state)
            if state == "works":
                back = time.monotonic() - start
                break
            blocked += state == "blocked"
            if blocked >= MAX_BLOCKED:
                break
            time.sleep(BLOCKED_PAUSE_S if state == "blocked" else 0.2)
        stuck = vm.shell.run(STUCK_READERS, timeout=60).stdout.strip()
        after = _ps_line(vm.shell.run("ps -ax", timeout=60).stdout, "/service/random")
        trials.append(
            {
                "crash": how.format(pid=before[0]),
                "crash_status": crash.status,
                "before": before,
                "after": after,
                "device_before": state_before,
                "device_states_after": states,
                "device_back_after_s": None if back is None else round(back, 3),
                "stuck_readers": int(stuck) if stuck.isdigit() else stuck,
                "restarted": after is not None and after[0] == before[0] and after[1] <= before[1],
            }
        )
    ok = all(t["device_before"] == "works" and t["device_back_after_s"] is not None for t in trials)
    summary = "; ".join(f"{t['crash']}: {_trial_summary(t)}" for t in trials)
    return m.measurement(
        [1.0 if ok else 0.0],
        ctx.conditions(vm),
        note=f"{summary}; each read of /dev/random bounded to {PROBE_WAIT_S} s, polled for "
        f"{RESTART_WINDOW_S:.0f} s after the crash",
        extra={"trials": trials},
    )
