"""Fixtures of the harness self-tests, and ``--fault-trials`` for the fault matrix (test_faults.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from loopback_http import LoopbackHTTPServer


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--fault-trials", dest="fault_trials", type=int, default=1, metavar="N",
        help="run each fault-injection test (tests/harness/test_faults.py) N times (default 1)",
    )  # fmt: skip


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
