"""Fixtures of the harness self-tests, and ``--fault-trials`` for the fault matrix.

The matrix is test_faults.py (guest and QEMU faults, one pool) plus the session-level
rows marked ``@pytest.mark.usefixtures("fault_trial", "no_leaks")`` (signals, killed
workers, two sessions, full disks, bad images, KVM failure, bad claims files).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from loopback_http import LoopbackHTTPServer

from pytest_minix.paths import cache_root
from pytest_minix.qemu import statedir


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-trials",
        dest="fault_trials",
        type=int,
        default=1,
        metavar="N",
        help="run each row of the fault matrix (test_faults.py and the session-level fault tests) N times (default 1)",
    )


def _fault_arches(config: pytest.Config) -> list[str]:
    arch = config.getoption("minix_arch", None) or config.getini("minix_arch") or "i386"
    return ["i386", "arm"] if arch == "all" else [str(arch)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """``fault_trial`` runs over 0..N-1 (``--fault-trials N``); ``fault_arch`` over the selected ``--arch``."""
    if "fault_trial" in metafunc.fixturenames:
        n = metafunc.config.getoption("fault_trials")
        if n < 1:
            raise pytest.UsageError(f"--fault-trials must be at least 1, got {n}.")
        metafunc.parametrize("fault_trial", range(n), ids=[f"trial{i}" for i in range(n)])
    if "fault_arch" in metafunc.fixturenames:
        arches = _fault_arches(metafunc.config)
        metafunc.parametrize("fault_arch", arches, ids=arches)


@pytest.fixture
def http_server() -> Iterator[LoopbackHTTPServer]:
    """A started HTTP server on 127.0.0.1; register paths with ``http_server.add(...)``."""
    with LoopbackHTTPServer() as server:
        yield server


def _hash_tree(root: Path) -> dict[Path, str]:
    """SHA-256 of every file below ``root`` (lock files aside: taking a lock is not a write)."""
    out: dict[Path, str] = {}
    if root.is_dir():
        for path in sorted(root.rglob("*")):
            if path.is_file() and not path.name.endswith(".lock"):
                out[path] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _stale_state_dirs(root: Path) -> set[Path]:
    """State directories in ``root`` whose owner process is gone (what a crash leaves for a sweep)."""
    stale = set()
    if root.is_dir():
        for d in root.iterdir():
            try:
                owner = int((d / statedir.OWNER).read_text().split()[0])
            except (OSError, ValueError, IndexError):
                continue
            if not Path(f"/proc/{owner}").exists():
                stale.add(d)
    return stale


def _temp_entries() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("pytest-minix-*")) - {statedir.runtime_root()}


class LeakGuard:
    """What a fault test must not leave: changed base images, stale state directories, temp files."""

    def __init__(self) -> None:
        self.images_root = cache_root() / "reference"
        self.images = _hash_tree(self.images_root)
        self.runtime = statedir.runtime_root()
        self.stale = _stale_state_dirs(self.runtime)
        self.temp = _temp_entries()

    def verify(self) -> None:
        now = _hash_tree(self.images_root)
        changed = sorted(str(p) for p, h in self.images.items() if now.get(p) not in (None, h))
        assert not changed, f"base images changed during a fault test: {changed}"
        left = _stale_state_dirs(self.runtime) - self.stale
        assert not left, f"state directories of dead sessions left behind: {sorted(map(str, left))}"
        # Temp directories of live helpers (a memsave in flight) vanish within moments; ours must not stay.
        deadline = time.monotonic() + 3
        while (extra := _temp_entries() - self.temp) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not extra, f"temporary files left behind: {sorted(map(str, extra))}"


@pytest.fixture
def no_leaks() -> Iterator[LeakGuard]:
    """Checks after a session-level fault row: base images unchanged, no stale state, no temp files.

    QEMU processes are checked by each test itself, by the PIDs it recorded.
    """
    guard = LeakGuard()
    yield guard
    guard.verify()


@pytest.fixture
def private_runtime() -> Iterator[Path]:
    """An XDG_RUNTIME_DIR of the test's own, so sweeping sees only this test's sessions.

    Short, under /tmp: socket paths inside it must fit AF_UNIX's 108 bytes. At the end it
    must hold no state directory: every session cleaned up, or was swept.
    """
    run = Path(tempfile.mkdtemp(prefix="pm-", dir="/tmp"))
    os.chmod(run, 0o700)
    try:
        yield run
        root = run / f"pytest-minix-{os.getuid()}"
        left = sorted(map(str, root.iterdir())) if root.is_dir() else []
        assert not left, f"state directories left in the private runtime dir: {left}"
    finally:
        shutil.rmtree(run, ignore_errors=True)
