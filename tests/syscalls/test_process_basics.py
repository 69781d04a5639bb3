"""System-call suite (first cut): the guest runs processes, pipes and file I/O."""

from __future__ import annotations

from pytest_minix import VM


def test_fork_exec_pipe_and_file_io(guest: VM) -> None:
    r = guest.shell.run("dd if=/dev/zero bs=512 count=64 2>/dev/null | wc -c")
    assert r.status == 0 and r.stdout.strip() == "32768"
    r = guest.shell.run("echo payload > /tmp/f && cat /tmp/f && rm /tmp/f && test ! -e /tmp/f")
    assert (r.status, r.stdout) == (0, "payload\n")


def test_many_processes_in_a_loop(guest: VM) -> None:
    r = guest.shell.run("i=0; while [ $i -lt 50 ]; do ls / >/dev/null; i=$((i+1)); done; echo $i", timeout=120)
    assert r.stdout.strip() == "50"
