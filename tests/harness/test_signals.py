"""Signal handlers: SIGTERM is ours only while a VM pool is open, and the previous handler comes back.

A session that boots nothing never touches SIGTERM; one that boots installs the handler
with its VM pool and restores what was there when the pool closes. Handlers of the
application (or SIG_IGN) are never replaced. The child sessions run in this process
(``runpytest_inprocess``), so the handlers can be read before, during and after.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_minix.paths import CACHE_ENV, cache_root
from pytest_minix.plugin import hooks
from pytest_minix.plugin.hooks import SignalGuard


def _app_handler(signum: int, frame: Any) -> None:
    """Stands for a handler the application under test installed."""


@pytest.fixture
def fresh_signals(monkeypatch: pytest.MonkeyPatch) -> Iterator[SignalGuard]:
    """A guard of its own (this session's pool, if any, holds the module's) and SIGTERM put back after."""
    saved = signal.getsignal(signal.SIGTERM)
    guard = SignalGuard()
    monkeypatch.setattr(hooks, "SIGNALS", guard)
    try:
        yield guard
    finally:
        signal.signal(signal.SIGTERM, saved)


@pytest.mark.parametrize("before", [signal.SIG_DFL, signal.SIG_IGN, _app_handler], ids=["default", "ignored", "app"])
def test_guard_installs_only_over_the_default_and_restores(fresh_signals: SignalGuard, before: Any) -> None:
    signal.signal(signal.SIGTERM, before)
    first, second = object(), object()
    fresh_signals.acquire(first)
    fresh_signals.acquire(second)  # a second pool (a nested session) changes nothing
    during = signal.getsignal(signal.SIGTERM)
    assert during is (hooks._terminate if before is signal.SIG_DFL else before)
    assert fresh_signals.active == (before is signal.SIG_DFL)
    fresh_signals.release(first)
    assert signal.getsignal(signal.SIGTERM) is during  # still one pool open
    fresh_signals.release(first)  # releasing twice (fixture teardown, then unconfigure) is harmless
    fresh_signals.release(second)
    assert signal.getsignal(signal.SIGTERM) is before and not fresh_signals.active


def test_guard_leaves_a_handler_replaced_meanwhile(fresh_signals: SignalGuard) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    pool = object()
    fresh_signals.acquire(pool)
    signal.signal(signal.SIGTERM, _app_handler)  # someone else took SIGTERM while the VMs ran
    fresh_signals.release(pool)
    assert signal.getsignal(signal.SIGTERM) is _app_handler


def test_guard_off_the_main_thread_installs_nothing(fresh_signals: SignalGuard) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    t = threading.Thread(target=fresh_signals.acquire, args=(object(),))
    t.start()
    t.join()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and not fresh_signals.active


def test_sigterm_raises_keyboard_interrupt_so_teardown_runs() -> None:
    with pytest.raises(KeyboardInterrupt, match="terminated by signal 15"):
        hooks._terminate(signal.SIGTERM, None)


NO_VM = """
import signal
from pytest_minix.plugin import hooks

def test_nothing_booted():
    assert signal.getsignal(signal.SIGTERM) is not hooks._terminate
"""


@pytest.mark.parametrize("before", [signal.SIG_DFL, _app_handler], ids=["default", "app"])
def test_session_that_boots_nothing_leaves_sigterm_alone(
    pytester: pytest.Pytester, fresh_signals: SignalGuard, before: Any
) -> None:
    """Not marked qemu: the plugin is loaded and configured, no VM pool is made."""
    signal.signal(signal.SIGTERM, before)
    pytester.makepyfile(test_inner=NO_VM)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--minix-guest=reference")
    result.assert_outcomes(passed=1)
    assert signal.getsignal(signal.SIGTERM) is before


BOOTS = """
import signal
from pytest_minix.plugin import hooks

def test_booted(guest):
    assert guest.shell.run("true").status == 0
    assert signal.getsignal(signal.SIGTERM) is hooks._terminate  # ours while the VM runs
"""


@pytest.fixture(scope="session")
def session_cache() -> Path:
    """The session's cache (its reference guest), read before pytester points HOME elsewhere."""
    return cache_root()


@pytest.mark.qemu
def test_session_that_boots_restores_sigterm_afterwards(
    pytester: pytest.Pytester,
    pytestconfig: pytest.Config,
    fresh_signals: SignalGuard,
    session_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(CACHE_ENV, str(session_cache))
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    arch = pytestconfig.getoption("minix_arch") or "i386"
    arch = "i386" if arch == "all" else arch
    pytester.makepyfile(test_inner=BOOTS)
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--minix-guest=reference", "--minix-accel=tcg", f"--arch={arch}"
    )
    result.assert_outcomes(passed=1)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and not fresh_signals.active
