"""The pytest plugin: options, the ``vm_pool`` and ``guest`` fixtures, the ``vm`` marker.

Signals: while a VM pool is open (from the ``vm_pool`` fixture's setup to its teardown)
SIGTERM raises KeyboardInterrupt, so that it cleans up as Ctrl-C does (pytest tears the
fixtures down: QEMU stopped, sockets removed). The handler is installed only if SIGTERM
had its default action, and the previous one is put back when the last pool closes; a
session that boots nothing never touches signal handlers. SIGINT is left to Python and
pytest (it already raises KeyboardInterrupt).
"""

from __future__ import annotations

import base64
import signal
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_minix.errors import HarnessError
from pytest_minix.guest.pool import HarnessConfig, VMOptions, VMPool
from pytest_minix.guest.vm import VM
from pytest_minix.plugin.media import need_media
from pytest_minix.plugin.options import FLAGS, OPTIONS, check_minix, harness_config, ini_type, setting
from pytest_minix.plugin.pools import POOLS, RECORDER, StartRecorder, describe_start, vm_starts
from pytest_minix.profiles import expand_arch, load_profile
from pytest_minix.qemu.accel import AccelChooser

pytest_plugins = [
    "pytest_minix.plugin.claims",
    "pytest_minix.plugin.benchmark",
    "pytest_minix.plugin.testinfra_backend",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minix", "pytest-minix: boot guests under QEMU")
    for opt, ini, help_, _default in OPTIONS:
        group.addoption(opt, dest=ini, default=None, help=f"{help_} [ini: {ini}]")
        parser.addini(ini, help_, type=ini_type(ini), default=None)  # type: ignore[arg-type]
    for opt, ini, help_ in FLAGS:
        # None when not given, so that the ini value (a bool) decides.
        group.addoption(opt, dest=ini, action="store_true", default=None, help=f"{help_} [ini: {ini}]")
        parser.addini(ini, help_, type="bool", default=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "vm(memory=None, boot_args='', qemu_args=(), boot_timeout=None): give this test its own VM with these settings",
    )
    config.stash[POOLS] = []
    config.stash[RECORDER] = StartRecorder(config)
    config.pluginmanager.register(config.stash[RECORDER], "pytest-minix-vm-starts")
    # Bad options fail the session at start, not as one error per test.
    settings = harness_config(config, Path("vm-logs"))
    try:
        profile = load_profile(settings.guest)
        for arch in settings.arches:
            profile.arch(arch)
        AccelChooser(settings.accel)
        if profile.artifacts == "minix":
            check_minix(settings.minix)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None


def _terminate(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


class SignalGuard:
    """SIGTERM -> KeyboardInterrupt while at least one holder (an open VM pool) exists.

    The first ``acquire`` installs the handler, if SIGTERM still has its default action (a
    handler of the application, or SIG_IGN, is left alone); the last ``release`` restores
    what was there, unless someone replaced our handler meanwhile. Only the main thread
    can set handlers: elsewhere nothing is installed.
    """

    SIGNALS = (signal.SIGTERM,)

    def __init__(self) -> None:
        self._holders: set[int] = set()
        self._saved: dict[signal.Signals, Any] = {}
        self._lock = threading.Lock()

    def acquire(self, holder: object) -> None:
        with self._lock:
            if not self._holders and threading.current_thread() is threading.main_thread():
                for sig in self.SIGNALS:
                    previous = signal.getsignal(sig)
                    if previous is signal.SIG_DFL:
                        signal.signal(sig, _terminate)
                        self._saved[sig] = previous
            self._holders.add(id(holder))

    def release(self, holder: object) -> None:
        with self._lock:
            if id(holder) not in self._holders:
                return
            self._holders.discard(id(holder))
            if self._holders:
                return
            for sig, previous in self._saved.items():
                if signal.getsignal(sig) is _terminate:
                    signal.signal(sig, previous)
            self._saved.clear()

    @property
    def active(self) -> bool:
        """Whether our handler is installed now."""
        return bool(self._saved)


SIGNALS = SignalGuard()


def _close_pool(pool: VMPool) -> None:
    try:
        pool.close()
    finally:
        SIGNALS.release(pool)


def pytest_unconfigure(config: pytest.Config) -> None:
    for pool in config.stash.get(POOLS, []):
        _close_pool(pool)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name in ("guest", "fresh_guest", "booted_guest"):
        if name in metafunc.fixturenames:
            arches = list(expand_arch(str(setting(metafunc.config, "minix_arch", "i386"))))
            metafunc.parametrize(name, arches, indirect=True, ids=arches)
            break


@pytest.fixture(scope="session")
def minix_config(pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory) -> HarnessConfig:
    """The session's harness settings."""
    return harness_config(pytestconfig, tmp_path_factory.getbasetemp() / "vm-logs")


@pytest.fixture(scope="session")
def vm_pool(pytestconfig: pytest.Config, minix_config: HarnessConfig) -> Iterator[VMPool]:
    """Owns at most one VM per arch for the session; reboots a VM marked broken."""
    try:
        pool = VMPool(minix_config)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None
    pytestconfig.stash[POOLS].append(pool)
    SIGNALS.acquire(pool)  # SIGTERM tears the VMs down from now on, until the pool closes
    try:
        yield pool
    finally:
        _close_pool(pool)


@pytest.fixture
def guest(request: pytest.FixtureRequest, vm_pool: VMPool) -> Iterator[VM]:
    """A healthy booted VM of the parametrized arch, logged in as root."""
    arch = getattr(request, "param", vm_pool.config.arches[0])
    need_media(request, vm_pool, arch)
    marker = request.node.get_closest_marker("vm")
    if marker is not None:
        opts = VMOptions(
            memory=marker.kwargs.get("memory"),
            boot_args=marker.kwargs.get("boot_args", ""),
            qemu_args=tuple(marker.kwargs.get("qemu_args", ())),
            boot_timeout=marker.kwargs.get("boot_timeout"),
        )
        vm = vm_pool.boot(arch, opts)
        request.node.stash[_VM] = vm
        try:
            yield vm
        finally:
            vm_pool.release(vm)
        return
    vm = vm_pool.get(arch)
    request.node.stash[_VM] = vm
    yield vm


_VM = pytest.StashKey[VM]()


@pytest.fixture
def booted_guest(request: pytest.FixtureRequest, vm_pool: VMPool) -> Iterator[VM]:
    """Like ``guest``, but one that booted in this session, so its ``timeline`` is real.

    The shared VM when it booted; when it started from the boot cache, a second VM booted
    once per session for the tests that read a boot.
    """
    arch = getattr(request, "param", vm_pool.config.arches[0])
    need_media(request, vm_pool, arch)
    vm = vm_pool.booted(arch)
    request.node.stash[_VM] = vm
    yield vm


@pytest.fixture
def fresh_guest(request: pytest.FixtureRequest, vm_pool: VMPool) -> Iterator[VM]:
    """Like ``guest``, but in its just-booted state: restored from a snapshot before the test, not rebooted."""
    arch = getattr(request, "param", vm_pool.config.arches[0])
    need_media(request, vm_pool, arch)
    vm = vm_pool.fresh(arch)
    request.node.stash[_VM] = vm
    yield vm


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    vm = item.stash.get(_VM, None)
    if vm is not None and report.failed:
        report.sections.append(
            (f"serial console ({vm.arch})", f"log: {vm.log_path}\n--- last lines ---\n{vm.console.tail(30)}")
        )
    if vm is not None and report.when == "call":
        _html_extras(report, vm)
    return report


def _html_extras(report: pytest.TestReport, vm: VM) -> None:
    """With pytest-html installed: the test's serial log, and its boot's timeline chart if matplotlib is there."""
    try:
        from pytest_html import extras
    except ImportError:
        return
    items = list(getattr(report, "extras", []))
    try:
        items.append(extras.text(vm.log_path.read_text(errors="replace")[-200_000:], name=f"serial log ({vm.arch})"))
    except OSError:
        pass
    if vm.boot is not None:
        png = _timeline_png(vm)
        if png is not None:
            items.append(extras.png(base64.b64encode(png.read_bytes()).decode(), name=f"boot timeline ({vm.arch})"))
    report.extras = items  # type: ignore[attr-defined]


def _timeline_png(vm: VM) -> Path | None:
    """The VM's boot timeline chart beside its serial log, drawn once per VM."""
    stem = vm.log_path.with_name(vm.log_path.name.removesuffix(".serial.log") + ".timeline")
    png = stem.with_name(stem.name + ".png")
    if png.exists():
        return png
    from pytest_minix.verdicts.chart import timeline_chart

    points = [("cont", 0.0), *((m.name, m.t) for m in vm.timeline.milestones)]
    try:
        timeline_chart([(f"{vm.profile.name} {vm.arch}", points)], stem, title=f"Boot of {vm.machine.name}")
    except ImportError:
        return None
    return png


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    pools = config.stash.get(POOLS, [])
    tr = terminalreporter
    missing = {reason for pool in pools for reason in pool.unavailable().values()}
    if missing:
        tr.section("pytest-minix: guest unavailable, its tests were skipped")
        for reason in sorted(missing):
            tr.write_line(reason)
    boots = [vm for pool in pools for vm in pool.boots]
    starts = vm_starts(config)
    if not boots and not starts:
        return
    tr.section("pytest-minix VMs")
    for start in starts:
        tr.write_line(describe_start(start))
    for vm in boots:
        tl = vm.boot.timeline if vm.boot else None
        login = f"login prompt at {vm.boot.login_prompt:.2f} s" if vm.boot else "did not boot"
        tr.write_line(
            f"{vm.profile.name} {vm.arch} accel={vm.accel}: {login}; "
            f"milestones {tl.as_dict() if tl else {}}; log {vm.log_path}"
        )
