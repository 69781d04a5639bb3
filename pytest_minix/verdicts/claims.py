"""Claims files (``claims/*.toml``): what the OS is said to do, as ``[[claim]]`` entries, checked on load.

Each entry names a metric the harness can measure, a unit, and an expectation (a band, an
exact value, or none when ``report_only``). Every problem in a file is a ``ClaimsError``
whose message starts with ``<path>:<line>: `` and says how to fix it.
"""

from __future__ import annotations

import datetime
import difflib
import fnmatch
import math
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from pytest_minix.errors import ConfigError
from pytest_minix.measure.units import UNITS, Unit, format_number, format_value, parse_unit, unit_suffix
from pytest_minix.profiles import ARCHES

REQUIRED_KEYS = ("id", "statement", "source", "guest", "arch", "metric", "unit", "measured_as")
OPTIONAL_KEYS = ("min", "max", "value", "tolerance", "min_samples", "report_only")
CLAIM_KEYS = REQUIRED_KEYS + OPTIONAL_KEYS

_ID_RE = re.compile(r"[a-z0-9_.-]+")
_PERCENT_RE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*%\s*")
_TOML_POS_RE = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")
_TOML_END = "(at end of document)"
_EXAMPLES = {
    "id": 'id = "boot.to_login"',
    "statement": 'statement = "Boot to the login prompt in QEMU"',
    "source": "source = \"whitepaper ch. 4, table 'Boot phase durations'\"",
    "guest": 'guest = "minix"',
    "arch": 'arch = ["i386", "arm"]',
    "metric": 'metric = "boot.to_login"',
    "unit": 'unit = "ms"',
    "measured_as": 'measured_as = "one honest sentence on what is really measured"',
}


class ClaimsError(ConfigError):
    """A claims file is malformed; the message starts with ``<path>:<line>: ``."""

    def __init__(self, path: Path | str, line: int, detail: str) -> None:
        super().__init__(f"{path}:{line}: {detail}")
        self.path = Path(path)
        self.line = line
        self.detail = detail

    def __reduce__(self) -> tuple[type[ClaimsError], tuple[Path, int, str]]:
        # xdist pickles errors to the controller; the default would call __init__ with the message only.
        return (type(self), (self.path, self.line, self.detail))


@dataclass(frozen=True)
class Expect:
    """A claim's expectation in the claim's unit; ``tol_lo``/``tol_hi`` are absolute widenings of the bounds."""

    lo: float | None
    hi: float | None
    exact: bool  # written as ``value`` (then lo == hi)
    tol_lo: float
    tol_hi: float
    text: str  # as a person reads it: "50-200 ms", "<= 1.5 ms", "= 0xf0400000", "= no"

    def widened(self) -> tuple[float | None, float | None]:
        """The bounds with the tolerance applied."""
        return (
            None if self.lo is None else self.lo - self.tol_lo,
            None if self.hi is None else self.hi + self.tol_hi,
        )


@dataclass(frozen=True)
class Claim:
    """One ``[[claim]]`` entry, validated."""

    id: str
    statement: str
    source: str
    guest: str
    arches: tuple[str, ...]
    metric: str
    unit: str  # canonical unit name (an alias such as "µs" is stored as "us")
    expect: Expect | None  # None when report_only
    min_samples: int
    measured_as: str
    report_only: bool
    path: Path
    line: int  # of the [[claim]] header

    def applies(self, guest: str, arch: str) -> bool:
        """Whether the claim is about this guest on this arch."""
        return guest == self.guest and arch in self.arches

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def load_claims(paths: Sequence[Path], metrics: Mapping[str, str]) -> list[Claim]:
    """The claims of ``paths`` in file order.

    ``metrics``: known metric id -> the metric's unit name. Every problem is a ClaimsError naming file and line.
    """
    claims: list[Claim] = []
    seen: dict[str, str] = {}  # claim id -> "path:line" of its id, to name both places of a duplicate
    for path in paths:
        claims.extend(_load_file(Path(path), metrics, seen))
    return claims


def select_claims(claims: Sequence[Claim], pattern: str | None) -> list[Claim]:
    """Claims whose id matches one of the comma-separated fnmatch ``pattern``s; None (or blank) selects all."""
    pats = [p.strip() for p in (pattern or "").split(",") if p.strip()]
    if not pats:
        return list(claims)
    return [c for c in claims if any(fnmatch.fnmatchcase(c.id, p) for p in pats)]


# --- where things are in the raw text -------------------------------------------------------------------------------
# tomllib reports no positions for values, so a small scanner over the (already valid) text
# finds the [[claim]] headers and the line of each key after them.

_HEADER_RE = re.compile(r"\s*(\[\[?)([^\]]*)\]")
_KEY_RE = re.compile(r"""\s*([A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')\s*[.=]""")


@dataclass
class _Pos:
    line: int  # of the [[claim]] header
    keys: dict[str, int] = field(default_factory=dict)  # key -> line of its first "key ="


@dataclass
class _Layout:
    top: dict[str, int]  # top-level key or table name -> first line
    claims: list[_Pos]


def _unquote(key: str) -> str:
    key = key.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'":
        return key[1:-1]
    return key


def _layout(text: str) -> _Layout:
    top: dict[str, int] = {}
    claims: list[_Pos] = []
    current: dict[str, int] | None = top  # where the keys of the current table are recorded
    ml: str | None = None  # inside a multi-line string opened by this delimiter
    depth = 0  # open [ and { of a value continued over lines
    for n, line in enumerate(text.split("\n"), 1):
        start = 0
        if ml is None and depth == 0:
            header = _HEADER_RE.match(line)
            key = None if header else _KEY_RE.match(line)
            if header:
                parts = [_unquote(p) for p in header.group(2).split(".")]
                top.setdefault(parts[0], n)
                current = None
                if header.group(1) == "[[" and parts == ["claim"]:
                    claims.append(_Pos(n))
                    current = claims[-1].keys
                elif parts[0] == "claim" and len(parts) > 1 and claims:
                    claims[-1].keys.setdefault(parts[1], n)  # [claim.x] belongs to the last entry as key x
                continue  # the rest of a header line is at most a comment
            if key:
                if current is not None:
                    current.setdefault(_unquote(key.group(1)), n)
                start = key.end()
        ml, depth = _scan(line, start, ml, depth)
    return _Layout(top, claims)


def _scan(line: str, i: int, ml: str | None, depth: int) -> tuple[str | None, int]:
    """Carry string and bracket state across ``line`` from column ``i``."""
    while i < len(line):
        if ml == "'''":
            j = line.find("'''", i)
            if j < 0:
                return ml, depth
            ml, i = None, j + 3
            continue
        if ml == '"""':
            if line[i] == "\\":
                i += 2
            elif line.startswith('"""', i):
                ml, i = None, i + 3
            else:
                i += 1
            continue
        c = line[i]
        if c == "#":
            break
        if line.startswith(('"""', "'''"), i):
            ml, i = line[i : i + 3], i + 3
        elif c == '"':
            i += 1
            while i < len(line) and line[i] != '"':
                i += 2 if line[i] == "\\" else 1
            i += 1
        elif c == "'":
            j = line.find("'", i + 1)
            i = len(line) if j < 0 else j + 1
        else:
            if c in "[{":
                depth += 1
            elif c in "]}":
                depth = max(0, depth - 1)
            i += 1
    return ml, depth


# --- loading --------------------------------------------------------------------------------------------------------


def _load_file(path: Path, metrics: Mapping[str, str], seen: dict[str, str]) -> list[Claim]:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise ClaimsError(path, 1, f"cannot read the claims file: {e.strerror or e}. Check the path.") from None
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ClaimsError(path, line, f"byte {e.start} is not UTF-8 text. Save the file as UTF-8.") from None
    data = _parse_toml(path, text)
    layout = _layout(text)

    unknown = sorted((k for k in data if k != "claim"), key=lambda k: layout.top.get(k, 1))
    if unknown:
        key = unknown[0]
        line = layout.top.get(key, 1)
        if key in CLAIM_KEYS:
            hint = f"{key!r} is a claim key: put it after a [[claim]] header."
        else:
            close = difflib.get_close_matches(key, ["claim"], n=1, cutoff=0.6)
            hint = "Did you mean [[claim]]? " if close else ""
            hint += "A claims file holds only [[claim]] entries: remove it or move it into one."
        raise ClaimsError(path, line, f"unknown top-level key {key!r}. {hint}")

    entries = data.get("claim", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ClaimsError(
            path,
            layout.top.get("claim", 1),
            "'claim' must be an array of tables: start each claim with a [[claim]] header (double brackets).",
        )
    positions = layout.claims
    if len(positions) != len(entries):
        # e.g. "claim = [{...}, ...]" written inline: all entries sit on that line.
        positions = [_Pos(layout.top.get("claim", 1)) for _ in entries]
    return [
        _parse_claim(e, path, pos, k, metrics, seen) for k, (e, pos) in enumerate(zip(entries, positions, strict=True))
    ]


def _parse_toml(path: Path, text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        pos = _TOML_POS_RE.search(msg)
        if pos:
            detail = msg[: pos.start()]
            raise ClaimsError(
                path,
                int(pos.group(1)),
                f"invalid TOML: {detail} (column {pos.group(2)}). Fix the syntax there: each claim is a [[claim]] "
                'header followed by key = value lines, strings in quotes (id = "boot.to_login").',
            ) from None
        detail = msg.removesuffix(_TOML_END).strip()
        last = text.count("\n") + (0 if text.endswith("\n") or not text else 1)
        raise ClaimsError(
            path,
            max(last, 1),
            f"invalid TOML: {detail}, noticed at the end of the file. Usual causes: an unclosed string, "
            "array or inline table, or a key given twice in one [[claim]] entry; fix it.",
        ) from None
    except (ValueError, RecursionError) as e:
        # tomllib lets these through: integers over 4300 digits, arrays nested thousands deep.
        raise ClaimsError(path, 1, f"cannot be parsed as claims: {e}. Use ordinary numbers and arrays.") from None


_TYPE_NAMES = {bool: "boolean", int: "integer", float: "float", str: "string", list: "array", dict: "table"}


def _type_name(value: object) -> str:
    if isinstance(value, datetime.date | datetime.time):
        return "date/time"
    return _TYPE_NAMES.get(type(value), type(value).__name__)


# --- one [[claim]] entry, section by section ------------------------------------------------------------------------
# Each check raises a ClaimsError naming the file, the line of the key, the claim and an example of a correct value.
# The checks run in a fixed order (keys, id, texts, arch, metric, unit, min_samples, report_only, expectation):
# the first problem found is the one reported.


@dataclass(frozen=True)
class _Entry:
    """One raw ``[[claim]]`` table, and where it is: what the section checks read and blame."""

    raw: Mapping[str, Any]
    path: Path
    pos: _Pos
    label: str  # "claim 'boot.to_login'", or "claim #2 of this file" while the id is unusable

    @classmethod
    def of(cls, raw: Mapping[str, Any], path: Path, pos: _Pos, index: int) -> _Entry:
        ident = raw.get("id")
        label = f"claim {ident!r}" if isinstance(ident, str) and ident else f"claim #{index + 1} of this file"
        return cls(raw=raw, path=path, pos=pos, label=label)

    def line(self, key: str | None = None) -> int:
        """The line of ``key`` in this entry, else of its [[claim]] header."""
        return self.pos.keys.get(key, self.pos.line) if key else self.pos.line

    def fail(self, detail: str, key: str | None = None) -> NoReturn:
        raise ClaimsError(self.path, self.line(key), f"{self.label}: {detail}")

    def string(self, key: str) -> str:
        """A required, non-blank string."""
        value = self.raw[key]
        if not isinstance(value, str):
            self.fail(f"{key} must be a string, not {_type_name(value)} {value!r}. Quote it: {_EXAMPLES[key]}.", key)
        if not value.strip():
            self.fail(f"{key} is empty. Fill it in, e.g. {_EXAMPLES[key]}.", key)
        return value


def _parse_claim(
    raw: dict[str, Any], path: Path, pos: _Pos, index: int, metrics: Mapping[str, str], seen: dict[str, str]
) -> Claim:
    e = _Entry.of(raw, path, pos, index)
    _check_keys(e)
    cid = _claim_id(e, seen)
    statement, source, guest, measured_as = (e.string(k) for k in ("statement", "source", "guest", "measured_as"))
    arches = _arches(e)
    metric = _metric(e, metrics)
    unit = _unit(e, metric, metrics)
    min_samples = _min_samples(e)
    report_only = _report_only(e)
    return Claim(
        id=cid,
        statement=statement,
        source=source,
        guest=guest,
        arches=arches,
        metric=metric,
        unit=unit.name,
        expect=_expectation(e, unit, report_only),
        min_samples=min_samples,
        measured_as=measured_as,
        report_only=report_only,
        path=path,
        line=pos.line,
    )


def _check_keys(e: _Entry) -> None:
    """No unknown keys (with the likely intended one), no missing required ones."""
    unknown = sorted((k for k in e.raw if k not in CLAIM_KEYS), key=lambda k: e.pos.keys.get(k, e.pos.line))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, CLAIM_KEYS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        e.fail(f"unknown key {key!r}.{hint} Valid keys: {', '.join(CLAIM_KEYS)}. Rename or remove it.", key)
    missing = [k for k in REQUIRED_KEYS if k not in e.raw]
    if missing:
        names = ", ".join(missing)
        e.fail(
            f"missing required key{'s' if len(missing) > 1 else ''} {names}. "
            f"Add {'them' if len(missing) > 1 else 'it'} to this [[claim]] entry, e.g. {_EXAMPLES[missing[0]]}."
        )


def _claim_id(e: _Entry, seen: dict[str, str]) -> str:
    """Identity: a well-formed id, unique across all files loaded together (recorded in ``seen``)."""
    cid = e.string("id")
    if not _ID_RE.fullmatch(cid):
        e.fail(
            f"id {cid!r} has characters other than lowercase letters, digits, '_', '.' and '-'. "
            f"Rename it, e.g. {re.sub(r'[^a-z0-9_.-]+', '_', cid.lower())!r}.",
            "id",
        )
    if cid in seen:
        e.fail(f"id {cid!r} is defined twice: here and at {seen[cid]}. Give one of them another id.", "id")
    seen[cid] = f"{e.path}:{e.line('id')}"
    return cid


def _arches(e: _Entry) -> tuple[str, ...]:
    """Applicability: one arch or a non-empty array of known arches; a repeated arch is harmless."""
    arch = e.raw["arch"]
    arch_list = [arch] if isinstance(arch, str) else arch
    if not isinstance(arch_list, list) or not all(isinstance(a, str) for a in arch_list):
        e.fail(
            f"arch must be a string or an array of strings, not {_type_name(arch)} {arch!r}. E.g. {_EXAMPLES['arch']}.",
            "arch",
        )
    if not arch_list:
        e.fail(f"arch is empty. Name at least one of {', '.join(ARCHES)}, e.g. {_EXAMPLES['arch']}.", "arch")
    for a in arch_list:
        if a not in ARCHES:
            close = difflib.get_close_matches(a, ARCHES, n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            e.fail(f"unknown arch {a!r}.{hint} Valid arches: {', '.join(ARCHES)}. Use one of those.", "arch")
    return tuple(dict.fromkeys(arch_list))  # keep the first of a repeated arch


def _metric(e: _Entry, metrics: Mapping[str, str]) -> str:
    """What is measured: a metric the harness knows."""
    metric = e.string("metric")
    if metric not in metrics:
        close = difflib.get_close_matches(metric, list(metrics), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        e.fail(
            f"unknown metric {metric!r}.{hint} Known metrics: {', '.join(sorted(metrics))}. Use one of those.", "metric"
        )
    return metric


def _unit(e: _Entry, metric: str, metrics: Mapping[str, str]) -> Unit:
    """A known unit of the same dimension as the metric's."""
    unit_text = e.string("unit")  # outside the try: a ClaimsError is a ConfigError too
    try:
        unit = parse_unit(unit_text)
    except ConfigError as exc:
        detail = str(exc)
        e.fail(detail[0].lower() + detail[1:], "unit")
    metric_unit = parse_unit(metrics[metric])
    if unit.dimension != metric_unit.dimension:
        same = [n for n, u in UNITS.items() if u.dimension == metric_unit.dimension and n == u.name]
        e.fail(
            f"unit {unit.name!r} is a {unit.dimension} unit but metric {metric!r} measures {metric_unit.dimension} "
            f"(in {metric_unit.name}). Use a {metric_unit.dimension} unit: {', '.join(same)}.",
            "unit",
        )
    return unit


def _min_samples(e: _Entry) -> int:
    min_samples = e.raw.get("min_samples", 1)
    if not isinstance(min_samples, int) or isinstance(min_samples, bool):
        e.fail(
            f"min_samples must be an integer, not {_type_name(min_samples)} {min_samples!r}. E.g. min_samples = 3.",
            "min_samples",
        )
    if min_samples < 1:
        e.fail(f"min_samples is {min_samples}; it must be at least 1. Set min_samples = 1 or more.", "min_samples")
    return min_samples


def _report_only(e: _Entry) -> bool:
    report_only = e.raw.get("report_only", False)
    if not isinstance(report_only, bool):
        e.fail(f"report_only must be true or false, not {_type_name(report_only)} {report_only!r}.", "report_only")
    return report_only


# --- the expectation: a band (min/max), an exact value, or none when report_only ---------------------------------


def _expectation(e: _Entry, unit: Unit, report_only: bool) -> Expect | None:
    """The claim's band or exact value with its tolerance; None for a report_only claim."""
    raw = e.raw
    given = [k for k in ("min", "max", "value", "tolerance") if k in raw]
    if report_only:
        if given:
            e.fail(
                f"report_only = true takes no expectation, but {', '.join(given)} {'is' if len(given) == 1 else 'are'} "
                f"given. Remove {'it' if len(given) == 1 else 'them'}, or set report_only = false to check it.",
                given[0],
            )
        return None
    if "value" in raw and ("min" in raw or "max" in raw):
        e.fail(
            "has both value and min/max. Use value for an exact expectation or min/max for a band, not both.", "value"
        )
    if not ({"min", "max", "value"} & raw.keys()):
        e.fail(
            "has no expectation. Add min and/or max (a band) or value (an exact value), "
            "or report_only = true to only report the measured value."
        )
    exact = "value" in raw
    lo = _number(e, "value" if exact else "min", unit) if exact or "min" in raw else None
    hi = lo if exact else (_number(e, "max", unit) if "max" in raw else None)
    if lo is not None and hi is not None and lo > hi:
        e.fail(
            f"min ({format_value(lo, unit.name)}) is greater than max ({format_value(hi, unit.name)}). Swap them.",
            "min",
        )
    tol_lo, tol_hi, tol_text = _tolerance(e, raw.get("tolerance"), lo, hi, unit.name)
    text = _expect_text(lo, hi, exact, unit.name) + tol_text
    return Expect(lo=lo, hi=hi, exact=exact, tol_lo=tol_lo, tol_hi=tol_hi, text=text)


def _number(e: _Entry, key: str, unit: Unit) -> float:
    """A finite number in ``unit``; for a flag's ``value`` also true or false (1 or 0)."""
    value = e.raw[key]
    flag_value = unit.dimension == "flag" and key == "value"
    if flag_value and isinstance(value, bool):
        return 1.0 if value else 0.0
    if not isinstance(value, int | float) or isinstance(value, bool):
        want = "true or false" if flag_value else f"a number in {unit.name}"
        e.fail(f"{key} must be {want}, not {_type_name(value)} {value!r}. Write it without quotes.", key)
    try:
        result = float(value)
    except OverflowError:
        e.fail(f"{key} = {value} is too large. Use a larger unit or a smaller number.", key)
    if not math.isfinite(result):
        e.fail(f"{key} must be a finite number, not {value}. Leave out min or max for a one-sided band.", key)
    if flag_value and result not in (0, 1):
        e.fail(f"value {value!r} is no flag value. Write value = true or value = false.", key)
    return result


def _tolerance(e: _Entry, tolerance: object, lo: float | None, hi: float | None, unit: str) -> tuple[float, float, str]:
    """(widening below, widening above, text such as " ± 10%"): relative as "10%", or absolute in ``unit``."""
    if tolerance is None:
        return 0.0, 0.0, ""
    if parse_unit(unit).dimension == "flag":
        e.fail("a flag is true or false; a tolerance makes no sense for it. Remove tolerance.", "tolerance")
    if isinstance(tolerance, str):
        pct = _PERCENT_RE.fullmatch(tolerance)
        if not pct:
            e.fail(
                f"tolerance {tolerance!r} is not a percentage. Write a relative tolerance as a string "
                f'like tolerance = "10%", or an absolute one as a number in {unit} (tolerance = 5).',
                "tolerance",
            )
        frac = float(pct.group(1)) / 100
        tol_lo = frac * abs(lo) if lo is not None else 0.0
        tol_hi = frac * abs(hi) if hi is not None else 0.0
        return tol_lo, tol_hi, f" ± {float(pct.group(1)):g}%"
    if isinstance(tolerance, int | float) and not isinstance(tolerance, bool):
        absolute = float(tolerance)
        if not math.isfinite(absolute) or absolute < 0:
            e.fail(
                f'tolerance {tolerance} must be a finite number >= 0 (in {unit}), or a percentage like "10%".',
                "tolerance",
            )
        return absolute, absolute, f" ± {format_value(absolute, unit)}"
    e.fail(
        f'tolerance must be a percentage string like "10%" or a number in {unit}, '
        f"not {_type_name(tolerance)} {tolerance!r}.",
        "tolerance",
    )


def _expect_text(lo: float | None, hi: float | None, exact: bool, unit: str) -> str:
    """The expectation as a person reads it: "= 0xf0400000", "50-200 ms", ">= 50 ms", "<= 1.5 ms"."""
    if exact:
        assert lo is not None
        return f"= {format_value(lo, unit)}"
    if lo is not None and hi is not None:
        sep = "-" if lo >= 0 else " to "  # "-5--3 ms" would misread
        return f"{format_number(lo, unit)}{sep}{format_number(hi, unit)}{unit_suffix(unit)}"
    if lo is not None:
        return f">= {format_value(lo, unit)}"
    assert hi is not None
    return f"<= {format_value(hi, unit)}"
