"""One long-lived thread per process that spawns QEMU and runs the asyncio QMP clients.

PR_SET_PDEATHSIG fires when the *thread* that forked the child exits, so QEMU is
spawned from this thread, which lives as long as the process: if pytest dies, even
by SIGKILL, the kernel kills every QEMU it started.
"""

from __future__ import annotations

import asyncio
import ctypes
import os
import signal
import subprocess
import threading
from collections.abc import Coroutine, Sequence
from concurrent.futures import Future
from pathlib import Path
from typing import IO, Any, TypeVar

T = TypeVar("T")
PR_SET_PDEATHSIG = 1

_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent(parent: int) -> None:
    if _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        os._exit(127)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(127)


class Runtime:
    """The process-wide spawner thread with its event loop."""

    _instance: Runtime | None = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="pytest-minix-runtime", daemon=True)
        self._thread.start()

    @classmethod
    def get(cls) -> Runtime:
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the runtime loop and wait for its result."""
        fut = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return fut.result(timeout)
        except TimeoutError:
            fut.cancel()
            raise

    def spawn(
        self, argv: Sequence[str], *, stdout: IO[bytes], stderr: IO[bytes] | int, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start a child from the runtime thread, to die with this process."""
        parent = os.getpid()
        result: Future[subprocess.Popen[bytes]] = Future()

        def start() -> None:
            try:
                result.set_result(
                    subprocess.Popen(
                        list(argv),
                        stdin=subprocess.DEVNULL,
                        stdout=stdout,
                        stderr=stderr,
                        cwd=cwd,
                        preexec_fn=lambda: _die_with_parent(parent),
                        start_new_session=True,  # a Ctrl-C in the terminal is pytest's to handle
                    )
                )
            except BaseException as exc:  # noqa: BLE001 - handed to the caller
                result.set_exception(exc)

        self.loop.call_soon_threadsafe(start)
        return result.result(30)
