"""The claims report: every verdict as a terminal table, JSON for machines and a Markdown twin for people."""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pytest_minix.verdicts.verdict import Outcome, Verdict

OUTCOMES: tuple[Outcome, ...] = ("confirmed", "refuted", "inconclusive")
COLUMNS = ("claim", "arch", "claimed", "measured", "n", "verdict", "reason")
# Widest a terminal column may grow before it is cut with "…"; the reason takes the rest of the line.
_CAPS = {"claim": 32, "arch": 6, "claimed": 18, "measured": 26, "n": 4, "verdict": 12}
_SHRINKABLE = ("claim", "measured", "claimed")  # shrunk, widest first, when the reason gets too narrow
_MIN_COL = 6
_MIN_REASON = 20
_MAX_REASON_LINES = 8
_SEP = "  "


def _jsonable(value: Any) -> Any:
    """``value`` with only JSON types; infinities and NaN become null (an unbounded side, no value)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_jsonable(v) for v in value]
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    return str(value)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())  # one line per cell
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def _md(text: str) -> str:
    """A Markdown table cell: pipes escaped, on one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


class ClaimsReport:
    """Verdicts of one session, with the session's meta data (harness version, options, command line...)."""

    def __init__(self, meta: Mapping[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self.records: list[dict[str, Any]] = []

    def add(self, verdict: Verdict) -> None:
        self.records.append(verdict_record(verdict))

    @classmethod
    def merge(cls, reports: Sequence[Mapping[str, Any]], sources: Sequence[str] = ()) -> ClaimsReport:
        """One report from several (shards of a CI matrix, several hosts): every verdict, and each part's meta.

        A (claim, arch, guest) decided in more than one part is kept once per part: the
        report shows both, since they were measured under different conditions.
        """
        merged = cls(
            {
                "merged_from": [
                    {"source": src, **dict(r.get("pytest_minix") or {})}
                    for src, r in zip(list(sources) + [""] * (len(reports) - len(sources)), reports, strict=True)
                ]
            }
        )
        for r in reports:
            verdicts = r.get("verdicts")
            if not isinstance(verdicts, list):
                raise ValueError("not a pytest-minix claims report (no 'verdicts' list)")
            for v in verdicts:
                merged.add_record(v)
        merged.records.sort(key=lambda v: (str(v.get("id")), str(v.get("arch")), str(v.get("guest"))))
        return merged

    def add_record(self, record: Mapping[str, Any]) -> None:
        """A verdict already turned into a record (as xdist workers send them in test reports)."""
        self.records.append(dict(record))

    def counts(self) -> dict[str, int]:
        """Verdicts per outcome, every outcome present."""
        counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for r in self.records:
            counts[r["outcome"]] += 1
        return counts

    def summary_line(self) -> str:
        """e.g. "3 claims: 1 confirmed, 1 refuted, 1 inconclusive"."""
        total = len(self.records)
        parts = ", ".join(f"{n} {outcome}" for outcome, n in self.counts().items())
        return f"{total} claim{'' if total == 1 else 's'}: {parts}"

    @staticmethod
    def _row(r: Mapping[str, Any]) -> dict[str, str]:
        stats = r.get("stats")
        return {
            "claim": str(r["id"]),
            "arch": str(r["arch"]),
            "claimed": str(r["claimed"]),
            "measured": str(r.get("measured_brief", "")),
            "n": str(stats["n"]) if stats else "0",
            "verdict": str(r["outcome"]),
            "reason": str(r["reason"]),
        }

    def table(self, width: int = 120) -> str:
        """A fixed-width table no line of which exceeds ``width``; long reasons wrap within their column."""
        rows = [self._row(r) for r in self.records]
        widths = {c: min(_CAPS[c], max([len(c)] + [len(r[c]) for r in rows])) for c in COLUMNS[:-1]}

        def fixed() -> int:
            return sum(widths.values()) + len(_SEP) * (len(COLUMNS) - 1)

        while width - fixed() < _MIN_REASON:
            col = max(_SHRINKABLE, key=lambda c: widths[c])
            if widths[col] <= _MIN_COL:
                break
            widths[col] -= 1
        reason_w = max(1, width - fixed())

        def line(cells: Mapping[str, str], reason: str) -> str:
            left = _SEP.join(_clip(cells[c], widths[c]).ljust(widths[c]) for c in COLUMNS[:-1])
            # A width too small even for the shrunk columns still gets lines of at most ``width``.
            return f"{left}{_SEP}{reason}".rstrip()[:width]

        out = [line({c: c for c in COLUMNS}, "reason"), "-" * width]
        blank = dict.fromkeys(COLUMNS, "")
        for r in rows:
            wrapped = textwrap.wrap(r["reason"], reason_w) or [""]
            if len(wrapped) > _MAX_REASON_LINES:
                wrapped = [
                    *wrapped[: _MAX_REASON_LINES - 1],
                    _clip(" ".join(wrapped[_MAX_REASON_LINES - 1 :]), reason_w),
                ]
            out.append(line(r, wrapped[0]))
            out.extend(line(blank, cont) for cont in wrapped[1:])
        out.append("-" * width)
        out.append(self.summary_line()[:width])
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        """The whole report as JSON-ready data (no infinities: an unbounded interval side is null)."""
        data = {"pytest_minix": self.meta, "summary": self.counts(), "verdicts": self.records}
        result: dict[str, Any] = _jsonable(data)
        return result

    def to_markdown(self) -> str:
        """Heading, meta list, summary, the verdict table and the per-claim "measured as" notes."""
        out = ["# pytest-minix claims report", ""]
        for key, value in self.meta.items():
            shown = value if isinstance(value, str) else json.dumps(_jsonable(value))
            out.append(f"- **{key}**: {' '.join(str(shown).split())}")
        if self.meta:
            out.append("")
        out += [f"**{self.summary_line()}**", ""]
        out.append("| " + " | ".join(COLUMNS) + " |")
        out.append("|" + "|".join("---:" if c == "n" else "---" for c in COLUMNS) + "|")
        for r in self.records:
            row = self._row(r)
            out.append("| " + " | ".join(_md(row[c]) for c in COLUMNS) + " |")
        notes: dict[str, None] = {}  # ordered set: a claim measured alike on several runs is noted once
        for r in self.records:
            note = r.get("note") or ""
            text = " ".join(x for x in (str(r.get("measured_as") or ""), f"Note: {note}" if note else "") if x)
            if text:
                notes[
                    f"- **{_md(str(r['id']))}** ({_md(str(r['arch']))}, {_md(str(r['where']))}): "
                    f"{' '.join(text.split())}"
                ] = None
        if notes:
            out += ["", "## Measured as", "", *notes]
        return "\n".join(out) + "\n"

    def write(self, json_path: Path) -> tuple[Path, Path]:
        """Write the JSON report at ``json_path`` and its Markdown twin beside it (same stem, ``.md``)."""
        json_path = Path(json_path)
        if json_path.suffix == ".md":
            raise ValueError(f"{json_path}: the JSON report needs another suffix than .md (its twin gets that)")
        md_path = json_path.with_name(json_path.stem + ".md")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        return json_path, md_path


def verdict_record(v: Verdict) -> dict[str, Any]:
    """A verdict as plain JSON data: what the report, JUnit properties and xdist transport carry."""
    c, m, e = v.claim, v.measurement, v.claim.expect
    expect = None
    if e is not None:
        expect = {
            "lo": e.lo,
            "hi": e.hi,
            "exact": e.exact,
            "tol_lo": e.tol_lo,
            "tol_hi": e.tol_hi,
            "text": e.text,
            "widened": list(e.widened()),
        }
    record = {
        "id": c.id,
        "statement": c.statement,
        "source": c.source,
        "where": c.where,
        "guest": c.guest,
        "arch": v.arch,
        "arches": list(c.arches),
        "metric": c.metric,
        "unit": v.unit,
        "claimed": v.claimed_text(),
        "expect": expect,
        "min_samples": c.min_samples,
        "report_only": c.report_only,
        "measured_as": c.measured_as,
        "outcome": v.outcome,
        "reason": v.reason,
        "measured": v.measured_text(),
        "measured_brief": v.measured_brief(),
        "stats": dataclasses.asdict(v.stats) if v.stats is not None else None,
        "samples": list(m.samples) if m is not None else None,  # in measurement_unit
        "measurement_unit": m.unit if m is not None else None,
        "timing": m.timing if m is not None else None,
        "bound": m.bound if m is not None else None,
        "interval": list(v.interval) if v.interval is not None else None,  # null side: unbounded
        "emulation_factor": v.emulation_factor,
        "accel": v.accel,
        "conditions": m.conditions.as_dict() if m is not None else None,
        "unmeasurable": m.unmeasurable if m is not None else None,
        "inconclusive": m.inconclusive if m is not None else None,
        "note": m.note if m is not None else "",
        "extra": m.extra if m is not None else {},
    }
    result: dict[str, Any] = _jsonable(record)  # plain JSON: it crosses processes under xdist
    return result
