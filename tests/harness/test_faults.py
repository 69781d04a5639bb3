"""Fault matrix against a real guest: hangs, reboots, a killed QEMU, floods, binary bytes, crashed drivers.

Each row injects one fault into a real QEMU guest and checks that the harness reports it
clearly and promptly, that the pool hands out a healthy VM afterwards, and that nothing is
left behind: every base image (disk, CD, kernel, modules) is unchanged (SHA-256), every QEMU the test started is
gone (checked by PID, never by name) and the released VMs' state directories are removed.
Run each row several times with ``--fault-trials N``. Faults that break a VM use the pool's
shared VM (``vm_pool.get``, which must then boot a replacement) or a VM of their own.
"""

from __future__ import annotations

import hashlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minix import VM, CommandTimeout
from pytest_minix.errors import GuestPanic, VMError
from pytest_minix.guest.pool import VMOptions, VMPool
from pytest_minix.media.bootmedia import BootMedia
from pytest_minix.plugin.media import need_media
from pytest_minix.qemu.statedir import QEMU_PIDS

pytestmark = pytest.mark.usefixtures("fault_trial")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS in /proc/self/status")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def base_images(media: BootMedia) -> list[Path]:
    """Every file the guest boots from (disks, CD, kernel, modules, initrd): none may ever change."""
    paths = list(media.disks.values())
    for value in media.files.values():
        paths += [Path(p) for p in str(value).split(",")]
    return sorted({p for p in paths if p.is_file()})


class Faults:
    """One test's view of the pool: what it booted, and the checks that nothing leaked."""

    def __init__(self, pool: VMPool, arch: str) -> None:
        self.pool = pool
        self.arch = arch
        self.guest = pool.profile.name
        self.images = {p: _sha256(p) for p in base_images(pool.media(arch))}
        self.pids_before = set(self.qemu_pids())
        self.entries_before = self.vm_dirs()
        self.own: list[VM] = []
        self.last_shared: VM | None = None

    def qemu_pids(self) -> list[int]:
        """Every QEMU the pool started, in order (the state directory records each PID at spawn)."""
        try:
            return [int(x) for x in (self.pool.state.path / QEMU_PIDS).read_text().split()]
        except FileNotFoundError:
            return []

    def vm_dirs(self) -> set[Path]:
        """The per-VM directories in the session's state directory (sockets, overlays)."""
        return {p for p in self.pool.state.path.iterdir() if p.is_dir()}

    def boot(self, options: VMOptions | None = None) -> VM:
        vm = self.pool.boot(self.arch, options)
        self.own.append(vm)
        return vm

    def shared(self) -> VM:
        """The pool's shared VM (booting a replacement when the current one is broken)."""
        self.last_shared = self.pool.get(self.arch)
        return self.last_shared

    def new_pids(self) -> list[int]:
        return [p for p in self.qemu_pids() if p not in self.pids_before]

    def verify(self) -> None:
        """Release the test's own VMs, then: disk unchanged, no QEMU and no state left but the pool's shared VM."""
        for vm in self.own:
            self.pool.release(vm)
        # The pool's shared VM may have been (re)booted by the test: the pool keeps it for later tests.
        keep = self.last_shared
        keep_pid = keep.machine.pid if keep is not None else None
        leftover = [p for p in self.new_pids() if p != keep_pid and _alive(p)]
        assert not leftover, f"QEMU processes started by the test still exist: {leftover}"
        allowed = self.entries_before | ({keep.machine.dir} if keep is not None else set())
        extra = self.vm_dirs() - allowed
        assert not extra, f"state left behind by released VMs: {sorted(map(str, extra))}"
        changed = [str(p) for p, sha in self.images.items() if _sha256(p) != sha]
        assert not changed, f"base images changed: {changed}"


@pytest.fixture
def faults(request: pytest.FixtureRequest, vm_pool: VMPool, fault_arch: str) -> Iterator[Faults]:
    need_media(request, vm_pool, fault_arch)
    f = Faults(vm_pool, fault_arch)
    try:
        yield f
    finally:
        f.verify()


def _replaced(f: Faults, broken: VM) -> VM:
    """The pool's next VM after ``broken``: a new QEMU whose shell works; the broken one is gone."""
    assert broken.broken is not None
    old_pid = broken.machine.pid
    assert old_pid is not None
    vm = f.shared()
    assert vm is not broken and vm.machine.pid != old_pid
    assert vm.broken is None
    assert vm.shell.run("echo fresh").stdout == "fresh\n"
    assert not _alive(old_pid), f"the broken VM's QEMU {old_pid} is still running"
    assert not broken.machine.dir.exists()
    return vm


# -- 1. the guest hangs mid-command ------------------------------------------------------


def test_interruptible_hang_times_out_and_resyncs(faults: Faults) -> None:
    vm = faults.shared()
    start = time.monotonic()
    with pytest.raises(CommandTimeout) as exc:
        vm.shell.run("sleep 600", timeout=2)
    assert time.monotonic() - start < 15
    msg = str(exc.value)
    assert "'sleep 600'" in msg and "within 2.0 s" in msg
    assert "Last console lines:" in msg and str(vm.log_path) in msg
    # Ctrl-C interrupted sleep and a fresh marker resynchronised the shell: same VM, still healthy.
    assert vm.broken is None
    r = vm.shell.run("echo after-hang; echo $?")
    assert r.stdout.startswith("after-hang\n")
    assert faults.shared() is vm


UNINTERRUPTIBLE = "sh -c 'trap \"\" INT; while :; do sleep 1; done'"


def test_uninterruptible_hang_breaks_vm_and_pool_boots_fresh(faults: Faults) -> None:
    vm = faults.shared()
    # The child ignores SIGINT (and so does its sleep, which inherits the ignored signal):
    # Ctrl-C cannot end it, the resync marker stays queued in the tty, the VM is unusable.
    with pytest.raises(CommandTimeout, match=r"did not finish within 3\.0 s") as exc:
        vm.shell.run(UNINTERRUPTIBLE, timeout=3)
    assert str(vm.log_path) in str(exc.value)
    assert vm.broken is not None and "no answer after interrupting" in vm.broken
    with pytest.raises(VMError, match="unusable"):
        vm.shell.run("echo never")
    _replaced(faults, vm)


# -- 2. the guest reboots during a command ------------------------------------------------


# How each guest is made to reboot in the middle of a command: QEMU reports a guest RESET.
REBOOTS = {
    "reference": {"reboot-f": "reboot -f", "sysrq-b": "echo b > /proc/sysrq-trigger"},
    "minix": {"reboot": "reboot"},  # NetBSD's reboot(8): sync, then reboot(2) through PM and the kernel
}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "how" in metafunc.fixturenames and metafunc.function.__name__ == "test_reboot_during_command_fails_fast":
        guest = metafunc.config.getoption("minix_guest") or metafunc.config.getini("minix_guest") or "minix"
        rows = REBOOTS.get(str(guest), {})
        metafunc.parametrize("how", list(rows.values()), ids=list(rows))


def test_reboot_during_command_fails_fast(faults: Faults, how: str) -> None:
    vm = faults.shared()
    at_start = [ev for ev in vm.qmp.events("RESET") if ev.data.get("guest")]
    assert not at_start, "QEMU emitted a guest RESET at start (-S, cont): it would read as a reboot"
    assert vm.machine.exit_reason() is None
    start = time.monotonic()
    with pytest.raises(VMError, match=r"the guest rebooted \(QMP RESET") as exc:
        vm.shell.run(f"{how}; sleep 60", timeout=60)
    took = time.monotonic() - start
    assert took < 10, f"the reboot was noticed only after {took:.1f} s"
    assert not isinstance(exc.value, CommandTimeout)
    assert str(vm.log_path) in str(exc.value)
    assert any(ev.data.get("guest") for ev in vm.qmp.events("RESET"))
    _replaced(faults, vm)


# -- 3. QEMU is killed with SIGKILL ---------------------------------------------------------


def _kill_new_qemu(f: Faults, when: threading.Event | None, killed: list[int]) -> threading.Thread:
    """A thread that SIGKILLs the next QEMU the pool starts, at once or once ``when`` is set."""
    known = set(f.qemu_pids())

    def run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            new = [p for p in f.qemu_pids() if p not in known]
            if new and (when is None or when.wait(0.005)):
                os.kill(new[0], signal.SIGKILL)
                killed.append(new[0])
                return
            time.sleep(0.002)

    th = threading.Thread(target=run, name="fault-killer", daemon=True)
    th.start()
    return th


@pytest.mark.parametrize("stage", ["launch", "kernel"])
def test_qemu_killed_during_boot(faults: Faults, stage: str) -> None:
    # "launch": the moment QEMU's PID exists (before its sockets); "kernel": on the first console line.
    first_line = threading.Event() if stage == "kernel" else None
    if first_line is not None:
        faults.pool.line_listeners.append(lambda _line: first_line.set())
    killed: list[int] = []
    try:
        th = _kill_new_qemu(faults, first_line, killed)
        start = time.monotonic()
        with pytest.raises(VMError) as exc:
            faults.boot()
        took = time.monotonic() - start
        th.join(5)
    finally:
        if first_line is not None:
            faults.pool.line_listeners.pop()
    assert killed, "the killer thread never saw QEMU start"
    assert took < 15, f"the boot failure took {took:.1f} s"
    assert not _alive(killed[0])
    msg = str(exc.value)
    assert "killed by signal 9" in msg, msg  # QEMU's exit, not just "the console closed"


def test_qemu_killed_during_command_fails_fast(faults: Faults) -> None:
    vm = faults.shared()
    pid = vm.machine.pid
    assert pid is not None
    timer = threading.Timer(1.0, os.kill, (pid, signal.SIGKILL))
    timer.start()
    start = time.monotonic()
    try:
        with pytest.raises(VMError) as exc:
            vm.shell.run("sleep 30", timeout=60)
    finally:
        timer.cancel()
    took = time.monotonic() - start
    assert took < 5, f"QEMU's death was noticed only after {took:.1f} s"
    assert not isinstance(exc.value, CommandTimeout)
    assert "killed by signal 9" in str(exc.value)
    assert "killed by signal 9" in (vm.broken or "")
    _replaced(faults, vm)


# -- 3b. a command ends the login shell -------------------------------------------------------


def test_command_that_ends_the_login_shell_fails_fast(faults: Faults) -> None:
    vm = faults.shared()
    start = time.monotonic()
    with pytest.raises(VMError, match="ended the guest's login shell") as exc:
        vm.shell.run("exit 3", timeout=60)
    took = time.monotonic() - start
    assert not isinstance(exc.value, CommandTimeout)
    assert took < 15, f"the lost shell was noticed only after {took:.1f} s"
    assert "( exit 3 )" in str(exc.value) and str(vm.log_path) in str(exc.value)
    assert vm.broken
    _replaced(faults, vm)


def test_output_that_looks_like_a_login_prompt_is_only_output(faults: Faults) -> None:
    vm = faults.shared()
    r = vm.shell.run("printf 'x login: '; sleep 1; echo done", timeout=30)
    assert (r.status, r.stdout) == (0, "x login: done\n")
    assert vm.broken is None


# -- 4. console flood and binary bytes --------------------------------------------------------

FLOOD_CAP = 8 << 20  # the console's default buffer: the flood must overflow it
FLOOD_BYTES = FLOOD_CAP + 2_000_000


def test_console_flood_is_bounded_and_prompt_survives(faults: Faults) -> None:
    vm = faults.boot()
    assert vm.console._max_pending == FLOOD_CAP
    rss_before = _rss_kib()
    r = vm.shell.run(f"yes pytest-minix-flood | head -c {FLOOD_BYTES}", timeout=300)
    growth_mib = (_rss_kib() - rss_before) / 1024
    assert r.status == 0
    assert r.truncated
    note = r.stdout.split("\n", 1)[0]
    assert note.startswith("[pytest-minix: ") and note.endswith(" bytes of output dropped]")
    dropped = int(note.split()[1])
    kept = r.stdout.split("\n", 1)[1]
    assert dropped > FLOOD_BYTES - FLOOD_CAP
    assert 0 < len(kept) <= FLOOD_CAP
    assert set(kept.splitlines()[1:-1]) == {"pytest-minix-flood"}  # whole lines, the first may be cut
    assert growth_mib < 100, f"harness RSS grew by {growth_mib:.0f} MiB"
    # The prompt was found, and the next command answers exactly.
    assert vm.shell.run("echo after-flood").stdout == "after-flood\n"


def test_flood_below_cap_is_captured_whole(faults: Faults) -> None:
    vm = faults.shared()
    n = 200_000
    r = vm.shell.run(f"yes 0123456789abcdef | head -c {n}", timeout=120)
    assert r.status == 0 and not r.truncated
    assert len(r.stdout) == n
    assert vm.shell.run("echo after").stdout == "after\n"


def test_binary_bytes_on_console(faults: Faults) -> None:
    vm = faults.shared()
    for _ in range(3):
        r = vm.shell.run("head -c 4096 /dev/urandom", timeout=60)
        assert r.status == 0
        assert r.stdout  # undecodable bytes became U+FFFD, nothing crashed
    # Raw bytes that look like the harness's own markers and control characters.
    r = vm.shell.run("printf '\\036S999\\n\\000\\377\\033[6n\\036R999 7\\n\\r\\003'", timeout=30)
    assert r.status == 0
    assert vm.broken is None
    assert vm.shell.run("echo after-binary").stdout == "after-binary\n"


# -- 5. the guest stops running (a frozen machine) ---------------------------------------------


def test_frozen_guest_times_out_and_the_pool_boots_fresh(faults: Faults) -> None:
    """QMP ``stop`` freezes every vCPU: the shell cannot answer even Ctrl-C, the VM is given up."""
    vm = faults.shared()
    vm.qmp.execute("stop")
    start = time.monotonic()
    with pytest.raises(CommandTimeout, match=r"did not finish within 3\.0 s"):
        vm.shell.run("echo frozen", timeout=3)
    assert time.monotonic() - start < 30
    assert vm.broken is not None and "no answer after interrupting" in vm.broken
    _replaced(faults, vm)


# -- 6. MINIX: a crashed driver or server, restarted by RS ------------------------------------------


KILL_RANDOM = "kill -9 $(ps -ax | awk '$5 == \"/service/random\" {print $1}')"


@pytest.mark.parametrize("crash", ["minix-service fi random", KILL_RANDOM], ids=["fi-random", "kill-random"])
def test_crashed_driver_is_reported_as_noise_and_the_shell_goes_on(faults: Faults, crash: str) -> None:
    """RS restarts the driver; its ``panic: Crash!`` lines are not taken for a guest panic or output."""
    if faults.guest != "minix":
        pytest.skip("drivers restarted by a reincarnation server exist on MINIX only")
    vm = faults.shared()
    r = vm.shell.run(f"{crash}; sleep 2; echo after-crash", timeout=60)
    assert r.stdout.endswith("after-crash\n"), r
    assert "panic" not in r.stdout
    assert vm.broken is None
    assert vm.shell.run("echo still-here").stdout == "still-here\n"
    assert faults.shared() is vm


def test_core_server_crash_is_reported_at_once(faults: Faults) -> None:
    """A core server RS cannot restart (PM): RS exits and the system is dead; the harness says so at once."""
    if faults.guest != "minix":
        pytest.skip("MINIX's reincarnation server and core servers exist on MINIX only")
    vm = faults.shared()
    start = time.monotonic()
    with pytest.raises(GuestPanic, match="core system service died: service 'pm'") as exc:
        vm.shell.run("minix-service fi pm; sleep 30", timeout=120)
    assert time.monotonic() - start < 20
    assert str(vm.log_path) in str(exc.value)
    assert vm.broken
    _replaced(faults, vm)
