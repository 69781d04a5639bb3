"""The claims report (table, JSON, Markdown) and the boot timeline chart."""

from __future__ import annotations

import html
import json
import sys
from pathlib import Path

import pytest
from test_verdict import KVM, make_claim, meas

from pytest_minix.verdicts.chart import timeline_chart
from pytest_minix.verdicts.report import COLUMNS, ClaimsReport
from pytest_minix.verdicts.verdict import decide

META = {"harness_version": "0.1.0", "emulation_factor": 30, "rounds": 3, "command": "pytest --minix-claims"}


def sample_report() -> ClaimsReport:
    r = ClaimsReport(META)
    r.add(decide(make_claim("ms", 50, 200, text="50-200 ms"), meas([12.1, 12.5, 13.0], "s", timing=True), 30))
    r.add(decide(make_claim("count", 12, 15), meas([12, 12, 12]), 30))
    r.add(decide(make_claim("ms", 50, 200, text="50-200 ms"), meas([3.0] * 3, "s", timing=True), 30))
    r.add(decide(make_claim("count", 1, 2), meas([], unmeasurable="no marker | on arm"), 30))
    r.add(decide(make_claim("count", 12, 15), meas([20.0], bound="lower", note="a | note", extra={"raw": [1, 2]}), 30))
    r.add(decide(make_claim("s", report_only=True), meas([0.5, 0.7], "s", cond=KVM, timing=True), 30))
    return r


def test_counts_cover_every_outcome() -> None:
    r = sample_report()
    assert r.counts() == {"confirmed": 1, "refuted": 2, "inconclusive": 3}
    assert ClaimsReport().counts() == {"confirmed": 0, "refuted": 0, "inconclusive": 0}
    assert r.summary_line() == "6 claims: 1 confirmed, 2 refuted, 3 inconclusive"


def test_json_round_trips_with_all_fields() -> None:
    r = sample_report()
    data = json.loads(json.dumps(r.to_json(), allow_nan=False))
    assert data["pytest_minix"] == META
    assert data["summary"] == r.counts()
    first = data["verdicts"][0]
    for key in (
        "id",
        "statement",
        "source",
        "where",
        "guest",
        "arch",
        "metric",
        "unit",
        "claimed",
        "expect",
        "measured_as",
        "outcome",
        "reason",
        "stats",
        "samples",
        "measurement_unit",
        "interval",
        "emulation_factor",
        "conditions",
        "note",
        "extra",
    ):
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
    assert first["samples"] == [12.1, 12.5, 13.0] and first["measurement_unit"] == "s" and first["unit"] == "ms"
    assert first["stats"]["median"] == pytest.approx(12500) and first["stats"]["n"] == 3
    assert set(first["stats"]) == {"n", "median", "mean", "stdev", "min", "max", "ci_lo", "ci_hi", "confidence"}
    assert first["emulation_factor"] == 30 and first["conditions"]["accel"] == "tcg"
    assert first["outcome"] == "refuted"
    unmeasurable = data["verdicts"][3]
    assert unmeasurable["stats"] is None and unmeasurable["interval"] is None and unmeasurable["samples"] == []
    lower = data["verdicts"][4]
    assert lower["interval"] == [20, None]  # the unbounded side is null, not Infinity
    assert lower["extra"] == {"raw": [1, 2]} and lower["note"] == "a | note"
    assert data["verdicts"][5]["expect"] is None and data["verdicts"][5]["claimed"] == "report only"


def test_json_of_a_missing_measurement() -> None:
    r = ClaimsReport()
    r.add(decide(make_claim("count", 1, 2), None, 30))
    [v] = json.loads(json.dumps(r.to_json()))["verdicts"]
    assert v["conditions"] is None and v["samples"] is None and v["arch"] == "i386"


def test_markdown_has_a_row_per_verdict_and_escapes_pipes() -> None:
    r = sample_report()
    md = r.to_markdown()
    assert md.startswith("# ")
    assert "- **harness_version**: 0.1.0" in md and "- **emulation_factor**: 30" in md
    assert "6 claims: 1 confirmed, 2 refuted, 3 inconclusive" in md
    rows = [line for line in md.splitlines() if line.startswith("| ")]
    assert rows[0] == "| " + " | ".join(COLUMNS) + " |"
    assert len(rows) == 1 + len(r.records)
    assert all(row.replace("\\|", "").count("|") == len(COLUMNS) + 1 for row in rows)
    assert "no marker \\| on arm" in md and "no marker | on arm" not in md
    assert "## Measured as" in md and "console marker to marker Note: a | note" in md
    assert md.count("(i386, claims/boot.toml:3): console marker to marker\n") == 1  # identical notes once


@pytest.mark.parametrize("width", [60, 80, 120, 200])
def test_table_fits_the_width(width: int) -> None:
    r = sample_report()
    text = r.table(width)
    lines = text.splitlines()
    assert all(len(line) <= width for line in lines), max(lines, key=len)
    assert lines[0].split()[:2] == ["claim", "arch"] and lines[0].endswith("reason")
    if width >= 80:
        assert lines[0].split()[: len(COLUMNS)] == list(COLUMNS)
    assert lines[-1] == "6 claims: 1 confirmed, 2 refuted, 3 inconclusive"
    for rec in r.records:
        assert rec["id"][:5] in text
    # The reason is wrapped, not lost: its words all appear somewhere when the width allows a real column.
    if width >= 120:
        words = " ".join(text.split())
        assert all(w in words for w in r.records[2]["reason"].split()[:12])


def test_table_of_an_empty_report() -> None:
    assert ClaimsReport().table(80).splitlines()[-1] == "0 claims: 0 confirmed, 0 refuted, 0 inconclusive"


def test_write_creates_json_and_markdown_twin(tmp_path: Path) -> None:
    r = sample_report()
    json_path, md_path = r.write(tmp_path / "deep" / "er" / "claims.json")
    assert json_path == tmp_path / "deep" / "er" / "claims.json"
    assert md_path == tmp_path / "deep" / "er" / "claims.md"
    assert json.loads(json_path.read_text())["summary"] == r.counts()
    assert json_path.read_text().startswith('{\n  "pytest_minix"')  # indent 2
    assert md_path.read_text() == r.to_markdown()
    with pytest.raises(ValueError, match=r"\.md"):
        r.write(tmp_path / "claims.md")


# --- chart ----------------------------------------------------------------------------------------------------------

BOOTS = [
    ("i386 tcg #1", [("cd boot", 0.4), ("kernel", 1.2), ("rc", 3.5), ("login", 6.8)]),
    ("i386 tcg #2", [("cd boot", 0.45), ("kernel", 1.3), ("ds", 1.35), ("rs", 1.5), ("rc", 3.4), ("login", 7.1)]),
    ("arm tcg", [("kernel", 2.0), ("rc", 5.5), ("login", 11.0)]),
]


def test_timeline_chart_writes_png_and_svg(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    paths = timeline_chart(BOOTS, tmp_path / "out" / "boot.timeline", title="MINIX 3 boot")
    assert paths == [tmp_path / "out" / "boot.timeline.png", tmp_path / "out" / "boot.timeline.svg"]
    png, svg = paths
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n") and png.stat().st_size > 1000
    text = svg.read_text()
    assert "<svg" in text
    for phase in ("cd boot -> kernel", "kernel -> rc", "rc -> login", "ds -> rs"):
        assert html.escape(phase) in text, phase
    assert "login 11.00 s" in text and "arm tcg" in text and "seconds from QMP cont" in text


def test_timeline_chart_height_grows_with_boots(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from PIL import Image  # a matplotlib dependency

    one, _ = timeline_chart(BOOTS[:1], tmp_path / "one")
    three, _ = timeline_chart(BOOTS, tmp_path / "three")
    with Image.open(one) as a, Image.open(three) as b:
        assert b.height > a.height * 1.8


def test_timeline_chart_without_matplotlib(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for mod in ("matplotlib", "matplotlib.figure", "matplotlib.patches"):
        monkeypatch.setitem(sys.modules, mod, None)  # makes the import fail
    with pytest.raises(ImportError, match=r"pip install pytest-minix\[chart\]"):
        timeline_chart(BOOTS, tmp_path / "x")
    assert not list(tmp_path.iterdir())
