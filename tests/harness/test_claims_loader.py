"""Claims-file loader and unit table: every validation error names file:line and the fix; round trips hold."""

from __future__ import annotations

import math
import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pytest_minix.errors import ConfigError, HarnessError
from pytest_minix.measure.units import UNITS, convert, format_value, parse_unit
from pytest_minix.verdicts.claims import CLAIM_KEYS, REQUIRED_KEYS, Claim, ClaimsError, load_claims, select_claims

METRICS = {
    "boot.to_login": "s",
    "mem.kernel_text": "KiB",
    "mem.kernel_vbase": "address",
    "mem.pse_unused": "flag",
    "boot.processes": "count",
    "syscall.roundtrip_cycles": "cycles",
}
ARCHES = ("i386", "arm")
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

BASE = """\
[[claim]]
id = "boot.to_login"
statement = "Boot to the login prompt in QEMU"
source = "whitepaper ch. 4, table 'Boot phase durations'"
guest = "minix"
arch = ["i386", "arm"]
metric = "boot.to_login"
unit = "ms"
min = 50
max = 200
min_samples = 3
measured_as = "Milliseconds from QMP cont to the login prompt on the serial console"
"""
# Line numbers in BASE (1-based).
L_HEADER, L_ID, L_ARCH, L_METRIC, L_UNIT, L_MIN, L_MAX, L_SAMPLES = 1, 2, 6, 7, 8, 9, 10, 11


def write(tmp_path: Path, text: str, name: str = "claims.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str) -> list[Claim]:
    return load_claims([write(tmp_path, text)], METRICS)


def edit(text: str, **changes: str | None) -> str:
    """BASE with ``key = ...`` lines replaced (a string: the new value text) or removed (None)."""
    for key, value in changes.items():
        pattern = re.compile(rf"^{key} = .*\n", re.M)
        assert pattern.search(text), key
        text = pattern.sub("" if value is None else f"{key} = {value}\n".replace("\\", "\\\\"), text, count=1)
    return text


def error(tmp_path: Path, text: str, line: int, *fragments: str) -> ClaimsError:
    """Load ``text``: it must fail at ``line`` with a message holding every fragment."""
    path = write(tmp_path, text)
    with pytest.raises(ClaimsError) as info:
        load_claims([path], METRICS)
    msg = str(info.value)
    assert msg.startswith(f"{path}:{line}: "), msg
    assert info.value.line == line and info.value.path == path
    for frag in fragments:
        assert frag in msg, (frag, msg)
    assert "\n" not in msg  # one paragraph
    return info.value


# --- happy path -----------------------------------------------------------------------------------------------------


def test_band_claim_loads(tmp_path: Path) -> None:
    (c,) = load(tmp_path, BASE)
    assert c.id == "boot.to_login" and c.guest == "minix" and c.arches == ("i386", "arm")
    assert c.metric == "boot.to_login" and c.unit == "ms" and c.min_samples == 3 and not c.report_only
    assert c.line == L_HEADER and c.where == f"{tmp_path / 'claims.toml'}:1"
    assert c.expect is not None
    assert (c.expect.lo, c.expect.hi, c.expect.exact) == (50, 200, False)
    assert c.expect.text == "50-200 ms"
    assert c.expect.widened() == (50, 200)
    assert c.statement.startswith("Boot") and c.source.startswith("whitepaper") and c.measured_as.startswith("Milli")


def test_one_sided_bands(tmp_path: Path) -> None:
    (c,) = load(tmp_path, edit(BASE, min=None, max="1.5"))
    assert c.expect is not None and (c.expect.lo, c.expect.hi) == (None, 1.5)
    assert c.expect.text == "<= 1.5 ms" and c.expect.widened() == (None, 1.5)
    (c,) = load(tmp_path, edit(BASE, max=None))
    assert c.expect is not None and (c.expect.lo, c.expect.hi) == (50, None) and c.expect.text == ">= 50 ms"


def test_exact_hex_value(tmp_path: Path) -> None:
    text = edit(BASE, metric='"mem.kernel_vbase"', unit='"address"', min=None, max="0xF0400000").replace("max", "value")
    (c,) = load(tmp_path, text)
    assert c.expect is not None and c.expect.exact
    assert c.expect.lo == c.expect.hi == 0xF0400000
    assert c.expect.text == "= 0xf0400000"


@pytest.mark.parametrize(("toml", "expected", "text"), [("true", 1.0, "= yes"), ("false", 0.0, "= no")])
def test_flag_value_takes_booleans(tmp_path: Path, toml: str, expected: float, text: str) -> None:
    src = edit(BASE, metric='"mem.pse_unused"', unit='"flag"', min=None, max=toml).replace("max", "value")
    (c,) = load(tmp_path, src)
    assert c.expect is not None and c.expect.lo == c.expect.hi == expected and c.expect.text == text


def test_absolute_tolerance(tmp_path: Path) -> None:
    (c,) = load(tmp_path, BASE + "tolerance = 5\n")
    assert c.expect is not None and (c.expect.tol_lo, c.expect.tol_hi) == (5, 5)
    assert c.expect.widened() == (45, 205) and c.expect.text == "50-200 ms ± 5 ms"


def test_percent_tolerance_widens_each_bound_by_its_own_share(tmp_path: Path) -> None:
    (c,) = load(tmp_path, BASE + 'tolerance = "10%"\n')
    assert c.expect is not None
    assert c.expect.tol_lo == pytest.approx(5) and c.expect.tol_hi == pytest.approx(20)
    assert c.expect.widened() == (pytest.approx(45), pytest.approx(220))
    assert c.expect.text == "50-200 ms ± 10%"
    (c,) = load(tmp_path, edit(BASE, min=None, max="-4").replace("max", "value") + 'tolerance = "25 %"\n')
    assert c.expect is not None and c.expect.widened() == (-5, -3)


def test_report_only(tmp_path: Path) -> None:
    (c,) = load(tmp_path, edit(BASE, min=None, max=None) + "report_only = true\n")
    assert c.report_only and c.expect is None


def test_arch_as_string_and_alias_unit(tmp_path: Path) -> None:
    (c,) = load(tmp_path, edit(BASE, arch='"arm"', unit='"µs"'))
    assert c.arches == ("arm",) and c.unit == "us"
    assert c.applies("minix", "arm") and not c.applies("minix", "i386") and not c.applies("reference", "arm")


def test_several_files_and_empty_file(tmp_path: Path) -> None:
    a = write(tmp_path, BASE, "a.toml")
    b = write(tmp_path, "# nothing yet\n", "b.toml")
    c = write(tmp_path, edit(BASE, id='"boot.again"'), "c.toml")
    claims = load_claims([a, b, c], METRICS)
    assert [(x.id, x.path) for x in claims] == [("boot.to_login", a), ("boot.again", c)]


def test_inline_claim_array_gets_the_key_line(tmp_path: Path) -> None:
    text = (
        "# inline form\n"
        'claim = [{id = "x", statement = "s", source = "s", guest = "minix", arch = "arm", '
        'metric = "boot.processes", unit = "count", max = 40, measured_as = "m"}]\n'
    )
    (c,) = load(tmp_path, text)
    assert c.line == 2 and c.expect is not None and c.expect.text == "<= 40"


def test_headers_inside_multiline_strings_are_not_counted(tmp_path: Path) -> None:
    text = edit(BASE, measured_as='"""first line\n[[claim]]\nid = "fake"\n"""') + "\n" + edit(BASE, id='"two"')
    claims = load(tmp_path, text)
    assert [c.line for c in claims] == [1, 17]
    error(tmp_path, text + "\n" + edit(BASE, id='"two"'), 31, "defined twice", ":18")


def test_claims_error_is_a_config_error_and_pickles() -> None:
    e = ClaimsError(Path("x.toml"), 7, "bad")
    assert isinstance(e, ConfigError) and isinstance(e, HarnessError)
    back = pickle.loads(pickle.dumps(e))
    assert str(back) == "x.toml:7: bad" and back.line == 7


# --- errors ---------------------------------------------------------------------------------------------------------


def test_toml_syntax_error_reuses_tomllib_line(tmp_path: Path) -> None:
    error(tmp_path, edit(BASE, min="= 3"), L_MIN, "invalid TOML", "column", "key = value")


def test_toml_error_at_end_of_document(tmp_path: Path) -> None:
    text = BASE + 'tolerance = "10%\n'
    error(tmp_path, text, text.count("\n"), "invalid TOML")


def test_unknown_top_level_key(tmp_path: Path) -> None:
    error(tmp_path, BASE + "[meta]\nauthor = 'me'\n", 13, "unknown top-level key 'meta'", "only [[claim]]")
    error(tmp_path, BASE.replace("[[claim]]", "[[claims]]"), 1, "'claims'", "Did you mean [[claim]]?")
    error(tmp_path, 'id = "x"\n' + BASE, 1, "'id' is a claim key", "after a [[claim]] header")


def test_claim_must_be_an_array_of_tables(tmp_path: Path) -> None:
    error(tmp_path, BASE.replace("[[claim]]", "[claim]"), 1, "array of tables", "[[claim]]")


def test_unknown_claim_key_suggests_closest(tmp_path: Path) -> None:
    e = error(tmp_path, BASE + "tolerence = 5\n", 13, "claim 'boot.to_login'", "unknown key 'tolerence'")
    assert "Did you mean 'tolerance'?" in str(e) and "Valid keys: " + ", ".join(CLAIM_KEYS) in str(e)
    error(tmp_path, BASE + "[claim.extra]\nx = 1\n", 13, "unknown key 'extra'")


@pytest.mark.parametrize("key", REQUIRED_KEYS)
def test_missing_required_key(tmp_path: Path, key: str) -> None:
    # The header line: a missing key has no line of its own.
    error(tmp_path, "\n# lead\n" + edit(BASE, **{key: None}), 3, f"missing required key {key}.", f"{key} = ")


def test_missing_several_keys_lists_them(tmp_path: Path) -> None:
    error(tmp_path, edit(BASE, source=None, guest=None), 1, "missing required keys source, guest", "Add them")


@pytest.mark.parametrize(
    ("key", "value", "line", "fragment"),
    [
        ("id", "3", L_ID, "id must be a string, not integer 3"),
        ("statement", '""', 3, "statement is empty"),
        ("guest", "true", 5, "guest must be a string, not boolean"),
        ("arch", "3", L_ARCH, "arch must be a string or an array of strings"),
        ("arch", '["i386", 1]', L_ARCH, "arch must be a string or an array of strings"),
        ("arch", "[]", L_ARCH, "arch is empty"),
        ("unit", "1979-05-27", L_UNIT, "unit must be a string, not date/time"),
        ("min", '"50"', L_MIN, "min must be a number in ms, not string '50'"),
        ("max", "true", L_MAX, "max must be a number in ms, not boolean"),
        ("min", "inf", L_MIN, "min must be a finite number"),
        ("min", "9" * 400, L_MIN, "too large"),
        ("min_samples", "1.5", L_SAMPLES, "min_samples must be an integer, not float 1.5"),
        ("min_samples", "0", L_SAMPLES, "min_samples is 0; it must be at least 1"),
    ],
)
def test_wrong_types_and_values(tmp_path: Path, key: str, value: str, line: int, fragment: str) -> None:
    error(tmp_path, edit(BASE, **{key: value}), line, fragment)


def test_report_only_must_be_boolean(tmp_path: Path) -> None:
    error(tmp_path, BASE + 'report_only = "yes"\n', 13, "report_only must be true or false")


def test_bad_id(tmp_path: Path) -> None:
    error(tmp_path, edit(BASE, id='"Boot To Login"'), L_ID, "lowercase letters", "'boot_to_login'")


def test_duplicate_id_names_both_places(tmp_path: Path) -> None:
    path = tmp_path / "claims.toml"
    error(tmp_path, BASE + "\n" + BASE, 13 + L_ID, "defined twice", f"{path}:{L_ID}")
    other = write(tmp_path, BASE, "other.toml")
    with pytest.raises(ClaimsError) as info:
        load_claims([other, write(tmp_path, BASE)], METRICS)
    assert str(info.value).startswith(f"{path}:{L_ID}: ") and f"{other}:{L_ID}" in str(info.value)


def test_unknown_arch(tmp_path: Path) -> None:
    error(tmp_path, edit(BASE, arch='["i386", "x86_64"]'), L_ARCH, "unknown arch 'x86_64'", "i386, arm")
    error(tmp_path, edit(BASE, arch='"i686"'), L_ARCH, "Did you mean 'i386'?")


def test_unknown_metric_lists_known_and_closest(tmp_path: Path) -> None:
    error(
        tmp_path,
        edit(BASE, metric='"boot.to_logn"'),
        L_METRIC,
        "unknown metric 'boot.to_logn'",
        "Did you mean 'boot.to_login'?",
        "Known metrics: " + ", ".join(sorted(METRICS)),
    )


def test_unknown_unit_lists_valid(tmp_path: Path) -> None:
    error(tmp_path, edit(BASE, unit='"msec"'), L_UNIT, "unknown unit 'msec'", "Did you mean 'ms'?", "s, ms, us (or µs")


def test_unit_of_wrong_dimension(tmp_path: Path) -> None:
    error(tmp_path, edit(BASE, unit='"MiB"'), L_UNIT, "'MiB' is a size unit", "measures time", "s, ms, us, ns")


def test_value_and_band_together(tmp_path: Path) -> None:
    error(tmp_path, BASE + "value = 100\n", 13, "both value and min/max")


def test_no_expectation(tmp_path: Path) -> None:
    error(tmp_path, "\n" + edit(BASE, min=None, max=None), 2, "no expectation", "report_only = true")
    error(tmp_path, edit(BASE, min=None, max=None) + "tolerance = 1\n", 1, "no expectation")


def test_report_only_with_expectation(tmp_path: Path) -> None:
    error(tmp_path, BASE + "report_only = true\n", L_MIN, "report_only = true takes no expectation", "min, max")


def test_min_greater_than_max(tmp_path: Path) -> None:
    error(tmp_path, edit(BASE, min="300"), L_MIN, "min (300 ms) is greater than max (200 ms)", "Swap them")


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"ten percent"', "is not a percentage"),
        ('"-5%"', "is not a percentage"),
        ("-1", "must be a finite number >= 0"),
        ("[1]", "not array"),
    ],
)
def test_bad_tolerance(tmp_path: Path, value: str, fragment: str) -> None:
    error(tmp_path, BASE + f"tolerance = {value}\n", 13, "tolerance", fragment)


def test_flag_errors(tmp_path: Path) -> None:
    flag = edit(BASE, metric='"mem.pse_unused"', unit='"flag"', min=None, max="2").replace("max", "value")
    error(tmp_path, flag, L_MIN, "no flag value", "value = true")
    flag = flag.replace("value = 2", "value = true")
    error(tmp_path, flag + "tolerance = 1\n", 12, "tolerance makes no sense")
    text = BASE.replace("min = 50", "value = true").replace("max = 200\n", "")
    error(tmp_path, text, L_MIN, "value must be a number in ms, not boolean")


def test_unreadable_and_non_utf8_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ClaimsError, match=r"missing\.toml:1: cannot read"):
        load_claims([missing], METRICS)
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b"# ok\n# \xff\xfe\n")
    with pytest.raises(ClaimsError, match=r"bad\.toml:2: .*UTF-8"):
        load_claims([bad], METRICS)


def test_pathological_toml_is_a_claims_error(tmp_path: Path) -> None:
    error(tmp_path, "a = " + "[" * 3000, 1, "")
    error(tmp_path, "a = " + "1" * 5000, 1, "")


# --- select_claims ------------------------------------------------------------------------------------------------


def test_select_claims(tmp_path: Path) -> None:
    ids = ["boot.to_login", "boot.processes", "mem.vbase", "mem.pse"]
    claims = load(tmp_path, "\n".join(edit(BASE, id=f'"{i}"') for i in ids))

    def sel(p: str | None) -> list[str]:
        return [c.id for c in select_claims(claims, p)]

    assert sel(None) == ids and sel("") == ids and sel(" , ") == ids
    assert sel("boot.*") == ["boot.to_login", "boot.processes"]
    assert sel("mem.pse, boot.to_*") == ["boot.to_login", "mem.pse"]  # claim order, not pattern order
    assert sel("*.p*") == ["boot.processes", "mem.pse"]
    assert sel("nothing") == []
    assert sel("BOOT.*") == []  # ids are lowercase; matching is case-sensitive


# --- units ----------------------------------------------------------------------------------------------------------


def test_unit_table() -> None:
    assert parse_unit("µs") is UNITS["us"] and parse_unit("%").name == "percent"
    assert parse_unit(" KiB ").factor == 1024 and parse_unit("KB").factor == 1000
    dims = {"time", "size", "count", "cycles", "address", "ratio", "percent", "flag"}
    assert {u.dimension for u in UNITS.values()} == dims


def test_unknown_unit_error() -> None:
    with pytest.raises(ConfigError, match=r"Unknown unit 'kib'\. Did you mean 'KiB'") as info:
        parse_unit("kib")
    assert all(name in str(info.value) for name in UNITS)


@pytest.mark.parametrize(
    ("value", "src", "dst", "expected"),
    [
        (1500, "ms", "s", 1.5),
        (2, "s", "us", 2e6),
        (1, "µs", "ns", 1000),
        (3, "KiB", "B", 3072),
        (1, "MiB", "KiB", 1024),
        (2.5, "GB", "MB", 2500),
        (1, "GiB", "B", 2**30),
        (7, "count", "count", 7),
        (50, "%", "percent", 50),
    ],
)
def test_convert(value: float, src: str, dst: str, expected: float) -> None:
    assert convert(value, src, dst) == pytest.approx(expected)


def test_convert_across_dimensions_fails() -> None:
    with pytest.raises(ConfigError, match=r"(?i)cannot convert ms to MiB"):
        convert(1, "ms", "MiB")
    with pytest.raises(ConfigError, match="Unknown unit"):
        convert(1, "ms", "fortnights")


@pytest.mark.parametrize(
    ("value", "unit", "text"),
    [
        (12.3456, "ms", "12.3 ms"),
        (12.0, "ms", "12 ms"),
        (1.5, "ms", "1.5 ms"),
        (0.00123, "s", "0.00123 s"),
        (123.4, "ms", "123 ms"),
        (12345.6, "ms", "12346 ms"),
        (0, "s", "0 s"),
        (-2.5, "us", "-2.5 us"),
        (1.23e-7, "s", "1.23e-07 s"),
        (0xF0400000, "address", "0xf0400000"),
        (1, "flag", "yes"),
        (0, "flag", "no"),
        (0.5, "flag", "0.5 flag"),
        (97.5, "percent", "97.5 %"),
        (97.5, "%", "97.5 %"),
        (12, "count", "12"),
        (12.5, "count", "12.5"),
        (1234, "cycles", "1234 cycles"),
        (0.25, "ratio", "0.25"),
        (4096, "KiB", "4096 KiB"),
        (math.inf, "ms", "inf ms"),
    ],
)
def test_format_value(value: float, unit: str, text: str) -> None:
    assert format_value(value, unit) == text


@PROPERTY
@given(
    st.sampled_from(sorted(UNITS)).flatmap(
        lambda a: st.tuples(st.just(a), st.sampled_from([b for b in UNITS if UNITS[b].dimension == UNITS[a].dimension]))
    ),
    st.floats(-1e12, 1e12, allow_nan=False),
)
def test_convert_round_trips(units: tuple[str, str], value: float) -> None:
    a, b = units
    assert convert(convert(value, a, b), b, a) == pytest.approx(value, rel=1e-12, abs=1e-300)


# --- property tests -------------------------------------------------------------------------------------------------


def toml_str(s: str) -> str:
    out = []
    for ch in s:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@dataclass
class Entry:
    """One generated claim: the TOML key lines and what loading must give."""

    keys: dict[str, str]  # key -> TOML value text, in file order
    expected: dict[str, Any]
    band: tuple[float, float] | None = None  # both bounds given and lo < hi: swappable
    lines: dict[str, int] = field(default_factory=dict)  # filled by render(): "[[claim]]" and each key


def render(entries: list[Entry], comments: list[bool]) -> str:
    out: list[str] = ["# generated claims"]
    for entry, comment in zip(entries, comments, strict=True):
        out.append("")
        out.append("[[claim]]  # entry" if comment else "[[claim]]")
        entry.lines = {"[[claim]]": len(out)}
        for key, value in entry.keys.items():
            out.append(f"{key} = {value}")
            entry.lines[key] = len(out)
            if comment:
                out.append("# min = 1 in a comment")
    return "\n".join(out) + "\n"


text_value = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=30).filter(str.strip)
finite = st.one_of(st.integers(-(10**9), 10**9), st.floats(-1e9, 1e9, allow_nan=False, allow_infinity=False))


@st.composite
def entries(draw: st.DrawFn, ident: str) -> Entry:
    metric = draw(st.sampled_from(sorted(METRICS)))
    dim = UNITS[METRICS[metric]].dimension
    unit = draw(st.sampled_from([n for n, u in UNITS.items() if u.dimension == dim]))
    arch = draw(st.one_of(st.sampled_from(ARCHES), st.lists(st.sampled_from(ARCHES), min_size=1, max_size=3)))
    fields = {
        "statement": draw(text_value),
        "source": draw(text_value),
        "guest": draw(st.sampled_from(["minix", "reference"]) | text_value),
        "measured_as": draw(text_value),
    }
    keys = {
        "id": toml_str(ident),
        **{k: toml_str(v) for k, v in fields.items()},
        "arch": toml_str(arch) if isinstance(arch, str) else "[" + ", ".join(map(toml_str, arch)) + "]",
        "metric": toml_str(metric),
        "unit": toml_str(unit),
    }
    expected: dict[str, Any] = {
        "id": ident,
        **fields,
        "arches": (arch,) if isinstance(arch, str) else tuple(dict.fromkeys(arch)),
        "metric": metric,
        "unit": UNITS[unit].name,
        "report_only": False,
        "min_samples": 1,
    }
    if draw(st.booleans()):
        expected["min_samples"] = draw(st.integers(1, 20))
        keys["min_samples"] = str(expected["min_samples"])
    kind = draw(st.sampled_from(["report", "value"] if dim == "flag" else ["report", "value", "band", "lo", "hi"]))
    band = None
    if kind == "report":
        keys["report_only"] = "true"
        expected.update(report_only=True, expect=None)
    else:
        if draw(st.booleans()):
            keys["report_only"] = "false"
        if dim == "flag":
            flag = draw(st.booleans())
            keys["value"] = "true" if flag else "false"
            lo = hi = float(flag)
        elif dim == "address":
            a, b = sorted(draw(st.lists(st.integers(0, 2**48), min_size=2, max_size=2)))
            lo, hi = (a, a) if kind == "value" else (a, b)
            if kind == "value":
                keys["value"] = hex(a)
        else:
            a, b = sorted(draw(st.lists(finite, min_size=2, max_size=2)))
            lo, hi = (a, a) if kind == "value" else (a, b)
            if kind == "value":
                keys["value"] = repr(a)
        if kind != "value":
            lo = lo if kind in ("band", "lo") else None
            hi = hi if kind in ("band", "hi") else None
            if lo is not None:
                keys["min"] = hex(int(lo)) if dim == "address" else repr(lo)
            if hi is not None:
                keys["max"] = hex(int(hi)) if dim == "address" else repr(hi)
            if lo is not None and hi is not None and lo < hi:
                band = (lo, hi)
        tol_lo = tol_hi = 0.0
        tol = draw(st.none() if dim == "flag" else st.one_of(st.none(), st.integers(0, 200), st.floats(0, 1e6)))
        if tol is not None and draw(st.booleans()):
            pct = round(float(tol) % 200, 3)  # a plain decimal: "12.5%", never "1e-05%"
            keys["tolerance"] = toml_str(f"{pct}%")
            frac = pct / 100
            tol_lo = 0.0 if lo is None else frac * abs(lo)
            tol_hi = 0.0 if hi is None else frac * abs(hi)
        elif tol is not None:
            keys["tolerance"] = repr(tol)
            tol_lo = tol_hi = float(tol)
        expected["expect"] = {"lo": lo, "hi": hi, "exact": kind == "value", "tol_lo": tol_lo, "tol_hi": tol_hi}
    keys["measured_as"] = keys.pop("measured_as")  # move to the end, as in the hand-written files
    order = draw(st.permutations(list(keys)))
    return Entry({k: keys[k] for k in order}, expected, band)


ids = st.lists(st.from_regex(r"[a-z0-9_.-]{1,16}", fullmatch=True), min_size=1, max_size=4, unique=True)
files = ids.flatmap(lambda xs: st.tuples(*(entries(x) for x in xs))).map(list)
comment_flags = st.lists(st.booleans(), min_size=4, max_size=4)


def check_claim(claim: Claim, entry: Entry, path: Path) -> None:
    exp = entry.expected
    for key in ("id", "statement", "source", "guest", "arches", "metric", "unit", "min_samples", "measured_as"):
        assert getattr(claim, key) == exp[key], key
    assert claim.report_only == exp["report_only"] and claim.path == path and claim.line == entry.lines["[[claim]]"]
    if exp["expect"] is None:
        assert claim.expect is None
        return
    assert claim.expect is not None
    e = exp["expect"]
    assert (claim.expect.lo, claim.expect.hi, claim.expect.exact) == (e["lo"], e["hi"], e["exact"])
    assert claim.expect.tol_lo == pytest.approx(e["tol_lo"]) and claim.expect.tol_hi == pytest.approx(e["tol_hi"])
    lo, hi = claim.expect.widened()
    assert (lo is None) == (e["lo"] is None) and (hi is None) == (e["hi"] is None)
    assert claim.expect.text


@PROPERTY
@given(files, comment_flags)
def test_generated_files_round_trip(tmp_path: Path, generated: list[Entry], comments: list[bool]) -> None:
    path = write(tmp_path, render(generated, comments[: len(generated)]))
    claims = load_claims([path], METRICS)
    assert len(claims) == len(generated)
    for claim, entry in zip(claims, generated, strict=True):
        check_claim(claim, entry, path)


@PROPERTY
@given(files, comment_flags, st.data())
def test_corrupted_entry_fails_at_its_line(
    tmp_path: Path, generated: list[Entry], comments: list[bool], data: st.DataObject
) -> None:
    k = data.draw(st.integers(0, len(generated) - 1), label="entry")
    entry = generated[k]
    ways = ["drop", "unknown_key", "unit"] + (["swap"] if entry.band else [])
    way = data.draw(st.sampled_from(ways), label="way")
    if way == "drop":
        del entry.keys[data.draw(st.sampled_from(REQUIRED_KEYS), label="key")]
        where = "[[claim]]"
    elif way == "unknown_key":
        entry.keys["colour"] = '"blue"'
        where = "colour"
    elif way == "unit":
        entry.keys["unit"] = '"furlongs"'
        where = "unit"
    else:
        assert entry.band is not None
        entry.keys["min"], entry.keys["max"] = entry.keys["max"], entry.keys["min"]
        where = "min"
    path = write(tmp_path, render(generated, comments[: len(generated)]))
    with pytest.raises(ClaimsError) as info:
        load_claims([path], METRICS)
    line = entry.lines[where]
    assert info.value.line == line and str(info.value).startswith(f"{path}:{line}: "), (way, str(info.value))


TOML_FRAGMENTS = [
    *BASE.splitlines(),
    "[[claim]]",
    "[claim]",
    "[[claims]]",
    "[claim.x]",
    "value = 0xF0400000",
    "value = true",
    "unit = 'flag'",
    "unit = 'address'",
    'metric = "mem.pse_unused"',
    'metric = "mem.kernel_vbase"',
    "tolerance = '5%'",
    "tolerance = -3",
    "report_only = true",
    "min = nan",
    "max = -inf",
    "arch = []",
    'measured_as = """',
    "'''",
    '"""',
    "claim = [{id = 'x'}]",
    "claim = 3",
    "id = 'x'",
    "min = 1979-05-27",
    "a.b.c = 1",
    "# [[claim]]",
]


@PROPERTY
@given(
    st.one_of(
        st.text(max_size=300),
        st.lists(st.sampled_from(TOML_FRAGMENTS), max_size=40).map("\n".join),
        st.lists(st.sampled_from(TOML_FRAGMENTS) | st.text(max_size=10), max_size=30).map("\n".join),
    )
)
def test_arbitrary_text_only_raises_claims_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "claims.toml"
    path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        claims = load_claims([path], METRICS)
    except ClaimsError as e:
        assert re.match(rf"{re.escape(str(path))}:\d+: \S", str(e)), str(e)
        assert 1 <= e.line <= max(1, text.count("\n") + 1)
    else:
        assert all(isinstance(c, Claim) for c in claims)
