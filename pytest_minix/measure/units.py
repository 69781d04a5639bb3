"""Units of claims and measurements: a small fixed table, conversion and human formatting.

A fixed table rather than pint: pint would add ~0.3 s of import to every pytest start,
and the units needed here (cycles, address, flag) are custom anyway.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass

from pytest_minix.errors import ConfigError

DIMENSIONS = ("time", "size", "count", "cycles", "address", "ratio", "percent", "flag")


@dataclass(frozen=True)
class Unit:
    """One unit: ``value * factor`` is the value in its dimension's base unit (s, bytes, 1, ...)."""

    name: str  # canonical spelling, e.g. "ms"
    dimension: str
    factor: float


_TABLE = (
    Unit("s", "time", 1.0),
    Unit("ms", "time", 1e-3),
    Unit("us", "time", 1e-6),
    Unit("ns", "time", 1e-9),
    Unit("B", "size", 1.0),
    Unit("KB", "size", 1e3),
    Unit("KiB", "size", 1024.0),
    Unit("MB", "size", 1e6),
    Unit("MiB", "size", 1024.0**2),
    Unit("GB", "size", 1e9),
    Unit("GiB", "size", 1024.0**3),
    Unit("count", "count", 1.0),
    Unit("cycles", "cycles", 1.0),
    Unit("address", "address", 1.0),
    Unit("ratio", "ratio", 1.0),
    Unit("percent", "percent", 1.0),
    Unit("flag", "flag", 1.0),
)
_ALIASES = {"µs": "us", "μs": "us", "%": "percent"}  # micro sign and Greek mu both occur in the wild

UNITS: dict[str, Unit] = {u.name: u for u in _TABLE}
UNITS.update({alias: UNITS[name] for alias, name in _ALIASES.items()})

# Shown without a unit suffix: the number says it all.
_BARE = ("count", "ratio")


def parse_unit(text: str) -> Unit:
    """The unit spelled ``text`` (canonical name or alias), or a ConfigError listing the valid ones."""
    try:
        return UNITS[text.strip()]
    except (KeyError, AttributeError):
        pass
    aliases = {u.name: [a for a, n in _ALIASES.items() if n == u.name] for u in _TABLE}
    valid = ", ".join(f"{n} (or {' or '.join(aliases[n])})" if aliases[n] else n for n in aliases)
    hint = ""
    if isinstance(text, str):
        # Case slips (kib, Ms) are the common mistake: suggest by case first, then by spelling.
        folded = [name for name in UNITS if name.lower() == text.strip().lower()]
        close = folded or difflib.get_close_matches(text.strip(), list(UNITS), n=1)
        if close:
            hint = f" Did you mean {close[0]!r}?"
    raise ConfigError(f"Unknown unit {text!r}.{hint} Valid units: {valid}. Use one of those.")


def convert(value: float, src: str, dst: str) -> float:
    """``value`` in unit ``src`` expressed in unit ``dst``; both must share a dimension."""
    a, b = parse_unit(src), parse_unit(dst)
    if a.dimension != b.dimension:
        raise ConfigError(
            f"Cannot convert {a.name} to {b.name}: {a.name} is a {a.dimension} and {b.name} is a {b.dimension}. "
            "Use a unit of the same dimension."
        )
    if a.factor == b.factor:
        return value  # exact: no float round trip for same-unit or aliased conversions
    return value * a.factor / b.factor


def format_number(value: float, unit: str) -> str:
    """``value`` as text without the unit suffix: hex for addresses, yes/no for flags, else 3 significant digits."""
    dim = parse_unit(unit).dimension
    if not math.isfinite(value):
        return str(value)
    if dim == "address" and value >= 0 and value == int(value):
        return f"{int(value):#x}"
    if dim == "flag" and value in (0, 1):
        return "yes" if value else "no"
    return _sig3(value)


def unit_suffix(unit: str) -> str:
    """What follows a number of ``unit`` in text: " ms", " %", or "" for counts, ratios, addresses, flags."""
    u = parse_unit(unit)
    if u.dimension in ("address", "flag", *_BARE):
        return ""
    return " %" if u.dimension == "percent" else f" {u.name}"


def format_value(value: float, unit: str) -> str:
    """``value`` with its unit for people: "12.3 ms", "0xf0400000", "yes", "97.5 %", "12"."""
    u = parse_unit(unit)
    text = format_number(value, unit)
    if u.dimension in ("address", "flag") and not text.startswith(("0x", "yes", "no")):
        return f"{text} {u.name}"  # fits no hex or yes/no form (e.g. a mean of flags): say what it is
    return text + unit_suffix(unit)


def _sig3(value: float) -> str:
    """Three significant digits, but never an exponent for ordinary magnitudes nor lost integer digits."""
    if value == 0:
        return "0"
    mag = abs(value)
    if mag >= 1e15 or mag < 1e-4:
        return f"{value:.3g}"
    if mag >= 100:
        # 12345 ms reads better than 1.23e+04 ms; integer digits are never dropped.
        return str(round(value))
    return f"{value:.3g}"
