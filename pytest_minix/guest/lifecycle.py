"""A VM's life as one explicit state machine: where it is, why, and how it got there.

One :class:`Lifecycle` per VM, shared by the VM and its shell, is the only record of the
VM's health (labgrid's strategies keep one state per target the same way)::

    CREATED --launch--> BOOTING --logged in--> READY
                           |                     |  \\
                           +---------------------+---> BROKEN --restore snapshot--> READY
    any state --shutdown--> STOPPED (final)

BROKEN carries the reason: QEMU exited, the guest panicked or rebooted, a command ended
the login shell, a hung command could not be interrupted. A VM that is BOOTING or READY
turns BROKEN by itself as soon as its QEMU is seen gone (``exited`` is polled on every
look), so no caller has to ask the process separately.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from pytest_minix.errors import VMError

log = logging.getLogger(__name__)


class State(enum.Enum):
    CREATED = "created"  # QEMU not started yet
    BOOTING = "booting"  # QEMU runs; no shell yet
    READY = "ready"  # logged in, the harness shell is in sync
    BROKEN = "broken"  # cannot be trusted any more; ``reason`` says why
    STOPPED = "stopped"  # QEMU shut down and reaped; final


ALLOWED: dict[State, frozenset[State]] = {
    State.CREATED: frozenset({State.BOOTING, State.BROKEN, State.STOPPED}),
    State.BOOTING: frozenset({State.READY, State.BROKEN, State.STOPPED}),
    State.READY: frozenset({State.BROKEN, State.STOPPED}),
    State.BROKEN: frozenset({State.READY, State.STOPPED}),  # READY again only by restoring a snapshot
    State.STOPPED: frozenset(),
}


class InvalidTransition(RuntimeError):
    """A harness bug: a step was asked of a VM in a state that does not allow it."""


@dataclass(frozen=True)
class Transition:
    t: float  # host monotonic time
    before: State
    after: State
    reason: str


def _never_exited() -> str | None:
    return None


def _headline(exc: Exception) -> str:
    """The first line of an error, without the serial log path VMError appends (the reason names no file)."""
    return str(exc).split(" Serial log: ")[0].splitlines()[0]


class Lifecycle:
    """The state of one VM, its reason and its history; ``exited`` says why QEMU is gone (None while it runs)."""

    # How long a failure waits for QEMU's exit status: the console's end of file can beat the
    # reaping of a killed QEMU by a few ms, and "killed by signal 9" is what the user needs to read.
    EXIT_GRACE = 1.0

    def __init__(self, name: str, exited: Callable[[], str | None] = _never_exited) -> None:
        self.name = name
        self._exited = exited
        self._state = State.CREATED
        self._reason = ""
        self.history: list[Transition] = []

    @property
    def state(self) -> State:
        if self._state in (State.BOOTING, State.READY):
            gone = self._exited()
            if gone:
                self._move(State.BROKEN, gone.splitlines()[0])
        return self._state

    @property
    def reason(self) -> str:
        """Why the VM is in its state ("" for a healthy VM)."""
        _ = self.state
        return self._reason

    @property
    def broken(self) -> str | None:
        """Why this VM can no longer be used, or None while it can."""
        state = self.state
        if state is State.BROKEN or state is State.STOPPED:
            return self._reason or state.value
        return None

    def exit_reason(self) -> str | None:
        """Why QEMU or the guest went away, or None while it runs (the console's ``exited`` check)."""
        return self._exited()

    def to(self, new: State, reason: str = "") -> None:
        """Move to ``new``; a move the diagram does not allow is a harness bug and raises."""
        if new not in ALLOWED[self._state]:
            raise InvalidTransition(f"VM {self.name}: cannot go from {self._state.value} to {new.value} ({reason})")
        self._move(new, reason)

    def fail(self, reason: str) -> None:
        """The VM cannot be trusted any more. A later, more specific reason replaces the first."""
        if self._state is State.STOPPED:
            return
        self._move(State.BROKEN, reason)

    def _move(self, new: State, reason: str) -> None:
        self.history.append(Transition(time.monotonic(), self._state, new, reason))
        if new is not self._state or reason != self._reason:
            log.debug("VM %s: %s -> %s%s", self.name, self._state.value, new.value, f" ({reason})" if reason else "")
        self._state = new
        self._reason = reason

    def with_exit(self, exc: VMError) -> VMError:
        """``exc`` naming QEMU's exit when the console only saw it close; the VM is BROKEN with that reason."""
        if type(exc) is not VMError:
            self.fail(_headline(exc))
            return exc  # BootTimeout, GuestPanic... already say what happened
        deadline = time.monotonic() + self.EXIT_GRACE
        gone = self._exited()
        while gone is None and self._exited is not _never_exited and time.monotonic() < deadline:
            time.sleep(0.02)
            gone = self._exited()
        first = _headline(exc)
        if not gone or gone.splitlines()[0] in str(exc):
            self.fail(first)
            return exc
        self.fail(f"{gone.splitlines()[0]} ({first})")
        return VMError(f"{gone}. {str(exc).split(' Serial log: ')[0]}", exc.log_path)


__all__ = ["ALLOWED", "InvalidTransition", "Lifecycle", "State", "Transition"]
