"""From a claim and its measurement to a verdict: confirmed, refuted or inconclusive.

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

``Verdict.reason`` is one sentence without the outcome word; ``Verdict.headline`` is
"<outcome>: <reason>".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from pytest_minix.errors import ConfigError
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.units import convert, format_value, parse_unit, unit_suffix
from pytest_minix.verdicts.claims import Claim

Outcome = Literal["confirmed", "refuted", "inconclusive"]

# Two-sided Student t quantiles for df 1..30 (published tables, 3 decimals).
_T_TABLE: dict[float, tuple[float, ...]] = {
    0.90: (
        6.314,
        2.920,
        2.353,
        2.132,
        2.015,
        1.943,
        1.895,
        1.860,
        1.833,
        1.812,
        1.796,
        1.782,
        1.771,
        1.761,
        1.753,
        1.746,
        1.740,
        1.734,
        1.729,
        1.725,
        1.721,
        1.717,
        1.714,
        1.711,
        1.708,
        1.706,
        1.703,
        1.701,
        1.699,
        1.697,
    ),
    0.95: (
        12.706,
        4.303,
        3.182,
        2.776,
        2.571,
        2.447,
        2.365,
        2.306,
        2.262,
        2.228,
        2.201,
        2.179,
        2.160,
        2.145,
        2.131,
        2.120,
        2.110,
        2.101,
        2.093,
        2.086,
        2.080,
        2.074,
        2.069,
        2.064,
        2.060,
        2.056,
        2.052,
        2.048,
        2.045,
        2.042,
    ),
    0.99: (
        63.657,
        9.925,
        5.841,
        4.604,
        4.032,
        3.707,
        3.499,
        3.355,
        3.250,
        3.169,
        3.106,
        3.055,
        3.012,
        2.977,
        2.947,
        2.921,
        2.898,
        2.878,
        2.861,
        2.845,
        2.831,
        2.819,
        2.807,
        2.797,
        2.787,
        2.779,
        2.771,
        2.763,
        2.756,
        2.750,
    ),
}

# Dimensions whose values cannot be negative: an upper-bound measurement leaves [0, hi].
_NON_NEGATIVE = frozenset({"time", "size", "count", "cycles", "address", "ratio", "flag"})
_REL = 1e-9  # relative slack of bound comparisons (unit conversion round-off)


def t_quantile(df: int, confidence: float) -> float:
    """Two-sided Student t quantile: P(|T| <= t) = confidence for ``df`` degrees of freedom."""
    if df < 1 or not 0 < confidence < 1:
        raise ValueError(f"t quantile needs df >= 1 and 0 < confidence < 1, got df={df}, confidence={confidence}")
    table = _T_TABLE.get(round(confidence, 6))
    if table is not None and df <= len(table):
        return table[df - 1]
    p = (1 + confidence) / 2
    if df == 1:  # closed forms: the expansion below is poor for df < 3
        return math.tan(math.pi * (p - 0.5))
    if df == 2:
        return (2 * p - 1) / math.sqrt(2 * p * (1 - p))
    # Normal quantile with the Cornish-Fisher correction (Abramowitz & Stegun 26.7.5):
    # within 0.1 % for df >= 3, where the bare normal quantile is 4 % short even at df = 31.
    x = statistics.NormalDist().inv_cdf(p)
    g1 = (x**3 + x) / 4
    g2 = (5 * x**5 + 16 * x**3 + 3 * x) / 96
    g3 = (3 * x**7 + 19 * x**5 + 17 * x**3 - 15 * x) / 384
    g4 = (79 * x**9 + 776 * x**7 + 1482 * x**5 - 1920 * x**3 - 945 * x) / 92160
    return x + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4


@dataclass(frozen=True)
class Stats:
    """Summary of samples; [ci_lo, ci_hi] is the confidence interval of the mean."""

    n: int
    median: float
    mean: float
    stdev: float
    min: float
    max: float
    ci_lo: float
    ci_hi: float
    confidence: float


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Stats:
    """Median, mean, sample stdev, range and the Student t interval of the mean."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("summarize needs at least one sample")
    n = len(xs)
    mean = statistics.fmean(xs)
    lo, hi = min(xs), max(xs)
    if lo == hi:
        # One sample or zero spread: the interval is the value itself (fmean of equal floats
        # may differ from them in the last bit, so take the value, not the mean).
        return Stats(n, lo, lo, 0.0, lo, hi, lo, hi, confidence)
    sd = statistics.stdev(xs)
    half = t_quantile(n - 1, confidence) * sd / math.sqrt(n)
    return Stats(n, statistics.median(xs), mean, sd, lo, hi, mean - half, mean + half, confidence)


def _le(a: float, b: float) -> bool:
    """a <= b, allowing unit-conversion round-off."""
    return a <= b or math.isclose(a, b, rel_tol=_REL, abs_tol=0.0)


def _lt(a: float, b: float) -> bool:
    return not _le(b, a)


def _range_text(lo: float, hi: float, unit: str) -> str:
    """Range text: "50-200 ms", "<= 200 ms", ">= 50 ms", "12", "0xf03ff000-0xf0401000"."""
    if math.isinf(lo) and math.isinf(hi):
        return "any value"
    if math.isinf(lo):
        return f"<= {format_value(hi, unit)}"
    if math.isinf(hi):
        return f">= {format_value(lo, unit)}"
    a, b = format_value(lo, unit), format_value(hi, unit)
    if a == b:
        return a
    sep = "-" if lo >= 0 else " to "  # "-5--3 ms" would misread
    suffix = unit_suffix(unit)
    # "50-200 ms" rather than "50 ms-200 ms".
    if suffix and a.endswith(suffix) and b.endswith(suffix):
        a = a[: -len(suffix)]
    return f"{a}{sep}{b}"


def _bound_name(band: tuple[float, float], band_text: str, unit: str, upper: bool) -> str:
    """ "the upper bound 200 ms of 50-200 ms"; for a one-sided band "the maximum 200 ms"."""
    value = format_value(band[1] if upper else band[0], unit)
    if math.isinf(band[0]) or math.isinf(band[1]):
        return f"the {'maximum' if upper else 'minimum'} {value}"
    return f"the {'upper' if upper else 'lower'} bound {value} of {band_text}"


def _interval_text(lo: float, hi: float, unit: str) -> str:
    left = "(-inf" if math.isinf(lo) else f"[{format_value(lo, unit)}"
    right = "+inf)" if math.isinf(hi) else f"{format_value(hi, unit)}]"
    return f"{left}, {right}"


def _classify(interval: tuple[float, float], band: tuple[float, float]) -> Outcome:
    (lo, hi), (blo, bhi) = interval, band
    if _le(blo, lo) and _le(hi, bhi):
        return "confirmed"
    if _lt(bhi, lo) or _lt(hi, blo):
        return "refuted"
    return "inconclusive"


def _floor(unit: str) -> float:
    return 0.0 if parse_unit(unit).dimension in _NON_NEGATIVE else -math.inf


def _bounded(stats: Stats, bound: str | None, unit: str) -> tuple[float, float]:
    """The interval of the measured quantity itself, before any emulation allowance."""
    floor = _floor(unit)
    if bound == "upper":
        return (floor, stats.ci_hi)
    # A wide CI of a non-negative quantity may dip below 0; the quantity cannot.
    lo = max(floor, stats.ci_lo)
    if bound == "lower":
        return (lo, math.inf)
    return (lo, stats.ci_hi)


def _emulated(interval: tuple[float, float], factor: float | None) -> tuple[float, float]:
    lo, hi = interval
    if factor is None or factor == 1 or lo <= 0:
        return interval
    return (lo / factor, hi)


@dataclass(frozen=True)
class Verdict:
    """A claim, what was measured, and the decision with its reason (see the module docstring)."""

    claim: Claim
    outcome: Outcome
    reason: str
    measurement: Measurement | None
    stats: Stats | None  # in the claim's unit
    interval: tuple[float, float] | None  # claim's unit, after bound and emulation allowances
    emulation_factor: float | None  # timing measurements only
    accel: str | None

    @property
    def headline(self) -> str:
        return f"{self.outcome}: {self.reason}"

    @property
    def unit(self) -> str:
        """The unit of stats and interval: the claim's, else the measurement's."""
        return _unit_of(self.claim, self.measurement)

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
        return _range_text(-math.inf if lo is None else lo, math.inf if hi is None else hi, self.unit)

    def measured_brief(self) -> str:
        """Median with its range, e.g. "12.5 s (12.1-13 s)"; "-" without samples."""
        s = self.stats
        if s is None:
            return "-"
        med = format_value(s.median, self.unit)
        if s.min == s.max:
            return med
        return f"{med} ({_range_text(s.min, s.max, self.unit)})"

    def measured_text(self) -> str:
        """e.g. "12.5 s (median; 12.1-13 s, n=3)" in the claim's unit."""
        s = self.stats
        if s is None:
            m = self.measurement
            if m is not None and m.unmeasurable:
                return "not measurable"
            return "not measured"
        med = format_value(s.median, self.unit)
        if s.n == 1:
            return f"{med} (n=1)"
        if s.min == s.max:
            return f"{med} (all {s.n} samples equal)"
        return f"{med} (median; {_range_text(s.min, s.max, self.unit)}, n={s.n})"

    def side_by_side(self) -> str:
        """Claim and measurement next to each other, with the verdict, for failure messages."""
        c, m, s, u = self.claim, self.measurement, self.stats, self.unit
        lines = [f"{c.id}: {c.statement}"]
        claimed = f"claimed:  {self.claimed_text()}"
        lines.append(f"{claimed}  ({c.source})" if c.source else claimed)
        if s is None:
            measured = "measured: " + self.measured_text()
        else:
            measured = f"measured: {format_value(s.median, u)} median"
            if s.n > 1:
                measured += (
                    f", mean {format_value(s.mean, u)}, sd {format_value(s.stdev, u)}, n={s.n}, "
                    f"{s.confidence:.0%} CI {_interval_text(s.ci_lo, s.ci_hi, u)}"
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
            measured += f" -> {_value_word(self.emulation_factor)} in {_interval_text(*self.interval, u)}"
        lines.append(measured)
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


def _unit_of(claim: Claim, measurement: Measurement | None) -> str:
    if claim.unit:
        return claim.unit
    return measurement.unit if measurement is not None else "count"


def _value_word(factor: float | None) -> str:
    """What the interval is of: under emulation, the value the guest would show on hardware."""
    return "value" if factor in (None, 1) else "hardware value"


def _factor_label(accel: str | None) -> str:
    return f"{(accel or 'emulation').upper()} factor"


def decide(
    claim: Claim,
    measurement: Measurement | None,
    emulation_factor: float,
    *,
    kvm_factor: float = 1.0,
    confidence: float = 0.95,
) -> Verdict:
    """Decide ``claim`` from ``measurement`` by the rules in the module docstring."""
    if emulation_factor < 1 or kvm_factor < 1:
        raise ValueError(f"emulation factors are slowdowns and must be >= 1, got {emulation_factor}, {kvm_factor}")

    def verdict(
        outcome: Outcome,
        reason: str,
        stats: Stats | None = None,
        interval: tuple[float, float] | None = None,
        factor: float | None = None,
    ) -> Verdict:
        accel = measurement.conditions.accel if measurement is not None else None
        return Verdict(claim, outcome, reason, measurement, stats, interval, factor, accel)

    if measurement is None:
        return verdict("inconclusive", "not measured: no measurement was taken for this claim")
    m = measurement
    if m.unmeasurable:
        return verdict("inconclusive", f"unmeasurable: {m.unmeasurable}")
    unit = _unit_of(claim, m)
    try:
        samples = [convert(x, m.unit, unit) for x in m.samples]
    except ConfigError as e:
        return verdict("inconclusive", f"measurement unit does not fit the claim: {e}")
    factor = (emulation_factor if m.conditions.accel == "tcg" else kvm_factor) if m.timing else None
    stats = summarize(samples, confidence) if samples else None
    raw = _bounded(stats, m.bound, unit) if stats is not None else None
    interval = _emulated(raw, factor) if raw is not None else None

    def undecided(reason: str) -> Verdict:
        return verdict("inconclusive", reason, stats, interval, factor)

    if m.inconclusive:
        return undecided(m.inconclusive)
    if claim.report_only:
        partial = Verdict(claim, "inconclusive", "", m, stats, interval, factor, m.conditions.accel)
        return undecided(f"report only: {partial.measured_text()}")
    n = stats.n if stats is not None else 0
    if n < claim.min_samples:
        plural = "sample" if claim.min_samples == 1 else "samples"
        return undecided(f"n={n} below the claim's minimum of {claim.min_samples} {plural}")
    if stats is None or raw is None or interval is None:
        return undecided("no samples were taken")
    if claim.expect is None:
        return undecided("the claim states no expectation to check")
    wlo, whi = claim.expect.widened()
    band = (-math.inf if wlo is None else wlo, math.inf if whi is None else whi)
    band_text = _range_text(*band, unit)

    if parse_unit(unit).dimension == "flag":
        flag_outcome, flag_reason = _decide_flag(samples, band, band_text)
        return verdict(flag_outcome, flag_reason, stats, interval, factor)

    # Name the allowances that shaped the interval, so the reason says what was compared.
    allowances = [f"{m.bound} bound"] if m.bound else []
    if factor not in (None, 1):
        allowances.append(f"{_factor_label(m.conditions.accel)} {factor:g}")
    if stats.n == 1:  # a single sample has no confidence interval to speak of
        ci = f"the single sample {format_value(stats.median, unit)}"
    else:
        ci = f"{stats.confidence:.0%} CI {_interval_text(stats.ci_lo, stats.ci_hi, unit)}"
    if allowances:
        desc = f"{_value_word(factor)} in {_interval_text(*interval, unit)} ({ci}; {', '.join(allowances)})"
    else:
        desc = ci

    outcome = _classify(interval, band)
    one_sided = math.isinf(band[0]) or math.isinf(band[1])
    if outcome == "confirmed":
        if band[0] == band[1]:
            within = f"is exactly {band_text}"
        elif one_sided:
            upper = math.isinf(band[0])
            within = f"lies at or {'below' if upper else 'above'} {_bound_name(band, band_text, unit, upper)}"
        else:
            within = f"lies within {band_text}"
        return verdict("confirmed", f"{desc} {within}", stats, interval, factor)
    if outcome == "refuted":
        upper = _lt(band[1], interval[0])
        # "above 50-200 ms" reads better than "above the upper bound 200 ms of 50-200 ms".
        target = _bound_name(band, band_text, unit, upper) if one_sided else band_text
        return verdict("refuted", f"{desc} lies {'above' if upper else 'below'} {target}", stats, interval, factor)

    lo, hi = interval
    below_lo = _lt(lo, band[0])  # the interval reaches out of the band at its lower end
    above_hi = _lt(band[1], hi)
    if band[0] == band[1]:
        where = f"includes {band_text} but also other values"
    elif below_lo and above_hi:
        where = f"covers both bounds of {band_text}"
    elif below_lo:
        verb = "touches" if math.isclose(hi, band[0], rel_tol=_REL) else "straddles"
        where = f"{verb} {_bound_name(band, band_text, unit, upper=False)}"
    else:
        verb = "touches" if math.isclose(lo, band[1], rel_tol=_REL) else "straddles"
        where = f"{verb} {_bound_name(band, band_text, unit, upper=True)}"
    reason = f"{desc} {where}"
    if factor is not None and interval != raw:
        # Only the emulation allowance keeps this open: name the slowdown that would decide it.
        without = _classify(raw, band)
        label = f"{_factor_label(m.conditions.accel)} allowed: {factor:g}"
        if without == "refuted" and band[1] > 0 and _lt(band[1], raw[0]):
            reason += f"; fails if emulation slows this guest by less than {raw[0] / band[1]:.3g}x; {label}"
        elif without == "confirmed" and band[0] > 0:
            reason += f"; holds if emulation slows this guest by less than {raw[0] / band[0]:.3g}x; {label}"
    return undecided(reason)


def _decide_flag(samples: Sequence[float], band: tuple[float, float], band_text: str) -> tuple[Outcome, str]:
    """Flags are properties, not quantities: decided only when all samples agree."""
    yes = sum(1 for x in samples if x)
    n = len(samples)
    if 0 < yes < n:
        return "inconclusive", f"the samples disagree: {yes} of {n} yes, claimed {band_text}"
    seen = "yes" if yes else "no"
    desc = f"the sample is {seen}" if n == 1 else f"all {n} samples are {seen}"
    if band[0] <= (1.0 if yes else 0.0) <= band[1]:
        return "confirmed", f"{desc}, as claimed"
    return "refuted", f"{desc}, claimed {band_text}"
