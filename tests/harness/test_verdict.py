"""Verdicts: statistics of samples and the decision rules of ``pytest_minix.verdicts.verdict``."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_minix.measure.measurement import Conditions, Measurement
from pytest_minix.verdicts.claims import Claim, Expect, load_claims
from pytest_minix.verdicts.verdict import decide, summarize, t_quantile

TCG = Conditions(guest="minix", arch="i386", accel="tcg")
KVM = Conditions(guest="minix", arch="i386", accel="kvm")


def make_claim(
    unit: str = "count",
    lo: float | None = None,
    hi: float | None = None,
    *,
    exact: float | None = None,
    tol: float = 0.0,
    min_samples: int = 1,
    report_only: bool = False,
    text: str = "",
) -> Claim:
    expect: Expect | None
    if exact is not None:
        expect = Expect(exact, exact, True, tol, tol, text)
    elif lo is None and hi is None:
        expect = None
    else:
        expect = Expect(lo, hi, False, tol, tol, text)
    return Claim(
        id="boot.kernel_init",
        statement="The kernel initializes quickly",
        source="paper, table 2",
        guest="minix",
        arches=("i386",),
        metric="boot.kernel_init",
        unit=unit,
        expect=expect,
        min_samples=min_samples,
        measured_as="console marker to marker",
        report_only=report_only,
        path=Path("claims/boot.toml"),
        line=3,
    )


def meas(samples: list[float], unit: str = "count", cond: Conditions = TCG, **kw: Any) -> Measurement:
    return Measurement(metric="boot.kernel_init", unit=unit, samples=samples, conditions=cond, **kw)


# --- summarize ------------------------------------------------------------------------------------------------------


def test_summarize_one_sample_is_a_degenerate_interval() -> None:
    s = summarize([4.2])
    assert (s.n, s.median, s.mean, s.stdev, s.min, s.max, s.ci_lo, s.ci_hi) == (1, 4.2, 4.2, 0.0, 4.2, 4.2, 4.2, 4.2)
    assert s.confidence == 0.95


def test_summarize_zero_spread_keeps_the_exact_value() -> None:
    s = summarize([0.1, 0.1, 0.1, 0.1])
    assert (s.ci_lo, s.ci_hi, s.stdev, s.mean, s.median) == (0.1, 0.1, 0.0, 0.1, 0.1)


def test_summarize_student_t_interval_n3() -> None:
    s = summarize([1.0, 2.0, 3.0])
    half = 4.303 * 1.0 / math.sqrt(3)  # t(df=2, 95 %) = 4.303, sd = 1
    assert s.mean == 2.0 and s.stdev == 1.0 and s.median == 2.0
    assert s.ci_lo == pytest.approx(2.0 - half) and s.ci_hi == pytest.approx(2.0 + half)


def test_summarize_other_confidence_and_even_median() -> None:
    s = summarize([1.0, 2.0, 3.0, 10.0], confidence=0.99)
    assert s.median == 2.5 and s.confidence == 0.99
    half = 5.841 * s.stdev / 2  # t(df=3, 99 %)
    assert s.ci_hi - s.mean == pytest.approx(half)


def test_summarize_needs_samples() -> None:
    with pytest.raises(ValueError, match="at least one sample"):
        summarize([])


def test_t_quantiles_known_values() -> None:
    assert t_quantile(2, 0.95) == 4.303
    assert t_quantile(1, 0.95) == 12.706
    assert t_quantile(30, 0.95) == 2.042
    assert t_quantile(60, 0.95) == pytest.approx(2.000, abs=2e-3)
    assert t_quantile(120, 0.95) == pytest.approx(1.980, abs=2e-3)
    assert t_quantile(1, 0.80) == pytest.approx(3.078, abs=1e-3)  # closed forms off the table
    assert t_quantile(2, 0.80) == pytest.approx(1.886, abs=1e-3)
    assert t_quantile(10**6, 0.95) == pytest.approx(1.960, abs=1e-3)  # tends to the normal quantile


@pytest.mark.parametrize("confidence", [0.90, 0.95, 0.99])
def test_t_table_agrees_with_the_expansion(confidence: float) -> None:
    """Guards the hand-typed table: the off-table approximation is within 0.3 % from df 3 on."""
    for df in range(3, 31):
        approx = t_quantile(df, confidence + 1e-12)  # just off the table's key: the expansion
        assert t_quantile(df, confidence) == pytest.approx(approx, rel=3e-3), df


# --- decide: the paths ----------------------------------------------------------------------------------------------


def test_confirmed_with_specific_reason() -> None:
    v = decide(make_claim("count", 12, 15), meas([12, 12, 12]), 30)
    assert v.outcome == "confirmed"
    assert v.reason == "95% CI [12, 12] lies within 12-15"
    assert v.interval == (12, 12) and v.emulation_factor is None and v.accel == "tcg"
    assert v.headline.startswith("confirmed: 95% CI")


def test_refuted_above_and_below() -> None:
    above = decide(make_claim("MiB", None, 1), meas([2 * 1024**2] * 3, "B"), 30)
    assert above.outcome == "refuted" and above.reason == "95% CI [2 MiB, 2 MiB] lies above the maximum 1 MiB"
    below = decide(make_claim("MiB", 64, None), meas([32.0], "MiB"), 30)
    assert below.outcome == "refuted" and below.reason == "the single sample 32 MiB lies below the minimum 64 MiB"


def test_inconclusive_when_the_interval_straddles_a_bound() -> None:
    v = decide(make_claim("count", 12, 100), meas([11, 12, 13]), 30)
    assert v.outcome == "inconclusive"
    assert "straddles the lower bound 12 of 12-100" in v.reason
    wide = decide(make_claim("count", 12, 15), meas([5, 14, 25]), 30)
    assert wide.outcome == "inconclusive" and "covers both bounds of 12-15" in wide.reason


def test_inconclusive_below_min_samples() -> None:
    v = decide(make_claim("count", 12, 15, min_samples=3), meas([12, 13]), 30)
    assert v.outcome == "inconclusive"
    assert v.reason == "n=2 below the claim's minimum of 3 samples"
    assert v.stats is not None and v.stats.n == 2


def test_inconclusive_when_unmeasurable_or_not_measured() -> None:
    v = decide(make_claim("count", 12, 15), meas([], unmeasurable="no console marker on arm"), 30)
    assert v.outcome == "inconclusive" and "no console marker on arm" in v.reason
    assert v.stats is None and v.interval is None and v.measured_text() == "not measurable"
    none = decide(make_claim("count", 12, 15), None, 30)
    assert none.outcome == "inconclusive" and none.reason.startswith("not measured")
    assert none.accel is None and none.arch == "i386"


def test_measurement_inconclusive_keeps_the_statistics() -> None:
    v = decide(make_claim("count", 12, 15), meas([12, 13], inconclusive="only the harness's own markers"), 30)
    assert v.outcome == "inconclusive" and v.reason == "only the harness's own markers"
    assert v.stats is not None and v.stats.n == 2


def test_report_only_reports_the_value() -> None:
    v = decide(make_claim("s", report_only=True), meas([12.1, 12.5, 13.0], "s", timing=True), 30)
    assert v.outcome == "inconclusive"
    assert v.reason == "report only: 12.5 s (median; 12.1-13 s, n=3)"
    assert v.stats is not None and v.emulation_factor == 30


def test_no_samples_without_a_reason_is_inconclusive() -> None:
    v = decide(make_claim("count", 1, 2, min_samples=1), meas([]), 30)
    assert v.outcome == "inconclusive" and "n=0" in v.reason


# --- decide: bounds, bands, units -----------------------------------------------------------------------------------


def test_band_touching_the_interval_from_outside_is_inconclusive() -> None:
    # An upper-bound measurement of 12 leaves [0, 12]: it touches the band 12-15 at 12 only.
    low = decide(make_claim("count", 12, 15), meas([12, 12, 12], bound="upper"), 30)
    assert low.interval == (0.0, 12) and low.outcome == "inconclusive"
    assert "touches the lower bound 12 of 12-15" in low.reason
    high = decide(make_claim("count", 12, 15), meas([15, 15], bound="lower"), 30)
    assert high.interval == (15, math.inf) and high.outcome == "inconclusive"
    assert "touches the upper bound 15" in high.reason
    inside = decide(make_claim("count", 12, 15), meas([15, 15]), 30)  # closed band: the bound itself is in it
    assert inside.outcome == "confirmed"


def test_one_sided_bands() -> None:
    at_most = decide(make_claim("ms", None, 200), meas([150.0] * 3, "ms"), 30)
    assert at_most.reason == "95% CI [150 ms, 150 ms] lies at or below the maximum 200 ms"
    at_least = decide(make_claim("ms", 100, None), meas([150.0] * 3, "ms"), 30)
    assert at_least.reason == "95% CI [150 ms, 150 ms] lies at or above the minimum 100 ms"
    assert decide(make_claim("ms", None, 200), meas([250.0] * 3, "ms"), 30).outcome == "refuted"
    straddle = decide(make_claim("ms", None, 200), meas([150.0, 250.0], "ms"), 30)
    assert straddle.outcome == "inconclusive" and "straddles the maximum 200 ms" in straddle.reason


def test_exact_hex_value_with_tolerance() -> None:
    c = make_claim("address", exact=0xF0400000, tol=0x1000, text="= 0xf0400000 ± 0x1000")
    near = decide(c, meas([0xF0400800] * 3, "address"), 30)
    assert near.outcome == "confirmed" and near.reason.endswith("lies within 0xf03ff000-0xf0401000")
    far = decide(c, meas([0xF0402000] * 3, "address"), 30)
    assert far.outcome == "refuted" and "[0xf0402000, 0xf0402000]" in far.reason
    assert far.claimed_text() == "= 0xf0400000 ± 0x1000"


def test_exact_value_from_a_claims_file(tmp_path: Path) -> None:
    f = tmp_path / "mem.toml"
    f.write_text(
        '[[claim]]\nid = "mem.kernel_base"\nstatement = "The kernel is loaded at 0xf0400000"\nsource = "book"\n'
        'guest = "minix"\narch = "i386"\nmetric = "mem.kernel_base"\nunit = "address"\n'
        'measured_as = "the kernel symbol table"\nvalue = 0xf0400000\n'
    )
    [c] = load_claims([f], {"mem.kernel_base": "address"})
    exact = decide(c, meas([0xF0400000], "address"), 30)
    assert exact.outcome == "confirmed" and exact.reason == "the single sample 0xf0400000 is exactly 0xf0400000"
    off = decide(c, meas([0xF0400000, 0xF0401000], "address"), 30)
    assert off.outcome == "inconclusive" and "includes 0xf0400000 but also other values" in off.reason


def test_flag_claims() -> None:
    c = make_claim("flag", exact=1.0, text="= yes")
    yes = decide(c, meas([1.0, 1.0, 1.0], "flag"), 30)
    assert yes.outcome == "confirmed" and yes.reason == "all 3 samples are yes, as claimed"
    no = decide(c, meas([0.0], "flag"), 30)
    assert no.outcome == "refuted" and no.reason == "the sample is no, claimed yes"
    # A CI of the mean of 0/1 samples would refute "yes" here; disagreeing samples decide nothing.
    mixed = decide(c, meas([0.0, 0.0, 0.0, 0.0, 1.0], "flag"), 30)
    assert mixed.outcome == "inconclusive" and "disagree: 1 of 5 yes" in mixed.reason


def test_upper_bound_measurement_refutes_only_from_below() -> None:
    c = make_claim("ms", 50, 200, text="50-200 ms")
    # Kernel init timed from QEMU start includes firmware: the true value is at most the measured one.
    below = decide(c, meas([0.03] * 3, "s", cond=KVM, timing=True, bound="upper"), 30)
    assert below.outcome == "refuted" and below.interval == pytest.approx((0.0, 30))
    above = decide(c, meas([0.5] * 3, "s", cond=KVM, timing=True, bound="upper"), 30)
    assert above.outcome == "inconclusive" and "upper bound" in above.reason
    fits = decide(make_claim("ms", None, 200), meas([0.15] * 3, "s", cond=KVM, timing=True, bound="upper"), 30)
    assert fits.outcome == "confirmed"


def test_timing_under_tcg_refuted_when_even_the_factor_cannot_save_it() -> None:
    c = make_claim("ms", 50, 200, text="50-200 ms")
    v = decide(c, meas([12.1, 12.5, 13.0], "s", timing=True), 30)
    assert v.outcome == "refuted" and v.emulation_factor == 30 and v.accel == "tcg"
    assert v.interval is not None and v.interval[0] > 200  # 12.5 s / 30 = 0.42 s > 0.2 s
    assert "TCG factor 30" in v.reason and "lies above 50-200 ms" in v.reason


def test_timing_under_tcg_inconclusive_names_the_deciding_factor() -> None:
    c = make_claim("ms", 50, 200, text="50-200 ms")
    v = decide(c, meas([3.0] * 3, "s", timing=True), 30)
    assert v.outcome == "inconclusive"
    assert "fails if emulation slows this guest by less than 15x; TCG factor allowed: 30" in v.reason
    fast = decide(c, meas([0.1] * 3, "s", timing=True), 30)
    assert fast.outcome == "inconclusive"
    assert "holds if emulation slows this guest by less than 2x; TCG factor allowed: 30" in fast.reason


def test_timing_under_kvm_uses_the_kvm_factor() -> None:
    c = make_claim("ms", 50, 200, text="50-200 ms")
    v = decide(c, meas([3.0] * 3, "s", cond=KVM, timing=True), 30)
    assert v.outcome == "refuted" and v.emulation_factor == 1.0 and v.accel == "kvm"
    assert "factor" not in v.reason  # a factor of 1 changes nothing and is not mentioned
    slow = decide(make_claim("ms", 120, 200), meas([0.15] * 3, "s", cond=KVM, timing=True), 30, kvm_factor=1.5)
    assert slow.emulation_factor == 1.5 and slow.interval == pytest.approx((100, 150))
    assert "holds if emulation slows this guest by less than 1.25x; KVM factor allowed: 1.5" in slow.reason


def test_non_timing_measurement_records_no_factor() -> None:
    v = decide(make_claim("count", 1, 100), meas([40.0] * 3), 30)
    assert v.emulation_factor is None


def test_samples_are_converted_to_the_claims_unit() -> None:
    v = decide(make_claim("ms", 50, 200), meas([0.1, 0.1, 0.1], "s"), 30)
    assert v.outcome == "confirmed" and v.stats is not None and v.stats.median == pytest.approx(100)
    assert v.measured_text() == "100 ms (all 3 samples equal)"
    # 0.2 s is 200.00000000000003 ms in floating point: round-off must not refute "<= 200 ms".
    assert decide(make_claim("ms", None, 200), meas([0.2] * 3, "s"), 30).outcome == "confirmed"


def test_incompatible_units_are_inconclusive() -> None:
    v = decide(make_claim("ms", 1, 2), meas([5.0], "B"), 30)
    assert v.outcome == "inconclusive" and "Cannot convert B to ms" in v.reason


def test_factors_must_be_slowdowns() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        decide(make_claim("ms", 1, 2), meas([1.0], "ms"), 0.5)


def test_side_by_side_shows_claim_measurement_and_verdict() -> None:
    c = make_claim("s", 0.05, 0.2, text="50-200 ms")
    v = decide(c, meas([12.1, 12.5, 13.0], "s", timing=True, note="first byte of the line"), 30)
    lines = v.side_by_side().splitlines()
    assert lines[0] == "boot.kernel_init: The kernel initializes quickly"
    assert lines[1] == "claimed:  50-200 ms  (paper, table 2)"
    assert lines[2].startswith("measured: 12.5 s median, mean 12.5 s, sd 0.451 s, n=3, 95% CI [11.4 s, 13.7 s]")
    assert "accel tcg, emulation factor 30 -> hardware value in [0.38 s, 13.7 s]" in lines[2]
    assert lines[3] == "measured as: console marker to marker; first byte of the line"
    assert lines[4] == "conditions: guest minix, arch i386"
    assert lines[5].startswith("verdict: refuted: hardware value in [0.38 s, 13.7 s]")
    assert v.measured_text() == "12.5 s (median; 12.1-13 s, n=3)"


# --- properties -----------------------------------------------------------------------------------------------------

_vals = st.floats(min_value=0.001, max_value=1000, allow_nan=False)


@given(st.lists(_vals, min_size=1, max_size=8), _vals, _vals, st.floats(1, 50), st.floats(1, 50))
def test_a_larger_emulation_factor_never_decides_differently(
    samples: list[float], a: float, b: float, f1: float, f2: float
) -> None:
    """Allowing more slowdown only widens the interval: a decided claim stays decided the same way or opens."""
    c = make_claim("s", min(a, b), max(a, b))
    small, large = (decide(c, meas(samples, "s", timing=True), f) for f in sorted((f1, f2)))
    if large.outcome != "inconclusive":
        assert small.outcome == large.outcome
    assert small.interval is not None and large.interval is not None
    assert large.interval[0] <= small.interval[0] and large.interval[1] == small.interval[1]


@given(st.lists(_vals, min_size=1, max_size=8), _vals, _vals)
def test_outcome_matches_the_interval(samples: list[float], a: float, b: float) -> None:
    lo, hi = min(a, b), max(a, b)
    v = decide(make_claim("count", lo, hi), meas(samples), 30)
    assert v.interval is not None
    ilo, ihi = v.interval
    if v.outcome == "confirmed":
        assert lo * (1 - 1e-9) <= ilo and ihi <= hi * (1 + 1e-9)
    elif v.outcome == "refuted":
        assert ihi < lo or ilo > hi
