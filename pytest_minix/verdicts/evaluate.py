"""Measure once, then decide: claims judged against measurements taken once per metric and arch.

Several claims often share a metric (``boot.to_login`` is claimed per arch and per source),
and a metric may take minutes (fresh boots). An :class:`Evaluator` takes each metric's
measurement once per arch, keeps it, and decides every claim against it. The claims
plugin keeps one for the whole pytest session; the MCP server makes one per
``check_claims`` call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator

from pytest_minix.guest.pool import VMPool
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import METRICS, MetricContext
from pytest_minix.verdicts.claims import Claim
from pytest_minix.verdicts.verdict import Verdict, decide

Progress = Callable[[str], None]


class Evaluator:
    """A cache of measurements per (metric, arch), and the settings claims are decided with.

    Thread-safe: measurements are taken one at a time, so claims that share a metric also
    share its samples even when decided from several threads.
    """

    def __init__(
        self, *, boot_rounds: int, emulation_factor: float, kvm_factor: float = 1.0, confidence: float = 0.95
    ) -> None:
        self.boot_rounds = boot_rounds
        self.emulation_factor = emulation_factor
        self.kvm_factor = kvm_factor
        self.confidence = confidence
        self._measurements: dict[tuple[str, str], Measurement] = {}
        self._contexts: dict[str, MetricContext] = {}  # per arch: the boots it made are shared by boot metrics
        self._lock = threading.Lock()

    def measure(
        self,
        pool: VMPool,
        metric_id: str,
        arch: str,
        *,
        progress: Progress | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> Measurement:
        """The measurement of ``metric_id`` on ``arch``, taken with ``pool`` the first time it is asked for.

        ``progress`` gets the messages of a measurement being taken; ``on_done`` is called when one
        was actually taken (also when it failed), not when the cached one is returned.
        """
        key = (metric_id, arch)
        with self._lock:
            if key not in self._measurements:
                ctx = self._context(pool, arch, progress)
                try:
                    self._measurements[key] = METRICS[metric_id].measure(ctx)
                finally:
                    if on_done is not None:
                        on_done()
            return self._measurements[key]

    def _context(self, pool: VMPool, arch: str, progress: Progress | None) -> MetricContext:
        """The arch's metric context, new when there is none yet or it belongs to another pool."""
        ctx = self._contexts.get(arch)
        if ctx is None or ctx.pool is not pool:
            ctx = self._contexts[arch] = MetricContext(pool, arch, self.boot_rounds, progress=progress)
        return ctx

    def decide(self, claim: Claim, measurement: Measurement | None) -> Verdict:
        """``claim`` decided from ``measurement`` with this evaluator's emulation factors and confidence."""
        return decide(claim, measurement, self.emulation_factor, kvm_factor=self.kvm_factor, confidence=self.confidence)

    def verdict(
        self,
        claim: Claim,
        pool: VMPool,
        arch: str,
        *,
        progress: Progress | None = None,
        on_done: Callable[[], None] | None = None,
    ) -> Verdict:
        """Measure the claim's metric on ``arch`` (unless already measured) and decide the claim."""
        measurement = self.measure(pool, claim.metric, arch, progress=progress, on_done=on_done)
        return self.decide(claim, measurement)

    def verdicts(
        self, claims: Iterable[Claim], pool: VMPool, arch: str, *, progress: Progress | None = None
    ) -> Iterator[Verdict]:
        """The verdict of each claim on ``arch``, in order, as each is decided."""
        for claim in claims:
            yield self.verdict(claim, pool, arch, progress=progress)


__all__ = ["Evaluator", "Progress"]
