"""Every script in benchmarks/ still runs: each one once, in its minimal mode (``--smoke``).

The scripts are found by glob, so a new one is run too, and fails here until it has a
``--smoke`` flag and a ``--json PATH`` output (see benchmarks/README.md). Each runs as a
subprocess of this venv's Python with the test session's cache (``PYTEST_MINIX_CACHE``), in a
private runtime directory: afterwards no state directory and no QEMU started under it may
remain (QEMUs are found by that directory in their command line, never by name).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from pytest_minix.paths import CACHE_ENV, cache_root

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = sorted(BENCHMARKS.glob("*.py"))
# Top-level keys of each script's --json document; a script not listed needs BASE_KEYS.
BASE_KEYS = {"info", "args"}
EXPECTED_KEYS = {
    "console_flood.py": {*BASE_KEYS, "rows"},
    "harness_overhead.py": {*BASE_KEYS, "summary", "boot_rounds", "rtt"},
    "scale.py": {*BASE_KEYS, "memory", "restore", "xdist", "startup"},
    "warm_start.py": {*BASE_KEYS, "summary", "runs"},
}
# Per script; a smoke run takes 1-90 s on a 2-CPU host under TCG.
TIMEOUT = 420.0


def _arch(config: pytest.Config) -> str:
    arch = config.getoption("minix_arch", None) or config.getini("minix_arch") or "i386"
    return "i386" if arch == "all" else str(arch)


def _env(runtime: Path) -> dict[str, str]:
    env = dict(os.environ)
    for var in ("PYTEST_ADDOPTS", "PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT"):
        env.pop(var, None)
    env[CACHE_ENV] = str(cache_root())  # the session's reference guest, wherever its cache came from
    env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


def _run(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[int, str, float]:
    """Run a script in its own session; on timeout SIGTERM it (it stops its VMs and child pytests), then SIGKILL."""
    start = time.monotonic()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 60.0), (signal.SIGKILL, 10.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(grace)
                    break
        out.seek(0)
        text = out.read().decode(errors="replace")
    code = proc.returncode if proc.returncode is not None else -9
    return code, text, time.monotonic() - start


def _processes_under(path: Path) -> list[int]:
    """PIDs whose command line names ``path`` (every QEMU names its sockets in its state directory)."""
    needle = str(path).encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _no_process_left(runtime: Path) -> None:
    deadline = time.monotonic() + 10
    while (left := _processes_under(runtime)) and time.monotonic() < deadline:
        time.sleep(0.2)
    for pid in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, f"processes of the benchmark still running after it exited (killed now): {left}"


def test_every_listed_script_exists() -> None:
    assert SCRIPTS, f"no benchmark scripts in {BENCHMARKS}"
    stale = set(EXPECTED_KEYS) - {p.name for p in SCRIPTS}
    assert not stale, f"EXPECTED_KEYS names scripts that are gone: {sorted(stale)}"


@pytest.mark.qemu  # the scripts boot reference guests
@pytest.mark.parametrize("script", SCRIPTS, ids=[p.name for p in SCRIPTS])
def test_smoke_run(script: Path, tmp_path: Path, pytestconfig: pytest.Config, private_runtime: Path) -> None:
    env = _env(private_runtime)
    usage = subprocess.run(
        [sys.executable, str(script), "--help"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert usage.returncode == 0, usage.stdout + usage.stderr
    assert "--smoke" in usage.stdout, (
        f"benchmarks/{script.name} has no minimal mode: give it a --smoke flag that runs it in about a minute "
        "(see benchmarks/README.md)"
    )
    assert "--json" in usage.stdout, f"benchmarks/{script.name} cannot write its result: give it --json PATH"
    out = tmp_path / "result.json"
    argv = [sys.executable, str(script), "--smoke", "--json", str(out)]
    if "--arch" in usage.stdout:  # it boots guests: the reference guest, always under TCG
        if pytestconfig.getoption("minix_guest", None) not in (None, "reference"):
            pytest.skip("the benchmarks boot the reference guest: run with --minix-guest=reference")
        argv += ["--arch", _arch(pytestconfig)]
    if "--log-dir" in usage.stdout:
        argv += ["--log-dir", str(tmp_path / "logs")]

    code, output, took = _run(argv, tmp_path, env)
    try:
        assert code == 0, f"{' '.join(argv[1:])} exited {code} after {took:.0f} s:\n{output[-6000:]}"
        assert out.is_file(), f"{script.name} --smoke wrote no {out.name}:\n{output[-3000:]}"
        doc = json.loads(out.read_text())
        assert isinstance(doc, dict), f"{script.name}: the --json document is not an object"
        missing = EXPECTED_KEYS.get(script.name, BASE_KEYS) - doc.keys()
        assert not missing, f"{script.name}: keys {sorted(missing)} missing from its JSON (has {sorted(doc)})"
        assert doc["args"].get("smoke") == "True", doc["args"]
        if script.name == "scale.py":  # the pytest runs it timed must have passed
            assert doc["xdist"]["summary"]["all_passed"], doc["xdist"]["runs"]
    finally:
        _no_process_left(private_runtime)
