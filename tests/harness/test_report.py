"""The claims report (table, JSON and its schema, Markdown), the claims forest plot and the boot timeline chart."""

from __future__ import annotations

import dataclasses
import html
import json
import math
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from test_verdict import KVM, make_claim, meas

from pytest_minix.measure.measurement import Conditions
from pytest_minix.verdicts.chart import boot_segments, forest_chart, forest_limits, forest_rows, timeline_chart
from pytest_minix.verdicts.report import (
    COLUMNS,
    SCHEMA_PATH,
    SCHEMA_VERSION,
    ClaimsReport,
    case_record,
    load_schema,
    measured_label,
    short_reason,
)
from pytest_minix.verdicts.verdict import decide

META = {"harness_version": "0.1.0", "emulation_factor": 30, "rounds": 3, "command": "pytest --minix-claims"}
I386 = Conditions(guest="minix", arch="i386", accel="tcg", qemu_version="7.2.22", image_sha256="a" * 64)


def validate(data: dict[str, Any]) -> None:
    """``data`` is a valid report by the schema shipped in the package."""
    jsonschema.Draft202012Validator(load_schema()).validate(data)


def sample_report() -> ClaimsReport:
    r = ClaimsReport(META)
    r.add(decide(make_claim("ms", 50, 200, text="50-200 ms"), meas([12.1, 12.5, 13.0], "s", timing=True), 30))
    r.add(decide(make_claim("count", 12, 15), meas([12, 12, 12]), 30))
    r.add(decide(make_claim("ms", 50, 200, text="50-200 ms"), meas([3.0] * 3, "s", timing=True), 30))
    r.add(decide(make_claim("count", 1, 2), meas([], unmeasurable="no marker | on arm"), 30))
    r.add(decide(make_claim("count", 12, 15), meas([20.0], bound="lower", note="a | note", extra={"raw": [1, 2]}), 30))
    r.add(decide(make_claim("s", report_only=True), meas([0.5, 0.7], "s", cond=KVM, timing=True), 30))
    return r


def full_report() -> ClaimsReport:
    """Every outcome, on two arches."""
    r = sample_report()
    c = make_claim("us", hi=1, text="<= 1 us")
    r.add_record(case_record(c, "arm", "not_run", "no beaglexm machine in this QEMU", "guest_unavailable"))
    r.add_record(case_record(c, "i386", "harness_error", "BootTimeout: no login prompt in 300 s"))
    return r


# --- outcomes, counts, summary line ---------------------------------------------------------------------------------


def test_counts_cover_every_outcome() -> None:
    r = sample_report()
    assert r.counts() == {
        "confirmed": 1,
        "refuted": 2,
        "inconclusive": 2,
        "reported": 1,
        "not_run": 0,
        "harness_error": 0,
    }
    assert r.summary() == {"total": 6, "decided": 3, **r.counts()}
    assert set(ClaimsReport().counts()) == {
        "confirmed",
        "refuted",
        "inconclusive",
        "reported",
        "not_run",
        "harness_error",
    }
    assert r.summary_line() == "6 claims: 3 decided (1 confirmed, 2 refuted), 2 inconclusive, 1 reported"


def test_report_only_claims_are_reported_not_inconclusive() -> None:
    [rec] = [x for x in sample_report().records if x["report_only"]]
    assert rec["outcome"] == "reported" and rec["reason"].startswith("report only")


def test_summary_line_says_how_many_were_decided() -> None:
    r = ClaimsReport()
    c = make_claim("ms", 50, 200)
    for _ in range(26):
        r.add_record(case_record(c, "i386", "not_run", "no MINIX image", "guest_unavailable"))
    assert r.summary_line() == "26 claims: 0 decided, 26 not run (guest unavailable)"
    assert ClaimsReport().summary_line() == "0 claims: 0 decided"
    full = full_report()
    assert full.summary_line() == (
        "8 claims: 3 decided (1 confirmed, 2 refuted), 2 inconclusive, 1 reported, 1 harness error, "
        "1 not run (guest unavailable)"
    )


def test_case_record_needs_a_cause_exactly_when_not_run() -> None:
    c = make_claim("ms", 50, 200, text="50-200 ms")
    with pytest.raises(ValueError, match="cause"):
        case_record(c, "i386", "not_run", "why")
    with pytest.raises(ValueError, match="cause"):
        case_record(c, "i386", "harness_error", "boom", "skipped")
    rec = case_record(c, "i386", "harness_error", "  QemuNotFound:\n no   qemu ")
    assert rec["reason"] == "QemuNotFound: no qemu" and rec["claimed"] == "50-200 ms" and rec["stats"] is None


def test_records_are_sorted_refuted_first() -> None:
    outcomes = [r["outcome"] for r in full_report().sorted_records()]
    assert outcomes == [
        "refuted",
        "refuted",
        "harness_error",
        "inconclusive",
        "inconclusive",
        "not_run",
        "confirmed",
        "reported",
    ]
    data = full_report().to_json()
    assert [v["outcome"] for v in data["verdicts"]] == outcomes


# --- JSON and its schema -------------------------------------------------------------------------------------------


def test_schema_is_shipped_and_valid() -> None:
    assert SCHEMA_PATH.parent.name == "verdicts" and SCHEMA_PATH.is_file()
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"] == {"const": SCHEMA_VERSION}


def test_json_of_every_outcome_validates() -> None:
    r = full_report()
    data = json.loads(json.dumps(r.to_json(), allow_nan=False))
    validate(data)
    assert data["schema_version"] == SCHEMA_VERSION == 2
    assert data["summary"] == r.summary()


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("verdicts", 0, "outcome"), "maybe"),
        (("verdicts", 0, "cause"), "guest_unavailable"),  # only a not_run record has a cause
        (("summary", "decided"), -1),
        (("schema_version",), 1),
    ],
)
def test_schema_rejects_a_broken_report(path: tuple[Any, ...], value: Any) -> None:
    data = full_report().to_json()
    node: Any = data
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(jsonschema.ValidationError):
        validate(data)


def test_json_round_trips_with_all_fields() -> None:
    r = sample_report()
    data = json.loads(json.dumps(r.to_json(), allow_nan=False))
    assert data["pytest_minix"] == META
    by_outcome: dict[str, list[dict[str, Any]]] = {}
    for v in data["verdicts"]:
        by_outcome.setdefault(v["outcome"], []).append(v)
    first = next(v for v in by_outcome["refuted"] if v["samples"] == [12.1, 12.5, 13.0])
    for key in ("id", "statement", "source", "where", "guest", "arch", "metric", "unit", "claimed", "expect"):
        assert key in first, key
    assert first["where"] == "claims/boot.toml:3" and first["claimed"] == "50-200 ms"
    assert first["expect"] == {
        "lo": 50,
        "hi": 200,
        "exact": False,
        "tol_lo": 0,
        "tol_hi": 0,
        "text": "50-200 ms",
        "widened": [50, 200],
    }
    assert first["measurement_unit"] == "s" and first["unit"] == "ms" and first["cause"] is None
    assert first["stats"]["median"] == pytest.approx(12500) and first["stats"]["n"] == 3
    assert set(first["stats"]) == {"n", "median", "mean", "stdev", "min", "max", "ci_lo", "ci_hi", "confidence"}
    assert first["emulation_factor"] == 30 and first["conditions"]["accel"] == "tcg"
    unmeasurable = next(v for v in by_outcome["inconclusive"] if v["unmeasurable"])
    assert unmeasurable["stats"] is None and unmeasurable["interval"] is None and unmeasurable["samples"] == []
    lower = next(v for v in data["verdicts"] if v["bound"] == "lower")
    assert lower["interval"] == [20, None]  # the unbounded side is null, not Infinity
    assert lower["extra"] == {"raw": [1, 2]} and lower["note"] == "a | note"
    [reported] = by_outcome["reported"]
    assert reported["expect"] is None and reported["claimed"] == "report only"


def test_json_of_a_missing_measurement() -> None:
    r = ClaimsReport()
    r.add(decide(make_claim("count", 1, 2), None, 30))
    [v] = json.loads(json.dumps(r.to_json()))["verdicts"]
    assert v["conditions"] is None and v["samples"] is None and v["arch"] == "i386"
    validate(r.to_json())


def test_environment_is_the_conditions_actually_measured() -> None:
    r = ClaimsReport()
    r.add(decide(make_claim("count", 1, 2), meas([1.0], cond=I386), 30))
    r.add(decide(make_claim("count", 1, 2), meas([1.0], cond=dataclasses.replace(I386, accel="kvm")), 30))
    [env] = r.to_json()["environment"]
    assert env == {
        "guest": "minix",
        "arch": "i386",
        "accel": ["tcg", "kvm"],
        "qemu_version": ["7.2.22"],
        "cpu": [],
        "image_sha256": ["a" * 64],
    }


def test_merge_reads_version_1_and_refuses_newer_versions() -> None:
    v1 = sample_report().to_json()
    del v1["schema_version"]
    for rec in v1["verdicts"]:  # as version 1 wrote them
        del rec["cause"]
        if rec["report_only"]:
            rec["outcome"] = "inconclusive"
    merged = ClaimsReport.merge([v1, full_report().to_json()], ["old.json", "new.json"])
    data = merged.to_json()
    validate(data)
    assert merged.counts()["reported"] == 2 and merged.summary()["total"] == 14
    assert [m["source"] for m in data["pytest_minix"]["merged_from"]] == ["old.json", "new.json"]
    newer = {**v1, "schema_version": SCHEMA_VERSION + 1}
    with pytest.raises(ValueError, match="newer"):
        ClaimsReport.merge([newer])
    with pytest.raises(ValueError, match="not a pytest-minix claims report"):
        ClaimsReport.merge([{"hello": 1}])


# --- labels and the Markdown -----------------------------------------------------------------------------------------


def test_measured_label_names_each_figure() -> None:
    recs = {(r["outcome"], r["stats"]["n"] if r["stats"] else 0): r for r in sample_report().records}
    timing = next(r for r in sample_report().records if r["samples"] == [12.1, 12.5, 13.0])
    assert measured_label(timing) == (
        "median 12500 ms; 95% CI 11413-13654 ms; n=3; hardware 380-13654 ms (TCG factor 30)"
    )
    assert measured_label(recs[("confirmed", 3)]) == "12 (all 3 samples)"
    lower = next(r for r in sample_report().records if r["bound"] == "lower")
    assert measured_label(lower) == "20 (one sample)"
    unmeasurable = next(r for r in sample_report().records if r["unmeasurable"])
    assert measured_label(unmeasurable) == "not measurable here"
    assert measured_label(case_record(make_claim(), "i386", "not_run", "x", "skipped")) == "-"


def test_short_reason_drops_the_parentheses_before_cutting() -> None:
    reason = "hardware value in [0 ms, 706 ms] (95% CI [407 ms, 706 ms]; upper bound, TCG factor 30) straddles 5 ms"
    assert short_reason(reason, 60) == "hardware value in [0 ms, 706 ms] straddles 5 ms"
    assert short_reason("word " * 40, 30).endswith("…") and len(short_reason("word " * 40, 30)) <= 30
    assert short_reason("short", 30) == "short"


def test_markdown_has_a_header_a_row_per_claim_and_escapes_pipes() -> None:
    r = full_report()
    r.meta.update(
        date="2025-01-02T03:04:05Z", host="ci-7", guest="minix", arches=["i386", "arm"], accel_requested="auto"
    )
    r.add(decide(make_claim("count", 1, 2), meas([1.0], cond=I386), 30))
    md = r.to_markdown()
    assert md.startswith("# pytest-minix validation report\n\n**9 claims: 4 decided")
    for row in (
        "| date | 2025-01-02T03:04:05Z |",
        "| host | ci-7 |",
        "| harness | pytest-minix 0.1.0 |",
        "| guest | minix |",
        "| arch | i386, arm |",
        "| QEMU | 7.2.22 |",
        f"| image SHA-256 | `{'a' * 64}` |",
    ):
        assert row in md, row
    assert "| accelerator used | tcg, kvm (requested: auto) |" in md  # KVM from sample_report's report-only claim
    assert "> **1 claim not run (guest unavailable):** no beaglexm machine in this QEMU" in md
    rows = [line for line in md.splitlines() if line.startswith("| ") and "<br>`" in line]
    assert len(rows) == len(r.records)
    assert all(row.replace("\\|", "").count("|") == 7 for row in rows)
    assert rows[0].startswith(
        "| ❌ refuted | The kernel initializes quickly<br>`boot.kernel_init` | i386 | 50-200 ms |"
    )
    assert "| 💥 harness error |" in rows[2] and "BootTimeout: no login prompt in 300 s" in rows[2]
    assert "guest unavailable (the reason is above the table)" in md
    assert any("no marker \\| on arm" in row for row in rows) and not any("no marker | on" in row for row in rows)
    assert "Reasons in full, sources, and how each claim is measured" in md
    assert "measured as: console marker to marker Note: a \\| note" in md or "Note: a | note" in md


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_table_fits_the_width(width: int) -> None:
    r = full_report()
    text = r.table(width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert lines[0].split()[:2] == ["claim", "arch"] and lines[0].endswith("reason")
    if width >= 80:
        assert lines[0].split()[: len(COLUMNS)] == list(COLUMNS)
    assert lines[-1] == r.summary_line()[:width]
    for rec in r.records:
        assert rec["id"][:5] in text
    if width >= 120:
        assert "refuted" in lines[2] and "not run" in text and "harness error" in text
        words = " ".join(text.split())
        refuted = r.sorted_records()[0]
        assert all(w in words for w in refuted["reason"].split()[:12])


def test_table_writes_a_repeated_reason_once() -> None:
    r = ClaimsReport()
    for lo in (1, 2, 3):
        r.add_record(case_record(make_claim("count", lo, 9), "i386", "not_run", "no image here", "guest_unavailable"))
    text = r.table(120)
    assert text.count("no image here") == 1 and text.count('" (the same reason)') == 2


def test_table_of_an_empty_report() -> None:
    assert ClaimsReport().table(80).splitlines()[-1] == "0 claims: 0 decided"


def test_write_creates_json_markdown_and_charts(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    r = full_report()
    json_path, md_path = r.write(tmp_path / "deep" / "er" / "claims.json")
    assert json_path == tmp_path / "deep" / "er" / "claims.json"
    assert md_path == tmp_path / "deep" / "er" / "claims.md"
    data = json.loads(json_path.read_text())
    validate(data)
    assert data["summary"] == r.summary()
    assert json_path.read_text().startswith('{\n  "schema_version": 2')  # indent 2
    assert md_path.read_text() == r.to_markdown()
    assert data["charts"] == [
        {"title": "Claims: measured interval against the claimed band", "path": "claims.claims.png"}
    ]
    assert (json_path.parent / "claims.claims.png").is_file() and (json_path.parent / "claims.claims.svg").is_file()
    assert "![Claims: measured interval against the claimed band](claims.claims.png)" in md_path.read_text()
    with pytest.raises(ValueError, match=r"\.md"):
        r.write(tmp_path / "claims.md")


def test_write_without_charts(tmp_path: Path) -> None:
    r = full_report()
    r.write(tmp_path / "r.json", charts=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]
    assert "![" not in (tmp_path / "r.md").read_text()


# --- the claims forest plot ------------------------------------------------------------------------------------------


def test_forest_rows_are_relative_to_the_claims_bound() -> None:
    r = full_report()
    r.add(decide(make_claim("flag", exact=1), meas([1.0], "flag"), 30))  # yes/no: no scale to draw on
    rows, left_out = forest_rows(r.sorted_records())
    # Drawn: the two timing claims, the count claims with samples; not: unmeasurable, report-only,
    # not run, harness error, flag.
    assert [row.outcome for row in rows] == ["refuted", "refuted", "inconclusive", "confirmed"]
    assert left_out == 5
    timing = rows[0]
    assert timing.scale == 200 and timing.band == (0.25, 1.0) and timing.claimed == "50-200 ms"
    assert timing.median == pytest.approx(62.5) and timing.measured == "12500 ms"
    assert timing.ci is not None and timing.ci[0] == pytest.approx(11413.0 / 200, rel=1e-3)
    # Under TCG the compared interval reaches down to CI low / 30.
    assert timing.interval[0] == pytest.approx(timing.ci[0] / 30) and timing.interval[1] == pytest.approx(timing.ci[1])
    lower = rows[1]  # a lower-bound measurement: unbounded above
    assert lower.interval == (20 / 15, math.inf) and lower.ci is None


def test_forest_limits_keep_the_bound_inside() -> None:
    rows, _ = forest_rows(full_report().sorted_records())
    lo, hi = forest_limits(rows)
    assert lo <= 0.25 and hi > 68 and lo < 1 < hi


def test_forest_chart_writes_png_and_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = forest_chart(full_report().sorted_records(), tmp_path / "x.claims", title="Claims: minix on i386")
    assert paths == [tmp_path / "x.claims.png", tmp_path / "x.claims.svg"]
    png, svg = paths
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 1000
    text = svg.read_text()
    for words in ("boot.kernel_init (i386)", "refuted: claimed 50-200 ms, measured 12500 ms", "claimed band", "median"):
        assert html.escape(words) in text, words
    assert "4 claims without a band or a numeric measurement" in text


def test_forest_chart_of_nothing_to_draw(tmp_path: Path) -> None:
    r = ClaimsReport()
    r.add_record(case_record(make_claim("ms", 1, 2), "i386", "not_run", "no image", "guest_unavailable"))
    assert forest_chart(r.records, tmp_path / "none") is None
    assert not list(tmp_path.iterdir())


# --- the boot timeline -----------------------------------------------------------------------------------------------

BOOTS = [
    (
        "i386 boot 1",
        [("cont", 0.0), ("bios", 0.01), ("firmware", 0.05), ("kernel", 1.2), ("init", 3.5), ("login", 6.8)],
    ),
    (
        "i386 boot 2",
        [("cont", 0.0), ("firmware", 0.06), ("kernel", 1.3), ("ready", 3.4), ("login", 7.1), ("shell", 7.3)],
    ),
    ("arm boot 1", [("cont", 0.0), ("kernel", 2.0), ("services", 5.5), ("login", 11.0), ("xyz", 11.5)]),
]


def test_boot_segments_are_named_in_words_and_merged() -> None:
    assert boot_segments(BOOTS[0][1]) == [
        ("firmware", 0.0, 0.05),
        ("kernel", 0.05, 3.5),
        ("system services", 3.5, 6.8),
    ]
    assert [s[0] for s in boot_segments(BOOTS[1][1])] == ["firmware", "kernel", "system services", "login"]
    assert [s[0] for s in boot_segments(BOOTS[2][1])] == ["kernel", "system services", "login -> xyz"]
    assert boot_segments([("cont", 0.0), ("first_output", 1.0), ("kernel", 1.0)]) == [("kernel", 0.0, 1.0)]


def test_timeline_chart_writes_png_and_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = timeline_chart(BOOTS, tmp_path / "out" / "boot.timeline", title="Boot timeline: minix on i386, TCG")
    assert paths == [tmp_path / "out" / "boot.timeline.png", tmp_path / "out" / "boot.timeline.svg"]
    png, svg = paths
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 1000
    text = svg.read_text()
    assert "<svg" in text
    for phase in ("firmware", "kernel", "system services", "login", "login -&gt; xyz"):
        assert phase in text, phase
    assert "login prompt 11.00 s" in text and "arm boot 1" in text and "seconds from QMP cont" in text
    assert "Boot timeline: minix on i386, TCG" in text


def test_timeline_legend_has_only_the_phases_that_occur(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    _, svg = timeline_chart([BOOTS[0]], tmp_path / "one")
    text = svg.read_text()
    assert "system services" in text and "firmware" in text
    assert ">login<" not in text.replace("\n", "") and "login prompt" in text  # no login phase in this boot


def test_timeline_chart_height_grows_with_boots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image  # a matplotlib dependency

    one, _ = timeline_chart(BOOTS[:1], tmp_path / "one")
    three, _ = timeline_chart(BOOTS, tmp_path / "three")
    with Image.open(one) as a, Image.open(three) as b:
        assert b.height > a.height * 1.8


def test_charts_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.patches", "matplotlib.lines", "matplotlib.ticker"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install pytest-minix\[chart\]"):
        timeline_chart(BOOTS, tmp_path / "x")
    with pytest.raises(ImportError, match=r"pip install pytest-minix\[chart\]"):
        forest_chart(full_report().records, tmp_path / "y")
    r = full_report()
    r.write(tmp_path / "r.json")  # the report is written all the same, with a note instead of pictures
    assert r.chart_notes and "pip install pytest-minix[chart]" in r.chart_notes[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json", "r.md"]
