"""The claims report: every selected claim as a terminal table, JSON for machines and a Markdown twin for people.

Each selected claim has one record with one of six outcomes: ``confirmed`` and ``refuted``
(decided), ``inconclusive`` (measured, but the rules could not decide), ``reported``
(report-only claims: a figure with nothing to check), ``not_run`` (no verdict: the guest was
unavailable, or the test was skipped or never reached; ``cause`` says which) and
``harness_error`` (the harness broke while measuring; the reason is the error).

The JSON format is described by ``report.schema.json`` beside this module
(:data:`SCHEMA_VERSION`; a report without ``schema_version`` is version 1).
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from pytest_minix.measure.units import format_value
from pytest_minix.verdicts.claims import Claim
from pytest_minix.verdicts.explain import range_text
from pytest_minix.verdicts.verdict import Verdict

SCHEMA_VERSION = 2
SCHEMA_PATH = Path(__file__).with_name("report.schema.json")

ReportOutcome = Literal["confirmed", "refuted", "inconclusive", "reported", "not_run", "harness_error"]
OUTCOMES: tuple[ReportOutcome, ...] = ("confirmed", "refuted", "inconclusive", "reported", "not_run", "harness_error")
DECIDED: tuple[ReportOutcome, ...] = ("confirmed", "refuted")
# Rows are listed in this order: what needs attention first.
SORT_ORDER: tuple[ReportOutcome, ...] = ("refuted", "harness_error", "inconclusive", "not_run", "confirmed", "reported")
# Why a claim was not run.
NotRunCause = Literal["guest_unavailable", "skipped", "not_reached"]
CAUSE_WORDS: dict[str, str] = {
    "guest_unavailable": "guest unavailable",
    "skipped": "skipped",
    "not_reached": "session stopped first",
}
_MARKS = {
    "confirmed": "✅",
    "refuted": "❌",
    "inconclusive": "⚠️",
    "reported": "📝",
    "not_run": "⏭️",
    "harness_error": "💥",
}

COLUMNS = ("claim", "arch", "claimed", "measured", "n", "verdict", "reason")
# Widest a terminal column may grow before it is cut with "…"; the reason takes the rest of the line.
_CAPS = {"claim": 32, "arch": 6, "claimed": 18, "measured": 26, "n": 4, "verdict": 13}
_SHRINKABLE = ("claim", "measured", "claimed")  # shrunk, widest first, when the reason gets too narrow
_MIN_COL = 6
_MIN_REASON = 20
_MAX_REASON_LINES = 8
_SEP = "  "
_SHORT_REASON = 110  # characters of the one-line reason in the Markdown table


def outcome_word(outcome: str) -> str:
    """``not_run`` -> "not run": an outcome as people read it."""
    return outcome.replace("_", " ")


def report_outcome(verdict: Verdict) -> ReportOutcome:
    """The report's outcome of a verdict: a report-only claim is "reported", not "inconclusive"."""
    if verdict.claim.report_only:
        return "reported"
    return verdict.outcome


def load_schema() -> dict[str, Any]:
    """The JSON Schema of the report (``report.schema.json``, shipped in the package)."""
    data: dict[str, Any] = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    return data


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


def short_reason(reason: str, width: int = _SHORT_REASON) -> str:
    """The reason on one line of at most ``width`` characters: without its parentheses (the figures the
    measured column shows) if it is too long, then cut at a word with "…"."""
    text = " ".join(str(reason).split())
    if len(text) <= width:
        return text
    text = " ".join(re.sub(r" ?\([^()]*\)", "", text).split())
    if len(text) <= width:
        return text
    cut = text[: width - 1].rsplit(" ", 1)[0].rstrip(",;:(")
    return cut + "…"


def _interval_side(value: Any, default: float) -> float:
    return default if value is None else float(value)


def measured_label(r: Mapping[str, Any]) -> str:
    """The measured value with each figure labelled: "median 13.1 s; 95% CI 11.2-15.6 s; n=3; hardware 0.37-15.6 s".

    The last part is the interval the verdict compared with the band, when it differs from
    the CI: widened for emulation (``hardware``, with the factor) or for a measurement that
    only bounds the quantity (``bound``).
    """
    stats, unit = r.get("stats"), str(r.get("unit") or "")
    if not stats:
        outcome = r.get("outcome")
        if outcome in ("not_run", "harness_error"):
            return "-"
        return "not measurable here" if r.get("unmeasurable") else "no samples"
    n = int(stats["n"])
    if n == 1:
        return f"{format_value(stats['median'], unit)} (one sample)"
    ci_lo, ci_hi = float(stats["ci_lo"]), float(stats["ci_hi"])
    if stats["min"] == stats["max"]:
        parts = [f"{format_value(stats['median'], unit)} (all {n} samples)"]
    else:
        parts = [f"median {format_value(stats['median'], unit)}"]
        parts.append(f"{float(stats.get('confidence') or 0.95):.0%} CI {range_text(ci_lo, ci_hi, unit)}")
        parts.append(f"n={n}")
    interval = r.get("interval")
    if interval:
        lo, hi = _interval_side(interval[0], -math.inf), _interval_side(interval[1], math.inf)
        if not (math.isclose(lo, ci_lo, rel_tol=1e-9) and math.isclose(hi, ci_hi, rel_tol=1e-9)):
            factor, bound = r.get("emulation_factor"), r.get("bound")
            why = [f"{str(r.get('accel') or '').upper() or 'emulation'} factor {factor:g}"] if factor else []
            why += [f"{bound} bound"] if bound else []
            label = "hardware" if factor and factor != 1 else "compared"
            parts.append(f"{label} {range_text(lo, hi, unit)}" + (f" ({', '.join(why)})" if why else ""))
    return "; ".join(parts)


def _sort_key(r: Mapping[str, Any]) -> tuple[int, str, str, str]:
    outcome = str(r.get("outcome"))
    rank = SORT_ORDER.index(outcome) if outcome in SORT_ORDER else len(SORT_ORDER)  # type: ignore[arg-type]
    return rank, str(r.get("id")), str(r.get("arch")), str(r.get("guest"))


class ClaimsReport:
    """The records of one session (every selected claim), with the session's meta data."""

    def __init__(self, meta: Mapping[str, Any] | None = None) -> None:
        self.meta: dict[str, Any] = dict(meta or {})
        self.records: list[dict[str, Any]] = []
        # Pictures written beside the report by :meth:`write`: (title, path) each.
        self.charts: list[tuple[str, Path]] = []
        self.chart_notes: list[str] = []

    def add(self, verdict: Verdict) -> None:
        self.records.append(verdict_record(verdict))

    @classmethod
    def merge(cls, reports: Sequence[Mapping[str, Any]], sources: Sequence[str] = ()) -> ClaimsReport:
        """One report from several (shards of a CI matrix, several hosts): every record, and each part's meta.

        A (claim, arch, guest) in more than one part is kept once per part: the report shows
        both, since they were measured under different conditions. Version 1 reports (no
        ``schema_version``) are read too; a newer version is refused.
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
            version = r.get("schema_version", 1)
            if not isinstance(version, int) or version > SCHEMA_VERSION:
                raise ValueError(
                    f"claims report schema version {version!r} is newer than this pytest-minix reads "
                    f"({SCHEMA_VERSION}): upgrade pytest-minix"
                )
            for v in verdicts:
                merged.add_record(upgrade_record(v) if version < 2 else v)
        return merged

    def add_record(self, record: Mapping[str, Any]) -> None:
        """A record already made (as xdist workers send them in test reports, or from a report file)."""
        self.records.append(dict(record))

    def sorted_records(self) -> list[dict[str, Any]]:
        """Refuted first, then harness errors, inconclusive, not run, confirmed and reported; by id within each."""
        return sorted(self.records, key=_sort_key)

    def counts(self) -> dict[str, int]:
        """Records per outcome, every outcome present."""
        counts: dict[str, int] = dict.fromkeys(OUTCOMES, 0)
        for r in self.records:
            counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
        return counts

    def summary(self) -> dict[str, int]:
        """``total``, ``decided`` (confirmed + refuted) and the count of every outcome."""
        counts = self.counts()
        return {"total": len(self.records), "decided": sum(counts[o] for o in DECIDED), **counts}

    def not_run_causes(self) -> dict[str, int]:
        """Not-run records per cause."""
        causes: dict[str, int] = {}
        for r in self.records:
            if r["outcome"] == "not_run":
                cause = str(r.get("cause") or "skipped")
                causes[cause] = causes.get(cause, 0) + 1
        return causes

    def summary_line(self) -> str:
        """e.g. "26 claims: 0 decided, 26 not run (guest unavailable)" or
        "19 claims: 9 decided (9 confirmed, 0 refuted), 1 inconclusive, 9 reported"."""
        s = self.summary()
        total = s["total"]
        line = f"{total} claim{'' if total == 1 else 's'}: {s['decided']} decided"
        if s["decided"]:
            line += f" ({s['confirmed']} confirmed, {s['refuted']} refuted)"
        for outcome in ("inconclusive", "reported", "harness_error"):
            if s[outcome]:
                line += f", {s[outcome]} {outcome_word(outcome)}"
        for cause, n in self.not_run_causes().items():
            line += f", {n} not run ({CAUSE_WORDS.get(cause, cause)})"
        return line

    def environment(self) -> list[dict[str, Any]]:
        """Per (guest, arch) measured: the accelerator actually used, QEMU version, CPU model and image SHA-256."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for r in self.records:
            cond = r.get("conditions")
            if not cond:
                continue
            key = (str(cond.get("guest")), str(cond.get("arch")))
            env = seen.setdefault(
                key,
                {"guest": key[0], "arch": key[1], "accel": [], "qemu_version": [], "cpu": [], "image_sha256": []},
            )
            for field in ("accel", "qemu_version", "cpu", "image_sha256"):
                value = cond.get(field)
                if value and value not in env[field]:
                    env[field].append(value)
        return [seen[k] for k in sorted(seen)]

    @staticmethod
    def _row(r: Mapping[str, Any]) -> dict[str, str]:
        stats = r.get("stats")
        return {
            "claim": str(r["id"]),
            "arch": str(r["arch"]),
            "claimed": str(r["claimed"]),
            "measured": str(r.get("measured_brief") or "-"),
            "n": str(stats["n"]) if stats else "0",
            "verdict": outcome_word(str(r["outcome"])),
            "reason": str(r["reason"]),
        }

    def table(self, width: int = 120) -> str:
        """A fixed-width table no line of which exceeds ``width``; long reasons wrap within their column."""
        rows = [self._row(r) for r in self.sorted_records()]
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
        previous = ""
        for r in rows:
            # A reason shared by a run of rows (a guest unavailable for every claim) is written once.
            reason, previous = ('" (the same reason)' if r["reason"] == previous else r["reason"]), r["reason"]
            wrapped = textwrap.wrap(reason, reason_w) or [""]
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
        data = {
            "schema_version": SCHEMA_VERSION,
            "pytest_minix": self.meta,
            "environment": self.environment(),
            "summary": self.summary(),
            "charts": [{"title": t, "path": p.name} for t, p in self.charts],
            "verdicts": self.sorted_records(),
        }
        result: dict[str, Any] = _jsonable(data)
        return result

    # -- Markdown ----------------------------------------------------------------------------------------------------
    def _header_rows(self) -> list[tuple[str, str]]:
        """(label, value) rows of the Markdown header: when, where, with what."""
        m, env = self.meta, self.environment()
        rows: list[tuple[str, str]] = []

        def per_arch(field: str, fmt: str = "{}") -> str:
            texts = {f"{e['guest']} {e['arch']}": ", ".join(fmt.format(v) for v in e[field]) or "unknown" for e in env}
            if len(set(texts.values())) == 1:  # the same everywhere: said once
                return next(iter(texts.values()))
            return "; ".join(f"{where}: {text}" for where, text in texts.items())

        if m.get("date"):
            rows.append(("date", str(m["date"])))
        if m.get("host"):
            rows.append(("host", str(m["host"])))
        if m.get("harness_version"):
            rows.append(("harness", f"pytest-minix {m['harness_version']}"))
        guest = m.get("guest") or ", ".join(dict.fromkeys(e["guest"] for e in env))
        if guest:
            rows.append(("guest", str(guest)))
        arches = m.get("arches") or [e["arch"] for e in env]
        if arches:
            rows.append(("arch", ", ".join(str(a) for a in arches)))
        if env:
            rows.append(("QEMU", per_arch("qemu_version")))
            accel = per_arch("accel")
            if m.get("accel_requested"):
                accel += f" (requested: {m['accel_requested']})"
            rows.append(("accelerator used", accel))
            rows.append(("image SHA-256", per_arch("image_sha256", "`{}`")))
        elif m.get("accel_requested"):
            rows.append(("accelerator", f"requested {m['accel_requested']}; nothing was measured"))
        if m.get("emulation_factor") is not None:
            rows.append(("emulation factor", f"{m['emulation_factor']:g} (timing claims measured under TCG)"))
        starts = m.get("vm_starts") or []
        if starts:
            warm = [f"{d['guest']} {d['arch']}" for d in starts if d.get("how") == "warm"]
            text = (
                f"{len(warm)} of {len(starts)} started warm from the boot cache ({', '.join(dict.fromkeys(warm))}); "
                "boot claims timed cold boots of their own"
                if warm
                else f"all {len(starts)} booted cold"
            )
            rows.append(("shared VMs", text))
        if m.get("exit_status") is not None:
            rows.append(("exit status", str(m["exit_status"])))
        return rows

    def to_markdown(self) -> str:
        """Summary, header, the pictures, one row per claim (refuted first), then the details."""
        records = self.sorted_records()
        out = ["# pytest-minix validation report", "", f"**{self.summary_line()}**", ""]
        header = self._header_rows()
        if header:
            out += ["| | |", "|---|---|", *(f"| {_md(k)} | {_md(v)} |" for k, v in header), ""]
        # Why claims were not run, once per reason (it is usually one reason for all of them).
        not_run: dict[tuple[str, str], int] = {}
        for r in records:
            if r["outcome"] == "not_run":
                why = (str(r.get("cause") or "skipped"), str(r["reason"]))
                not_run[why] = not_run.get(why, 0) + 1
        for (cause, reason), n in not_run.items():
            what = f"{n} claim{'s' if n != 1 else ''} not run ({CAUSE_WORDS.get(cause, cause)})"
            out += [f"> **{what}:** {_md(reason)}", ""]
        for title, path in self.charts:
            out += [f"![{title}]({path.name})", ""]
        out += [
            "| verdict | claim | arch | claimed | measured | reason |",
            "|---|---|---|---|---|---|",
        ]
        for r in records:
            outcome = str(r["outcome"])
            claim = f"{_md(r.get('statement') or '')}<br>`{_md(r['id'])}`"
            cells = [
                f"{_MARKS.get(outcome, '')} {outcome_word(outcome)}".strip(),
                claim,
                _md(r["arch"]),
                _md(r["claimed"]),
                _md(measured_label(r)),
                _md(
                    f"{CAUSE_WORDS.get(str(r.get('cause')), 'skipped')} (the reason is above the table)"
                    if outcome == "not_run"
                    else short_reason(r["reason"])
                ),
            ]
            out.append("| " + " | ".join(cells) + " |")
        out += self._details(records)
        settings = {k: v for k, v in self.meta.items() if k in ("claims_files", "args", "merged_from")}
        if settings:
            out += ["", "<details><summary>Session</summary>", ""]
            for key, value in settings.items():
                shown = value if isinstance(value, str) else json.dumps(_jsonable(value))
                out.append(f"- **{key}**: {' '.join(str(shown).split())}")
            out += ["", "</details>"]
        return "\n".join(out) + "\n"

    @staticmethod
    def _details(records: Iterable[Mapping[str, Any]]) -> list[str]:
        """Per claim, the whole reason, its source and how it was measured (folded)."""
        notes: dict[str, None] = {}  # ordered set: a claim measured alike on several arches is noted once
        for r in records:
            note = r.get("note") or ""
            how = " ".join(x for x in (str(r.get("measured_as") or ""), f"Note: {note}" if note else "") if x)
            lines = [
                f"- **{_md(str(r['id']))}** ({_md(str(r['arch']))}, {outcome_word(str(r['outcome']))}): "
                f"{' '.join(str(r['reason']).split())}",
            ]
            if r.get("source"):
                lines.append(f"  - source: {' '.join(str(r['source']).split())} ({_md(str(r.get('where') or ''))})")
            if how:
                lines.append(f"  - measured as: {' '.join(how.split())}")
            notes["\n".join(lines)] = None
        if not notes:
            return []
        return ["", "<details><summary>Reasons in full, sources, and how each claim is measured</summary>", "", *notes]

    # -- files -------------------------------------------------------------------------------------------------------
    def boots(self) -> list[tuple[str, list[tuple[str, float]]]]:
        """Per guest and arch, the fresh boots' milestones (from the first boot metric that carries them)."""
        boots: list[tuple[str, list[tuple[str, float]]]] = []
        seen: set[tuple[str, str]] = set()
        multi = len({(r.get("guest"), r.get("arch")) for r in self.records}) > 1
        for r in self.sorted_records():
            milestones = (r.get("extra") or {}).get("milestones")
            key = (str(r.get("guest")), str(r.get("arch")))
            if not isinstance(milestones, list) or not all(isinstance(ms, dict) for ms in milestones):
                continue  # boot.phases lists milestone names only
            if not milestones or key in seen:
                continue
            seen.add(key)
            for i, ms in enumerate(milestones, 1):
                points = sorted(((str(k), float(v)) for k, v in ms.items()), key=lambda kv: kv[1])
                label = f"{key[1]} boot {i}" if not multi else f"{key[0]} {key[1]} boot {i}"
                boots.append((label, [("cont", 0.0), *points]))
        return boots

    def _chart_title(self, what: str) -> str:
        """``what`` and where it was measured: "Boot timeline: minix on i386 and arm, TCG, QEMU 7.2.22"."""
        env = self.environment()
        if not env:
            return what

        def joined(values: Iterable[str]) -> str:
            unique = list(dict.fromkeys(values))
            return " and ".join([", ".join(unique[:-1]), unique[-1]] if len(unique) > 1 else unique)

        guests = joined(e["guest"] for e in env)
        arches = joined(e["arch"] for e in env)
        accels = joined(a.upper() for e in env for a in e["accel"]) or "accelerator unknown"
        qemu = joined(v for e in env for v in e["qemu_version"])
        return f"{what}: {guests} on {arches}, {accels}" + (f", QEMU {qemu}" if qemu else "")

    def write_charts(self, json_path: Path) -> list[str]:
        """Draw the claims forest plot and the boot timeline beside ``json_path``; notes what was (not) drawn."""
        from pytest_minix.verdicts.chart import forest_chart, timeline_chart

        self.charts, self.chart_notes = [], []
        base = json_path.with_name(json_path.stem)
        try:
            forest = forest_chart(
                self.sorted_records(),
                base.with_name(base.name + ".claims"),
                title=self._chart_title("Claims: measured interval against the claimed band"),
            )
            if forest is not None:
                self.charts.append(("Claims: measured interval against the claimed band", forest[0]))
                self.chart_notes.append(f"claims chart: {forest[0]} and {forest[1]}")
            boots = self.boots()
            if boots:
                timeline = timeline_chart(
                    boots, base.with_name(base.name + ".timeline"), title=self._chart_title("Boot timeline")
                )
                self.charts.append(("Boot timeline: phases of each fresh boot", timeline[0]))
                self.chart_notes.append(f"timeline chart: {timeline[0]} and {timeline[1]}")
        except ImportError as exc:
            self.chart_notes.append(f"no charts: {exc}")
        return self.chart_notes

    def write(self, json_path: Path, *, charts: bool = True) -> tuple[Path, Path]:
        """Write the JSON report at ``json_path``, its Markdown twin beside it (same stem, ``.md``) and,
        with ``charts`` and matplotlib, the pictures (``<stem>.claims.png/.svg``, ``<stem>.timeline.png/.svg``).
        """
        json_path = Path(json_path)
        if json_path.suffix == ".md":
            raise ValueError(f"{json_path}: the JSON report needs another suffix than .md (its twin gets that)")
        md_path = json_path.with_name(json_path.stem + ".md")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        if charts:
            self.write_charts(json_path)
        json_path.write_text(json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n", encoding="utf-8")
        md_path.write_text(self.to_markdown(), encoding="utf-8")
        return json_path, md_path


def _claim_fields(c: Claim) -> dict[str, Any]:
    e = c.expect
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
    return {
        "id": c.id,
        "statement": c.statement,
        "source": c.source,
        "where": c.where,
        "guest": c.guest,
        "arches": list(c.arches),
        "metric": c.metric,
        "expect": expect,
        "min_samples": c.min_samples,
        "report_only": c.report_only,
        "measured_as": c.measured_as,
    }


def verdict_record(v: Verdict) -> dict[str, Any]:
    """A verdict as plain JSON data: what the report, JUnit properties and xdist transport carry."""
    m = v.measurement
    record = {
        **_claim_fields(v.claim),
        "arch": v.arch,
        "unit": v.unit,
        "claimed": v.claimed_text(),
        "outcome": report_outcome(v),
        "cause": None,
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


def case_record(
    claim: Claim,
    arch: str,
    outcome: Literal["not_run", "harness_error"],
    reason: str,
    cause: NotRunCause | None = None,
) -> dict[str, Any]:
    """The record of a claim that got no verdict: not run (``cause`` says why) or a harness error (``reason``)."""
    if (outcome == "not_run") != (cause is not None):
        raise ValueError("a not_run record needs a cause, and only it")
    unit = claim.unit
    claimed = claim.expect.text if claim.expect and claim.expect.text else ("report only" if claim.report_only else "")
    if not claimed and claim.expect is not None:
        lo, hi = claim.expect.widened()
        claimed = range_text(-math.inf if lo is None else lo, math.inf if hi is None else hi, unit)
    record = {
        **_claim_fields(claim),
        "arch": arch,
        "unit": unit,
        "claimed": claimed,
        "outcome": outcome,
        "cause": cause,
        "reason": " ".join(reason.split()) or outcome_word(outcome),
        "measured": "not measured",
        "measured_brief": "-",
        "stats": None,
        "samples": None,
        "measurement_unit": None,
        "timing": None,
        "bound": None,
        "interval": None,
        "emulation_factor": None,
        "accel": None,
        "conditions": None,
        "unmeasurable": None,
        "inconclusive": None,
        "note": "",
        "extra": {},
    }
    result: dict[str, Any] = _jsonable(record)
    return result


def upgrade_record(record: Mapping[str, Any]) -> dict[str, Any]:
    """A version 1 record in version 2's terms: report-only claims are "reported", every key present."""
    r = dict(record)
    if r.get("report_only") and r.get("outcome") == "inconclusive":
        r["outcome"] = "reported"
    r.setdefault("cause", None)
    return r
