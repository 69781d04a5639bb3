"""Fresh state without a reboot: ``fresh_guest`` restores the VM saved right after boot."""

from __future__ import annotations

import time

import pytest

from pytest_minix import VM

MARK = "/tmp/pm-fresh-mark"
DISK_MARK = "/mnt/disk/pm-fresh-mark"  # the reference guest's ext2 disk: disk state is restored too


def test_a_first_test_writes_files_and_changes_the_shell(fresh_guest: VM) -> None:
    pid = fresh_guest.machine.pid
    fresh_guest.shell.run(f"echo dirty > {MARK} && cd /tmp && export PM_DIRTY=1").check()
    if fresh_guest.profile.name == "reference":
        fresh_guest.shell.run(f"echo dirty > {DISK_MARK} && sync").check()
    assert fresh_guest.shell.run(f"cat {MARK}").stdout == "dirty\n"
    assert fresh_guest.machine.pid == pid


def test_the_next_test_sees_none_of_it(fresh_guest: VM) -> None:
    r = fresh_guest.shell.run(f"test -e {MARK}; echo $?; pwd; echo ${{PM_DIRTY:-clean}}")
    assert r.stdout.split() == ["1", r.stdout.split()[1], "clean"]
    assert r.stdout.split()[1] != "/tmp"
    if fresh_guest.profile.name == "reference":
        assert fresh_guest.shell.run(f"test -e {DISK_MARK}").status == 1


def test_a_test_that_kills_the_shell(fresh_guest: VM) -> None:
    # The login shell dies: a plain `guest` would be marked broken and rebooted.
    fresh_guest.console.write("kill -9 $$\r")
    time.sleep(1.0)


def test_restore_brings_the_shell_back_without_a_reboot(fresh_guest: VM, vm_pool) -> None:
    boots = len(vm_pool.boots)
    assert fresh_guest.shell.run("echo alive").stdout == "alive\n"
    assert len(vm_pool.boots) == boots  # no new boot was needed


def test_restore_is_much_faster_than_a_boot(fresh_guest: VM) -> None:
    """Functional, not a timing target (that is in benchmarks/): restoring does not reboot the guest."""
    t = fresh_guest.restore_snapshot()
    assert t < fresh_guest.timeline.get("shell").t  # type: ignore[union-attr]
    assert fresh_guest.shell.run("echo ok").stdout == "ok\n"


def test_restore_without_a_snapshot_is_an_error(vm_pool) -> None:
    from pytest_minix.errors import ConfigError

    vm = vm_pool.boot(vm_pool.config.arches[0])
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
