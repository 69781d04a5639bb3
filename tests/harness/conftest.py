"""Fixtures of the harness self-tests, and ``--fault-trials`` for the fault matrix.

The matrix is test_faults.py (guest and QEMU faults, one pool) plus the session-level
rows marked ``@pytest.mark.usefixtures("fault_trial", "no_leaks")`` (signals, killed
workers, two sessions, full disks, bad images, KVM failure, bad claims files).

Tests that start QEMU carry the ``qemu`` marker, so ``pytest tests/harness -m "not qemu"``
runs only tests that start no QEMU. It is set here for every test that uses a VM fixture
(``QEMU_FIXTURES``, followed through the fixture closure) and by hand (``pytestmark`` or
``@pytest.mark.qemu``) on tests that start QEMU another way: their own ``VMPool``, a child
pytest, the CLI or a benchmark script. (Not ``vm``: ``@pytest.mark.vm(...)`` is the
plugin's marker that gives a test a VM of its own.) A test without the marker that starts
a real ``qemu-system-*`` fails: in this process an audit hook refuses the spawn, and child
processes find stand-ins first on PATH that refuse too. Capability queries
(``--version``, ``-machine help``) are let through: they run no machine.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


# Fixtures that boot a guest or hand out a pool that does (the plugin's, pytest_minix.plugin).
QEMU_FIXTURES = frozenset(
    {"vm_pool", "minix_config", "guest", "fresh_guest", "booted_guest", "minix_host", "claim_verdict", "minix_measure"}
)


@pytest.hookimpl(tryfirst=True)  # before pytest's own hook deselects by -m
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``qemu`` every test whose fixtures (``fixturenames`` is the whole closure) start a VM."""
    for item in items:
        if QEMU_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("qemu") is None:
            item.add_marker(pytest.mark.qemu)


# -- no QEMU in a test not marked qemu -------------------------------------------------------------
_QUERIES = {"--version", "-version", "--help", "-help"}


def _is_query(argv: list[str]) -> bool:
    """``qemu --version`` or ``qemu -machine help``: asks the binary what it offers, runs no machine."""
    return (len(argv) == 2 and argv[1] in _QUERIES) or (len(argv) == 3 and argv[2] == "help")


class QemuGuard:
    """The test running now, the installed QEMUs (real paths), and the starts of them it was refused."""

    def __init__(self, nodeid: str, real: frozenset[str]) -> None:
        self.nodeid = nodeid
        self.real = real
        self.refused: list[str] = []

    def is_real_qemu(self, argv: list[str], env: Any) -> bool:
        """Whether ``argv`` runs an installed ``qemu-system-*`` (not a test's own stand-in script)."""
        prog = argv[0] if argv else ""
        if not os.path.basename(prog).startswith("qemu-system-"):
            return False
        path = prog if "/" in prog else shutil.which(prog, path=(env or os.environ).get("PATH"))
        return path is not None and os.path.realpath(path) in self.real


_guard: QemuGuard | None = None


def _audit(event: str, args: tuple[Any, ...]) -> None:
    """Refuse, in this process and any thread of it, a real QEMU started by a test not marked ``qemu``."""
    if event != "subprocess.Popen" or _guard is None:
        return
    _executable, cmd, _cwd, env = args
    argv = [os.fsdecode(a) for a in cmd] if isinstance(cmd, (list, tuple)) else shlex.split(os.fsdecode(cmd))
    if _is_query(argv) or not _guard.is_real_qemu(argv, env):
        return
    text = shlex.join(argv)
    _guard.refused.append(text)
    raise RuntimeError(
        f"{_guard.nodeid} is not marked qemu: refused to start QEMU: {text}. "
        "Mark it @pytest.mark.qemu (tests/harness/conftest.py)."
    )


sys.addaudithook(_audit)  # an audit hook cannot be removed: it does nothing while _guard is None

STAND_IN = """#!/bin/sh
# A stand-in for {real}, first on PATH in self-tests not marked qemu (tests/harness/conftest.py).
case "$#:$1:$2" in
  1:--version:|1:-version:|1:--help:|1:-help:|2:*:help) exec {real} "$@" ;;
esac
printf '%s\\n' "$0 $*" >> {trap}
echo "pytest-minix self-tests: refused to start QEMU in a test not marked qemu: $0 $*" >&2
exit 125
"""


@pytest.fixture(scope="session")
def qemu_stand_ins(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, frozenset[str]]:
    """A directory of stand-ins for every ``qemu-system-*`` on PATH, the file they log refused starts to,
    and the real paths of every one (Debian's qemu-system-i386 is a shell wrapper: no telling by content)."""
    bindir = tmp_path_factory.mktemp("qemu-guard")
    trap = bindir / "refused.log"
    real: set[str] = set()
    for d in os.environ.get("PATH", "").split(os.pathsep):
        for found in sorted(Path(d or ".").glob("qemu-system-*")):
            if not os.access(found, os.X_OK):
                continue
            real.add(os.path.realpath(found))
            stand_in = bindir / found.name
            if not stand_in.exists():
                stand_in.write_text(STAND_IN.format(real=shlex.quote(str(found)), trap=shlex.quote(str(trap))))
                stand_in.chmod(0o755)
    return bindir, trap, frozenset(real)


@pytest.fixture(autouse=True)
def no_qemu_unless_marked(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch, qemu_stand_ins: tuple[Path, Path, frozenset[str]]
) -> Iterator[None]:
    """A test not marked ``qemu`` that starts QEMU (itself, or in a child pytest or CLI) fails."""
    global _guard
    if request.node.get_closest_marker("qemu") is not None:
        yield
        return
    bindir, trap, real = qemu_stand_ins
    trap.write_text("")
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ.get('PATH', '')}")
    _guard = guard = QemuGuard(request.node.nodeid, real)
    try:
        yield
    finally:
        _guard = None
    refused = guard.refused + trap.read_text().splitlines()
    if refused:
        pytest.fail(
            f"{request.node.nodeid} tried to start QEMU but is not marked qemu (refused): {refused}. "
            "Give it a VM fixture or @pytest.mark.qemu, so that -m 'not qemu' stays free of QEMU.",
            pytrace=False,
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
