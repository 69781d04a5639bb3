"""The pytest plugin: options, the ``vm_pool`` and ``guest`` fixtures, the ``vm`` marker."""

from __future__ import annotations

import base64
import contextlib
import signal
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_minix.errors import ConfigError, GuestUnavailable, HarnessError
from pytest_minix.guest.pool import HarnessConfig, VMOptions, VMPool
from pytest_minix.guest.vm import VM
from pytest_minix.media.images import OFFLINE_ENV, offline_from_env
from pytest_minix.media.minix import MinixSource
from pytest_minix.profiles import ARCHES, load_profile
from pytest_minix.qemu.accel import AccelChooser

pytest_plugins = [
    "pytest_minix.plugin.claims",
    "pytest_minix.plugin.benchmark",
    "pytest_minix.plugin.testinfra_backend",
]

OPTIONS: list[tuple[str, str, str, Any]] = [
    # (option, ini name, help, default)
    ("--arch", "minix_arch", "guest arch: i386, arm or all (default i386)", "i386"),
    ("--guest", "minix_guest", "guest profile from vm/: minix (default) or reference", "minix"),
    ("--accel", "minix_accel", "accelerator: auto (KVM if it works, else TCG), kvm or tcg", "auto"),
    ("--boot-timeout", "minix_boot_timeout", "seconds to reach the login prompt (default: the guest's)", None),
    ("--vm-memory", "minix_vm_memory", "guest RAM in MiB (default: the guest's)", None),
    ("--vm-log-dir", "minix_vm_log_dir", "where serial and QEMU logs go (default: <basetemp>/vm-logs)", None),
    ("--qemu-i386", "minix_qemu_i386", "QEMU binary for i386 guests", None),
    ("--qemu-arm", "minix_qemu_arm", "QEMU binary for ARM guests", None),
    ("--minix-image", "minix_image", "your own MINIX ISO, raw or qcow2 disk image (never written)", None),
    ("--minix-release", "minix_release", "MINIX release to fetch (default: the manifest's, 3.4.0rc6)", None),
    ("--minix-boot-dir", "minix_boot_dir", "directory with kernel and modNN_* modules (for a disk image)", None),
    ("--minix-sha256", "minix_sha256", "pin the SHA-256 of the MINIX image (or of its download)", None),
    ("--minix-arm-image", "minix_arm_image", "MINIX/arm SD card image (needs a QEMU with -M beaglexm)", None),
]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minix", "pytest-minix: boot guests under QEMU")
    for opt, ini, help_, _default in OPTIONS:
        group.addoption(opt, dest=ini, default=None, help=f"{help_} [ini: {ini}]")
        parser.addini(ini, help_, default=None)
    group.addoption(
        "--vm-network",
        dest="minix_vm_network",
        action="store_true",
        default=False,
        help="give guests a user-mode NIC (no host port forwards); off by default",
    )
    group.addoption(
        "--offline",
        dest="minix_offline",
        action="store_true",
        default=False,
        help=f"never download images (also: ${OFFLINE_ENV}=1)",
    )


def _setting(config: pytest.Config, ini: str, default: Any) -> Any:
    value = config.getoption(ini)
    if value is None:
        value = config.getini(ini)
    return default if value in (None, "", []) else value


def _float(name: str, value: Any) -> float | None:
    if value is None:
        return None
    try:
        out = float(value)
    except ValueError:
        raise pytest.UsageError(f"{name} must be a number of seconds, got {value!r}.") from None
    if out <= 0:
        raise pytest.UsageError(f"{name} must be positive, got {value!r}.")
    return out


def harness_config(config: pytest.Config, log_dir: Path) -> HarnessConfig:
    """Options and ini settings as a HarnessConfig; bad values are usage errors."""
    arch = str(_setting(config, "minix_arch", "i386"))
    if arch == "all":
        arches: tuple[str, ...] = ARCHES
    elif arch in ARCHES:
        arches = (arch,)
    else:
        raise pytest.UsageError(f"--arch={arch!r} is not supported; use one of {', '.join(ARCHES)} or all.")
    memory = _setting(config, "minix_vm_memory", None)
    if memory is not None and (not str(memory).isdigit() or int(memory) < 16):
        raise pytest.UsageError(f"--vm-memory must be a whole number of MiB (at least 16), got {memory!r}.")
    custom_log = _setting(config, "minix_vm_log_dir", None)

    def path(ini: str) -> Path | None:
        value = _setting(config, ini, None)
        return Path(str(value)).expanduser().resolve() if value else None

    minix = MinixSource(
        image=path("minix_image"),
        release=_setting(config, "minix_release", None),
        boot_dir=path("minix_boot_dir"),
        sha256=str(_setting(config, "minix_sha256", "")),
        arm_image=path("minix_arm_image"),
        offline=bool(config.getoption("minix_offline")) or offline_from_env(),
    )
    return HarnessConfig(
        guest=str(_setting(config, "minix_guest", "minix")),
        arches=arches,
        accel=str(_setting(config, "minix_accel", "auto")),
        boot_timeout=_float("--boot-timeout", _setting(config, "minix_boot_timeout", None)),
        memory=int(memory) if memory is not None else None,
        log_dir=Path(custom_log).resolve() if custom_log else log_dir,
        qemu_binaries={a: str(b) for a in ARCHES if (b := _setting(config, f"minix_qemu_{a}", ""))},
        network=bool(config.getoption("minix_vm_network")),
        minix=minix,
    )


def _check_minix(src: MinixSource) -> None:
    """Bad --minix-* values fail the session at start."""
    from pytest_minix.media.releases import check_sha256, load_manifest

    check_sha256(src.sha256, "--minix-sha256")
    if src.release is not None or src.image is None:
        load_manifest().get(src.release)
    for opt, p, want_dir in (
        ("--minix-image", src.image, False),
        ("--minix-boot-dir", src.boot_dir, True),
        ("--minix-arm-image", src.arm_image, False),
    ):
        if p is not None and not (p.is_dir() if want_dir else p.is_file()):
            what = "directory" if want_dir else "file"
            raise ConfigError(f"{opt} {p}: no such {what}. Check the path.")
    if src.image is not None and src.boot_dir is None and src.release is None:
        from pytest_minix.media.iso import image_kind

        if image_kind(src.image) != "iso":
            from pytest_minix.media.minix import disk_needs_boot_files

            raise disk_needs_boot_files(src.image)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "vm(memory=None, boot_args='', qemu_args=(), boot_timeout=None): give this test its own VM with these settings",
    )
    config.stash[_POOLS] = []
    # Bad options fail the session at start, not as one error per test.
    settings = harness_config(config, Path("vm-logs"))
    try:
        profile = load_profile(settings.guest)
        for arch in settings.arches:
            profile.arch(arch)
        AccelChooser(settings.accel)
        if profile.artifacts == "minix":
            _check_minix(settings.minix)
    except HarnessError as exc:
        raise pytest.UsageError(str(exc)) from None
    # SIGTERM should clean up like Ctrl-C does: stop QEMU, remove sockets.
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)


def _terminate(signum: int, frame: types.FrameType | None) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


_POOLS = pytest.StashKey[list[VMPool]]()


def pytest_unconfigure(config: pytest.Config) -> None:
    for pool in config.stash.get(_POOLS, []):
        pool.close()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    for name in ("guest", "fresh_guest"):
        if name in metafunc.fixturenames:
            arch = str(_setting(metafunc.config, "minix_arch", "i386"))
            arches = list(ARCHES) if arch == "all" else [arch]
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
    pytestconfig.stash[_POOLS].append(pool)
    yield pool
    pool.close()


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
def fresh_guest(request: pytest.FixtureRequest, vm_pool: VMPool) -> Iterator[VM]:
    """Like ``guest``, but in its just-booted state: restored from a snapshot before the test, not rebooted."""
    arch = getattr(request, "param", vm_pool.config.arches[0])
    need_media(request, vm_pool, arch)
    vm = vm_pool.fresh(arch)
    request.node.stash[_VM] = vm
    yield vm


def need_media(request: pytest.FixtureRequest, pool: VMPool, arch: str) -> None:
    """Fetch or extract the guest's boot media (output shown live), or skip when it cannot be had."""
    capman = request.config.pluginmanager.getplugin("capturemanager")
    ctx = capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext()
    try:
        with ctx:
            pool.media(arch)
    except GuestUnavailable as exc:
        pytest.skip(str(exc))


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
    pools = config.stash.get(_POOLS, [])
    tr = terminalreporter
    missing = {reason for pool in pools for reason in pool.unavailable().values()}
    if missing:
        tr.section("pytest-minix: guest unavailable, its tests were skipped")
        for reason in sorted(missing):
            tr.write_line(reason)
    boots = [vm for pool in pools for vm in pool.boots]
    if not boots:
        return
    tr.section("pytest-minix VMs")
    for vm in boots:
        tl = vm.boot.timeline if vm.boot else None
        login = f"login prompt at {vm.boot.login_prompt:.2f} s" if vm.boot else "did not boot"
        tr.write_line(
            f"{vm.profile.name} {vm.arch} accel={vm.accel}: {login}; "
            f"milestones {tl.as_dict() if tl else {}}; log {vm.log_path}"
        )
