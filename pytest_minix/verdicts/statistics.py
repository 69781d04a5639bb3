"""Statistics of samples: median, mean, spread and the Student t confidence interval of the mean.

Nothing here knows about claims or verdicts; :mod:`pytest_minix.verdicts.rule` decides with these numbers.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

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

    @classmethod
    def constant(cls, value: float, n: int, confidence: float) -> Stats:
        """``n`` equal samples (or one): no spread, and the interval is the value itself."""
        return cls(
            n=n,
            median=value,
            mean=value,
            stdev=0.0,
            min=value,
            max=value,
            ci_lo=value,
            ci_hi=value,
            confidence=confidence,
        )

    @classmethod
    def student_t(cls, xs: Sequence[float], confidence: float) -> Stats:
        """Samples with spread: the mean's interval is mean ± t * sd / sqrt(n) (Student t, df = n - 1)."""
        n = len(xs)
        mean = statistics.fmean(xs)
        sd = statistics.stdev(xs)
        half = t_quantile(n - 1, confidence) * sd / math.sqrt(n)
        return cls(
            n=n,
            median=statistics.median(xs),
            mean=mean,
            stdev=sd,
            min=min(xs),
            max=max(xs),
            ci_lo=mean - half,
            ci_hi=mean + half,
            confidence=confidence,
        )


def summarize(samples: Sequence[float], confidence: float = 0.95) -> Stats:
    """Median, mean, sample stdev, range and the Student t interval of the mean."""
    xs = [float(x) for x in samples]
    if not xs:
        raise ValueError("summarize needs at least one sample")
    lo, hi = min(xs), max(xs)
    if lo == hi:
        # One sample or zero spread: the interval is the value itself (fmean of equal floats
        # may differ from them in the last bit, so take the value, not the mean).
        return Stats.constant(lo, len(xs), confidence)
    return Stats.student_t(xs, confidence)
