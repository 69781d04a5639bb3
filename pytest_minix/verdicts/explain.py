"""Words for decisions: the one-sentence reason of a verdict and the texts of ranges and intervals.

:mod:`pytest_minix.verdicts.rule` decides and records what it compared; this module only
writes it down. A reason is one sentence without the outcome word, e.g. "95% CI [12, 12]
lies within 12-15" or "hardware value in [0.38 s, 13.7 s] (95% CI [11.4 s, 13.7 s]; TCG
factor 30) lies above 50-200 ms".
"""

from __future__ import annotations

import math

from pytest_minix.measure.units import format_value, unit_suffix
from pytest_minix.verdicts.rule import Comparison, Decision, Evidence, FlagTally, Interval, Outcome, Slowdown
from pytest_minix.verdicts.statistics import Stats

# Reasons that need no figures, by the step of the rule that settled the claim.
_FIXED = {
    "not_measured": "not measured: no measurement was taken for this claim",
    "no_samples": "no samples were taken",
    "no_expectation": "the claim states no expectation to check",
}


def range_text(lo: float, hi: float, unit: str) -> str:
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


def bound_name(band: Interval, band_text: str, unit: str, upper: bool) -> str:
    """ "the upper bound 200 ms of 50-200 ms"; for a one-sided band "the maximum 200 ms"."""
    value = format_value(band[1] if upper else band[0], unit)
    if math.isinf(band[0]) or math.isinf(band[1]):
        return f"the {'maximum' if upper else 'minimum'} {value}"
    return f"the {'upper' if upper else 'lower'} bound {value} of {band_text}"


def interval_text(lo: float, hi: float, unit: str) -> str:
    """ "[50 ms, 200 ms]"; an unbounded side is "(-inf" or "+inf)"."""
    left = "(-inf" if math.isinf(lo) else f"[{format_value(lo, unit)}"
    right = "+inf)" if math.isinf(hi) else f"{format_value(hi, unit)}]"
    return f"{left}, {right}"


def value_word(factor: float | None) -> str:
    """What the interval is of: under emulation, the value the guest would show on hardware."""
    return "value" if factor in (None, 1) else "hardware value"


def factor_label(accel: str | None) -> str:
    """ "TCG factor", "KVM factor"."""
    return f"{(accel or 'emulation').upper()} factor"


def measured_text(stats: Stats | None, unit: str, unmeasurable: bool = False) -> str:
    """e.g. "12.5 s (median; 12.1-13 s, n=3)"; "not measured" (or "not measurable") without samples."""
    s = stats
    if s is None:
        return "not measurable" if unmeasurable else "not measured"
    med = format_value(s.median, unit)
    if s.n == 1:
        return f"{med} (n=1)"
    if s.min == s.max:
        return f"{med} (all {s.n} samples equal)"
    return f"{med} (median; {range_text(s.min, s.max, unit)}, n={s.n})"


def reason(d: Decision) -> str:
    """The verdict's reason: what was compared with what, and how it came out."""
    if d.step in _FIXED:
        return _FIXED[d.step]
    if d.step == "unmeasurable":
        return f"unmeasurable: {d.note}"
    if d.step == "unit_mismatch":
        return f"measurement unit does not fit the claim: {d.note}"
    if d.step == "measurement_inconclusive":
        return d.note
    ev = d.evidence
    assert ev is not None, d.step  # every later step has looked at the samples
    if d.step == "report_only":
        return f"report only: {measured_text(ev.stats, ev.unit)}"
    if d.step == "too_few_samples":
        n = ev.stats.n if ev.stats is not None else 0
        plural = "sample" if d.min_samples == 1 else "samples"
        return f"n={n} below the claim's minimum of {d.min_samples} {plural}"
    assert d.band is not None, d.step
    band_text = range_text(*d.band, ev.unit)
    if d.tally is not None:
        return _flag_reason(d.outcome, d.tally, band_text)
    assert d.comparison is not None, d.step
    return f"{_evidence_text(ev, d.accel)} {_placement(d.comparison, d.band, band_text, ev, d.accel)}"


def _flag_reason(outcome: Outcome, tally: FlagTally, band_text: str) -> str:
    """Rule 8: flags are decided only when all samples agree."""
    if 0 < tally.yes < tally.n:
        return f"the samples disagree: {tally.yes} of {tally.n} yes, claimed {band_text}"
    seen = "yes" if tally.yes else "no"
    desc = f"the sample is {seen}" if tally.n == 1 else f"all {tally.n} samples are {seen}"
    return f"{desc}, as claimed" if outcome == "confirmed" else f"{desc}, claimed {band_text}"


def _evidence_text(ev: Evidence, accel: str | None) -> str:
    """What was compared: the CI (or single sample), and the interval the allowances made of it."""
    assert ev.stats is not None and ev.interval is not None
    stats, unit = ev.stats, ev.unit
    # Name the allowances that shaped the interval, so the reason says what was compared.
    allowances = [f"{ev.bound} bound"] if ev.bound else []
    if ev.factor not in (None, 1):
        allowances.append(f"{factor_label(accel)} {ev.factor:g}")
    if stats.n == 1:  # a single sample has no confidence interval to speak of
        ci = f"the single sample {format_value(stats.median, unit)}"
    else:
        ci = f"{stats.confidence:.0%} CI {interval_text(stats.ci_lo, stats.ci_hi, unit)}"
    if not allowances:
        return ci
    return f"{value_word(ev.factor)} in {interval_text(*ev.interval, unit)} ({ci}; {', '.join(allowances)})"


def _placement(c: Comparison, band: Interval, band_text: str, ev: Evidence, accel: str | None) -> str:
    """Where the interval lies against the band, e.g. "lies within 12-15", "straddles the maximum 200 ms"."""
    unit = ev.unit
    if c.outcome == "confirmed":
        if c.exact:
            return f"is exactly {band_text}"
        if c.side is not None:
            below = "below" if c.side == "upper" else "above"
            return f"lies at or {below} {bound_name(band, band_text, unit, c.side == 'upper')}"
        return f"lies within {band_text}"
    if c.outcome == "refuted":
        upper = c.side == "upper"
        # "above 50-200 ms" reads better than "above the upper bound 200 ms of 50-200 ms".
        target = bound_name(band, band_text, unit, upper) if c.one_sided else band_text
        return f"lies {'above' if upper else 'below'} {target}"
    if c.exact:
        where = f"includes {band_text} but also other values"
    elif c.side == "both":
        where = f"covers both bounds of {band_text}"
    else:
        verb = "touches" if c.touches else "straddles"
        where = f"{verb} {bound_name(band, band_text, unit, upper=c.side == 'upper')}"
    if c.slowdown is not None:
        where += _slowdown_text(c.slowdown, accel)
    return where


def _slowdown_text(s: Slowdown, accel: str | None) -> str:
    """Rule 7: the slowdown below which the claim would be decided without the emulation allowance."""
    verb = "fails" if s.would_be == "refuted" else "holds"
    label = f"{factor_label(accel)} allowed: {s.allowed:g}"
    return f"; {verb} if emulation slows this guest by less than {s.below:.3g}x; {label}"
