"""Self-tests against real QEMU guests (the reference guest by default, every --arch)."""

from __future__ import annotations

import hashlib
import os
import random
import time
from pathlib import Path

import pytest

from pytest_minix import VM, CommandTimeout, GuestPanic
from pytest_minix.errors import VMError
from pytest_minix.guest.pool import VMPool
from pytest_minix.guest.shell import parse_od


def test_login_gives_root_shell(guest: VM) -> None:
    r = guest.shell.run("id -u; uname -s")
    assert r.status == 0
    assert r.stdout.split() == ["0", guest.profile.uname_s]


def test_exit_status_zero_and_nonzero(guest: VM) -> None:
    assert guest.shell.run("true").status == 0
    assert guest.shell.run("false").status == 1
    assert guest.shell.run("sh -c 'exit 42'").status == 42
    assert guest.shell.run("ls /no/such/file").status != 0


def test_stdout_and_stderr_kept_apart(guest: VM) -> None:
    r = guest.shell.run("echo to-out; echo to-err >&2; echo more-out")
    assert r.stdout == "to-out\nmore-out\n"
    assert r.stderr == "to-err\n"
    quiet = guest.shell.run("echo only-out")
    assert quiet.stderr == ""


def test_output_without_trailing_newline(guest: VM) -> None:
    assert guest.shell.run("printf abc").stdout == "abc"


def test_shell_state_persists_between_commands(guest: VM) -> None:
    guest.shell.run("cd /tmp && X=persisted").check()
    assert guest.shell.run('pwd; echo "$X"').stdout == "/tmp\npersisted\n"
    guest.shell.run("cd /").check()


def test_put_get_binary_round_trip(guest: VM, tmp_path: Path) -> None:
    rng = random.Random(1234)
    data = bytes(range(256)) + rng.randbytes(3000) + b"\n\r\x00\x1e\x03'\"\\%"
    src = tmp_path / "blob.bin"
    src.write_bytes(data)
    guest.shell.put(src, "/tmp/blob.bin")
    size = guest.shell.run("wc -c < /tmp/blob.bin").check().stdout.strip()
    assert int(size) == len(data)
    back = tmp_path / "back.bin"
    assert guest.shell.get("/tmp/blob.bin", back) == data
    assert back.read_bytes() == data


def test_commands_too_long_to_type_or_with_tty_control_bytes_run_exactly(guest: VM) -> None:
    """Staged through a file: a line over MINIX's 255-byte tty line, and bytes the tty would act on."""
    long = "echo " + " ".join(f"w{i:03d}" for i in range(150))  # about 750 bytes on one line
    assert guest.shell.run(long).stdout == " ".join(f"w{i:03d}" for i in range(150)) + "\n"
    special = "a\x03b\x04c\x15d\x7fe\x1af\rg"  # ^C ^D ^U DEL ^Z CR: intr, eof, kill, erase, susp
    r = guest.shell.run(f"printf '%s' '{special}' | od -An -v -tx1")
    assert parse_od(r.stdout) == special.encode()
    assert guest.broken is None
    assert guest.shell.run("echo after").stdout == "after\n"


def test_command_timeout_names_command_and_log(guest: VM, vm_pool: VMPool) -> None:
    with pytest.raises(CommandTimeout) as exc:
        guest.shell.run("sleep 60", timeout=2)
    msg = str(exc.value)
    assert "sleep 60" in msg and str(guest.log_path) in msg
    # Ctrl-C resynchronised the shell: the same VM still answers.
    assert guest.broken is None
    assert guest.shell.run("echo alive").stdout == "alive\n"
    # The next test is handed the same healthy VM, not a reboot.
    assert vm_pool.get(guest.arch) is guest
    assert guest.shell.run("echo healthy").stdout == "healthy\n"


# A directory on each guest's writable disk, and how to see that it is mounted from that disk.
DISK_DIRS = {
    "reference": ("/mnt/disk", "grep -q ' /mnt/disk ' /proc/mounts && echo mounted"),
    "minix": ("/home", "mount | grep -q '^/dev/c0d0p2 on /home ' && echo mounted"),  # third partition of the image
}


def test_guest_disk_writes_never_reach_base_image(guest: VM) -> None:
    if "disk" not in guest.machine.spec.disks:
        pytest.skip("this guest boots from a read-only CD: it has no disk to write")
    base = guest.machine.spec.disks["disk"]
    before = hashlib.sha256(base.read_bytes()).hexdigest()
    where, mounted = DISK_DIRS[guest.profile.name]
    r = guest.shell.run(mounted)
    assert r.stdout == "mounted\n", f"the {guest.profile.name} guest's disk is not mounted at {where}"
    guest.shell.run(f"dd if=/dev/urandom of={where}/scratch bs=1024 count=256 2>/dev/null; sync").check()
    assert guest.shell.run(f"ls {where}/scratch").status == 0
    assert hashlib.sha256(base.read_bytes()).hexdigest() == before
    assert os.access(guest.machine.dir, os.F_OK)


def test_qmp_and_timeline(booted_guest: VM) -> None:
    guest = booted_guest
    status = guest.qmp.execute("query-status")
    assert status["status"] == "running"
    names = [m.name for m in guest.timeline.milestones]
    # x86: SeaBIOS's debug console comes first (its start, then the hand-over to the boot ROM).
    assert names[: names.index("first_output")] == (["bios", "firmware"] if guest.arch == "i386" else [])
    # Every milestone the guest profile defines shows up in a normal boot, plus the harness's own.
    assert {m.name for m in guest.profile.markers} | {"kernel", "login", "shell"} <= set(names)
    times = [m.t for m in guest.timeline.milestones]
    assert times == sorted(times) and times[0] > 0
    assert guest.timeline.get("shell").t >= guest.timeline.get("login").t  # type: ignore[union-attr]


def test_state_dir_is_private(guest: VM) -> None:
    assert (guest.machine.dir.stat().st_mode & 0o777) == 0o700
    assert (guest.machine.state.path.stat().st_mode & 0o777) == 0o700
    assert guest.machine.qmp_sock.parent == guest.machine.dir
    assert guest.machine.console_sock.parent == guest.machine.dir
    assert not any("tcp" in a or "hostfwd" in a for a in guest.machine.argv)
    assert guest.machine.argv[guest.machine.argv.index("-nic") + 1] == "none"


@pytest.mark.vm(memory=192, boot_args="pmtest=marker")
def test_vm_marker_gives_own_vm(guest: VM) -> None:
    assert guest.machine.spec.memory == 192
    if guest.profile.name == "minix":
        # MINIX has no /proc/cmdline: boot parameters become its sysenv (minix/commands/sysenv).
        assert guest.shell.run("sysenv pmtest").stdout == "marker\n"
    else:
        assert "pmtest=marker" in guest.shell.run("cat /proc/cmdline").stdout


def test_kernel_messages_interleaved_with_output_are_filtered(guest: VM) -> None:
    if guest.profile.name != "reference":
        pytest.skip("needs the reference guest's /dev/kmsg")
    # An emergency-level message reaches the console even at the init's low printk level.
    r = guest.shell.run("echo before; echo '<0>pytest-minix interleaved kmsg' > /dev/kmsg; sleep 0.2; echo after")
    assert r.status == 0
    assert r.stdout == "before\nafter\n"
    assert any("pytest-minix interleaved kmsg" in ln.text for ln in guest.console.lines())


def test_killed_shell_marks_vm_broken_and_the_pool_replaces_it(guest: VM, vm_pool: VMPool) -> None:
    # The login shell dies; getty shows a new login prompt, and the harness's marker
    # never comes back: the harness says so at once (not at the timeout) and marks the VM broken.
    old_pid = guest.machine.pid
    assert old_pid is not None
    start = time.monotonic()
    with pytest.raises(VMError, match="ended the guest's login shell") as exc:
        guest.shell.run("kill -9 $$", timeout=60)
    assert not isinstance(exc.value, CommandTimeout)
    assert time.monotonic() - start < 20
    assert guest.broken is not None
    # What the next test's `guest` gets: a fresh VM on a new QEMU, the broken one shut down.
    fresh = vm_pool.get(guest.arch)
    assert fresh is not guest and fresh.machine.pid != old_pid
    assert fresh.broken is None
    assert fresh.shell.run("echo fresh").stdout == "fresh\n"
    assert guest.machine.proc is not None and guest.machine.proc.poll() is not None, "the broken VM's QEMU still runs"


def test_kernel_panic_during_command_is_reported(guest: VM) -> None:
    if guest.profile.name != "reference":
        pytest.skip("crashes the kernel through Linux's /proc/sysrq-trigger")
    with pytest.raises(GuestPanic, match="Kernel panic - not syncing") as exc:
        guest.shell.run("echo c > /proc/sysrq-trigger", timeout=60)
    assert str(guest.log_path) in str(exc.value)
    assert guest.broken is not None  # the pool replaces it for the next test


def test_put_with_minix_sized_input_buffer(guest: VM, tmp_path: Path) -> None:
    # MINIX's tty queue holds 256 bytes: the same transfer must work in such small batches.
    import dataclasses

    from pytest_minix.guest.shell import Shell

    small = Shell(guest.console, dataclasses.replace(guest.profile, input_max=250))
    small._ids = guest.shell._ids  # share the marker counter with the VM's shell
    data = bytes(range(256)) * 2
    (tmp_path / "s.bin").write_bytes(data)
    small.put(tmp_path / "s.bin", "/tmp/s.bin")
    assert guest.shell.get("/tmp/s.bin", tmp_path / "s.back") == data
