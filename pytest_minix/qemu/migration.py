"""A running VM's state (RAM and devices) to a file and back, by QEMU migration over a file descriptor.

The file descriptor is handed over QMP (``getfd``), so no shell command (``exec:``) and no
socket is involved, and it works on every QEMU since 2.x (``file:`` URIs need 8.2). Disks
are not part of the stream: the caller keeps their overlays as they were at the save.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from pytest_minix.errors import VMError
from pytest_minix.qemu.qmp import QMP

log = logging.getLogger(__name__)

FDNAME = "pm-state"
# Bytes per second; QEMU's default (32-128 MiB/s) would make a 60 MB save take seconds.
BANDWIDTH = 1 << 40


def save(qmp: QMP, path: Path, exited: Callable[[], str | None], timeout: float = 120.0) -> int:
    """Stop the VM and write its state to ``path`` (fsynced); returns its size. The VM stays stopped."""
    qmp.execute("stop")
    qmp.execute("migrate-set-parameters", {"max-bandwidth": BANDWIDTH})
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        qmp.send_fd(FDNAME, fd)
        qmp.execute("migrate", {"uri": f"fd:{FDNAME}"})
        _wait(qmp, exited, timeout, "saving the VM state")
        os.fsync(fd)
    finally:
        os.close(fd)
    size = path.stat().st_size
    log.debug("%s: state saved to %s (%d bytes)", qmp.name, path, size)
    return size


def load(qmp: QMP, path: Path, exited: Callable[[], str | None], timeout: float = 120.0) -> None:
    """Feed ``path`` to a QEMU started with ``-incoming defer``; returns once the state is in (paused)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        qmp.send_fd(FDNAME, fd)
        qmp.execute("migrate-incoming", {"uri": f"fd:{FDNAME}"})
        # The destination's own migration record is gone once it completes: its run state tells.
        _wait(qmp, exited, timeout, "loading the VM state", incoming=True)
    finally:
        os.close(fd)
    log.debug("%s: state loaded from %s", qmp.name, path)


def _wait(qmp: QMP, exited: Callable[[], str | None], timeout: float, what: str, incoming: bool = False) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        reason = exited()
        if reason:
            # QEMU exits when an incoming stream is bad ("load of migration failed").
            raise VMError(f"QEMU stopped while {what}: {reason}")
        try:
            info = qmp.execute("query-status" if incoming else "query-migrate", timeout=10)
        except Exception as exc:  # noqa: BLE001 - QEMU went away mid-command: reported above next time
            if exited():
                continue
            raise VMError(f"QEMU did not answer while {what}: {exc}") from None
        status = info.get("status")
        if status == "completed" or (incoming and status != "inmigrate"):
            return
        if status in ("failed", "cancelled"):
            raise VMError(f"QEMU failed {what}: {info.get('error-desc', status)}")
        if time.monotonic() > deadline:
            raise VMError(f"{what.capitalize()} took more than {timeout:.0f} s (migration status {status!r}).")
        time.sleep(delay)
        delay = min(delay * 2, 0.01)  # a load takes ~0.1 s: coarser polling would add tens of ms
