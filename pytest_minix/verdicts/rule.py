"""The decision rule: from a claim and its measurement to an outcome and the facts it was decided on.

Decision rules, applied in order:

1. No measurement, or ``measurement.unmeasurable``: inconclusive with that reason.
   ``measurement.inconclusive``: inconclusive with that reason (statistics still filled).
2. ``claim.report_only``: inconclusive, reason "report only: <measured value>".
3. Fewer samples than ``claim.min_samples``: inconclusive.
4. Samples are converted to the claim's unit; the interval the true value can lie in
   starts as the confidence interval of the mean (Student t; a single sample or zero
   spread gives the degenerate interval [x, x]).
5. ``bound == "upper"`` (the measurement includes more than the quantity, e.g. kernel
   init timed from QEMU start includes firmware): the interval becomes [floor, ci_hi],
   floor being 0 for the non-negative dimensions (all but percent) and -inf otherwise.
   A CI of a non-negative quantity that dips below 0 is cut at 0.
   ``bound == "lower"``: [ci_lo, +inf).
6. Timing measurements: emulation only slows guest code down, so the value on
   hardware lies in [lo / F, hi] with F the emulation factor under TCG and
   ``kvm_factor`` under a hardware accelerator. Real-time waits inside the guest do
   not scale, which is why hi is not divided: the hardware value is never above the
   measured one. F is recorded in every timing verdict.
7. The band is ``claim.expect.widened()`` (tolerances applied; an exact value v is
   [v - tol_lo, v + tol_hi]); a missing side is unbounded. Both interval and band are
   closed: confirmed if interval ⊆ band, refuted if they are disjoint, otherwise
   inconclusive. An interval that only touches the band at a bound from outside
   overlaps it, so it is inconclusive: the true value may be exactly that bound.
   Comparisons allow a relative 1e-9 so unit conversion round-off decides nothing.
   When only the emulation allowance made a decided claim inconclusive, the reason
   names the slowdown below which the claim would be decided.
8. Flags (yes/no) are properties, not quantities: confirmed or refuted when all samples
   agree, inconclusive when they disagree; no CI is involved.

Nothing here writes a sentence: :func:`apply_rules` returns a :class:`Decision` (the
outcome, the number of the rule above that settled it, and the intervals, band and
comparison it used), and :mod:`pytest_minix.verdicts.explain` turns that into the reason.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_minix.errors import ConfigError
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.units import convert, parse_unit
from pytest_minix.verdicts.claims import Claim
from pytest_minix.verdicts.statistics import Stats, summarize

Outcome = Literal["confirmed", "refuted", "inconclusive"]
Interval = tuple[float, float]  # closed; an unbounded side is -inf or +inf
Side = Literal["lower", "upper", "both"]
# Which check settled the claim; each belongs to one numbered rule above.
Step = Literal[
    "not_measured",  # rule 1
    "unmeasurable",  # rule 1
    "unit_mismatch",  # rule 4: the samples cannot be converted to the claim's unit
    "measurement_inconclusive",  # rule 1
    "report_only",  # rule 2
    "too_few_samples",  # rule 3
    "no_samples",  # rule 3, with min_samples 0
    "no_expectation",  # rule 7: there is no band to compare with
    "flag",  # rule 8
    "interval",  # rule 7
]

# Dimensions whose values cannot be negative: an upper-bound measurement leaves [0, hi].
_NON_NEGATIVE = frozenset({"time", "size", "count", "cycles", "address", "ratio", "flag"})
_REL = 1e-9  # relative slack of bound comparisons (unit conversion round-off)


def le(a: float, b: float) -> bool:
    """a <= b, allowing unit-conversion round-off."""
    return a <= b or math.isclose(a, b, rel_tol=_REL, abs_tol=0.0)


def lt(a: float, b: float) -> bool:
    """a < b by more than unit-conversion round-off."""
    return not le(b, a)


def claim_unit(claim: Claim, measurement: Measurement | None) -> str:
    """The unit a claim is decided in: the claim's, else the measurement's."""
    if claim.unit:
        return claim.unit
    return measurement.unit if measurement is not None else "count"


def classify(interval: Interval, band: Interval) -> Outcome:
    """Rule 7: confirmed if interval ⊆ band, refuted if disjoint, else inconclusive (both closed)."""
    (lo, hi), (blo, bhi) = interval, band
    if le(blo, lo) and le(hi, bhi):
        return "confirmed"
    if lt(bhi, lo) or lt(hi, blo):
        return "refuted"
    return "inconclusive"


def _floor(unit: str) -> float:
    return 0.0 if parse_unit(unit).dimension in _NON_NEGATIVE else -math.inf


def bounded(stats: Stats, bound: str | None, unit: str) -> Interval:
    """Rule 5: the interval of the measured quantity itself, before any emulation allowance."""
    floor = _floor(unit)
    if bound == "upper":
        return (floor, stats.ci_hi)
    # A wide CI of a non-negative quantity may dip below 0; the quantity cannot.
    lo = max(floor, stats.ci_lo)
    if bound == "lower":
        return (lo, math.inf)
    return (lo, stats.ci_hi)


def emulated(interval: Interval, factor: float | None) -> Interval:
    """Rule 6: emulation only slows guest code down, so the hardware value lies in [lo / F, hi]."""
    lo, hi = interval
    if factor is None or factor == 1 or lo <= 0:
        return interval
    return (lo / factor, hi)


@dataclass(frozen=True)
class Evidence:
    """The measurement in the claim's unit and the interval its true value lies in (rules 4-6)."""

    unit: str
    samples: tuple[float, ...]
    stats: Stats | None  # None without samples
    raw: Interval | None  # after the bound allowance (rule 5)
    interval: Interval | None  # after the emulation allowance too (rule 6)
    factor: float | None  # the emulation factor F, for timing measurements only
    bound: Literal["upper", "lower"] | None

    @classmethod
    def of(
        cls, m: Measurement, unit: str, samples: Sequence[float], factor: float | None, confidence: float
    ) -> Evidence:
        """Summarize ``samples`` (already in ``unit``) and widen their interval by rules 5 and 6."""
        stats = summarize(samples, confidence) if samples else None
        raw = bounded(stats, m.bound, unit) if stats is not None else None
        interval = emulated(raw, factor) if raw is not None else None
        return cls(
            unit=unit, samples=tuple(samples), stats=stats, raw=raw, interval=interval, factor=factor, bound=m.bound
        )


@dataclass(frozen=True)
class Slowdown:
    """Rule 7: without the emulation allowance the claim would be ``would_be`` below ``below``x slowdown."""

    would_be: Outcome  # "refuted" or "confirmed"
    below: float  # the slowdown below which that holds
    allowed: float  # the factor that was allowed


@dataclass(frozen=True)
class Comparison:
    """Rule 7: how the interval lies against the band."""

    outcome: Outcome
    exact: bool  # the band is a single value
    one_sided: bool  # one side of the band is unbounded
    # confirmed, one-sided band: its bounded side; refuted: the side of the band the interval lies beyond;
    # inconclusive: the side(s) where the interval reaches out of the band. None for a confirmed two-sided band.
    side: Side | None
    touches: bool  # inconclusive: the interval only meets the band at that bound
    slowdown: Slowdown | None  # inconclusive only because of the emulation allowance

    @classmethod
    def of(cls, ev: Evidence, band: Interval) -> Comparison:
        assert ev.interval is not None and ev.raw is not None
        interval = ev.interval
        outcome = classify(interval, band)
        exact = band[0] == band[1]
        one_sided = math.isinf(band[0]) or math.isinf(band[1])
        if outcome == "confirmed":
            side: Side | None = ("upper" if math.isinf(band[0]) else "lower") if one_sided else None
            return cls(outcome=outcome, exact=exact, one_sided=one_sided, side=side, touches=False, slowdown=None)
        if outcome == "refuted":
            side = "upper" if lt(band[1], interval[0]) else "lower"
            return cls(outcome=outcome, exact=exact, one_sided=one_sided, side=side, touches=False, slowdown=None)
        lo, hi = interval
        below_lo = lt(lo, band[0])  # the interval reaches out of the band at its lower end
        above_hi = lt(band[1], hi)
        if below_lo and above_hi:
            side, touches = "both", False
        elif below_lo:
            side, touches = "lower", math.isclose(hi, band[0], rel_tol=_REL)
        else:
            side, touches = "upper", math.isclose(lo, band[1], rel_tol=_REL)
        slowdown = _slowdown(ev, band)
        return cls(outcome=outcome, exact=exact, one_sided=one_sided, side=side, touches=touches, slowdown=slowdown)


def _slowdown(ev: Evidence, band: Interval) -> Slowdown | None:
    """When only the emulation allowance keeps the claim open: the slowdown that would decide it."""
    raw, factor = ev.raw, ev.factor
    if factor is None or raw is None or ev.interval == raw:
        return None
    without = classify(raw, band)
    if without == "refuted" and band[1] > 0 and lt(band[1], raw[0]):
        return Slowdown(would_be="refuted", below=raw[0] / band[1], allowed=factor)
    if without == "confirmed" and band[0] > 0:
        return Slowdown(would_be="confirmed", below=raw[0] / band[0], allowed=factor)
    return None


@dataclass(frozen=True)
class FlagTally:
    """Rule 8: how many of the samples say yes."""

    yes: int
    n: int

    @classmethod
    def of(cls, samples: Sequence[float]) -> FlagTally:
        return cls(yes=sum(1 for x in samples if x), n=len(samples))

    def outcome(self, band: Interval) -> Outcome:
        if 0 < self.yes < self.n:
            return "inconclusive"
        return "confirmed" if band[0] <= (1.0 if self.yes else 0.0) <= band[1] else "refuted"


@dataclass(frozen=True)
class Decision:
    """An outcome and the facts it was decided on; build one with the named constructors."""

    outcome: Outcome
    step: Step
    rule: int  # the number of the rule in this module's docstring that settled it
    accel: str | None = None
    note: str = ""  # the measurement's own reason (unmeasurable, inconclusive) or the unit error
    evidence: Evidence | None = None
    min_samples: int = 0  # the claim's minimum, for "too_few_samples"
    band: Interval | None = None  # the widened expectation, unbounded sides infinite
    comparison: Comparison | None = None  # for "interval"
    tally: FlagTally | None = None  # for "flag"

    @classmethod
    def unmeasured(cls, step: Step, rule: int, *, accel: str | None = None, note: str = "") -> Decision:
        """Inconclusive before any sample was looked at."""
        return cls(outcome="inconclusive", step=step, rule=rule, accel=accel, note=note)

    @classmethod
    def undecided(
        cls, step: Step, rule: int, evidence: Evidence, *, accel: str | None, note: str = "", min_samples: int = 0
    ) -> Decision:
        """Inconclusive with the measurement's statistics and interval filled in."""
        return cls(
            outcome="inconclusive",
            step=step,
            rule=rule,
            accel=accel,
            note=note,
            evidence=evidence,
            min_samples=min_samples,
        )

    @classmethod
    def flag(cls, tally: FlagTally, band: Interval, evidence: Evidence, *, accel: str | None) -> Decision:
        outcome = tally.outcome(band)
        return cls(outcome=outcome, step="flag", rule=8, accel=accel, evidence=evidence, band=band, tally=tally)

    @classmethod
    def compared(cls, comparison: Comparison, band: Interval, evidence: Evidence, *, accel: str | None) -> Decision:
        return cls(
            outcome=comparison.outcome,
            step="interval",
            rule=7,
            accel=accel,
            evidence=evidence,
            band=band,
            comparison=comparison,
        )

    @property
    def stats(self) -> Stats | None:
        return self.evidence.stats if self.evidence is not None else None

    @property
    def interval(self) -> Interval | None:
        return self.evidence.interval if self.evidence is not None else None

    @property
    def factor(self) -> float | None:
        return self.evidence.factor if self.evidence is not None else None


def check_factors(emulation_factor: float, kvm_factor: float) -> None:
    if emulation_factor < 1 or kvm_factor < 1:
        raise ValueError(f"emulation factors are slowdowns and must be >= 1, got {emulation_factor}, {kvm_factor}")


def apply_rules(
    claim: Claim, measurement: Measurement | None, emulation_factor: float, kvm_factor: float, confidence: float
) -> Decision:
    """Decide ``claim`` from ``measurement`` by the numbered rules of the module docstring."""
    check_factors(emulation_factor, kvm_factor)
    if measurement is None:
        return Decision.unmeasured("not_measured", 1)
    m = measurement
    accel = m.conditions.accel
    if m.unmeasurable:
        return Decision.unmeasured("unmeasurable", 1, accel=accel, note=m.unmeasurable)
    unit = claim_unit(claim, m)
    try:
        samples = [convert(x, m.unit, unit) for x in m.samples]
    except ConfigError as e:
        return Decision.unmeasured("unit_mismatch", 4, accel=accel, note=str(e))
    factor = (emulation_factor if accel == "tcg" else kvm_factor) if m.timing else None
    ev = Evidence.of(m, unit, samples, factor, confidence)
    if m.inconclusive:
        return Decision.undecided("measurement_inconclusive", 1, ev, accel=accel, note=m.inconclusive)
    return _judge(claim, ev, accel)


def _judge(claim: Claim, ev: Evidence, accel: str | None) -> Decision:
    """Rules 2, 3, 7 and 8, on evidence already in the claim's unit."""
    if claim.report_only:
        return Decision.undecided("report_only", 2, ev, accel=accel)
    n = ev.stats.n if ev.stats is not None else 0
    if n < claim.min_samples:
        return Decision.undecided("too_few_samples", 3, ev, accel=accel, min_samples=claim.min_samples)
    if ev.stats is None or ev.raw is None or ev.interval is None:
        return Decision.undecided("no_samples", 3, ev, accel=accel)
    if claim.expect is None:
        return Decision.undecided("no_expectation", 7, ev, accel=accel)
    wlo, whi = claim.expect.widened()
    band = (-math.inf if wlo is None else wlo, math.inf if whi is None else whi)
    if parse_unit(ev.unit).dimension == "flag":
        return Decision.flag(FlagTally.of(ev.samples), band, ev, accel=accel)
    return Decision.compared(Comparison.of(ev, band), band, ev, accel=accel)
