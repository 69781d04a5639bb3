"""Fresh state without a reboot: ``fresh_guest`` restores the VM saved right after boot.

Each test changes the guest and then restores it as the next test's ``fresh_guest`` would
(``vm_pool.fresh``), so that it checks the restore itself, alone, in any order and under xdist.
"""

from __future__ import annotations

import pytest

from pytest_minix import VM
from pytest_minix.guest.pool import VMPool

MARK = "/tmp/pm-fresh-mark"
DISK_MARK = "/mnt/disk/pm-fresh-mark"  # the reference guest's ext2 disk: disk state is restored too


# Whether the mark file exists (1: no), the shell's cwd, and whether PM_DIRTY is set.
PROBE = f"test -e {MARK}; echo $?; pwd; echo ${{PM_DIRTY:-clean}}"


def test_files_cwd_and_environment_are_gone_after_a_restore(fresh_guest: VM, vm_pool) -> None:
    vm = fresh_guest
    pid, boots = vm.machine.pid, len(vm_pool.boots)
    reference = vm.profile.name == "reference"
    # The state as the snapshot holds it, seen before anything changes: no mark, PM_DIRTY unset.
    clean = vm.shell.run(PROBE).check().stdout.split()
    assert clean[0] == "1" and clean[2] == "clean", clean
    if reference:
        assert vm.shell.run(f"test -e {DISK_MARK}").status == 1
    away = "/tmp" if clean[1] != "/tmp" else "/"  # a cwd the snapshot does not have
    vm.shell.run(f"echo dirty > {MARK} && cd {away} && export PM_DIRTY=1").check()
    if reference:
        vm.shell.run(f"echo dirty > {DISK_MARK} && sync").check()
    assert vm.shell.run(PROBE).stdout.split() == ["0", away, "1"]
    # What the next test's fresh_guest does: the same VM, restored, not rebooted.
    assert vm_pool.fresh(vm.arch) is vm
    assert vm.shell.run(PROBE).stdout.split() == clean
    if reference:
        assert vm.shell.run(f"test -e {DISK_MARK}").status == 1
    assert vm.machine.pid == pid and len(vm_pool.boots) == boots


def test_restore_brings_a_killed_shell_back_without_a_reboot(fresh_guest: VM, vm_pool) -> None:
    vm = fresh_guest
    pid, boots = vm.machine.pid, len(vm_pool.boots)
    # The login shell dies: a plain `guest` would be marked broken and rebooted.
    vm.console.write("kill -9 $$\r")
    vm.console.expect(vm.profile.login.prompt, 60, what="getty's login prompt after the shell died")
    assert vm_pool.fresh(vm.arch) is vm
    assert vm.broken is None
    assert vm.shell.run("echo alive").stdout == "alive\n"
    assert vm.machine.pid == pid and len(vm_pool.boots) == boots  # no new boot was needed


def test_restore_is_much_faster_than_a_boot(fresh_guest: VM, vm_pool: VMPool) -> None:
    """Functional, not a timing target (that is in benchmarks/): restoring does not reboot the guest."""
    t = fresh_guest.restore_snapshot()
    # The shared VM may have started from the boot cache (no timeline): compare with a real boot.
    assert t < vm_pool.booted(fresh_guest.arch).timeline.get("shell").t  # type: ignore[union-attr]
    assert fresh_guest.shell.run("echo ok").stdout == "ok\n"


def test_restore_without_a_snapshot_is_an_error(vm_pool) -> None:
    from pytest_minix.errors import ConfigError

    vm = vm_pool.boot(vm_pool.config.arches[0], warm=True)  # a VM of its own; no boot needed
    try:
        with pytest.raises(ConfigError, match=r"No snapshot named 'pm-fresh'.*saved: none"):
            vm.restore_snapshot()
        for bad in ("", "a b", "x;quit", "-f", "n\nquit", "é"):
            with pytest.raises(ConfigError, match="is not allowed"):
                vm.save_snapshot(bad)
        # Named snapshots: two states, each restored exactly.
        vm.shell.run("echo one > /tmp/state").check()
        vm.save_snapshot("one")
        vm.shell.run("echo two > /tmp/state").check()
        vm.save_snapshot("two")
        assert vm.snapshots == ["one", "two"]
        vm.restore_snapshot("one")
        assert vm.shell.run("cat /tmp/state").stdout == "one\n"
        vm.restore_snapshot("two")
        assert vm.shell.run("cat /tmp/state").stdout == "two\n"
    finally:
        vm_pool.release(vm)
