#!/usr/bin/env python3
"""Fresh state, parallel workers, harness memory and start-up of pytest-minix.

Four subcommands, each printing a short report (and, with ``--json PATH``, writing its raw
samples and summary). Variants are alternated inside one run, so that the noise of a shared
machine hits every variant alike; compare the ratios, not absolute times across runs.

``restore``
    Per arch, round by round in alternating order: a cold boot to the harness prompt
    (``VMPool(...).boot(arch)``, then released) against ``vm.restore_snapshot()`` on one
    long-lived VM (the guest dirtied first; timed until it returns, shell resynced, then a
    ``shell.run(":")`` check), plus ``pool.fresh(arch)`` (what the ``fresh_guest`` fixture
    calls) and a ``vm.save_snapshot()``.
``xdist``
    Wall time of a functional self-test set run as ``python -m pytest ... -n 0`` and
    ``-n 2`` (order alternating across rounds); speedup = t(-n 0) / t(-n 2).
``memory``
    VmRSS of this Python process before and after booting N reference VMs (per VM), apart
    from the RSS of each QEMU process.
``startup``
    Time from just before ``subprocess.Popen(["python", "-m", "pytest", ...])`` to the first
    test body (which writes ``time.time()`` to a file): a test without VMs, the same with a
    warm bytecode cache, a test using ``guest`` (includes the first boot), and pytest without
    the plugin as a baseline.

Usage: ``PYTEST_MINIX_CACHE=... python benchmarks/scale.py restore --arch all --rounds 5``
(see benchmarks/README.md); ``--smoke`` alone makes a minimal run of all four (CI checks that the
script still works with it). Every QEMU and every child pytest is stopped on exit, Ctrl-C and
SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from harness_overhead import host_info as overhead_host_info
from harness_overhead import percentile

from pytest_minix.guest.pool import HarnessConfig, VMPool
from pytest_minix.guest.vm import VM
from pytest_minix.profiles import load_profile
from pytest_minix.qemu.machine import find_qemu

GUEST = "reference"
REPO = Path(__file__).resolve().parent.parent
# The functional set timed by `xdist`: about a minute serially on i386 under TCG (see README).
XDIST_TESTS = (
    "tests/harness/test_guest.py",
    "tests/harness/test_snapshots.py",
    "tests/harness/test_testinfra.py",
    "tests/syscalls/test_process_basics.py",
)
DIRT = "/tmp/pm-scale-dirty"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- statistics -----------------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "median": statistics.median(values),
        "p95": percentile(values, 95),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


# -- host facts -----------------------------------------------------------------------------


def host_info() -> dict[str, Any]:
    qemu = find_qemu(load_profile(GUEST).arch("i386").qemu, "i386")
    return {
        **overhead_host_info("i386", qemu),
        "sched_cpus": len(os.sched_getaffinity(0)),
        "mem_total_kib": _status_kib(Path("/proc/meminfo"), "MemTotal"),
        "loadavg_start": os.getloadavg(),
        "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
    }


def _status_kib(path: Path, key: str) -> int:
    """A ``Key:   1234 kB`` field of a /proc status-like file, in KiB (-1 if absent)."""
    try:
        for line in path.read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def proc_status(pid: int | str = "self") -> dict[str, int]:
    p = Path(f"/proc/{pid}/status")
    return {
        "VmRSS": _status_kib(p, "VmRSS"),
        "VmHWM": _status_kib(p, "VmHWM"),
        "RssAnon": _status_kib(p, "RssAnon"),
        "RssFile": _status_kib(p, "RssFile"),
        "Threads": _status_kib(p, "Threads"),  # not kB, but the same "Key: value" shape
    }


# -- clean-up of everything we start --------------------------------------------------------


class Cleanup:
    """Every pool and child process of the run, stopped in ``close()``."""

    def __init__(self) -> None:
        self.pools: list[VMPool] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    def pool(self, arch: str, log_dir: Path) -> VMPool:
        pool = VMPool(HarnessConfig(guest=GUEST, arches=(arch,), accel="tcg", log_dir=log_dir))
        self.pools.append(pool)
        return pool

    def drop(self, pool: VMPool) -> None:
        pool.close()
        self.pools.remove(pool)

    def close(self) -> None:
        for pool in self.pools:
            pool.close()
        self.pools.clear()
        for proc in self.procs:
            stop_child(proc)
        self.procs.clear()


def stop_child(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group (pytest and its xdist workers clean up their QEMUs), then SIGKILL."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 30.0), (signal.SIGKILL, 10.0)):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_child(cleanup: Cleanup, argv: list[str], env: dict[str, str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run a child in its own session (so Ctrl-C is ours), capturing its output."""
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, cwd=cwd, env=env, start_new_session=True)
        cleanup.procs.append(proc)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            stop_child(proc)
        if proc.poll() is not None:  # else (Ctrl-C) Cleanup.close() stops it
            cleanup.procs.remove(proc)
        out.seek(0)
        return proc.returncode if proc.returncode is not None else -9, out.read().decode(errors="replace")


# -- 1. restore -----------------------------------------------------------------------------


def restore_rounds(
    cleanup: Cleanup, arch: str, rounds: int, warmup: int, log_dir: Path
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    long_pool = cleanup.pool(arch, log_dir)
    vm: VM = long_pool.get(arch)
    pid = vm.machine.pid
    first_save = vm.save_snapshot()
    vmstate = vm.machine.dir / "vmstate.qcow2"
    meta = {
        "guest_memory_mib": vm.machine.spec.memory,
        "first_savevm_s": first_save,
        "vmstate_qcow2_bytes": vmstate.stat().st_size if vmstate.exists() else -1,
    }
    log(f"  {arch}: long-lived VM up (guest RAM {meta['guest_memory_mib']} MiB), first savevm {first_save:.3f} s")

    def dirty() -> None:
        vm.shell.run(f"echo dirty > {DIRT} && cd /tmp && export PM_SCALE=1").check()

    def clean_check() -> None:
        r = vm.shell.run(f"test -e {DIRT}; echo $? ${{PM_SCALE:-clean}}").check()
        if r.stdout.split() != ["1", "clean"]:
            raise AssertionError(f"{arch}: the restored guest is not clean: {r.stdout!r}")
        if vm.machine.pid != pid:
            raise AssertionError(f"{arch}: the long-lived VM was replaced (QEMU pid changed)")

    def boot() -> dict[str, float]:
        pool = cleanup.pool(arch, log_dir)
        t = time.monotonic()
        v = pool.boot(arch)
        total = time.monotonic() - t
        t = time.monotonic()
        pool.release(v)
        cleanup.drop(pool)
        return {"total": total, "shutdown": time.monotonic() - t}

    def restore() -> dict[str, float]:
        dirty()
        t = time.monotonic()
        inner = vm.restore_snapshot()
        returned = time.monotonic() - t
        t1 = time.monotonic()
        r = vm.shell.run(":")
        check = time.monotonic() - t1
        if r.status != 0:
            raise AssertionError(f"{arch}: shell.run(':') after restore: {r}")
        clean_check()
        return {"total": returned, "reported": inner, "check": check, "with_check": returned + check}

    def fresh() -> dict[str, float]:
        dirty()
        t = time.monotonic()
        got = long_pool.fresh(arch)
        total = time.monotonic() - t
        if got is not vm:
            raise AssertionError(f"{arch}: pool.fresh() returned another VM (a reboot)")
        clean_check()
        return {"total": total}

    variants: dict[str, Callable[[], dict[str, float]]] = {"boot": boot, "restore": restore, "fresh": fresh}
    names = list(variants)
    out: list[dict[str, Any]] = []
    for r in range(-warmup, rounds):
        k = r % len(names)
        order = names[k:] + names[:k]
        if r % 2:
            order.reverse()
        row: dict[str, Any] = {"round": r, "warmup": r < 0, "order": order}
        for name in order:
            row[name] = variants[name]()
        # savevm last, at the idle prompt fresh() left (same state as the first snapshot).
        row["savevm"] = {"total": vm.save_snapshot()}
        row["ratio_boot_restore"] = row["boot"]["total"] / row["restore"]["total"]
        out.append(row)
        tag = "warm-up" if r < 0 else f"round {r + 1}/{rounds}"
        log(
            f"  {arch} {tag}: boot {row['boot']['total']:.3f} s, restore {row['restore']['total'] * 1e3:.1f} ms "
            f"(+check {row['restore']['check'] * 1e3:.1f} ms), fresh {row['fresh']['total'] * 1e3:.1f} ms, "
            f"savevm {row['savevm']['total'] * 1e3:.0f} ms, ratio {row['ratio_boot_restore']:.1f}"
        )
    cleanup.drop(long_pool)
    return out, meta


def summarize_restore(rows: list[dict[str, Any]], meta: dict[str, Any]) -> dict[str, Any]:
    rows = [r for r in rows if not r["warmup"]]

    def col(variant: str, key: str = "total") -> list[float]:
        return [r[variant][key] for r in rows]

    boot, restore = stats(col("boot")), stats(col("restore"))
    return {
        **meta,
        "rounds": len(rows),
        "boot_s": boot,
        "boot_shutdown_s": stats(col("boot", "shutdown")),
        "restore_s": restore,
        "restore_with_check_s": stats(col("restore", "with_check")),
        "check_s": stats(col("restore", "check")),
        "fresh_s": stats(col("fresh")),
        "savevm_s": stats(col("savevm")),
        "ratio_of_medians": boot["median"] / restore["median"] if rows else float("nan"),
        "ratio_per_round": stats([r["ratio_boot_restore"] for r in rows]),
    }


def print_restore(summary: dict[str, dict[str, Any]]) -> None:
    print()
    print("Cold boot vs snapshot restore (alternating; seconds unless ms)")
    for arch, s in summary.items():
        b, r, rc, f, sv = s["boot_s"], s["restore_s"], s["restore_with_check_s"], s["fresh_s"], s["savevm_s"]
        print(f"  {arch} ({s['rounds']} rounds, guest RAM {s['guest_memory_mib']} MiB):")
        print(f"    {'variant':<26}{'median':>10}{'p95':>10}{'min':>10}{'max':>10}")
        for label, st, scale, unit in (
            ("boot to harness prompt", b, 1.0, "s"),
            ("restore_snapshot()", r, 1e3, "ms"),
            ("restore + run(':')", rc, 1e3, "ms"),
            ("pool.fresh()", f, 1e3, "ms"),
            ("save_snapshot()", sv, 1e3, "ms"),
        ):
            fmt = "10.3f" if unit == "s" else "10.1f"
            vals = "".join(format(st[k] * scale, fmt) for k in ("median", "p95", "min", "max"))
            print(f"    {label + f' ({unit})':<26}{vals}")
        met = "met" if s["ratio_of_medians"] >= 10 else "NOT met"
        print(
            f"    ratio boot/restore: {s['ratio_of_medians']:.1f} (medians; per round "
            f"{s['ratio_per_round']['min']:.1f}..{s['ratio_per_round']['max']:.1f}); goal >= 10: {met}"
        )
        print(f"    first savevm {s['first_savevm_s']:.3f} s; vmstate.qcow2 {s['vmstate_qcow2_bytes'] / 2**20:.1f} MiB")


def cmd_restore(args: argparse.Namespace, cleanup: Cleanup, log_dir: Path) -> dict[str, Any]:
    arches = ["i386", "arm"] if args.arch == "all" else [args.arch]
    raw: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    for arch in arches:
        log(f"restore {arch}: {args.warmup} warm-up + {args.rounds} rounds (boot, restore, fresh, savevm)")
        rows, meta = restore_rounds(cleanup, arch, args.rounds, args.warmup, log_dir)
        raw[arch] = rows
        summary[arch] = summarize_restore(rows, meta)
    print_restore(summary)
    return {"summary": summary, "rounds": raw}


# -- 2. xdist -------------------------------------------------------------------------------


SUMMARY_RE = re.compile(
    r"^=*\s*(?P<text>(?:\d+ (?:passed|failed|error|errors|skipped|xfailed|xpassed)[, ]*)+)"
    r".* in (?P<secs>[\d.]+)s",
    re.M,
)


def pytest_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTEST_ADDOPTS", None)
    env.pop("PYTEST_XDIST_WORKER", None)
    return env


# The --smoke set of `xdist`: two tests that need the plugin's settings but no VM (the other
# subcommands boot enough), so each pytest run takes a few seconds.
XDIST_SMOKE_FILE = textwrap.dedent(
    """
    def test_settings(minix_config):
        assert minix_config.guest == "reference"


    def test_nothing():
        pass
    """
)


def cmd_xdist(args: argparse.Namespace, cleanup: Cleanup, log_dir: Path) -> dict[str, Any]:
    tests = list(args.tests) or list(XDIST_TESTS)
    if args.smoke and not args.tests:
        smoke = log_dir / "xdist-smoke" / "test_pm_xdist_smoke.py"
        smoke.parent.mkdir(parents=True, exist_ok=True)
        smoke.write_text(XDIST_SMOKE_FILE)
        tests = [str(smoke)]
    base = [
        sys.executable,
        "-m",
        "pytest",
        *tests,
        f"--minix-guest={GUEST}",
        f"--arch={args.arch}",
        "--minix-accel=tcg",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rfE",
    ]
    runs: list[dict[str, Any]] = []
    log(f"xdist: {args.rounds} round(s) of -n 0 and -n {args.workers}, {' '.join(tests)} (arch {args.arch})")
    for r in range(args.rounds):
        order = [0, args.workers] if r % 2 == 0 else [args.workers, 0]
        for n in order:
            argv = [*base, "-n", str(n), "--basetemp", str(log_dir / f"xdist-r{r}-n{n}")]
            load0 = os.getloadavg()[0]
            t = time.perf_counter()
            code, out = run_child(cleanup, argv, pytest_env(), REPO, args.timeout)
            wall = time.perf_counter() - t
            m = SUMMARY_RE.search(out)
            failed = [ln for ln in out.splitlines() if ln.startswith(("FAILED ", "ERROR "))]
            run = {
                "round": r,
                "workers": n,
                "wall_s": wall,
                "returncode": code,
                "summary": m.group("text").strip(" ,") if m else "(no summary line)",
                "pytest_s": float(m.group("secs")) if m else None,
                "failed": failed,
                "loadavg_before": load0,
                "output_tail": out[-4000:],
            }
            runs.append(run)
            log(f"  round {r + 1}: -n {n}: {wall:.1f} s, exit {code}, {run['summary']}")
            for ln in failed:
                log(f"    {ln}")
    serial = [x["wall_s"] for x in runs if x["workers"] == 0]
    par = [x["wall_s"] for x in runs if x["workers"] == args.workers]
    per_round = [
        next(x["wall_s"] for x in runs if x["round"] == r and x["workers"] == 0)
        / next(x["wall_s"] for x in runs if x["round"] == r and x["workers"] == args.workers)
        for r in range(args.rounds)
    ]
    summary = {
        "tests": tests,
        "arch": args.arch,
        "workers": args.workers,
        "cpus": os.cpu_count(),
        "serial_s": stats(serial),
        "parallel_s": stats(par),
        "speedup_of_medians": statistics.median(serial) / statistics.median(par),
        "speedup_per_round": per_round,
        "all_passed": all(x["returncode"] == 0 for x in runs),
        "failures": sorted({ln for x in runs for ln in x["failed"]}),
    }
    print()
    print(f"Functional self-tests, -n 0 vs -n {args.workers} ({args.rounds} round(s); host has {os.cpu_count()} CPUs)")
    print(f"  set: {' '.join(tests)} --arch={args.arch}")
    for x in runs:
        print(
            f"  round {x['round'] + 1}  -n {x['workers']}: {x['wall_s']:7.1f} s wall  exit {x['returncode']}  "
            f"{x['summary']}"
        )
    met = "met" if summary["speedup_of_medians"] >= 1.6 else "NOT met"
    print(
        f"  speedup t(-n 0)/t(-n {args.workers}): {summary['speedup_of_medians']:.2f} "
        f"(per round {', '.join(f'{s:.2f}' for s in per_round)}); goal >= 1.6: {met}"
    )
    if summary["failures"]:
        print("  failures:")
        for ln in summary["failures"]:
            print(f"    {ln}")
    return {"summary": summary, "runs": runs}


# -- 3. memory ------------------------------------------------------------------------------


def rss_self() -> dict[str, int]:
    gc.collect()
    return proc_status("self")


def cmd_memory(args: argparse.Namespace, cleanup: Cleanup, log_dir: Path) -> dict[str, Any]:
    arch = args.arch
    if args.vms < 1:
        raise SystemExit("memory: --vms must be at least 1")
    stages: list[dict[str, Any]] = []

    def stage(name: str, vms: Sequence[VM]) -> None:
        row: dict[str, Any] = {
            "stage": name,
            "python": rss_self(),
            "qemu": {str(v.machine.pid): proc_status(v.machine.pid or 0) for v in vms},
        }
        stages.append(row)
        q = sum(s["VmRSS"] for s in row["qemu"].values())
        log(
            f"  {name}: python VmRSS {row['python']['VmRSS'] / 1024:.1f} MiB "
            f"({row['python']['Threads']} threads), QEMU total {q / 1024:.1f} MiB"
        )

    log(f"memory: {arch}, {args.vms} VMs")
    stage("imports", [])
    pool = cleanup.pool(arch, log_dir)
    pool.media(arch)
    stage("pool+media", [])
    vms: list[VM] = []
    for i in range(args.vms):
        vms.append(pool.boot(arch))
        stage(f"booted {i + 1}", vms)
    for v in vms:
        for _ in range(args.commands):
            v.shell.run("true").check()
        if args.lines:
            v.shell.run(f"i=0; while [ $i -lt {args.lines} ]; do echo line $i; i=$((i+1)); done", timeout=600).check()
    stage(f"after {args.commands} commands + {args.lines} lines per VM", vms)
    guest_memory = vms[0].machine.spec.memory if vms else None
    for v in vms:
        pool.release(v)
    cleanup.drop(pool)
    del v, vms, pool  # the pool keeps its VMs (and their console histories): let them all go
    stage("released", [])

    base = stages[1]["python"]["VmRSS"]
    booted = stages[1 + args.vms]
    used = stages[2 + args.vms]
    qemu_rss = [s["VmRSS"] for s in booted["qemu"].values()]
    qemu_used = [s["VmRSS"] for s in used["qemu"].values()]
    increments = [stages[2 + i]["python"]["VmRSS"] - stages[1 + i]["python"]["VmRSS"] for i in range(args.vms)]
    summary = {
        "arch": arch,
        "vms": args.vms,
        "guest_memory_mib": guest_memory,
        "python_imports_kib": stages[0]["python"]["VmRSS"],
        "python_pool_media_kib": base,
        "python_booted_kib": booted["python"]["VmRSS"],
        "python_per_vm_kib": (booted["python"]["VmRSS"] - base) / max(args.vms, 1),
        "python_increments_kib": increments,
        "python_after_use_kib": used["python"]["VmRSS"],
        "python_after_use_per_vm_kib": (used["python"]["VmRSS"] - base) / max(args.vms, 1),
        "python_released_kib": stages[-1]["python"]["VmRSS"],
        "python_threads": {s["stage"]: s["python"]["Threads"] for s in stages},
        "qemu_rss_kib": qemu_rss,
        "qemu_rss_after_use_kib": qemu_used,
    }
    mib = 1024.0
    print()
    print(f"Harness memory, {args.vms} reference {arch} VMs (VmRSS; MiB)")
    print(f"  {'stage':<44}{'python':>9}{'threads':>9}{'QEMU sum':>10}")
    for s in stages:
        q = sum(x["VmRSS"] for x in s["qemu"].values())
        print(f"  {s['stage']:<44}{s['python']['VmRSS'] / mib:9.1f}{s['python']['Threads']:9d}{q / mib:10.1f}")
    print(
        f"  python per VM: {summary['python_per_vm_kib'] / mib:.2f} MiB after boot "
        f"(increments {', '.join(f'{x / mib:.2f}' for x in increments)}), "
        f"{summary['python_after_use_per_vm_kib'] / mib:.2f} MiB after use"
    )
    print(
        f"  QEMU per VM: {', '.join(f'{x / mib:.1f}' for x in qemu_rss)} MiB after boot, "
        f"{', '.join(f'{x / mib:.1f}' for x in qemu_used)} MiB after use "
        f"(guest RAM {summary['guest_memory_mib']} MiB)"
    )
    return {"summary": summary, "stages": stages}


# -- 4. startup -----------------------------------------------------------------------------


TEST_FILE = textwrap.dedent(
    """
    import os
    import time


    def _stamp():
        with open(os.environ["PM_SCALE_STAMP"], "w") as f:
            f.write(repr(time.time()))


    def test_no_vm():
        _stamp()


    def test_guest(guest):
        _stamp()
    """
)


def cmd_startup(args: argparse.Namespace, cleanup: Cleanup, log_dir: Path) -> dict[str, Any]:
    work = log_dir / "startup"
    work.mkdir(parents=True, exist_ok=True)
    (work / "test_pm_startup.py").write_text(TEST_FILE)
    stamp = work / "stamp"
    pycache = log_dir / "pycache"
    plugin = [f"--minix-guest={GUEST}", f"--arch={args.arch}", "--minix-accel=tcg"]
    common = ["-p", "no:cacheprovider", "-q", "--basetemp", str(work / "basetemp")]
    variants: dict[str, tuple[list[str], dict[str, str]]] = {
        "no_plugin": (["test_pm_startup.py::test_no_vm", "-p", "no:minix"], {}),
        "no_vm": (["test_pm_startup.py::test_no_vm", *plugin], {}),
        "no_vm_pyc": (
            ["test_pm_startup.py::test_no_vm", *plugin],
            {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(pycache)},
        ),
        "guest": (["test_pm_startup.py::test_guest", *plugin], {}),
    }

    def once(name: str) -> dict[str, float]:
        extra, env_over = variants[name]
        env = pytest_env()
        env["PM_SCALE_STAMP"] = str(stamp)
        for k, v in env_over.items():
            if v:
                env[k] = v
            else:
                env.pop(k, None)
        stamp.unlink(missing_ok=True)
        argv = [sys.executable, "-m", "pytest", *extra, *common]
        t_launch = time.time()
        code, out = run_child(cleanup, argv, env, work, 300)
        t_exit = time.time()
        if code != 0 or not stamp.exists():
            raise RuntimeError(f"startup variant {name} failed (exit {code}):\n{out[-2000:]}")
        t_body = float(stamp.read_text())
        return {"to_body": t_body - t_launch, "body_to_exit": t_exit - t_body, "total": t_exit - t_launch}

    # Untimed: fill the bytecode cache of the `no_vm_pyc` variant (and the OS page cache of all).
    for _ in range(args.warmup):
        for name in variants:
            once(name)
    names = list(variants)
    rows: list[dict[str, Any]] = []
    log(f"startup: {args.rounds} rounds of {', '.join(names)} (after {args.warmup} untimed run(s) each)")
    for r in range(args.rounds):
        k = r % len(names)
        order = names[k:] + names[:k]
        row: dict[str, Any] = {"round": r, "order": order}
        for name in order:
            row[name] = once(name)
        rows.append(row)
        log(f"  round {r + 1}/{args.rounds}: " + ", ".join(f"{n} {row[n]['to_body']:.3f} s" for n in names))
    summary = {
        name: {
            "to_body_s": stats([r[name]["to_body"] for r in rows]),
            "body_to_exit_s": stats([r[name]["body_to_exit"] for r in rows]),
            "total_s": stats([r[name]["total"] for r in rows]),
        }
        for name in names
    }
    print()
    print(f"Start-up: Popen of `python -m pytest` to the first test body ({args.rounds} rounds, rotating; s)")
    print(f"  {'variant':<12}{'median':>9}{'p95':>9}{'min':>9}{'body->exit':>12}")
    for name in names:
        s, e = summary[name]["to_body_s"], summary[name]["body_to_exit_s"]
        print(f"  {name:<12}{s['median']:9.3f}{s['p95']:9.3f}{s['min']:9.3f}{e['median']:12.3f}")
    med = {n: summary[n]["to_body_s"]["median"] for n in names}
    print(
        f"  plugin cost (no_vm - no_plugin): {med['no_vm'] - med['no_plugin']:.3f} s; "
        f"first boot (guest - no_vm): {med['guest'] - med['no_vm']:.3f} s; "
        f"bytecode compilation (no_vm - no_vm_pyc): {med['no_vm'] - med['no_vm_pyc']:.3f} s"
    )
    return {"summary": summary, "rounds": rows}


# -- main -----------------------------------------------------------------------------------


@contextlib.contextmanager
def log_directory(path: Path | None) -> Iterator[Path]:
    if path is not None:
        path.mkdir(parents=True, exist_ok=True)
        yield path
        return
    tmp = tempfile.mkdtemp(prefix="pm-scale-")
    try:
        yield Path(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# Sizes of a full run of each subcommand, and what --smoke changes (the minimal run CI makes of
# this script, tests/harness/test_benchmark_scripts.py). Options given explicitly win over both.
# `--smoke` without a subcommand runs all four in this order (memory first: its "imports" stage
# is then this process's footprint before any VM).
DEFAULTS: dict[str, dict[str, Any]] = {
    "memory": {"arch": "i386", "vms": 2, "commands": 200, "lines": 20000},
    "restore": {"arch": "all", "rounds": 5, "warmup": 1},
    "xdist": {"arch": "i386", "rounds": 1, "workers": 2, "timeout": 600.0, "tests": []},
    "startup": {"arch": "i386", "rounds": 5, "warmup": 1},
}
SMOKE: dict[str, dict[str, Any]] = {
    "memory": {"vms": 1, "commands": 5, "lines": 200},
    "restore": {"arch": "i386", "rounds": 1, "warmup": 0},
    "xdist": {"timeout": 300.0},  # and, unless test paths are given, a two-test file without VMs
    "startup": {"rounds": 1, "warmup": 0},
}


def settings(cmd: str, given: argparse.Namespace, smoke: bool, arch: str | None) -> argparse.Namespace:
    """One subcommand's options: the defaults, then --smoke's, then the top-level --arch, then what was given."""
    values = {**DEFAULTS[cmd], **(SMOKE[cmd] if smoke else {})}
    if arch:
        values["arch"] = arch
    for key in values:
        value = getattr(given, key, None)
        if value is not None and value != []:
            values[key] = value
    return argparse.Namespace(cmd=cmd, smoke=smoke, **values)


def strings(ns: argparse.Namespace) -> dict[str, str]:
    return {k: str(v) for k, v in vars(ns).items()}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else None,
        epilog="With --smoke and no subcommand, all four run one after the other, each minimal (about a minute "
        "on i386); the JSON then has one key per subcommand.",
    )
    ap.add_argument("--smoke", action="store_true", help="minimal run, to check that the script works (no measurement)")
    ap.add_argument("--arch", choices=("i386", "arm"), help="arch of every run (default: each subcommand's own)")
    ap.add_argument("--json", type=Path, help="write raw samples and the summary here")
    ap.add_argument("--log-dir", type=Path, help="keep serial/QEMU logs here (default: a temporary directory)")
    # The same options after the subcommand; SUPPRESS keeps an absent one from hiding a top-level one.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--smoke", action="store_true", default=argparse.SUPPRESS, help="minimal run (see below)")
    common.add_argument("--json", type=Path, default=argparse.SUPPRESS, help="write raw samples and the summary here")
    common.add_argument(
        "--log-dir",
        type=Path,
        default=argparse.SUPPRESS,
        help="keep serial/QEMU logs here (default: a temporary directory)",
    )
    sub = ap.add_subparsers(dest="cmd")

    def smoke_note(cmd: str) -> str:
        changes = ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in SMOKE[cmd].items())
        extra = "; the test paths default to a two-test file that boots no VM" if cmd == "xdist" else ""
        return f"--smoke: {changes}{extra}"

    p = sub.add_parser("restore", parents=[common], help="cold boot vs snapshot restore", epilog=smoke_note("restore"))
    p.add_argument("--arch", choices=("i386", "arm", "all"), default=argparse.SUPPRESS, help="default all")
    p.add_argument("--rounds", type=int, help="timed rounds (default 5)")
    p.add_argument("--warmup", type=int, help="untimed rounds first (default 1)")

    p = sub.add_parser(
        "xdist", parents=[common], help="functional self-tests with -n 0 vs -n 2", epilog=smoke_note("xdist")
    )
    p.add_argument("--arch", choices=("i386", "all"), default=argparse.SUPPRESS, help="default i386")
    p.add_argument("--rounds", type=int, help="rounds, each running both (default 1)")
    p.add_argument("--workers", type=int, help="xdist workers of the parallel run (default 2)")
    p.add_argument("--timeout", type=float, help="per pytest run, seconds (default 600)")
    p.add_argument("tests", nargs="*", help=f"test paths (default: {' '.join(XDIST_TESTS)})")

    p = sub.add_parser(
        "memory", parents=[common], help="harness-side RSS per VM, and QEMU's", epilog=smoke_note("memory")
    )
    p.add_argument("--arch", choices=("i386", "arm"), default=argparse.SUPPRESS, help="default i386")
    p.add_argument("--vms", type=int, help="VMs booted side by side (default 2)")
    p.add_argument("--commands", type=int, help="shell.run('true') per VM after boot (default 200)")
    p.add_argument(
        "--lines", type=int, help="then a command printing this many lines (default 20000: a full console history)"
    )

    p = sub.add_parser(
        "startup", parents=[common], help="python -m pytest launch to the first test body", epilog=smoke_note("startup")
    )
    p.add_argument("--arch", choices=("i386", "arm"), default=argparse.SUPPRESS, help="default i386")
    p.add_argument("--rounds", type=int, help="timed rounds per variant (default 5)")
    p.add_argument("--warmup", type=int, help="untimed runs of each variant first (default 1)")

    args = ap.parse_args(argv)
    if args.cmd is None and not args.smoke:
        ap.error("choose a subcommand (restore, xdist, memory, startup), or --smoke for a minimal run of all four")
    cmds = [args.cmd] if args.cmd else list(DEFAULTS)
    runs = {cmd: settings(cmd, args, args.smoke, args.arch) for cmd in cmds}

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    commands = {"restore": cmd_restore, "xdist": cmd_xdist, "memory": cmd_memory, "startup": cmd_startup}
    info = host_info()
    cleanup = Cleanup()
    t = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    with log_directory(args.log_dir) as log_dir:
        try:
            for cmd, cmd_args in runs.items():
                results[cmd] = commands[cmd](cmd_args, cleanup, log_dir)
        except KeyboardInterrupt:
            log("interrupted: every VM and child pytest is being shut down")
            return 130
        finally:
            cleanup.close()
    info["loadavg_end"] = os.getloadavg()
    info["runtime_s"] = time.monotonic() - t
    print(
        f"\nhost: {info['cpu_model']}, {info['cpus']} CPUs, {info['qemu_version']}, {info['date']}, "
        f"load average {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}, "
        f"run took {info['runtime_s']:.0f} s"
    )
    if args.json:
        if args.cmd:  # one subcommand: its parts at the top level, as always
            doc = {"info": info, "args": {**strings(args), **strings(runs[args.cmd])}, **results[args.cmd]}
        else:  # --smoke of all four: one key each
            doc = {"info": info, "args": strings(args)}
            doc.update({cmd: {"args": strings(runs[cmd]), **results[cmd]} for cmd in runs})
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
