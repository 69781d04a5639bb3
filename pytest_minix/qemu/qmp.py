"""A synchronous face on one long-lived ``qemu.qmp`` client, recording every event."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qemu.qmp import QMPClient

from pytest_minix.qemu.runtime import Runtime

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Event:
    """A QMP event: QEMU's own timestamp (wall clock) and the host monotonic arrival."""

    name: str
    data: dict[str, Any]
    qemu_time: float
    host_time: float


class QMP:
    """Commands and events of one VM's monitor, usable from any thread."""

    def __init__(self, sock_path: Path, name: str = "vm") -> None:
        self.sock_path = sock_path
        self.name = name
        self.runtime = Runtime.get()
        self._client = QMPClient(name)
        self._events: list[Event] = []
        self._lock = threading.Lock()
        self._task: asyncio.Future[None] | None = None

    def connect(self, timeout: float = 10.0) -> None:
        async def go() -> None:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    await self._client.connect(str(self.sock_path))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    await asyncio.sleep(0.01)
            self._task = asyncio.ensure_future(self._collect())

        self.runtime.run(go(), timeout + 5)

    async def _collect(self) -> None:
        with self._client.listener() as listener:
            async for ev in listener:
                msg: dict[str, Any] = dict(ev)  # type: ignore[call-overload]
                ts = msg.get("timestamp", {})
                qt = ts.get("seconds", 0) + ts.get("microseconds", 0) / 1e6
                event = Event(str(msg["event"]), dict(msg.get("data", {})), qt, time.monotonic())
                log.debug("%s: QMP event %s %s", self.name, event.name, event.data)
                with self._lock:
                    self._events.append(event)

    def execute(self, cmd: str, args: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        """Run one QMP command and return its result (raises on a QMP error)."""
        log.debug("%s: QMP %s %s", self.name, cmd, args or "")
        return self.runtime.run(self._client.execute(cmd, args), timeout)

    def send_fd(self, fdname: str, fd: int, timeout: float = 30.0) -> None:
        """Hand QEMU an open file descriptor (SCM_RIGHTS + ``getfd``) under ``fdname``."""
        log.debug("%s: QMP getfd %s", self.name, fdname)

        async def go() -> None:
            self._client.send_fd_scm(fd)
            await self._client.execute("getfd", {"fdname": fdname})

        self.runtime.run(go(), timeout)

    def hmp(self, command: str, timeout: float = 30.0) -> str:
        """Run a human monitor command (``info registers``...) and return its text."""
        return str(self.execute("human-monitor-command", {"command-line": command}, timeout))

    def events(self, name: str | None = None) -> list[Event]:
        with self._lock:
            return [e for e in self._events if name is None or e.name == name]

    def close(self) -> None:
        async def go() -> None:
            if self._task is not None:
                self._task.cancel()
            try:
                await self._client.disconnect()
            except Exception:  # noqa: BLE001 - closing a dead connection
                pass

        try:
            self.runtime.run(go(), 5)
        except Exception:  # noqa: BLE001
            pass
