"""Long-lived guest sessions over the harness, with limits: what the MCP server drives.

A session is one booted VM of the harness (``VMPool.boot``), named by a random id. The
manager caps how many VMs run at once, serialises commands per session, keeps each
session's serial log readable after it ends, and shuts everything down on ``close``.
Nothing here boots, talks to a shell or measures by itself: it calls the same pool,
shell, metrics and claims engine as the pytest plugin.
"""

from __future__ import annotations

import contextlib
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from shlex import quote
from typing import Any

from pytest_minix.errors import HarnessError
from pytest_minix.guest.pool import HarnessConfig, VMOptions, VMPool
from pytest_minix.guest.timeline import Timeline
from pytest_minix.guest.vm import VM
from pytest_minix.measure.memory import kvm_stats, parse_meminfo, proc_status, qemu_faults
from pytest_minix.measure.minix import no_tracer_reason, trace_command
from pytest_minix.measure.registry import metric_units
from pytest_minix.media.minix import MinixSource
from pytest_minix.paths import claims_dir
from pytest_minix.profiles import available_guests, load_profile
from pytest_minix.verdicts.claims import load_claims, select_claims
from pytest_minix.verdicts.evaluate import Evaluator
from pytest_minix.verdicts.report import ClaimsReport, report_outcome
from pytest_minix.verdicts.statistics import summarize

# Characters a command may not carry: they would forge or break the shell's framing on the
# serial line (NUL, Ctrl-C, the record separator the markers use, ...). Tab and newline are fine.
_CONTROL = {chr(c) for c in range(32)} - {"\t", "\n"} | {"\x7f"}


Progress = Callable[[str], None]


class SessionError(HarnessError):
    """A request the manager cannot honour (unknown session, limit reached, bad argument)."""


def timeline_dict(tl: Timeline) -> dict[str, Any]:
    """A boot timeline as plain data: milestones and the phases between them, in seconds from t0."""
    return {
        "milestones": [{"name": m.name, "t": round(m.t, 4), "line": m.text[:200]} for m in tl.milestones],
        "phases": [
            {"name": p.name, "start": round(p.start, 4), "end": round(p.end, 4), "seconds": round(p.duration, 4)}
            for p in tl.phases()
        ],
    }


def _stats(values: Sequence[float]) -> dict[str, Any]:
    s = summarize(values)
    return {
        "n": s.n,
        "mean": round(s.mean, 4),
        "median": round(s.median, 4),
        "min": round(s.min, 4),
        "max": round(s.max, 4),
        "stdev": round(s.stdev, 4),
        "ci95": [round(s.ci_lo, 4), round(s.ci_hi, 4)],
    }


def check_command(command: str) -> str:
    """Refuse what cannot be sent to a guest shell as one command (empty, control characters)."""
    if not command.strip():
        raise SessionError("The command is empty: give a shell command to run in the guest.")
    bad = sorted({c for c in command if c in _CONTROL})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad)
        raise SessionError(
            f"The command contains control characters ({shown}), which would break the serial console's "
            "framing. Send text only (newlines and tabs are fine); write binary data with printf escapes."
        )
    return command


@dataclass
class Session:
    """One booted VM and what the manager knows about it."""

    id: str
    guest: str
    arch: str
    vm: VM
    started: float = field(default_factory=time.time)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def serial_log(self) -> Path:
        return self.vm.log_path

    def describe(self) -> dict[str, Any]:
        return {
            "session": self.id,
            "guest": self.guest,
            "arch": self.arch,
            "accel": self.vm.accel,
            "memory_mib": self.vm.machine.spec.memory,
            "started": "warm" if self.vm.warm else "cold",
            "qemu_pid": self.vm.machine.pid,
            "serial_log": str(self.serial_log),
            "snapshots": self.vm.snapshots,
            "broken": self.vm.broken,
        }


@dataclass
class Limits:
    max_vms: int = 2
    max_rounds: int = 20


class SessionManager:
    """Sessions of booted guests, at most ``limits.max_vms`` VMs at once; ``close`` ends them all."""

    def __init__(
        self,
        log_dir: Path,
        *,
        accel: str = "auto",
        limits: Limits | None = None,
        minix: MinixSource | None = None,
        claim_files: Sequence[Path] = (),
        emulation_factor: float = 30.0,
        warm_start: bool = True,
    ) -> None:
        self.log_dir = log_dir
        self.accel = accel
        self.limits = limits or Limits()
        self.minix = minix or MinixSource()
        self.claim_files = [*sorted(claims_dir().glob("*.toml")), *claim_files]
        self.emulation_factor = emulation_factor
        self.warm_start = warm_start
        self._pools: dict[str, VMPool] = {}
        self._temp_pools: dict[str, VMPool] = {}
        self._sessions: dict[str, Session] = {}
        self._ended_logs: dict[str, Path] = {}
        self._in_use = 0
        self._lock = threading.RLock()
        self._closed = False
        self.last_report: dict[str, Any] | None = None
        # Claims files are checked now, so a malformed one fails at start with file and line.
        self._claims = load_claims(self.claim_files, metric_units())

    # -- limits -----------------------------------------------------------------------
    @contextlib.contextmanager
    def _slots(self, n: int, what: str) -> Iterator[None]:
        self._take(n, what)
        try:
            yield
        finally:
            self._give(n)

    def _take(self, n: int, what: str) -> None:
        with self._lock:
            if self._closed:
                raise SessionError("The server is shutting down; no new VMs are started.")
            if self._in_use + n > self.limits.max_vms:
                open_ids = ", ".join(sorted(self._sessions)) or "none"
                raise SessionError(
                    f"Cannot {what}: it needs {n} VM(s) and {self._in_use} of the limit of {self.limits.max_vms} "
                    f"are in use (open sessions: {open_ids}). Shut a session down, wait for a running "
                    "profile or claims check to finish, or start the server with a higher --max-vms."
                )
            self._in_use += n

    def _give(self, n: int) -> None:
        with self._lock:
            self._in_use -= n

    # -- pools ------------------------------------------------------------------------
    def _config(self, guest: str, arch: str) -> HarnessConfig:
        if guest not in available_guests():
            raise SessionError(f"Unknown guest {guest!r}; the guests are: {', '.join(available_guests())}.")
        profile = load_profile(guest)
        profile.arch(arch)  # ConfigError naming the valid arches
        return HarnessConfig(
            guest=guest,
            arches=tuple(sorted(profile.arches)),
            accel=self.accel,
            log_dir=self.log_dir,
            minix=self.minix,
            warm_start=self.warm_start,
        )

    def _pool(self, guest: str, arch: str) -> VMPool:
        cfg = self._config(guest, arch)
        with self._lock:
            pool = self._pools.get(guest)
            if pool is None:
                pool = self._pools[guest] = VMPool(cfg)
            return pool

    @contextlib.contextmanager
    def _temp_pool(self, guest: str, arch: str, op: str | None) -> Iterator[VMPool]:
        """A pool of its own for one profile or claims run: ``abort(op)`` or ``close`` stops its VMs."""
        pool = VMPool(self._config(guest, arch))
        key = op or f"op-{secrets.token_hex(4)}"
        with self._lock:
            self._temp_pools[key] = pool
        try:
            yield pool
        finally:
            with self._lock:
                self._temp_pools.pop(key, None)
            pool.close()

    # -- sessions ---------------------------------------------------------------------
    def session(self, session_id: str) -> Session:
        with self._lock:
            s = self._sessions.get(session_id)
            if s is None:
                known = ", ".join(sorted(self._sessions)) or "none"
                ended = " (it has been shut down)" if session_id in self._ended_logs else ""
                raise SessionError(
                    f"No session {session_id!r}{ended}; open sessions: {known}. Boot one with the boot tool."
                )
            return s

    def sessions(self) -> list[Session]:
        with self._lock:
            return list(self._sessions.values())

    def serial_log(self, session_id: str) -> Path:
        """The serial log of a session, open or ended."""
        with self._lock:
            if session_id in self._sessions:
                return self._sessions[session_id].serial_log
            if session_id in self._ended_logs:
                return self._ended_logs[session_id]
        raise SessionError(f"No session {session_id!r} was started by this server.")

    def boot(self, guest: str, arch: str, memory: int | None = None, timeout: float | None = None) -> dict[str, Any]:
        """A VM at its shell (from the boot cache when it has this machine); one VM slot until shutdown."""
        pool = self._pool(guest, arch)
        self._take(1, f"boot {guest} {arch}")
        try:
            vm = pool.boot(arch, VMOptions(memory=memory, boot_timeout=timeout), warm=True)
        except BaseException:
            self._give(1)
            raise
        with self._lock:
            sid = f"s-{secrets.token_hex(4)}"
            s = self._sessions[sid] = Session(sid, guest, arch, vm)
            if self._closed:  # closed while booting: do not leave it running
                self._end(s)
                raise SessionError("The server shut down while the VM was booting.")
        if vm.warm is not None:
            # Started from a saved state: no boot happened, so there is no timeline to show.
            return {**s.describe(), "boot_seconds": None, "start_seconds": round(vm.warm.seconds, 3)}
        shell = vm.timeline.get("shell")
        return {**s.describe(), "boot_seconds": round(shell.t, 3) if shell else None, **timeline_dict(vm.timeline)}

    def run(self, session_id: str, command: str, timeout: float = 60.0) -> dict[str, Any]:
        """Run a command in a subshell of the session's guest shell (never on the host).

        Files persist between commands; the working directory and variables do not.
        """
        s = self.session(session_id)
        check_command(command)
        with s.lock:
            # Parse first: a syntax error (an unclosed quote) would leave the shell waiting for more input.
            syntax = s.vm.shell.run(f"sh -n -c {quote(command)}", timeout=30)
            if syntax.status != 0:
                raise SessionError(
                    f"The guest shell rejects the command's syntax (sh -n exit {syntax.status}): "
                    f"{(syntax.stderr or syntax.stdout).strip()[:500]} Nothing was run; fix the quoting."
                )
            # A subshell: `exit 3` ends the command with status 3, not the session's login shell.
            r = s.vm.shell.run(f"(\n{command}\n)", timeout=timeout)
        return {
            "status": r.status,
            "stdout": r.stdout,
            "stderr": r.stderr,
            "seconds": round(r.duration, 4),
            "truncated": r.truncated,
        }

    def snapshot(self, session_id: str, name: str = "snap") -> dict[str, Any]:
        s = self.session(session_id)
        with s.lock:
            took = s.vm.save_snapshot(name)
        return {"session": s.id, "snapshot": name, "seconds": round(took, 3), "snapshots": s.vm.snapshots}

    def restore(self, session_id: str, name: str = "snap") -> dict[str, Any]:
        s = self.session(session_id)
        with s.lock:
            took = s.vm.restore_snapshot(name)
        return {"session": s.id, "snapshot": name, "seconds": round(took, 3)}

    def _end(self, s: Session) -> None:
        with self._lock:
            if self._sessions.pop(s.id, None) is None:
                return
            self._ended_logs[s.id] = s.serial_log
        try:
            s.vm.shutdown()
        finally:
            self._give(1)

    def shutdown(self, session_id: str) -> dict[str, Any]:
        s = self.session(session_id)
        pid = s.vm.machine.pid
        self._end(s)
        return {"session": s.id, "stopped": True, "qemu_pid": pid, "serial_log": str(s.serial_log)}

    # -- measurements -----------------------------------------------------------------
    def profile_boot(
        self,
        guest: str,
        arch: str,
        rounds: int = 3,
        memory: int | None = None,
        op: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Fresh boots to the shell, one at a time; statistics of each milestone and phase."""
        if not 1 <= rounds <= self.limits.max_rounds:
            raise SessionError(f"rounds must be 1-{self.limits.max_rounds}, got {rounds}.")
        boots: list[dict[str, Any]] = []
        with self._slots(1, f"profile {guest} {arch}"), self._temp_pool(guest, arch, op) as pool:
            for i in range(rounds):
                vm = pool.boot(arch, VMOptions(memory=memory))
                try:
                    boots.append({"accel": vm.accel, "serial_log": str(vm.log_path), **timeline_dict(vm.timeline)})
                finally:
                    pool.release(vm)
                if progress is not None:
                    shell = vm.timeline.get("shell")
                    progress(
                        f"boot {i + 1}/{rounds} of {guest} {arch}: shell at {shell.t:.2f} s"
                        if shell
                        else f"boot {i + 1}/{rounds} of {guest} {arch} done"
                    )
        per_milestone: dict[str, list[float]] = {}
        per_phase: dict[str, list[float]] = {}
        for b in boots:
            for m in b["milestones"]:
                per_milestone.setdefault(m["name"], []).append(m["t"])
            for p in b["phases"]:
                per_phase.setdefault(p["name"], []).append(p["seconds"])
        return {
            "guest": guest,
            "arch": arch,
            "rounds": rounds,
            "accel": sorted({b["accel"] for b in boots}),
            "milestones": {k: _stats(v) for k, v in per_milestone.items()},
            "phases": {k: _stats(v) for k, v in per_phase.items()},
            "boots": boots,
        }

    def trace_syscalls(self, session_id: str, command: str, timeout: float = 300.0) -> dict[str, Any]:
        """The system-call frequency profile of a command, with trace(1) where the guest has it."""
        s = self.session(session_id)
        check_command(command)
        with s.lock:
            probe = s.vm.shell.run("command -v trace", timeout=30)
        if probe.status != 0:
            why = no_tracer_reason(s.guest) or "trace(1) is not installed in this guest (`command -v trace`: nothing)"
            return {"session": s.id, "available": False, "reason": why, "calls": {}, "total": 0}
        with s.lock:
            calls, trace, output = trace_command(s.vm, command, timeout)
        return {
            "session": s.id,
            "available": True,
            "tracer": probe.stdout.strip(),
            "calls": dict(calls.most_common()),
            "total": sum(calls.values()),
            "command_output": output[-4000:],
            "trace_tail": trace[-4000:],
        }

    def monitor_memory(self, session_id: str, seconds: float, interval: float) -> dict[str, Any]:
        """Sample guest /proc/meminfo, QEMU's host RSS and page faults, and KVM's counters under KVM."""
        s = self.session(session_id)
        if interval <= 0 or seconds < 0:
            raise SessionError("seconds must be >= 0 and interval > 0.")
        pid = s.vm.machine.pid
        if pid is None:
            raise SessionError(f"Session {s.id} has no running QEMU.")
        kvm = s.vm.accel == "kvm"
        samples: list[dict[str, Any]] = []
        start = time.monotonic()
        with s.lock:
            while True:
                t = time.monotonic() - start
                text = s.vm.shell.run("cat /proc/meminfo", timeout=30).check().stdout
                status = proc_status(pid)
                minflt, majflt = qemu_faults(pid)
                sample: dict[str, Any] = {
                    "t": round(t, 3),
                    "guest_meminfo": parse_meminfo(text),
                    "host": {
                        "rss_mib": round(int(status["VmRSS"].split()[0]) / 1024, 2),
                        "minor_faults": minflt,
                        "major_faults": majflt,
                    },
                }
                if kvm:
                    sample["kvm"] = _kvm_stats(s.vm)
                samples.append(sample)
                next_t = (len(samples)) * interval
                if next_t > seconds:
                    break
                time.sleep(max(0.0, next_t - (time.monotonic() - start)))
        return {
            "session": s.id,
            "accel": s.vm.accel,
            "interval": interval,
            "guest_units": "MiB for kB fields; counts as reported",
            "kvm_note": None if kvm else f"KVM statistics exist only under KVM; this VM runs under {s.vm.accel}",
            "samples": samples,
        }

    def check_claims(
        self,
        guest: str,
        arch: str,
        ids: Sequence[str] = (),
        boot_rounds: int = 3,
        op: str | None = None,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """Measure and decide the claims for ``guest`` on ``arch`` (all, or those matching ``ids``)."""
        chosen = [c for c in self._claims if c.applies(guest, arch)]
        if ids:
            picked: dict[str, Any] = {}
            for pattern in ids:
                got = select_claims(chosen, pattern)
                if not got:
                    raise SessionError(
                        f"No claim for {guest} {arch} matches {pattern!r}; the claims are: "
                        f"{', '.join(c.id for c in chosen) or 'none'}."
                    )
                picked.update({c.id: c for c in got})
            chosen = [c for c in chosen if c.id in picked]
        if not chosen:
            raise SessionError(f"No claims apply to guest {guest!r} on {arch}.")
        report = ClaimsReport({"guest": guest, "arch": arch, "source": "pytest-minix mcp"})
        # Measurements are taken fresh for each check, once per metric, with this check's own VMs.
        evaluator = Evaluator(boot_rounds=boot_rounds, emulation_factor=self.emulation_factor)
        with self._slots(2, f"check claims on {guest} {arch}"), self._temp_pool(guest, arch, op) as pool:
            for i, verdict in enumerate(evaluator.verdicts(chosen, pool, arch, progress=progress), 1):
                report.add(verdict)
                if progress is not None:
                    progress(f"claim {i}/{len(chosen)} {verdict.claim.id}: {report_outcome(verdict)}")
        result = {**report.to_json(), "summary": report.summary_line(), "table": report.table()}
        with self._lock:
            self.last_report = result
        return result

    # -- inventory --------------------------------------------------------------------
    def describe_records(self) -> list[dict[str, Any]]:
        return [s.describe() for s in self.sessions()]

    # -- shutdown ---------------------------------------------------------------------
    def abort(self, op: str) -> None:
        """Stop the VMs of the profile or claims check running as ``op`` (the call then fails fast)."""
        with self._lock:
            pool = self._temp_pools.get(op)
        if pool is not None:
            with contextlib.suppress(Exception):
                pool.close()

    def close(self) -> None:
        """Shut every VM down and remove the pools' state directories; idempotent."""
        with self._lock:
            self._closed = True
            sessions = list(self._sessions.values())
            pools = [*self._pools.values(), *self._temp_pools.values()]
        for s in sessions:
            with contextlib.suppress(Exception):
                self._end(s)
        for pool in pools:
            with contextlib.suppress(Exception):
                pool.close()


def _kvm_stats(vm: VM) -> dict[str, float]:
    """KVM's per-VM and per-vCPU counters, keyed ``vm.<name>`` and ``vcpu.<name>``."""
    totals: dict[str, float] = {}
    for target in ("vm", "vcpu"):
        with contextlib.suppress(HarnessError):  # a QEMU without one of the targets
            totals.update({f"{target}.{k}": v for k, v in kvm_stats(vm, target).items()})
    return totals


__all__ = ["Limits", "Session", "SessionError", "SessionManager", "check_command", "timeline_dict"]
