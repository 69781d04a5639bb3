"""No QEMU outlives pytest: normal exit, SIGINT, SIGTERM, SIGKILL (PIDs checked, never names)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_minix.qemu import statedir

# Rows of the fault matrix: repeated by --fault-trials, checked for leftovers (conftest.no_leaks).
# Each boots a guest in a child pytest.
pytestmark = [pytest.mark.usefixtures("fault_trial", "no_leaks"), pytest.mark.qemu]

INNER = """
import os, time
from pathlib import Path

def test_hold(guest):
    out = Path(os.environ["PM_OUT"])
    out.write_text(f"{guest.machine.pid} {guest.machine.state.path}")
    if os.environ.get("PM_HOLD"):
        time.sleep(600)
"""


def _gone(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state in ("Z", "X")  # a zombie has already died


def _wait_gone(pid: int, timeout: float = 8.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _gone(pid):
            return True
        time.sleep(0.1)
    return _gone(pid)


def _inner_session(tmp_path: Path, pytestconfig: pytest.Config, hold: bool) -> tuple[subprocess.Popen[bytes], Path]:
    (tmp_path / "test_inner.py").write_text(INNER)
    out = tmp_path / "out.txt"
    env = dict(os.environ, PM_OUT=str(out))
    if hold:
        env["PM_HOLD"] = "1"
    arch = pytestconfig.getoption("minix_arch") or "i386"
    arch = "i386" if arch == "all" else arch
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--arch={arch}",
            "--minix-guest=reference",
            "--minix-accel=tcg",
            f"--basetemp={tmp_path / 'bt'}",
            str(tmp_path / "test_inner.py"),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    return proc, out


def _wait_for(out: Path, proc: subprocess.Popen[bytes], timeout: float = 300) -> tuple[int, Path]:
    deadline = time.monotonic() + timeout
    while not out.exists() or not out.read_text():
        if proc.poll() is not None:
            pytest.fail(f"inner pytest ended early:\n{proc.stdout.read().decode() if proc.stdout else ''}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("inner pytest never booted its guest")
        time.sleep(0.1)
    pid, state = out.read_text().split()
    return int(pid), Path(state)


def test_normal_exit_leaves_no_qemu(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    proc, out = _inner_session(tmp_path, pytestconfig, hold=False)
    output = proc.communicate(timeout=300)[0].decode()
    assert proc.returncode == 0, output
    pid, state = _wait_for(out, proc)
    assert _wait_gone(pid, 2), f"QEMU {pid} still running after pytest exited"
    assert not state.exists(), "the session's state directory was left behind"


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_session_cleans_up(tmp_path: Path, pytestconfig: pytest.Config, sig: signal.Signals) -> None:
    proc, out = _inner_session(tmp_path, pytestconfig, hold=True)
    pid, state = _wait_for(out, proc)
    assert not _gone(pid)
    proc.send_signal(sig)
    proc.communicate(timeout=30)
    assert _wait_gone(pid, 5), f"QEMU {pid} outlived pytest after {sig.name}"
    assert not state.exists(), f"state directory left behind after {sig.name}"


def test_sigkill_kills_qemu_and_next_session_sweeps(tmp_path: Path, pytestconfig: pytest.Config) -> None:
    proc, out = _inner_session(tmp_path, pytestconfig, hold=True)
    pid, state = _wait_for(out, proc)
    proc.kill()
    proc.wait(10)
    # PR_SET_PDEATHSIG: the kernel kills QEMU when pytest's spawner thread dies.
    assert _wait_gone(pid, 5), f"QEMU {pid} outlived a SIGKILLed pytest"
    assert state.exists(), "nothing can clean up after SIGKILL at once"
    removed = statedir.sweep(state.parent)
    assert state in removed and not state.exists()
