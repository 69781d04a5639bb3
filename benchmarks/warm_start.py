#!/usr/bin/env python3
"""Warm start: time from ``python -m pytest`` to the first test body, booting vs from the boot cache.

A pytest session whose first test uses the ``guest`` fixture either boots its shared VM
("cold") or, when the boot cache (``<cache>/states``) holds a saved logged-in state of the
same machine, starts QEMU from that state ("warm"). This script measures what a user sees:
the wall time from just before ``subprocess.Popen([python, "-m", "pytest", ...])`` to the
first statement of the test body, which writes ``time.time()`` to a file.

Method, per target (reference guest per ``--arch``; MINIX i386 with ``--minix-image`` and
``--minix-boot-dir``):

* A tiny test project in a temporary directory (its own empty ``pytest.ini``, so no
  configuration above it applies): one test using ``guest`` that, as its first statements,
  takes ``time.time()`` and reads ``VmRSS`` and friends of its own VM's QEMU
  (``/proc/<guest.machine.pid>/status``) into a result file, then runs ``guest.shell.run``
  (not timed) to prove the VM works.
* Every child is ``python -m pytest test_pm_warm_start.py -p no:cacheprovider -q --arch=<arch>
  --minix-guest=<guest> --minix-accel=tcg`` (plus the MINIX image options), with this
  script's Python, its own ``--basetemp`` and ``PYTEST_ADDOPTS`` unset.
* One untimed priming run without ``--minix-cold-boot`` makes sure the boot cache holds the
  target's entry (it boots and saves one, or starts from one already there).
* Then ``--rounds`` rounds, each running both variants in ABBA order (round 1 cold first,
  round 2 warm first, ...): **cold** with ``--minix-cold-boot`` (boots; neither loads nor
  saves a state), **warm** without (starts from the entry).
* Each run's terminal summary ("pytest-minix VMs") must say ``booted cold`` (and no
  ``saved as``) for cold and ``started WARM from saved state`` for warm; otherwise, or when
  the child fails, the run is invalid, left out of the figures and listed.

Reported per target: median and min..max of both variants, the ratio of the medians
cold/warm and the goals (warm at least 10x faster than cold; for MINIX, warm under 1.5 s).
To show where the time goes: a floor (after each pair, the same pytest command selecting a
second test that uses no VM: interpreter, pytest and plugin start-up, not part of the ABBA
comparison) and the VM start alone (QEMU start to working shell, as the summary line gives
it). The cost of a saved state: the entry's bytes on disk (every file in ``states/<key>/``,
found by the key the summary line names), its save time (``meta.json``), and QEMU's RSS at
the start of the test body, cold-booted vs warm-started.

The boot cache is ``$PYTEST_MINIX_CACHE/states`` (else the default cache's). An entry this
run created is removed at the end (the cache is left as found) unless ``--keep-states``.
Exit status 0 also when a goal is missed; 1 when a child pytest failed or a start was not
the one its variant asked for (the report and the JSON are written all the same).

Usage: ``PYTEST_MINIX_CACHE=... python benchmarks/warm_start.py --rounds 5 --arch all``
(see benchmarks/README.md); ``--smoke`` makes a minimal run (CI checks that the script still
works with it). Every child pytest (and its QEMU) is stopped on exit, Ctrl-C and SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import textwrap
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scale import Cleanup, run_child, stats
from scale import host_info as scale_host_info
from scale import log_directory as work_directory

from pytest_minix.guest.bootcache import META, BootCache
from pytest_minix.paths import CACHE_ENV, cache_root
from pytest_minix.version import harness_version

RESULT_ENV = "PM_WARM_START_RESULT"
TEST_NAME = "test_pm_warm_start.py"
TEST_FILE = textwrap.dedent(
    """
    import json
    import os
    import time


    def test_first_body(guest):
        t_body = time.time()  # first: the figure measured
        pid = guest.machine.pid
        status = {}
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"):
                    status[key] = int(value.split()[0])  # kB
        result = {"t_body": t_body, "qemu_pid": pid, "qemu_status_kib": status}
        path = os.environ["PM_WARM_START_RESULT"]
        with open(path, "w") as f:
            json.dump(result, f)
        t = time.monotonic()
        r = guest.shell.run("echo pm-warm-$((20+22))")  # not timed: the VM works
        result["shell_run_s"] = time.monotonic() - t
        assert r.status == 0 and r.stdout.strip() == "pm-warm-42", r
        with open(path, "w") as f:
            json.dump(result, f)


    def test_no_vm():  # the floor: pytest and the plugin, no VM
        with open(os.environ["PM_WARM_START_RESULT"], "w") as f:
            json.dump({"t_body": time.time()}, f)
    """
)
# The terminal summary's line for a shared VM's start (pytest_minix/plugin/pools.py describe_start).
START_RE = re.compile(
    r"^(?P<guest>\S+) (?P<arch>\S+) \((?P<accel>[^,]+), worker (?P<worker>[^)]+)\): "
    r"(?:started WARM from saved state (?P<warm_key>[0-9a-f]+) .*? in (?P<warm_s>[\d.]+) s"
    r"|booted cold in (?P<cold_s>[\d.]+) s(?:; saved as (?P<saved_key>[0-9a-f]+))?)",
    re.M,
)
VARIANTS = ("cold", "warm")
ALL_VARIANTS = (*VARIANTS, "no_vm")
GOAL_RATIO = 10.0
GOAL_MINIX_WARM_S = 1.5
MIB = 1024.0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Target:
    guest: str
    arch: str
    options: tuple[str, ...] = ()  # more plugin options (the MINIX image)

    @property
    def name(self) -> str:
        return f"{self.guest} {self.arch}"

    @property
    def slug(self) -> str:
        return f"{self.guest}-{self.arch}"


# -- one child pytest ------------------------------------------------------------------------


def child_env(result: Path) -> dict[str, str]:
    env = dict(os.environ)
    # PYTHONDONTWRITEBYTECODE too: an installed wheel has its bytecode compiled by pip, so a user's
    # pytest does not recompile the plugin at every start (0.16 s here, in both variants alike).
    for var in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTHONDONTWRITEBYTECODE"):
        env.pop(var, None)
    env[RESULT_ENV] = str(result)
    return env


def parse_start(output: str, target: Target) -> tuple[dict[str, Any] | None, int]:
    """The summary's start line for ``target`` (parsed), and how many such lines there were."""
    found = [m for m in START_RE.finditer(output) if (m["guest"], m["arch"]) == (target.guest, target.arch)]
    if not found:
        return None, 0
    m = found[0]
    warm = m["warm_key"] is not None
    return {
        "how": "warm" if warm else "cold",
        "accel": m["accel"],
        "vm_start_s": float(m["warm_s"] if warm else m["cold_s"]),
        "state": m["warm_key"] if warm else (m["saved_key"] or ""),
        "line": m.group(0),
    }, len(found)


def run_once(
    cleanup: Cleanup, target: Target, variant: str, label: str, project: Path, runs_dir: Path, timeout: float
) -> dict[str, Any]:
    """One child pytest; ``variant`` is cold (--minix-cold-boot), warm, prime (boot cache on) or no_vm (no VM)."""
    run_dir = runs_dir / f"{target.slug}-{label}"
    run_dir.mkdir(parents=True, exist_ok=True)
    result = run_dir / "result.json"
    argv = [
        sys.executable,
        "-m",
        "pytest",
        f"{TEST_NAME}::{'test_no_vm' if variant == 'no_vm' else 'test_first_body'}",
        "-p",
        "no:cacheprovider",
        "-q",
        f"--arch={target.arch}",
        f"--minix-guest={target.guest}",
        "--minix-accel=tcg",
        *target.options,
        *(["--minix-cold-boot"] if variant == "cold" else []),
        "--basetemp",
        str(run_dir / "basetemp"),
    ]
    load = os.getloadavg()[0]
    t_spawn = time.time()
    code, out = run_child(cleanup, argv, child_env(result), project, timeout)
    t_exit = time.time()
    (run_dir / "pytest.out").write_text(out)
    row: dict[str, Any] = {"variant": variant, "label": label, "exit_code": code, "loadavg_1m": load}
    body: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        body = json.loads(result.read_text())
    if "t_body" in body:
        row["to_body_s"] = body["t_body"] - t_spawn
        row["body_to_exit_s"] = t_exit - body["t_body"]
        row["qemu_status_kib"] = body.get("qemu_status_kib", {})
        row["shell_run_s"] = body.get("shell_run_s")
    row["total_s"] = t_exit - t_spawn
    start, count = parse_start(out, target)
    row["start"] = start
    row["invalid"] = invalid_reason(row, start, count, variant)
    if row["invalid"]:
        tail = "\n".join(out.splitlines()[-25:])
        log(
            f"    INVALID {target.name} {label}: {row['invalid']}\n    output (end):\n{textwrap.indent(tail, '      ')}"
        )
    return row


def invalid_reason(row: dict[str, Any], start: dict[str, Any] | None, count: int, variant: str) -> str:
    if row["exit_code"] != 0:
        return f"pytest exited {row['exit_code']}"
    if "to_body_s" not in row:
        return "the test body wrote no result"
    if variant == "no_vm":
        return f"a VM started for a test without one: {start['line']}" if start else ""
    if start is None:
        return "no start line in the pytest-minix VMs summary"
    if count != 1:
        return f"{count} VM starts in the summary, expected 1"
    if start["accel"] != "tcg":
        return f"accelerator {start['accel']}, expected tcg"
    if variant == "cold" and start["how"] != "cold":
        return f"asked for a cold boot (--minix-cold-boot), got: {start['line']}"
    if variant == "cold" and start["state"]:
        return f"--minix-cold-boot saved a state: {start['line']}"
    if variant == "warm" and start["how"] != "warm":
        return f"asked for a warm start, got: {start['line']}"
    if variant == "prime" and not start["state"]:
        return f"the priming run left no boot cache entry: {start['line']}"
    return ""


# -- the boot cache entry --------------------------------------------------------------------


def entries(states: Path) -> set[str]:
    if not states.is_dir():
        return set()
    return {d.name for d in states.iterdir() if d.is_dir() and not d.name.startswith(".")}


def entry_cost(states: Path, key_prefix: str) -> dict[str, Any]:
    """Bytes on disk (apparent and allocated) of the entry whose key starts with ``key_prefix``."""
    dirs = [states / n for n in entries(states) if n.startswith(key_prefix)]
    if len(dirs) != 1:
        return {"key_prefix": key_prefix, "error": f"{len(dirs)} entries in {states} start with {key_prefix}"}
    path = dirs[0]
    files = {f.name: f.stat() for f in sorted(path.iterdir()) if f.is_file()}
    meta: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        meta = json.loads((path / META).read_text())
    return {
        "key": path.name,
        "path": str(path),
        "files": {name: st.st_size for name, st in files.items()},
        "bytes": sum(st.st_size for st in files.values()),
        "allocated_bytes": sum(st.st_blocks * 512 for st in files.values()),
        "vm_state_bytes": files["vm.state"].st_size if "vm.state" in files else -1,
        "disk_bytes": sum(st.st_size for n, st in files.items() if n.startswith("disk-")),
        "save_seconds": meta.get("save_seconds"),
        "guest_memory_mib": meta.get("memory"),
        "qemu_version": meta.get("qemu_version"),
    }


# -- one target ------------------------------------------------------------------------------


def bench_target(
    cleanup: Cleanup, target: Target, rounds: int, project: Path, runs_dir: Path, timeout: float, created: list[Path]
) -> dict[str, Any]:
    states = cache_root() / "states"
    before = entries(states)
    log(f"{target.name}: priming run (boot cache on), then {rounds} round(s) of cold and warm (ABBA)")
    prime = run_once(cleanup, target, "prime", "prime", project, runs_dir, timeout)
    out: dict[str, Any] = {"prime": prime, "rounds": []}
    if prime["invalid"]:
        out["error"] = f"priming run: {prime['invalid']}"
        log(f"  {target.name}: skipped ({out['error']})")
        return out
    key = prime["start"]["state"]
    cost = entry_cost(states, key)
    out["entry"] = cost
    cost["created_by_this_run"] = "key" in cost and cost["key"] not in before
    log(
        f"  prime: {prime['start']['how']} start, {prime['to_body_s']:.3f} s to the body; "
        f"entry {key} ({cost.get('bytes', 0) / 2**20:.1f} MiB{', new' if cost['created_by_this_run'] else ''})"
    )
    for r in range(rounds):
        order = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
        row: dict[str, Any] = {"round": r + 1, "order": order}
        for variant in order:
            row[variant] = run_once(cleanup, target, variant, f"r{r + 1}-{variant}", project, runs_dir, timeout)
        # The floor (pytest and the plugin without a VM), after the pair: not part of the ABBA comparison.
        row["no_vm"] = run_once(cleanup, target, "no_vm", f"r{r + 1}-no_vm", project, runs_dir, timeout)
        out["rounds"].append(row)
        log(
            f"  round {r + 1}/{rounds} ({' then '.join(order)}): "
            + ", ".join(f"{v} {fmt_run(row[v])}" for v in ALL_VARIANTS)
        )
    # Entries this run's children saved (the prime's; a warm run that fell back to a boot saves again).
    saved = {
        r["start"]["state"]
        for r in (prime, *(x[v] for x in out["rounds"] for v in VARIANTS))
        if r["start"] and r["start"]["how"] == "cold" and r["start"]["state"]
    }
    for name in sorted(entries(states) - before):
        if any(name.startswith(k) for k in saved):
            created.append(states / name)
    return out


def fmt_run(run: dict[str, Any]) -> str:
    if run["invalid"]:
        return f"INVALID ({run['invalid'][:80]})"
    if run["start"] is None:
        return f"{run['to_body_s']:.3f} s"
    return f"{run['to_body_s']:.3f} s (VM {run['start']['vm_start_s']:.3f} s)"


def summarize(target: Target, raw: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"guest": target.guest, "arch": target.arch}
    if "error" in raw:
        out["error"] = raw["error"]
        return out
    rows = raw["rounds"]
    valid = {v: [r[v] for r in rows if not r[v]["invalid"]] for v in ALL_VARIANTS}
    for v in VARIANTS:
        runs = valid[v]
        out[v] = {
            "valid": len(runs),
            "invalid": len(rows) - len(runs),
            "to_body_s": stats([x["to_body_s"] for x in runs]),
            "vm_start_s": stats([x["start"]["vm_start_s"] for x in runs]),
            "body_to_exit_s": stats([x["body_to_exit_s"] for x in runs]),
            "qemu_rss_kib": stats([x["qemu_status_kib"].get("VmRSS", -1) for x in runs]),
            "qemu_hwm_kib": stats([x["qemu_status_kib"].get("VmHWM", -1) for x in runs]),
        }
    out["no_vm"] = {
        "valid": len(valid["no_vm"]),
        "invalid": len(rows) - len(valid["no_vm"]),
        "to_body_s": stats([x["to_body_s"] for x in valid["no_vm"]]),
    }
    cold, warm = out["cold"]["to_body_s"], out["warm"]["to_body_s"]
    floor = out["no_vm"]["to_body_s"]
    # What the VM adds to the time to the first body, over the floor (medians).
    out["over_no_vm_s"] = {
        v: (out[v]["to_body_s"]["median"] - floor["median"]) if out[v]["to_body_s"]["n"] and floor["n"] else None
        for v in VARIANTS
    }
    ratio = cold["median"] / warm["median"] if cold["n"] and warm["n"] else float("nan")
    per_round = [
        r["cold"]["to_body_s"] / r["warm"]["to_body_s"]
        for r in rows
        if not (r["cold"]["invalid"] or r["warm"]["invalid"])
    ]
    vc, vw = out["cold"]["vm_start_s"], out["warm"]["vm_start_s"]
    out["ratio_of_medians"] = ratio
    out["ratio_per_round"] = stats(per_round)
    out["vm_start_ratio_of_medians"] = vc["median"] / vw["median"] if vc["n"] and vw["n"] else float("nan")
    out["goals"] = {f"warm >= {GOAL_RATIO:g}x faster than cold": verdict(ratio >= GOAL_RATIO, ratio)}
    if target.guest == "minix":
        out["goals"][f"warm < {GOAL_MINIX_WARM_S:g} s"] = verdict(
            warm["n"] > 0 and warm["median"] < GOAL_MINIX_WARM_S, warm.get("median")
        )
    prime = raw["prime"]
    out["prime"] = {
        "how": prime["start"]["how"],
        "to_body_s": prime["to_body_s"],
        "vm_start_s": prime["start"]["vm_start_s"],
        # A cold prime boots and saves: its extra time over the cold median is what the first session pays.
        "save_overhead_s": prime["to_body_s"] - cold["median"]
        if prime["start"]["how"] == "cold" and cold["n"]
        else None,
    }
    out["entry"] = raw.get("entry", {})
    out["invalid_runs"] = [
        {"round": r["round"], "variant": v, "why": r[v]["invalid"]}
        for r in rows
        for v in ALL_VARIANTS
        if r[v]["invalid"]
    ]
    return out


def verdict(ok: bool, value: float | None) -> str:
    if value is None or value != value:  # NaN: no valid run to judge
        return "n/a"
    return "PASS" if ok else "MISS"


# -- report ----------------------------------------------------------------------------------


def fmt_stat(s: dict[str, float], scale: float = 1.0, digits: int = 3) -> str:
    if not s.get("n"):
        return "-"
    return f"{s['median'] * scale:.{digits}f} ({s['min'] * scale:.{digits}f}..{s['max'] * scale:.{digits}f})"


def print_report(summary: dict[str, dict[str, Any]], rounds: int, cache: Path) -> None:
    print()
    print(
        f"Warm start: spawn of `python -m pytest` to the first test body (s; {rounds} round(s), ABBA; "
        "median (min..max) of valid runs)"
    )
    goal2 = f"warm<{GOAL_MINIX_WARM_S:g}s"
    print(
        f"  {'target':<16}{'cold':<26}{'warm':<26}{'cold/warm':>10}  "
        f"{f'>={GOAL_RATIO:g}x':<8}{goal2:<10}{'valid c/w':>10}"
    )
    for name, s in summary.items():
        if "error" in s:
            print(f"  {name:<16}ERROR: {s['error']}")
            continue
        g = list(s["goals"].values())
        print(
            f"  {name:<16}{fmt_stat(s['cold']['to_body_s']):<26}{fmt_stat(s['warm']['to_body_s']):<26}"
            f"{s['ratio_of_medians']:>10.1f}  {g[0]:<8}{(g[1] if len(g) > 1 else '-'):<10}"
            f"{s['cold']['valid']:>6}/{s['warm']['valid']}"
        )
    print()
    print(
        "  Where it goes (s): floor = the same pytest run with a test using no VM (after each pair); "
        "VM start = QEMU start to working shell (the summary line)"
    )
    print(
        f"  {'target':<16}{'floor':<26}{'cold-floor':>11}{'warm-floor':>11}  "
        f"{'VM start cold':<26}{'VM start warm':<26}{'cold/warm':>10}"
    )
    for name, s in summary.items():
        if "error" not in s:
            over = [f"{x:11.3f}" if x is not None else f"{'-':>11}" for x in s["over_no_vm_s"].values()]
            print(
                f"  {name:<16}{fmt_stat(s['no_vm']['to_body_s']):<26}{''.join(over)}  "
                f"{fmt_stat(s['cold']['vm_start_s']):<26}{fmt_stat(s['warm']['vm_start_s']):<26}"
                f"{s['vm_start_ratio_of_medians']:>10.1f}"
            )
    print()
    print(f"Cost of a saved state (boot cache {cache}; MiB = 2^20 bytes; QEMU VmRSS at the test body, median)")
    print(
        f"  {'target':<16}{'entry':<14}{'on disk':>9}{'vm.state':>10}{'disks':>8}{'save s':>8}"
        f"{'guest RAM':>10}{'RSS cold':>10}{'RSS warm':>10}{'prime':>16}"
    )
    for name, s in summary.items():
        if "error" in s:
            continue
        e = s["entry"]
        rc, rw = s["cold"]["qemu_rss_kib"], s["warm"]["qemu_rss_kib"]
        p = s["prime"]
        prime = f"{p['how']} {p['to_body_s']:.2f} s"
        print(
            f"  {name:<16}{e.get('key', '?')[:12]:<14}{e.get('bytes', 0) / 2**20:9.1f}"
            f"{e.get('vm_state_bytes', 0) / 2**20:10.1f}{e.get('disk_bytes', 0) / 2**20:8.2f}"
            f"{e.get('save_seconds') or float('nan'):8.3f}{e.get('guest_memory_mib') or 0:10}"
            f"{(rc['median'] / MIB if rc.get('n') else float('nan')):10.1f}"
            f"{(rw['median'] / MIB if rw.get('n') else float('nan')):10.1f}{prime:>16}"
        )
    for name, s in summary.items():
        if s.get("prime", {}).get("save_overhead_s") is not None:
            print(
                f"  {name}: the priming run booted and saved: {s['prime']['save_overhead_s']:+.3f} s over the cold "
                "median (one sample)"
            )
    bad = [(name, x) for name, s in summary.items() for x in s.get("invalid_runs", [])]
    if bad:
        print()
        print("Invalid runs (left out of the figures):")
        for name, x in bad:
            print(f"  {name} round {x['round']} {x['variant']}: {x['why']}")


# -- main ------------------------------------------------------------------------------------


DEFAULTS: dict[str, Any] = {"rounds": 5, "arch": ["i386", "arm"]}
SMOKE: dict[str, Any] = {"rounds": 1, "arch": ["i386"]}


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="minimal run, to check that the script works (not a measurement): --rounds 1 --arch i386 unless given "
        "(reference guest only unless the MINIX options are given); about 25 s",
    )
    ap.add_argument("--rounds", type=int, help="timed rounds, each one cold and one warm run, ABBA (default 5)")
    ap.add_argument(
        "--arch",
        action="append",
        choices=("i386", "arm", "all"),
        help="reference guest arch, repeatable; all = i386 and arm (default: i386 and arm)",
    )
    ap.add_argument(
        "--minix-image", type=Path, help="also MINIX i386 from this raw or qcow2 disk image (never written)"
    )
    ap.add_argument("--minix-boot-dir", type=Path, help="kernel and mod01_ds ... modNN files for --minix-image")
    ap.add_argument("--timeout", type=float, default=600.0, help="per child pytest, seconds (default 600)")
    ap.add_argument(
        "--keep-states",
        action="store_true",
        help="keep the boot cache entries this run created (default: removed at the end)",
    )
    ap.add_argument("--json", type=Path, help="write every run and the summary here")
    ap.add_argument(
        "--log-dir", type=Path, help="keep the test project, each run's output and VM logs here (default: temporary)"
    )
    args = ap.parse_args(argv)
    if (args.minix_image is None) != (args.minix_boot_dir is None):
        ap.error("--minix-image and --minix-boot-dir go together")
    if args.minix_image is not None:
        args.minix_image = args.minix_image.expanduser().resolve()
        args.minix_boot_dir = args.minix_boot_dir.expanduser().resolve()
        if not args.minix_image.is_file() or not args.minix_boot_dir.is_dir():
            ap.error(f"no such image {args.minix_image} or boot directory {args.minix_boot_dir}")
    for name, default in DEFAULTS.items():
        if getattr(args, name) is None:
            setattr(args, name, SMOKE[name] if args.smoke else default)
    if args.rounds < 1:
        ap.error("--rounds takes at least 1")
    arches = list(dict.fromkeys(a for x in args.arch for a in (["i386", "arm"] if x == "all" else [x])))
    targets = [Target("reference", a) for a in arches]
    if args.minix_image is not None:
        targets.append(
            Target("minix", "i386", (f"--minix-image={args.minix_image}", f"--minix-boot-dir={args.minix_boot_dir}"))
        )

    def on_term(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # also when started in the background
    cache = cache_root()
    from_env = bool(os.environ.get(CACHE_ENV))
    log(
        f"boot cache: {cache / 'states'} "
        + (f"(from ${CACHE_ENV})" if from_env else f"(the default cache: ${CACHE_ENV} is not set)")
    )
    info = scale_host_info()
    info.pop("arch", None)
    info.update(
        {
            "targets": [t.name for t in targets],
            "harness": harness_version(),
            "cache_root": str(cache),
            "cache_from_env": from_env,
            **(
                {"minix_image": str(args.minix_image), "minix_boot_dir": str(args.minix_boot_dir)}
                if args.minix_image
                else {}
            ),
        }
    )
    cleanup = Cleanup()
    created: list[Path] = []
    raw: dict[str, Any] = {}
    t = time.monotonic()
    with work_directory(args.log_dir) as work:
        project = work / "project"
        project.mkdir(parents=True, exist_ok=True)
        (project / "pytest.ini").write_text("[pytest]\n")  # the rootdir: no configuration above applies
        (project / TEST_NAME).write_text(TEST_FILE)
        try:
            for target in targets:
                raw[target.name] = bench_target(
                    cleanup, target, args.rounds, project, work / "runs", args.timeout, created
                )
        except KeyboardInterrupt:
            log("interrupted: every child pytest (and its VM) is being shut down")
            return 130
        finally:
            cleanup.close()
            if not args.keep_states:
                for path in created:
                    BootCache(path.parent).remove(path)
                    log(f"removed the boot cache entry this run created: {path}")
    info["loadavg_end"] = os.getloadavg()
    info["runtime_s"] = time.monotonic() - t
    info["entries_removed"] = [str(p) for p in created] if not args.keep_states else []
    summary = {name: summarize(target, raw[name]) for target in targets if (name := target.name) in raw}
    print_report(summary, args.rounds, cache / "states")
    print(
        f"\nhost: {info['cpu_model']}, {info['cpus']} CPUs, {info['qemu_version']}, {info['date']}, "
        f"load average {info['loadavg_start'][0]:.2f} -> {info['loadavg_end'][0]:.2f}, "
        f"run took {info['runtime_s']:.0f} s"
    )
    broken = [n for n, s in summary.items() if "error" in s or s["invalid_runs"]]
    if args.json:
        doc = {
            "info": info,
            "args": {k: str(v) for k, v in vars(args).items()},
            "summary": summary,
            "runs": raw,
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n")
        log(f"wrote {args.json}")
    if broken:
        log(f"failed or invalid runs for: {', '.join(broken)} (see above)")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
