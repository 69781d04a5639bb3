"""From a claim and its measurement to a verdict: confirmed, refuted or inconclusive.

``decide`` is the entry point. It runs in two steps kept apart:

- :mod:`pytest_minix.verdicts.rule` applies the decision rules (numbered there, 1-8: no
  measurement, report only, too few samples, the confidence interval, bound and emulation
  allowances, band comparison, flags) and returns the outcome with the facts it used;
- :mod:`pytest_minix.verdicts.explain` writes those facts as the reason.

Statistics (``summarize``, ``t_quantile``, ``Stats``) live in :mod:`pytest_minix.verdicts.statistics`
and are re-exported here. ``Verdict.reason`` is one sentence without the outcome word;
``Verdict.headline`` is "<outcome>: <reason>".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.units import format_value
from pytest_minix.verdicts import explain
from pytest_minix.verdicts.claims import Claim
from pytest_minix.verdicts.explain import interval_text, measured_text, range_text, value_word
from pytest_minix.verdicts.rule import Decision, Interval, Outcome, apply_rules, claim_unit
from pytest_minix.verdicts.statistics import Stats, summarize, t_quantile

__all__ = ["Outcome", "Stats", "Verdict", "decide", "summarize", "t_quantile"]


@dataclass(frozen=True)
class Verdict:
    """A claim, what was measured, and the decision with its reason (rules: :mod:`pytest_minix.verdicts.rule`)."""

    claim: Claim
    outcome: Outcome
    reason: str
    measurement: Measurement | None
    stats: Stats | None  # in the claim's unit
    interval: Interval | None  # claim's unit, after bound and emulation allowances
    emulation_factor: float | None  # timing measurements only
    accel: str | None
    # The facts the rule decided on (which rule, band, comparison); not part of equality.
    decision: Decision | None = field(default=None, repr=False, compare=False)

    @classmethod
    def from_decision(cls, claim: Claim, measurement: Measurement | None, decision: Decision) -> Verdict:
        """The verdict of ``decision``, with its reason written out."""
        return cls(
            claim=claim,
            outcome=decision.outcome,
            reason=explain.reason(decision),
            measurement=measurement,
            stats=decision.stats,
            interval=decision.interval,
            emulation_factor=decision.factor,
            accel=decision.accel,
            decision=decision,
        )

    @property
    def headline(self) -> str:
        return f"{self.outcome}: {self.reason}"

    @property
    def unit(self) -> str:
        """The unit of stats and interval: the claim's, else the measurement's."""
        return claim_unit(self.claim, self.measurement)

    @property
    def arch(self) -> str:
        if self.measurement is not None:
            return self.measurement.conditions.arch
        return ",".join(self.claim.arches)

    def claimed_text(self) -> str:
        """The expectation as the claim states it ("50-200 ms"), else the band it checks."""
        expect = self.claim.expect
        if expect is None:
            return "report only" if self.claim.report_only else "(nothing to check)"
        if expect.text:
            return expect.text
        lo, hi = expect.widened()
        return range_text(-math.inf if lo is None else lo, math.inf if hi is None else hi, self.unit)

    def measured_brief(self) -> str:
        """Median with its range, e.g. "12.5 s (12.1-13 s)"; "-" without samples."""
        s = self.stats
        if s is None:
            return "-"
        med = format_value(s.median, self.unit)
        if s.min == s.max:
            return med
        return f"{med} ({range_text(s.min, s.max, self.unit)})"

    def measured_text(self) -> str:
        """e.g. "12.5 s (median; 12.1-13 s, n=3)" in the claim's unit."""
        m = self.measurement
        return measured_text(self.stats, self.unit, unmeasurable=m is not None and bool(m.unmeasurable))

    def side_by_side(self) -> str:
        """Claim and measurement next to each other, with the verdict, for failure messages."""
        c, m = self.claim, self.measurement
        lines = [f"{c.id}: {c.statement}"]
        claimed = f"claimed:  {self.claimed_text()}"
        lines.append(f"{claimed}  ({c.source})" if c.source else claimed)
        lines.append(self._measured_line())
        how = "; ".join(x for x in (c.measured_as, m.note if m is not None else "") if x)
        if how:
            lines.append(f"measured as: {how}")
        if m is not None:
            cond = m.conditions
            parts = [f"guest {cond.guest}", f"arch {cond.arch}"]
            parts += [f"{k} {v}" for k, v in (("cpu", cond.cpu), ("qemu", cond.qemu_version)) if v]
            lines.append("conditions: " + ", ".join(parts))
        lines.append(f"verdict: {self.headline}")
        return "\n".join(lines)

    def _measured_line(self) -> str:
        """ "measured: <median, spread, CI>, accel, bound, factor -> the interval compared"."""
        m, s, u = self.measurement, self.stats, self.unit
        if s is None:
            measured = "measured: " + self.measured_text()
        else:
            measured = f"measured: {format_value(s.median, u)} median"
            if s.n > 1:
                measured += (
                    f", mean {format_value(s.mean, u)}, sd {format_value(s.stdev, u)}, n={s.n}, "
                    f"{s.confidence:.0%} CI {interval_text(s.ci_lo, s.ci_hi, u)}"
                )
            else:
                measured += ", n=1"
        if self.accel:
            measured += f", accel {self.accel}"
        if m is not None and m.bound and s is not None:
            measured += f", {m.bound} bound"
        if self.emulation_factor is not None:
            measured += f", emulation factor {self.emulation_factor:g}"
        if self.interval is not None and s is not None and self.interval != (s.ci_lo, s.ci_hi):
            measured += f" -> {value_word(self.emulation_factor)} in {interval_text(*self.interval, u)}"
        return measured


def decide(
    claim: Claim,
    measurement: Measurement | None,
    emulation_factor: float,
    *,
    kvm_factor: float = 1.0,
    confidence: float = 0.95,
) -> Verdict:
    """Decide ``claim`` from ``measurement`` by the rules of :mod:`pytest_minix.verdicts.rule`, with the reason."""
    decision = apply_rules(claim, measurement, emulation_factor, kvm_factor, confidence)
    return Verdict.from_decision(claim, measurement, decision)
