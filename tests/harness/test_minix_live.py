"""A live MINIX 3.4 under the harness: both boot paths and the MINIX-only methods, for real.

Needs a MINIX built from source (../shared/minix-build/ with its live-CD step), named by
environment variables; without them every test here skips with one reason:

* ``PYTEST_MINIX_LIVE_DISK`` and ``PYTEST_MINIX_LIVE_BOOT_DIR``: the raw disk image and the
  directory with ``kernel`` and ``mod01_ds`` ... ``mod12_init``;
* ``PYTEST_MINIX_LIVE_ISO``: the live CD made like releasetools/x86_cdimage.sh.

CI has neither (it cannot build MINIX); what these tests saw is kept as fixtures in
tests/fixtures/minix/live/ so that the parsers stay true there.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minix import VM
from pytest_minix.errors import BootStalled, BootTimeout
from pytest_minix.guest.pool import HarnessConfig, VMOptions, VMPool
from pytest_minix.guest.shell import parse_od
from pytest_minix.measure.memory import trial_outcome
from pytest_minix.measure.minix import PROBE, device_state
from pytest_minix.measure.registry import METRICS, MetricContext
from pytest_minix.media.minix import MinixSource

DISK = os.environ.get("PYTEST_MINIX_LIVE_DISK")
BOOT_DIR = os.environ.get("PYTEST_MINIX_LIVE_BOOT_DIR")
ISO = os.environ.get("PYTEST_MINIX_LIVE_ISO")
HOW = (
    "set PYTEST_MINIX_LIVE_DISK and PYTEST_MINIX_LIVE_BOOT_DIR (a MINIX disk image and its kernel and "
    "modules) and/or PYTEST_MINIX_LIVE_ISO (a MINIX live CD); ../shared/minix-build/ builds them"
)
needs_disk = pytest.mark.skipif(not (DISK and BOOT_DIR), reason=f"no live MINIX disk configured: {HOW}")
needs_iso = pytest.mark.skipif(not ISO, reason=f"no live MINIX CD configured: {HOW}")
pytestmark = pytest.mark.qemu  # every test boots MINIX (its own pools)


def _pool(tmp: Path, src: MinixSource) -> VMPool:
    return VMPool(HarnessConfig(guest="minix", arches=("i386",), accel="tcg", log_dir=tmp / "logs", minix=src))


@pytest.fixture(scope="module")
def disk_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VMPool]:
    if not (DISK and BOOT_DIR):
        pytest.skip(f"no live MINIX disk configured: {HOW}")
    pool = _pool(tmp_path_factory.mktemp("live-disk"), MinixSource(image=Path(DISK), boot_dir=Path(BOOT_DIR)))
    try:
        yield pool
    finally:
        pool.close()


@pytest.fixture
def minix(disk_pool: VMPool) -> VM:
    return disk_pool.get("i386")


@needs_iso
def test_live_cd_boots_from_the_cd_it_was_given(tmp_path: Path) -> None:
    """The path every user takes: kernel and modules read out of the CD (mixed Rock Ridge), root found on it."""
    pool = _pool(tmp_path, MinixSource(image=Path(str(ISO))))
    try:
        vm = pool.booted("i386")  # a real boot of the CD, also when the shared VM starts from the boot cache
        assert vm.shell.run("uname -sr").stdout == "Minix 3.4.0\n"
        assert vm.shell.run("mount | head -n 1").stdout.split()[2:4] == ["/", "type"]
        assert "isofs" in vm.shell.run("mount | head -n 1").stdout  # root is the CD itself
        names = set(vm.timeline.as_dict())
        assert {"kernel", "root", "multiuser", "services", "daemons", "login", "shell"} <= names
    finally:
        pool.close()


@needs_disk
def test_typed_text_reaches_minix_byte_for_byte(minix: VM, tmp_path: Path) -> None:
    """Line editing (libedit) and output tab expansion are off: TABs, backslashes and ^S/^Q/^V pass."""
    r = minix.shell.run("printf 'a\\tb\\\\c\\n'; echo 'tab\there' 'back\\slash'")
    assert r.stdout == "a\tb\\c\ntab\there back\\slash\n"
    name = "/tmp/tab\there back\\slash \x11\x13\x16"
    src = tmp_path / "in.bin"
    src.write_bytes(bytes(range(256)) * 4)
    minix.shell.put(src, name)
    assert minix.shell.get(name, tmp_path / "out.bin") == src.read_bytes()
    listed = parse_od(minix.shell.run("ls /tmp | od -An -v -tx1").stdout)
    assert name.removeprefix("/tmp/").encode() + b"\n" in listed  # the guest's own name for it, byte for byte


@needs_disk
def test_the_posix_suite_sees_a_terminal_on_stdin(minix: VM) -> None:
    """POSIX test 3 checks its stdin with tcgetattr: it must run from the terminal, as on the console."""
    assert minix.shell.run("test -t 0 && echo tty || echo not-a-tty").stdout == "not-a-tty\n"
    assert minix.shell.run("test -t 0 && echo tty || echo not-a-tty", tty_stdin=True).stdout == "tty\n"
    r = minix.shell.run("cd /usr/tests/minix-posix && ./run -t 3; cd /", timeout=300, tty_stdin=True)
    assert "Test  3 ok" in r.stdout, r.stdout


@needs_disk
def test_boot_processes_read_from_kmains_table(disk_pool: VMPool) -> None:
    m = METRICS["boot.processes"].measure(MetricContext(disk_pool, "i386"))
    assert m.unmeasurable is None, m.unmeasurable
    assert m.samples == [17.0]
    assert m.extra["kernel_tasks"] == ["asyncm", "idle", "clock", "system", "kernel"]
    assert m.extra["boot_modules"][0] == "ds" and m.extra["boot_modules"][-1] == "init"


@needs_disk
def test_driver_restart_is_bounded_and_reports_the_device(disk_pool: VMPool) -> None:
    shared = disk_pool.get("i386")
    start = time.monotonic()
    m = METRICS["rel.driver_restart"].measure(MetricContext(disk_pool, "i386"))
    assert time.monotonic() - start < 200  # every read is bounded: no 60 s hang per probe
    trials = m.extra["trials"]
    assert [t["crash"].split()[0] for t in trials] == ["minix-service", "kill"]
    for t in trials:
        assert t["device_before"] == "works"
        assert t["device_states_after"], t
    assert m.samples in ([0.0], [1.0])
    # The crashes happened on a VM of the metric's own: the shared one still has a working device.
    assert disk_pool.get("i386") is shared
    assert device_state(shared.shell.run(PROBE, timeout=60).stdout) == "works"


@needs_disk
def test_a_starved_boot_stalls_and_says_so(disk_pool: VMPool) -> None:
    """Too little RAM: the boot stops printing; it is given up after the stall time, not the boot timeout."""
    start = time.monotonic()
    with pytest.raises(BootTimeout) as exc:
        disk_pool.boot("i386", VMOptions(memory=16, first_output_timeout=20, stall_timeout=20))
    took = time.monotonic() - start
    assert took < 120, f"a starved boot took {took:.0f} s to be given up"
    text = Path(exc.value.log_path).read_text(errors="replace") if exc.value.log_path else ""
    outcome, why = trial_outcome(exc.value, text, False)
    assert outcome in ("out of memory", "stalled", "panic", "nothing printed"), (outcome, why)
    if outcome in ("out of memory", "stalled"):
        assert isinstance(exc.value, BootStalled)


@needs_disk
def test_minix_starts_warm_from_the_boot_cache_clean_and_on_time(tmp_path: Path) -> None:
    """A second pool starts MINIX from the state the first saved: no boot, the same clean guest, the clock set."""
    src = MinixSource(image=Path(str(DISK)), boot_dir=Path(str(BOOT_DIR)))
    states = tmp_path / "states"

    def pool(name: str) -> VMPool:
        return VMPool(
            HarnessConfig(
                guest="minix", arches=("i386",), accel="tcg", log_dir=tmp_path / name, minix=src, boot_cache=states
            )
        )

    first = pool("first")
    try:
        vm = first.get("i386")
        assert [s.how for s in first.starts] == ["cold"] and first.starts[0].state
        vm.shell.run("echo dirty > /root/pm-warm-dirt").check()  # after the save: must not come back
    finally:
        first.close()
    time.sleep(3)  # the saved guest clock stands still meanwhile
    second = pool("second")
    try:
        vm = second.get("i386")
        (start,) = second.starts
        assert start.how == "warm" and second.boots == [] and vm.boot is None
        assert start.clock_lag >= 3
        assert vm.shell.run("uname -sr").stdout == "Minix 3.4.0\n"
        assert vm.shell.run("test -e /root/pm-warm-dirt").status == 1
        guest_now = int(vm.shell.run("date +%s").stdout)
        assert abs(guest_now - time.time()) < 3  # set from the host's clock (1 s resolution)
        log = vm.log_path.read_text(errors="replace")
        assert "login:" not in log and "MINIX 3" not in log  # no boot on this console
        # Its own disk overlay is writable and backed by the saved layer, which stays unchanged.
        vm.shell.run("echo new > /root/pm-warm-new && sync").check()
    finally:
        second.close()
