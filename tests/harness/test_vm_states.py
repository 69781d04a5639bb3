"""A VM's life is one state machine: its transitions, its reasons, and what a real QEMU makes of them."""

from __future__ import annotations

import logging
import os
import signal

import pytest

from pytest_minix.errors import GuestPanic, VMError
from pytest_minix.guest.lifecycle import ALLOWED, InvalidTransition, Lifecycle, State
from pytest_minix.guest.pool import VMPool


class Exit:
    """A stand-in for ``Machine.exit_reason``: None until the test 'kills' QEMU."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self) -> str | None:
        return self.reason


def test_the_normal_life_is_recorded_with_reasons() -> None:
    life = Lifecycle("t")
    assert life.state is State.CREATED and life.broken is None
    life.to(State.BOOTING, "launching")
    life.to(State.READY, "logged in")
    life.fail("a command ended the login shell")
    assert life.broken == "a command ended the login shell"
    life.to(State.READY, "snapshot restored")
    assert life.broken is None
    life.to(State.STOPPED, "shut down")
    assert [(h.before, h.after) for h in life.history] == [
        (State.CREATED, State.BOOTING),
        (State.BOOTING, State.READY),
        (State.READY, State.BROKEN),
        (State.BROKEN, State.READY),
        (State.READY, State.STOPPED),
    ]
    assert life.broken == "shut down"  # a stopped VM cannot be used either


@pytest.mark.parametrize(
    ("path", "bad"),
    [
        ((), State.READY),  # logged in without booting
        ((State.BOOTING, State.READY), State.BOOTING),  # booted twice
        ((State.STOPPED,), State.BOOTING),  # STOPPED is final
        ((State.BOOTING, State.STOPPED), State.READY),
    ],
)
def test_a_step_the_diagram_does_not_allow_is_a_harness_bug(path: tuple[State, ...], bad: State) -> None:
    life = Lifecycle("t")
    for s in path:
        life.to(s)
    with pytest.raises(InvalidTransition, match=f"cannot go from {life.state.value} to {bad.value}"):
        life.to(bad)


def test_every_state_is_in_the_diagram_and_stopped_is_final() -> None:
    assert set(ALLOWED) == set(State)
    assert ALLOWED[State.STOPPED] == frozenset()
    assert all(State.STOPPED in ALLOWED[s] for s in State if s is not State.STOPPED)


def test_a_running_vm_whose_qemu_is_gone_is_broken_with_the_exit_reason() -> None:
    gone = Exit()
    life = Lifecycle("t", exited=gone)
    life.to(State.BOOTING)
    life.to(State.READY)
    assert life.broken is None
    gone.reason = "QEMU was killed by signal 9\nmore detail"
    assert life.state is State.BROKEN
    assert life.broken == "QEMU was killed by signal 9"


def test_failing_a_stopped_vm_changes_nothing() -> None:
    life = Lifecycle("t")
    life.to(State.STOPPED, "shut down")
    life.fail("late news")
    assert life.state is State.STOPPED and life.reason == "shut down"


def test_an_error_seen_as_a_closed_console_names_qemus_exit() -> None:
    gone = Exit()
    life = Lifecycle("t", exited=gone)
    life.to(State.BOOTING)
    gone.reason = "QEMU exited with status 1: could not open disk"
    exc = life.with_exit(VMError("the console closed while waiting for the login prompt", "/logs/x.serial.log"))
    assert str(exc).startswith("QEMU exited with status 1: could not open disk. the console closed")
    assert str(exc).endswith("Serial log: /logs/x.serial.log")
    assert (
        life.broken
        == "QEMU exited with status 1: could not open disk (the console closed while waiting for the login prompt)"
    )


def test_a_specific_error_passes_unchanged_and_breaks_the_vm() -> None:
    life = Lifecycle("t")
    life.to(State.BOOTING)
    panic = GuestPanic("Kernel panic - not syncing: VFS", "/logs/x.serial.log")
    assert life.with_exit(panic) is panic
    assert life.state is State.BROKEN and life.reason.startswith("Kernel panic")


def test_a_real_vm_goes_through_its_states(
    vm_pool: VMPool, caplog: pytest.LogCaptureFixture, request: pytest.FixtureRequest
) -> None:
    """Booted, READY; QEMU killed, BROKEN with the signal; shut down, STOPPED; the story is in the log."""
    arch = vm_pool.config.arches[0]
    from pytest_minix.plugin.media import need_media

    need_media(request, vm_pool, arch)
    caplog.set_level(logging.DEBUG, logger="pytest_minix")
    with vm_pool.boot(arch) as vm:
        assert vm.state is State.READY, vm
        assert [h.after for h in vm.life.history] == [State.BOOTING, State.READY]
        assert vm.machine.pid is not None
        os.kill(vm.machine.pid, signal.SIGKILL)
        vm.machine.proc.wait(10)  # type: ignore[union-attr]
        assert vm.state is State.BROKEN
        assert "killed by signal 9" in (vm.broken or "")
        with pytest.raises(VMError, match="unusable"):
            vm.shell.run("true")
    assert vm.state is State.STOPPED
    vm.shutdown()  # idempotent
    text = caplog.text
    for story in ("launching ", "started paused", "QMP cont", "created -> booting", "booting -> ready", "-> stopped"):
        assert story in text, f"{story!r} missing from the harness's log:\n{text[-3000:]}"
