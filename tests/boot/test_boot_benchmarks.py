"""Boot phases as pytest-benchmark benchmarks, fed with the guest-measured samples, one group per phase (metric).

Run without xdist (pytest-benchmark turns itself off under it):
``pytest tests/boot -p no:xdist --benchmark-autosave`` and later ``--benchmark-compare``.
The samples are the same fresh boots the boot claims use (``--minix-boot-rounds``; at least
5 by default in a run that saves or compares benchmarks). A saved benchmark taken under
other conditions (accelerator, QEMU, CPU, guest image) is not compared: see
``pytest_minix/plugin/benchmark.py``.
"""

from __future__ import annotations

import pytest

PHASES = ["boot.firmware", "boot.kernel_init", "boot.to_login", "boot.to_shell"]


@pytest.mark.parametrize("metric_id", PHASES)
def test_boot_phase(minix_benchmark, minix_measure, minix_arch: str, metric_id: str) -> None:
    m = minix_measure(metric_id, minix_arch)
    if m.unmeasurable:
        pytest.skip(f"{metric_id} on {minix_arch}: {m.unmeasurable}")
    assert m.unit == "s" and m.samples and all(s >= 0 for s in m.samples)
    minix_benchmark(m)
