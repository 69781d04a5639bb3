"""The session's VM pools (one per xdist worker process), and how their shared VMs came up."""

from __future__ import annotations

import datetime
import json
from collections.abc import Generator
from typing import Any

import pytest

from pytest_minix.guest.pool import VMPool, VMStart

POOLS = pytest.StashKey[list[VMPool]]()
# A test report carries the VM starts that happened during it: xdist workers' reach the controller.
VM_START_PROPERTY = "pytest_minix_vm_start"


def start_record(s: VMStart, worker: str) -> dict[str, object]:
    d = {**s.as_dict(), "worker": worker, "seconds": round(s.seconds, 3)}
    d.pop("saved_at", None)
    d.pop("clock_lag", None)
    if s.saved_at:
        d["saved_at"] = datetime.datetime.fromtimestamp(s.saved_at, datetime.UTC).isoformat(timespec="seconds")
        d["clock_lag"] = round(s.clock_lag, 3)
    return d


class StartRecorder:
    """Collects every shared VM start of the session, on the controlling process (xdist-safe)."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.starts: list[dict[str, object]] = []
        self._sent: dict[int, int] = {}

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        for pool in self.config.stash.get(POOLS, []):
            new = pool.starts[self._sent.get(id(pool), 0) :]
            self._sent[id(pool)] = len(pool.starts)
            for s in new:
                report.user_properties.append((VM_START_PROPERTY, json.dumps(start_record(s, pool.worker))))
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        for name, value in report.user_properties:
            if name == VM_START_PROPERTY:
                self.starts.append(json.loads(str(value)))


RECORDER = pytest.StashKey[StartRecorder]()


def vm_starts(config: pytest.Config) -> list[dict[str, object]]:
    """Each shared VM's start, cold (booted) or warm (from the boot cache), for reports and benchmark info."""
    recorder = config.stash.get(RECORDER, None)
    return list(recorder.starts) if recorder is not None else []


def describe_start(d: dict[str, object]) -> str:
    """One line for the terminal summary and the Markdown report."""
    head = f"{d['guest']} {d['arch']} ({d['accel']}, worker {d.get('worker', 'main')})"
    if d["how"] == "warm":
        return (
            f"{head}: started WARM from saved state {str(d['state'])[:12]} (saved {d['saved_at']}) in "
            f"{d['seconds']} s; the guest clock was {d.get('clock_lag', 0)} s behind and was reset"
        )
    saved = f"; saved as {str(d['state'])[:12]} for later sessions" if d.get("state") else ""
    note = f" ({d['note']})" if d.get("note") else ""
    return f"{head}: booted cold in {d['seconds']} s{saved}{note}"
