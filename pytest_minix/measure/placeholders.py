"""Claims without a method in this version: placeholders that say what a method would need.

Each is registered only if no module registered a real method under its id
(``METRICS.setdefault``), and a real method registered later replaces it, so the order in
which the metric modules are imported does not matter. A placeholder always returns an
unmeasurable Measurement: ``no method in this version of pytest-minix: <what it needs>``.
"""

from __future__ import annotations

from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import METRICS, Kind, Method, Metric, MetricContext

NO_METHOD: list[tuple[str, str, Kind, str]] = [
    (
        "boot.critical_path",
        "ms",
        "timing",
        "the whitepaper does not say which events bound its 'critical path'; see boot.kernel_ready and boot.to_login",
    ),
    ("ipc.roundtrip", "us", "timing", "a message-passing benchmark inside MINIX"),
    ("mem.resident", "MiB", "size", "MINIX's per-process memory accounting after boot"),
    ("mem.tlb_hit_rate", "percent", "ratio", "TLB statistics, which neither TCG nor KVM's query-stats expose"),
    (
        "perf.microkernel_penalty",
        "percent",
        "ratio",
        "the same workload on MINIX and a monolithic kernel on equal "
        "hardware; two different OSes under TCG do not give a fair ratio",
    ),
]
"""(id, unit, kind, what a method would need) of every claim without a method."""


def no_method(needs: str) -> Method:
    """A method that always answers unmeasurable: there is none in this version, and it would need ``needs``."""

    def measure(ctx: MetricContext, m: Metric) -> Measurement:
        return m.unmeasurable(ctx, f"no method in this version of pytest-minix: {needs}")

    return measure


for _id, _unit, _kind, _needs in NO_METHOD:
    METRICS.setdefault(_id, Metric(_id, _unit, _kind, f"not yet measurable: {_needs}", no_method(_needs)))

__all__ = ["NO_METHOD", "no_method"]
