"""pytest-benchmark integration: guest-measured durations as benchmarks, with QEMU provenance.

A boot phase is timed by the guest's console, not by pytest-benchmark's clock, so
:func:`replay` hands pytest-benchmark a timer that advances by each measured sample:
its statistics, ``--benchmark-autosave``, ``--benchmark-compare`` and
``--benchmark-compare-fail`` then work on the real boot figures.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import harness_version
from pytest_minix.qemu.binary import qemu_version


def replay(benchmark: Any, samples: Sequence[float], extra: dict[str, Any] | None = None) -> None:
    """Record ``samples`` (seconds) as the benchmark's rounds.

    pytest-benchmark turns itself off under xdist (and with --benchmark-disable): then the
    test skips, saying how to run the timing tests.
    """
    if benchmark.disabled:
        pytest.skip(
            "pytest-benchmark is disabled (under pytest-xdist, or --benchmark-disable): run the timing "
            "tests in their own session without -n, e.g. `pytest tests/boot -p no:xdist`"
        )
    if not samples:
        pytest.skip("no samples to record")
    clock = [0.0]
    pending = list(samples)

    def timer() -> float:
        return clock[0]

    def one_round() -> None:
        clock[0] += pending.pop(0)

    # pytest-benchmark reads the timer when it builds each round's runner (a private attribute,
    # stable since 3.x): the replayed clock makes each round last exactly one sample.
    benchmark._timer = timer
    benchmark.extra_info.update(extra or {})
    benchmark.pedantic(one_round, rounds=len(samples), iterations=1, warmup_rounds=0)


def measurement_info(m: Measurement) -> dict[str, Any]:
    """What a benchmark's ``extra_info`` carries: raw samples, their unit, conditions and phases."""
    return {
        "metric": m.metric,
        "unit": m.unit,
        "samples": list(m.samples),
        "conditions": m.conditions.as_dict(),
        "note": m.note,
        "phases": m.extra.get("phases"),
        "milestones": m.extra.get("milestones"),
    }


def _host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """Provenance for --benchmark-compare: QEMU, accelerator, CPU model and image hashes come per benchmark
    in extra_info.conditions; the machine-wide facts go here."""
    import shutil

    qemus = {b: qemu_version(p) for b in ("qemu-system-i386", "qemu-system-arm") if (p := shutil.which(b))}
    machine_info["pytest_minix"] = {
        "harness_version": harness_version(),
        "qemu": qemus,
        "host_cpu": _host_cpu(),
        "guest": config.getoption("minix_guest") or config.getini("minix_guest") or "minix",
        "accel_requested": config.getoption("minix_accel") or config.getini("minix_accel") or "auto",
    }
