#!/usr/bin/env python3
"""How much the pytest-minix harness costs over driving QEMU by hand.

Two measurements, each alternating its variants inside one run so that the noise of a
shared machine hits every variant alike:

1. Boot to shell, per round, in alternating order (ABBA):
   * harness: ``VMPool(HarnessConfig(...)).boot(arch)``, timed from just before the call
     until it returns (VM logged in, harness prompt seen);
   * bare: the same QEMU command line (``Machine.build_argv()``: same kernel, initrd,
     append and qcow2 overlay) minus ``-S`` and the QMP monitor, with the serial port on
     ``stdio`` pipes; one thread reads the pipe with ``select`` + ``os.read`` until
     ``login: ``, writes ``root\\r`` and waits for the ``# `` prompt. The guest starts
     running at once (no ``-S``/``cont``), so QMP is part of the harness's cost.
   Both variants include building the argv (hence ``qemu-img create`` of the overlay).
2. Shell round trip, on one harness VM and one bare VM booted side by side, interleaved
   sample by sample: ``vm.shell.run("true")``; a raw ``echo`` through the harness
   console (``vm.console.write`` + ``vm.console.expect``); the same ``echo`` on the bare
   VM's pipe; the very text that ``shell.run("true")`` types, sent on the bare pipe
   (so the guest does the same work and only the host side differs); and a compact
   version of that frame (two shell functions defined once, ~60 bytes typed instead of
   ~205). Sampled as booted, again after ``stty <console> 115200`` on both VMs, and again
   after filling the harness console's line history (see benchmarks/README.md).

Usage: ``PYTEST_MINIX_CACHE=... python benchmarks/harness_overhead.py --arch i386 --rounds 5``;
``--smoke`` makes a minimal run (CI checks that the script still works with it).
``--minix-guest minix --minix-image IMG --minix-boot-dir DIR`` runs the same on a MINIX disk image
(i386): the bare variant then also types the harness's shell set-up line after login.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import json
import os
import platform
import re
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pytest_minix.guest import pool as pool_mod
from pytest_minix.guest import shell as shell_mod
from pytest_minix.guest.pool import HarnessConfig, VMPool
from pytest_minix.guest.shell import ERR_FILE, FUNCTIONS, PS1, PS1_TYPED
from pytest_minix.guest.vm import VM
from pytest_minix.media.minix import MinixSource
from pytest_minix.profiles import GuestProfile, Marker
from pytest_minix.qemu import console as console_mod
from pytest_minix.qemu import machine as machine_mod
from pytest_minix.qemu import qmp as qmp_mod
from pytest_minix.qemu import runtime as runtime_mod
from pytest_minix.qemu.machine import Machine, MachineSpec
from pytest_minix.qemu.statedir import StateDir

GUESTS = ("reference", "minix")
LOGIN_PROMPT = re.compile(rb"login: ")
SHELL_PROMPT = re.compile(rb"[#$] ")  # what the profile's shell_prompt matches, without the \e[6n
HARNESS_PROMPT = re.compile(re.escape(PS1.encode()))
PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


# -- statistics -----------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100)."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(data) - 1)
    return data[lo] + (data[hi] - data[lo]) * (pos - lo)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# -- instrumentation of the harness (in this process only; no file is changed) ----------


@dataclass
class Trace:
    """Host-time spans of harness calls during one boot: (label, start, end)."""

    active: bool = False
    spans: list[tuple[str, float, float]] = field(default_factory=list)

    def first(self, label: str) -> tuple[float, float] | None:
        return next(((s, e) for name, s, e in self.spans if name == label), None)


TRACE = Trace()


def _wrap(owner: Any, name: str, label: str | Callable[[tuple[Any, ...], dict[str, Any]], str]) -> Callable[[], None]:
    """Replace ``owner.name`` by a wrapper recording its span in TRACE; return the undo."""
    orig = getattr(owner, name)

    @functools.wraps(orig)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not TRACE.active:
            return orig(*args, **kwargs)
        start = time.monotonic()
        try:
            return orig(*args, **kwargs)
        finally:
            text = label if isinstance(label, str) else label(args, kwargs)
            TRACE.spans.append((text, start, time.monotonic()))

    setattr(owner, name, wrapper)
    return lambda: setattr(owner, name, orig)


@contextlib.contextmanager
def instrumented() -> Iterator[None]:
    undo = [
        _wrap(pool_mod.VMPool, "media", "media"),
        _wrap(machine_mod, "make_overlay", "overlay"),
        _wrap(runtime_mod.Runtime, "spawn", "spawn"),
        _wrap(console_mod.Console, "connect", "console_connect"),
        _wrap(qmp_mod.QMP, "connect", "qmp_connect"),
        _wrap(machine_mod.Machine, "cont", "cont"),
        _wrap(console_mod.Console, "expect", lambda a, kw: f"expect:{kw.get('what', '')}"),
        _wrap(shell_mod.Shell, "run", lambda a, kw: f"run:{a[1] if len(a) > 1 else kw.get('cmd', '')}"),
    ]
    try:
        yield
    finally:
        TRACE.active = False
        for u in reversed(undo):
            u()


# -- the bare variant ---------------------------------------------------------------------


def _die_with_parent() -> None:
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def bare_argv(harness_argv: list[str]) -> list[str]:
    """The harness's argv without -S and QMP, the serial chardev moved to stdio."""
    out: list[str] = []
    i = 0
    while i < len(harness_argv):
        a = harness_argv[i]
        nxt = harness_argv[i + 1] if i + 1 < len(harness_argv) else ""
        if a == "-S":
            i += 1
        elif a == "-mon" or (a == "-chardev" and nxt.startswith("socket,id=qmp")):
            i += 2
        elif a == "-chardev" and nxt.startswith("socket,id=ser0"):
            out += ["-chardev", "stdio,id=ser0,signal=off"]
            i += 2
        else:
            out.append(a)
            i += 1
    return out


class BareVM:
    """QEMU with its serial port on our pipes, read by a plain select/os.read loop."""

    def __init__(self, machine: Machine, log_dir: Path, setup: bytes = b"") -> None:
        self.machine = machine
        self.log_dir = log_dir
        # Typed after the shell prompt, as part of the boot, when given (MINIX: the harness's set-up line).
        self.setup = setup
        self.proc: subprocess.Popen[bytes] | None = None
        self.buf = b""
        self.reads = 0
        self.marks: dict[str, float] = {}
        self.t_call = 0.0
        self.recording = False  # keep every read with its time (during the boot), for guest_milestones()
        self.chunks: list[tuple[float, bytes]] = []

    def start(self, state: StateDir) -> None:
        t_call = time.monotonic()
        argv = bare_argv(self.machine.build_argv())
        self.marks["spawn_start"] = time.monotonic() - t_call
        with open(self.log_dir / f"{self.machine.name}.qemu.log", "wb") as err:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=self.machine.dir,
                preexec_fn=_die_with_parent,
                start_new_session=True,  # Ctrl-C is ours to handle; finally kills QEMU
            )
        state.record_qemu(self.proc.pid)
        self.marks["running"] = time.monotonic() - t_call
        self.t_call = t_call
        self.recording = True

    def write(self, data: bytes) -> None:
        assert self.proc is not None and self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]

    def wait_for(self, pattern: re.Pattern[bytes], timeout: float) -> float:
        """Read until ``pattern`` appears; consume through it; return the host time."""
        assert self.proc is not None and self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        start = 0
        while True:
            m = pattern.search(self.buf, start)
            if m is not None:
                now = time.monotonic()
                self.buf = self.buf[m.end() :]
                return now
            start = max(0, len(self.buf) - 64)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"bare: no {pattern.pattern!r} within {timeout} s; last output {self.buf[-300:]!r}")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            data = os.read(fd, 65536)
            if not data:
                raise EOFError(f"bare: QEMU closed its stdout; last output {self.buf[-300:]!r}")
            if not self.reads:
                self.marks["first_output"] = time.monotonic() - self.t_call
            if self.recording:
                self.chunks.append((time.monotonic(), data))
            self.reads += 1
            self.buf += data

    def boot_to_shell(self, state: StateDir, timeout: float) -> float:
        """Launch, wait for login:, send root, wait for the shell prompt; return the total.

        With ``setup``: then type it and wait for the harness prompt it sets.
        """
        self.start(state)
        self.marks["login_prompt"] = self.wait_for(LOGIN_PROMPT, timeout) - self.t_call
        self.write(b"root\r")
        self.marks["shell_prompt"] = self.wait_for(SHELL_PROMPT, 30.0) - self.t_call
        if self.setup:
            self.write(self.setup)
            self.marks["harness_prompt"] = self.wait_for(HARNESS_PROMPT, 30.0) - self.t_call
        self.marks["returned"] = time.monotonic() - self.t_call
        self.recording = False
        return self.marks["returned"]

    def guest_milestones(self, markers: Sequence[Marker]) -> dict[str, float]:
        """The profile's boot markers in what was read during the boot, as the harness's timeline finds
        them (first line matching, at the time of its first byte), in seconds from the call."""
        lines: list[tuple[float, str]] = []
        cur, cur_t = "", 0.0
        for t, data in self.chunks:
            for k, piece in enumerate(data.decode(errors="replace").replace("\r", "").split("\n")):
                if k:  # a newline ended the line before this piece
                    lines.append((cur_t, cur))
                    cur = ""
                if piece and not cur:
                    cur_t = t
                cur += piece
        if cur:
            lines.append((cur_t, cur))
        out: dict[str, float] = {}
        for m in markers:
            t0 = next((t for t, text in lines if m.regex.search(text)), None)
            if t0 is not None:
                out[m.name] = t0 - self.t_call
        return out

    def kill(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        if proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            for f in (proc.stdin, proc.stdout):
                if f is not None:
                    with contextlib.suppress(OSError):
                        f.close()
        shutil.rmtree(self.machine.dir, ignore_errors=True)


# -- the benchmark ----------------------------------------------------------------------------


@dataclass
class Env:
    arch: str
    profile: GuestProfile
    spec: MachineSpec
    state: StateDir
    log_dir: Path
    guest: str = "reference"
    minix: MinixSource = field(default_factory=MinixSource)
    pools: list[VMPool] = field(default_factory=list)
    bares: list[BareVM] = field(default_factory=list)
    counter: int = 0

    def cleanup(self) -> None:
        for bare in self.bares:
            bare.kill()
        self.bares.clear()
        for pool in self.pools:
            pool.close()
        self.pools.clear()

    def config(self) -> HarnessConfig:
        return harness_config(self.guest, self.arch, self.log_dir, self.minix)

    @property
    def bare_setup(self) -> bytes:
        """What the bare variant types after login, as part of its boot: on MINIX, Shell.login's set-up line."""
        return setup_line(self.profile).encode() if self.guest == "minix" else b""


def harness_config(guest: str, arch: str, log_dir: Path, minix: MinixSource) -> HarnessConfig:
    return HarnessConfig(guest=guest, arches=(arch,), accel="tcg", log_dir=log_dir, minix=minix)


def setup_line(profile: GuestProfile) -> str:
    """The line Shell.login types after the shell prompt (profile set-up, harness prompt)."""
    return f"{profile.shell_setup}; PS1={PS1_TYPED}; PS2=''\r"


def make_env(arch: str, log_dir: Path, guest: str = "reference", minix: MinixSource | None = None) -> Env:
    """The bare variant's machine is the one a harness pool would start: ``VMPool.spec(arch)``.

    Resolving the boot media here (built on first use, hashes verified) fills the
    process-wide cache that every later pool of this run reuses, as in a pytest session.
    """
    minix = minix or MinixSource()
    pool = VMPool(harness_config(guest, arch, log_dir, minix))
    try:
        spec = pool.spec(arch)
    finally:
        pool.close()
    return Env(arch, pool.profile, spec, StateDir(), log_dir, guest, minix)


def new_bare(env: Env) -> BareVM:
    env.counter += 1
    machine = Machine(env.spec, env.state, f"bare-{env.arch}-{env.counter}", env.log_dir)
    bare = BareVM(machine, env.log_dir, env.bare_setup)
    env.bares.append(bare)
    return bare


def new_pool(env: Env) -> VMPool:
    pool = VMPool(env.config())
    env.pools.append(pool)
    return pool


def harness_marks(call: float, end: float) -> dict[str, float]:
    """Milestones of one harness boot, seconds from the call, from the TRACE spans."""
    marks: dict[str, float] = {}

    def put(name: str, label: str, which: int) -> None:
        span = TRACE.first(label)
        if span is not None:
            marks[name] = span[which] - call

    put("media", "media", 1)
    put("spawn_start", "spawn", 0)
    put("spawn_end", "spawn", 1)
    put("console_connected", "console_connect", 1)
    put("qmp_connected", "qmp_connect", 1)
    put("running", "cont", 1)
    put("first_output", "expect:any console output", 1)
    put("login_prompt", "expect:the login prompt", 1)
    put("shell_prompt", "expect:the shell prompt after login", 1)
    put("harness_prompt", "expect:the harness prompt", 1)
    put("uname_checked", "run:uname -s", 1)
    marks["returned"] = end - call
    for label, dur_name in (("media", "media_s"), ("overlay", "overlay_s"), ("qmp_connect", "qmp_connect_s")):
        span = TRACE.first(label)
        if span is not None:
            marks[dur_name] = span[1] - span[0]
    return marks


def boot_harness(env: Env) -> dict[str, Any]:
    pool = new_pool(env)
    TRACE.spans.clear()
    TRACE.active = True
    call = time.monotonic()
    vm = pool.boot(env.arch)
    end = time.monotonic()
    TRACE.active = False
    assert vm.boot is not None and vm.machine.t0 is not None
    marks = harness_marks(call, end)
    cont_offset = vm.machine.t0 - call
    result = {
        "total": end - call,
        "marks": marks,
        "cont_offset": cont_offset,
        "timeline": vm.timeline.as_dict(),
        "guest_milestones": {k: v + cont_offset for k, v in vm.timeline.as_dict().items()},
        "login_prompt_t": vm.boot.login_prompt,
        "shell_ready_t": vm.boot.shell_ready,
    }
    t = time.monotonic()
    pool.close()
    env.pools.remove(pool)
    result["shutdown"] = time.monotonic() - t
    return result


def boot_bare(env: Env) -> dict[str, Any]:
    bare = new_bare(env)
    TRACE.spans.clear()
    TRACE.active = True
    try:
        total = bare.boot_to_shell(env.state, env.profile.boot_timeout)
    finally:
        TRACE.active = False
    overlay = TRACE.first("overlay")
    marks = dict(bare.marks)
    if overlay is not None:
        marks["overlay_s"] = overlay[1] - overlay[0]
    milestones = bare.guest_milestones(env.profile.markers)
    t = time.monotonic()
    bare.kill()
    env.bares.remove(bare)
    return {
        "total": total,
        "marks": marks,
        "guest_milestones": milestones,
        "reads": bare.reads,
        "shutdown": time.monotonic() - t,
    }


def run_boot(env: Env, rounds: int, warmup: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with instrumented():
        for r in range(-warmup, rounds):
            order = ("harness", "bare") if r % 2 == 0 else ("bare", "harness")
            row: dict[str, Any] = {"round": r, "warmup": r < 0, "order": list(order)}
            for variant in order:
                row[variant] = boot_harness(env) if variant == "harness" else boot_bare(env)
            row["ratio"] = row["harness"]["total"] / row["bare"]["total"]
            out.append(row)
            tag = "warm-up" if r < 0 else f"round {r + 1}/{rounds}"
            log(
                f"  boot {tag}: harness {row['harness']['total']:.3f} s, bare {row['bare']['total']:.3f} s, "
                f"ratio {row['ratio']:.4f}"
            )
    return out


# The harness's frame functions (Shell.login types them once): the bare shell needs them to run
# the harness's own frame, and the "compact frame" what-if below uses them too.
COMPACT_DEFS = FUNCTIONS + "\n"


def compact_frame(cmd: str, n: int) -> str:
    return f"_pmS {n}; {{ {cmd}\n}} 2>{ERR_FILE} </dev/null; _pmR {n}\n"


def console_tty(vm: VM) -> str:
    """The guest's console tty (ttyS0 on i386 pc, ttyAMA0 on arm virt; MINIX: its ``console=``, tty00)."""
    if vm.profile.name == "minix":
        m = re.search(r"(?:^|\s)console=(\S+)", vm.machine.spec.config.append + " " + vm.machine.spec.boot_args)
        return m.group(1) if m else "tty00"
    words = vm.shell.run("cat /sys/class/tty/console/active").check().stdout.split()
    return words[-1] if words else "ttyS0"


def stty_on(guest: str, tty: str) -> str:
    """``stty`` acting on another tty than stdin: Linux (busybox, coreutils) ``-F``, MINIX (NetBSD) ``-f``."""
    return f"stty -f /dev/{tty}" if guest == "minix" else f"stty -F /dev/{tty}"


def tty_speed(vm: VM, tty: str) -> int:
    m = re.search(r"speed (\d+) baud", vm.shell.run(stty_on(vm.profile.name, tty)).check().stdout)
    return int(m.group(1)) if m else 0


# Rotated every sample. Each echo follows its own VM's frame equally often (4 samples in 5):
# input that arrives while the guest is still printing is picked up sooner (see README).
RTT_VARIANTS = (
    "harness_run_true",
    "harness_console_echo",
    "bare_run_frame",
    "bare_echo",
    "bare_compact_frame",
)


def sample_rtt(vm: VM, bare: BareVM, samples: int) -> dict[str, list[float]]:
    """Interleave the round-trip variants, rotating their order every sample."""
    # Shell ids are only required to be unique: take one so that the harness run of sample i
    # gets base + 1 + i and the bare VM can be sent the very same text (same length).
    base = next(vm.shell._ids)

    def harness_run(i: int) -> float:
        t = time.perf_counter()
        vm.shell.run("true").check()
        return time.perf_counter() - t

    def harness_echo(i: int) -> float:
        t = time.perf_counter()
        vm.console.write(f"echo pmx{i}z\n")
        vm.console.expect(f"pmx{i}z\r?\n", 10.0)
        return time.perf_counter() - t

    def bare_echo(i: int) -> float:
        pat = re.compile(rb"pmx%dz\r?\n" % i)
        t = time.perf_counter()
        bare.write(b"echo pmx%dz\n" % i)
        bare.wait_for(pat, 10.0)
        return time.perf_counter() - t

    def bare_frame(i: int, compact: bool = False) -> float:
        n = base + 1 + i
        text = (compact_frame("true", n) if compact else vm.shell._frame("true", n)).encode()
        pat = re.compile(rb"\x1eZ%d\r?\n" % n)
        t = time.perf_counter()
        bare.write(text)
        bare.wait_for(pat, 10.0)
        return time.perf_counter() - t

    variants: dict[str, Callable[[int], float]] = {
        "harness_run_true": harness_run,
        "harness_console_echo": harness_echo,
        "bare_echo": bare_echo,
        "bare_run_frame": bare_frame,
        "bare_compact_frame": functools.partial(bare_frame, compact=True),
    }
    names = list(RTT_VARIANTS)
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(samples):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            out[name].append(variants[name](i))
    return out


def run_rtt(
    env: Env, samples: int, what_if_baud: int, history_lines: int, log: Callable[[str], None]
) -> dict[str, Any]:
    """One harness VM and one bare VM side by side: sample as booted, at ``what_if_baud``, after ``history_lines``."""
    pool = new_pool(env)
    vm: VM = pool.boot(env.arch)
    bare = new_bare(env)
    bare.boot_to_shell(env.state, env.profile.boot_timeout)
    if not bare.setup:
        # Configure the bare shell exactly as Shell.login configures the harness's (with a
        # set-up line, boot_to_shell already did).
        bare.write(setup_line(env.profile).encode())
        bare.wait_for(HARNESS_PROMPT, 30.0)
    bare.write(COMPACT_DEFS.encode())
    bare.wait_for(HARNESS_PROMPT, 30.0)
    tty = console_tty(vm)
    result: dict[str, Any] = {"tty": tty, "conditions": {}}
    conditions: list[tuple[str, int, int]] = [("as_booted", 0, 0)]
    if what_if_baud and env.guest == "minix" and what_if_baud == tty_speed(vm, tty):
        log(f"  {tty} already runs at {what_if_baud} baud: no baud_{what_if_baud} condition")
    elif what_if_baud:
        conditions.append((f"baud_{what_if_baud}", what_if_baud, 0))
    if history_lines:
        conditions.append((f"after_{history_lines}_lines", 0, history_lines))
    for label, baud, lines in conditions:
        if baud:
            vm.shell.run(f"{stty_on(env.guest, tty)} {baud}").check()
            bare.write(f"{stty_on(env.guest, tty)} {baud}\n".encode())
            bare.wait_for(HARNESS_PROMPT, 30.0)
        if lines:
            # Fill the harness console's line history, as a long session (or a put()) does.
            loop = f"i=0; while [ $i -lt {lines} ]; do echo $i; i=$((i+1)); done"
            vm.shell.run(loop, timeout=600).check()
        speed = tty_speed(vm, tty)
        time.sleep(0.3)  # let both guests settle
        vm.console.discard()
        data = sample_rtt(vm, bare, samples)
        history = len(vm.console.lines())
        result["conditions"][label] = {"speed": speed, "console_lines": history, "samples_s": data}
        p50 = {k: percentile(v, 50) * 1e3 for k, v in data.items()}
        log(
            f"  rtt {label} ({tty} at {speed} baud, {history} console lines): "
            + ", ".join(f"{k} p50 {v:.2f} ms" for k, v in p50.items())
        )
    return result


# -- reporting ---------------------------------------------------------------------------------


def host_info(arch: str, qemu: str, env: Env | None = None) -> dict[str, Any]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    version = subprocess.run([qemu, "--version"], capture_output=True, text=True, check=False).stdout
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "arch": arch,
        "accel": "tcg",
        "qemu": qemu,
        "qemu_version": version.splitlines()[0] if version else "unknown",
        "cpu_model": cpu,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kernel": platform.release(),
        **guest_info(env),
    }


def guest_info(env: Env | None) -> dict[str, Any]:
    if env is None:
        return {}
    out: dict[str, Any] = {"guest": env.guest}
    if env.guest == "minix":
        out["minix_image"] = str(env.minix.image)
        out["minix_boot_dir"] = str(env.minix.boot_dir)
        out["append"] = " ".join(x for x in (env.spec.config.append, env.spec.boot_args) if x)
    return out


MARKS = (
    "media",
    "spawn_start",
    "spawn_end",
    "console_connected",
    "qmp_connected",
    "running",
    "first_output",
    "login_prompt",
    "shell_prompt",
    "harness_prompt",
    "uname_checked",
    "returned",
)


# shell.run("true") against the floor, a raw echo typed on the bare VM's console (issue 13, point 5).
FLOOR_GOAL = 1.5


def floor(stats: dict[str, dict[str, float]]) -> dict[str, Any]:
    run, echo = stats["harness_run_true"], stats["bare_echo"]
    ratio = run["p50_ms"] / echo["p50_ms"]
    return {
        "harness_run_true_p50_ms": run["p50_ms"],
        "harness_run_true_p95_ms": run["p95_ms"],
        "bare_echo_p50_ms": echo["p50_ms"],
        "bare_echo_p95_ms": echo["p95_ms"],
        "ratio_p50": ratio,
        "ratio_p95": run["p95_ms"] / echo["p95_ms"],
        "goal": FLOOR_GOAL,
        "met": ratio <= FLOOR_GOAL,
    }


def rtt_stats(data: dict[str, list[float]]) -> dict[str, Any]:
    stats = {
        name: {
            "n": len(v),
            "p50_ms": percentile(v, 50) * 1e3,
            "p95_ms": percentile(v, 95) * 1e3,
            "min_ms": min(v) * 1e3,
            "mean_ms": statistics.fmean(v) * 1e3,
        }
        for name, v in data.items()
    }
    p50 = {name: s["p50_ms"] for name, s in stats.items()}
    return {
        "stats": stats,
        "floor": floor(stats),
        "ratios_p50": {
            "run_true/console_echo": p50["harness_run_true"] / p50["harness_console_echo"],
            "console_echo/bare_echo": p50["harness_console_echo"] / p50["bare_echo"],
            "run_true/bare_run_frame": p50["harness_run_true"] / p50["bare_run_frame"],
            "run_true/bare_echo": p50["harness_run_true"] / p50["bare_echo"],
            "bare_compact_frame/bare_run_frame": p50["bare_compact_frame"] / p50["bare_run_frame"],
        },
    }


def summarize(boot: list[dict[str, Any]], rtt: dict[str, Any], guest: str = "reference") -> dict[str, Any]:
    rows = [r for r in boot if not r["warmup"]]
    summary: dict[str, Any] = {"guest": guest}
    if rows:
        h = [r["harness"]["total"] for r in rows]
        b = [r["bare"]["total"] for r in rows]
        ratios = [r["ratio"] for r in rows]
        marks: dict[str, dict[str, float]] = {}
        for variant in ("harness", "bare"):
            keys = {k for r in rows for k in r[variant]["marks"]}
            marks[variant] = {
                k: median([r[variant]["marks"][k] for r in rows if k in r[variant]["marks"]]) for k in keys
            }
        summary["boot"] = {
            "rounds": len(rows),
            "harness_median_s": median(h),
            "bare_median_s": median(b),
            "ratio_median": median(ratios),
            "ratio_min": min(ratios),
            "ratio_max": max(ratios),
            "marks_median_s": marks,
            "harness_cont_offset_median_s": median([r["harness"]["cont_offset"] for r in rows]),
            "guest_milestones_median_s": {
                variant: {
                    k: median([r[variant]["guest_milestones"][k] for r in rows if k in r[variant]["guest_milestones"]])
                    for k in {k for r in rows for k in r[variant]["guest_milestones"]}
                }
                for variant in ("harness", "bare")
            },
        }
    if rtt:
        summary["rtt"] = {"tty": rtt["tty"], "conditions": {}}
        for label, cond in rtt["conditions"].items():
            summary["rtt"]["conditions"][label] = {
                "speed": cond["speed"],
                "console_lines": cond["console_lines"],
                **rtt_stats(cond["samples_s"]),
            }
    return summary


def print_report(info: dict[str, Any], summary: dict[str, Any]) -> None:
    print()
    print(
        f"pytest-minix harness overhead: {info.get('guest', 'reference')} guest, {info['arch']}, "
        f"accel {info['accel']}, {info['qemu_version']}"
    )
    print(f"host: {info['cpu_model']}, {info['cpus']} CPUs, {info['date']}")
    boot = summary.get("boot")
    if boot:
        print()
        print(f"Boot to shell ({boot['rounds']} rounds, alternating; seconds from the call)")
        print(f"  {'milestone':<16}{'harness':>10}{'bare':>10}{'diff':>10}")
        hm, bm = boot["marks_median_s"]["harness"], boot["marks_median_s"]["bare"]
        for name in MARKS:
            hv, bv = hm.get(name), bm.get(name)
            diff = f"{hv - bv:+10.3f}" if hv is not None and bv is not None else f"{'':>10}"
            hs = f"{hv:10.3f}" if hv is not None else f"{'-':>10}"
            bs = f"{bv:10.3f}" if bv is not None else f"{'-':>10}"
            print(f"  {name:<16}{hs}{bs}{diff}")
        nan = float("nan")
        print(
            f"  (harness inside: boot media {hm.get('media_s', nan) * 1e3:.1f} ms, "
            f"overlay {hm.get('overlay_s', nan) * 1e3:.1f} ms (bare {bm.get('overlay_s', nan) * 1e3:.1f} ms), "
            f"QMP connect {hm.get('qmp_connect_s', nan) * 1e3:.1f} ms)"
        )
        gm = boot["guest_milestones_median_s"]
        names = sorted(gm["harness"].keys() | gm["bare"].keys(), key=lambda k: gm["harness"].get(k, gm["bare"].get(k)))
        print("  guest milestones (first line matching each profile marker; seconds from the call):")
        for name in names:
            hv, bv = gm["harness"].get(name), gm["bare"].get(name)
            diff = f"{hv - bv:+10.3f}" if hv is not None and bv is not None else f"{'':>10}"
            hs = f"{hv:10.3f}" if hv is not None else f"{'-':>10}"
            bs = f"{bv:10.3f}" if bv is not None else f"{'-':>10}"
            print(f"    {name:<14}{hs}{bs}{diff}")
        print(f"  median total: harness {boot['harness_median_s']:.3f} s, bare {boot['bare_median_s']:.3f} s")
        print(
            f"  median of per-round ratios harness/bare: {boot['ratio_median']:.4f} "
            f"(min {boot['ratio_min']:.4f}, max {boot['ratio_max']:.4f}; goal <= 1.05)"
        )
    rtt: dict[str, Any] = summary.get("rtt") or {}
    for label, cond in rtt.get("conditions", {}).items():
        print()
        print(
            f"Shell round trip, {label}: {rtt['tty']} at {cond['speed']} baud, "
            f"{cond['console_lines']} lines in the console history (interleaved; ms)"
        )
        print(f"  {'variant':<22}{'p50':>9}{'p95':>9}{'min':>9}{'mean':>9}{'n':>6}")
        for name, s in cond["stats"].items():
            print(f"  {name:<22}{s['p50_ms']:9.3f}{s['p95_ms']:9.3f}{s['min_ms']:9.3f}{s['mean_ms']:9.3f}{s['n']:6d}")
        print("  p50 ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in cond["ratios_p50"].items()))
        fl = cond["floor"]
        print(
            f"  floor: run(true) p50 {fl['harness_run_true_p50_ms']:.3f} / p95 {fl['harness_run_true_p95_ms']:.3f} ms "
            f"against bare echo p50 {fl['bare_echo_p50_ms']:.3f} / p95 {fl['bare_echo_p95_ms']:.3f} ms: "
            f"ratio p50 {fl['ratio_p50']:.2f} (goal <= {fl['goal']}: {'met' if fl['met'] else 'NOT met'})"
        )
        if summary.get("guest", "reference") == "reference":
            met = cond["stats"]["harness_run_true"]["p50_ms"] < 5
            print(f"  goal run(true) p50 < 5 ms: {'met' if met else 'NOT met'}")


# Sizes of a full run, and of the minimal run CI makes (--smoke; tests/harness/test_benchmark_scripts.py).
DEFAULTS = {"rounds": 5, "warmup": 1, "rtt_samples": 200, "history_lines": 20000}
SMOKE = {"rounds": 1, "warmup": 0, "rtt_samples": 5, "history_lines": 200}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--arch", choices=("i386", "arm"), default="i386")
    ap.add_argument(
        "--minix-guest",
        dest="guest",
        choices=GUESTS,
        default="reference",
        help="guest to boot (default reference); minix needs --minix-image and --minix-boot-dir, i386 only",
    )
    ap.add_argument(
        "--minix-image", type=Path, help="MINIX raw or qcow2 disk image (--minix-guest minix; never written)"
    )
    ap.add_argument("--minix-boot-dir", type=Path, help="kernel and mod01_ds ... modNN files for --minix-image")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="minimal run, to check that the script works (not a measurement): "
        + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in SMOKE.items())
        + " unless given; about 30 s",
    )
    ap.add_argument("--rounds", type=int, help="timed boot rounds per variant (default 5)")
    ap.add_argument("--warmup", type=int, help="untimed boot rounds first (default 1)")
    ap.add_argument("--rtt-samples", type=int, help="round-trip samples per variant (default 200)")
    ap.add_argument(
        "--what-if-baud",
        type=int,
        default=115200,
        help="after the as-booted RTT samples, set the console tty to this speed on both VMs and sample again "
        "(0: skip; default 115200)",
    )
    ap.add_argument(
        "--history-lines",
        type=int,
        help="last, print this many lines on the harness VM (filling its console history) and sample again "
        "(0: skip; default 20000)",
    )
    ap.add_argument("--json", type=Path, help="write raw samples and the summary here")
    ap.add_argument("--log-dir", type=Path, help="keep serial/QEMU logs here (default: a temporary directory)")
    args = ap.parse_args(argv)
    minix = MinixSource()
    if args.guest == "minix":
        if args.minix_image is None or args.minix_boot_dir is None:
            ap.error("--minix-guest minix needs --minix-image PATH and --minix-boot-dir DIR")
        if args.arch != "i386":
            ap.error("--minix-guest minix runs on --arch i386 only (MINIX/arm needs qemu-linaro)")
        minix = MinixSource(image=args.minix_image.resolve(), boot_dir=args.minix_boot_dir.resolve())
    elif args.minix_image is not None or args.minix_boot_dir is not None:
        ap.error("--minix-image and --minix-boot-dir go with --minix-guest minix")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, SMOKE[name] if args.smoke else default)

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    tmp = None if args.log_dir else tempfile.TemporaryDirectory(prefix="harness-overhead-")
    log_dir = args.log_dir or Path(tmp.name if tmp else ".")
    env = make_env(args.arch, log_dir, args.guest, minix)
    info = host_info(args.arch, env.spec.qemu_binary or env.spec.config.qemu, env)
    boot: list[dict[str, Any]] = []
    rtt: dict[str, Any] = {}
    try:
        log(
            f"{args.guest} {args.arch}: {args.warmup} warm-up + {args.rounds} boot rounds, "
            f"then {args.rtt_samples} RTT samples"
        )
        if args.rounds > 0:
            boot = run_boot(env, args.rounds, args.warmup, log)
        if args.rtt_samples > 0:
            rtt = run_rtt(env, args.rtt_samples, args.what_if_baud, args.history_lines, log)
    except KeyboardInterrupt:
        log("interrupted: every VM is being shut down")
        return 130
    finally:
        env.cleanup()
        env.state.remove()
        if tmp is not None:
            tmp.cleanup()
    summary = summarize(boot, rtt, args.guest)
    print_report(info, summary)
    if args.json:
        doc = {
            "info": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "summary": summary,
            "boot_rounds": boot,
            "rtt": rtt,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
