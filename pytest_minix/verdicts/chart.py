"""The report's pictures (need the ``chart`` extra, i.e. matplotlib).

- :func:`timeline_chart`: one bar per fresh boot, its phases (firmware, kernel, system
  services, login) as coloured segments, the milestones as ticks.
- :func:`forest_chart`: per claim, the measured interval against the claimed band on a log
  axis (a forest plot), coloured by verdict. Claims have different units, so each row is
  drawn relative to the claim's own bound (1 = the bound); its real figures are written
  beside it. :func:`forest_rows` turns report records into the rows (no matplotlib needed).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_minix.errors import ConfigError
from pytest_minix.measure.units import format_value, parse_unit

_INSTALL_HINT = "pip install pytest-minix[chart]"
_WIDTH_IN = 12.0
_AXES_WIDTH_PT = (_WIDTH_IN - 3.0) * 72  # the figure less the row labels and the legend, about
_BAR = 0.45  # bar height, in rows
_CHAR_PT = 5.6  # generous width of a character at font size 8.5, in points
_LEVEL_PT = 12  # vertical step between stacked milestone labels, in points
_FONT = 8.5

Boot = tuple[str, Sequence[tuple[str, float]]]

# A boot segment is named by the milestone that ends it, in words a reader knows. MINIX's
# first console line is its banner replayed by TTY, the reference guest's is Linux's banner:
# both belong to the kernel's part of the boot, which ends when the first process runs.
PHASE_OF_MILESTONE: dict[str, str] = {
    "bios": "firmware",
    "firmware": "firmware",
    "first_output": "kernel",
    "kernel": "kernel",
    "copyright": "kernel",
    "init": "kernel",
    "root": "system services",
    "multiuser": "system services",
    "services": "system services",
    "daemons": "system services",
    "disk": "system services",
    "ready": "system services",
    "login": "system services",
    "shell": "login",
}
PHASE_ORDER = ("firmware", "kernel", "system services", "login")
PHASE_COLOURS = {
    "firmware": "#f28e2b",
    "kernel": "#4e79a7",
    "system services": "#59a14f",
    "login": "#edc948",
}
# Milestones as labels: what happened at that moment.
MILESTONE_WORDS: dict[str, str] = {
    "firmware": "firmware done",
    "first_output": "first console line",
    "kernel": "kernel banner",
    "init": "first process",
    "root": "root device",
    "multiuser": "multi-user start",
    "services": "services start",
    "daemons": "daemons start",
    "login": "login prompt",
    "shell": "shell ready",
}

VERDICT_COLOURS = {
    "confirmed": "#2e7d32",
    "refuted": "#c62828",
    "inconclusive": "#ef8f00",
    "reported": "#5c6bc0",
}


def _import_matplotlib(what: str) -> Any:
    try:
        import matplotlib
        import matplotlib.figure
        import matplotlib.lines
        import matplotlib.patches
        import matplotlib.ticker
    except ImportError as e:
        raise ImportError(f"{what} need matplotlib: {_INSTALL_HINT}") from e
    # A bare Figure renders without pyplot: no GUI backend is touched and a caller's pyplot
    # state is left alone (Agg renders the PNG regardless of the selected backend).
    return matplotlib


# --- the boot timeline --------------------------------------------------------------------------------------------


def phase_name(start: str, end: str) -> str:
    """The phase from milestone ``start`` to ``end``, in words ("kernel"); unknown ends keep "a -> b"."""
    return PHASE_OF_MILESTONE.get(end, f"{start} -> {end}")


def boot_segments(milestones: Sequence[tuple[str, float]]) -> list[tuple[str, float, float]]:
    """(phase, start, end) per phase of one boot: adjacent spans of the same phase merged, empty ones dropped."""
    segments: list[tuple[str, float, float]] = []
    for (a, ta), (b, tb) in itertools.pairwise(milestones):
        name = phase_name(a, b)
        if segments and segments[-1][0] == name:
            segments[-1] = (name, segments[-1][1], tb)
        else:
            segments.append((name, ta, tb))
    return [s for s in segments if s[2] > s[1]]


def _boundaries(milestones: Sequence[tuple[str, float]]) -> list[tuple[str, float]]:
    """The milestones worth a label: those with words (:data:`MILESTONE_WORDS`) and the last, never QMP cont."""
    last = milestones[-1][0] if milestones else ""
    wanted = [(n, t) for n, t in milestones if n != "cont" and (n in MILESTONE_WORDS or n == last)]
    # Of milestones at the same moment keep the last (e.g. "first_output" and "kernel").
    kept: list[tuple[str, float]] = []
    for name, t in wanted:
        if kept and math.isclose(kept[-1][1], t, abs_tol=1e-6):
            kept[-1] = (name, t)
        else:
            kept.append((name, t))
    return kept


def _label(name: str, t: float) -> str:
    return f"{MILESTONE_WORDS.get(name, name)} {t:.2f} s"


def _label_levels(milestones: Sequence[tuple[str, float]], seconds_per_pt: float) -> list[int]:
    """Per milestone, the height its label sits at: the lowest one where it runs into no earlier label.

    Widths are estimated from the character count, as exact extents would need a renderer pass.
    """
    ends: list[float] = []  # per height: where its last label ends, in seconds
    levels = []
    for name, t in milestones:
        level = next((i for i, e in enumerate(ends) if e < t), len(ends))
        end = t + (len(_label(name, t)) + 2) * _CHAR_PT * seconds_per_pt
        if level < len(ends):
            ends[level] = end
        else:
            ends.append(end)
        levels.append(level)
    return levels


def timeline_chart(boots: Sequence[Boot], stem: Path, title: str = "") -> list[Path]:
    """Draw boot timelines and write ``stem.png`` and ``stem.svg``; returns both paths.

    ``boots``: (label, [(milestone, seconds from QMP cont), ...] in time order) per boot.
    Segments are the phases of :data:`PHASE_OF_MILESTONE` (a phase has the same colour in
    every row, and only phases that occur are in the legend); milestones where a phase ends
    are ticked and labelled. Raises ImportError naming ``pip install pytest-minix[chart]``
    when matplotlib is missing.
    """
    matplotlib = _import_matplotlib("timeline charts")
    segments = [boot_segments(ms) for _, ms in boots]
    labelled = [_boundaries(ms) for _, ms in boots]
    phases = _phase_colours(segments, matplotlib)
    end = max((t for _, ms in boots for _, t in ms), default=0.0) or 1.0
    xmax = end * 1.2  # room for the last milestone's label
    levels = [_label_levels(ms, xmax / _AXES_WIDTH_PT) for ms in labelled]
    stacked = max((max(lv, default=0) + 1 for lv in levels), default=1)
    # A row holds its bar and, in the gap above it, its stack of labels.
    row_in = max(0.9, (_LEVEL_PT * stacked + 14) / ((1 - _BAR) * 72))
    rows = max(1, len(boots))

    fig = matplotlib.figure.Figure(figsize=(_WIDTH_IN, 1.3 + row_in * rows))
    ax = fig.add_subplot()
    for row, segs in enumerate(segments):
        _draw_boot(ax, -row, segs, labelled[row], levels[row], phases, end)  # first boot on top
    _frame(ax, boots, rows, xmax, title)
    _legend(ax, phases, matplotlib.patches.Patch)
    fig.tight_layout()
    return _save(fig, Path(stem), matplotlib)


def _phase_colours(segments: Sequence[Sequence[tuple[str, float, float]]], matplotlib: Any) -> dict[str, str]:
    """Phase name -> colour for the phases that occur: the known ones in boot order, then others."""
    present = {name for segs in segments for name, _, _ in segs}
    phases = {p: PHASE_COLOURS[p] for p in PHASE_ORDER if p in present}
    others = [n for segs in segments for n, _, _ in segs if n not in phases]
    palette = itertools.cycle(matplotlib.colors.to_hex(c) for c in matplotlib.colormaps["Dark2"].colors)
    for name in dict.fromkeys(others):
        phases[name] = next(palette)
    return phases


def _draw_boot(
    ax: Any,
    y: float,
    segments: Sequence[tuple[str, float, float]],
    milestones: Sequence[tuple[str, float]],
    levels: Sequence[int],
    phases: dict[str, str],
    end: float,
) -> None:
    """One boot's row at height ``y``: a bar segment per phase, a tick and a label per milestone."""
    for name, ta, tb in segments:
        width = tb - ta
        ax.barh(y, width, left=ta, height=_BAR, color=phases[name], edgecolor="white", linewidth=0.8)
        if width > end * 0.07:  # room for the duration inside the segment
            ax.text(
                ta + width / 2,
                y,
                f"{name}\n{width:.2f} s",
                ha="center",
                va="center",
                fontsize=_FONT,
                zorder=4,
                bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.75, "linewidth": 0},
            )
    top = y + _BAR / 2 + 0.04
    for (name, t), level in zip(milestones, levels, strict=True):
        ax.plot([t, t], [y - _BAR / 2, top], color="#333333", linewidth=0.8, zorder=3)
        ax.annotate(
            _label(name, t),
            (t, top),
            xytext=(2, 4 + _LEVEL_PT * level),
            textcoords="offset points",
            fontsize=_FONT,
            color="#222222",
            # Ticks of later milestones end below the label; the backing keeps them from seeming to cut it.
            bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "alpha": 0.85, "linewidth": 0},
        )


def _frame(ax: Any, boots: Sequence[Boot], rows: int, xmax: float, title: str) -> None:
    """Row labels, limits, the time axis and its grid, the title."""
    ax.set_yticks([-r for r in range(len(boots))], [label for label, _ in boots], fontsize=9.5)
    ax.set_ylim(-(rows - 1) - 0.5, 1 - _BAR / 2)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("seconds from QMP cont (QEMU starts paused, so the firmware is included)")
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title, fontsize=11.5, loc="left")


def _legend(ax: Any, phases: dict[str, str], patch: Any) -> None:
    """The phases that occur and their colours, beside the plot."""
    if phases:
        ax.legend(
            handles=[patch(color=c, label=name) for name, c in phases.items()],
            title="phase",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),  # beside the plot, so its place does not depend on the figure height
            fontsize=9,
            frameon=False,
        )


def _save(fig: Any, stem: Path, matplotlib: Any) -> list[Path]:
    """Write ``stem.png`` and ``stem.svg``."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, svg = stem.with_name(stem.name + ".png"), stem.with_name(stem.name + ".svg")
    fig.savefig(png, dpi=120, bbox_inches="tight")
    # Text stays text in the SVG: searchable, and the phase names readable by tools and tests.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(svg, bbox_inches="tight")
    return [png, svg]


# --- the claims forest plot ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ForestRow:
    """One claim on the forest plot, every figure divided by ``scale`` (the claim's bound), so 1 is the bound.

    Open sides are infinite. ``ci`` is the measurement's confidence interval (None for a
    single sample); ``interval`` is the interval the verdict compared with the band (the CI
    widened by the emulation or bound allowance); ``median`` the median sample.
    """

    label: str
    outcome: str
    scale: float
    band: tuple[float, float]
    interval: tuple[float, float]
    ci: tuple[float, float] | None
    median: float
    claimed: str
    measured: str


def _side(value: Any, default: float) -> float:
    return default if value is None else float(value)


def forest_rows(records: Sequence[Mapping[str, Any]]) -> tuple[list[ForestRow], int]:
    """The rows of the forest plot, in the records' order, and how many records have none.

    A record gets a row when it has a claimed band, samples and a numeric unit (flags are
    yes/no, not a scale): confirmed, refuted and inconclusive verdicts with a measurement.
    """
    rows: list[ForestRow] = []
    for r in records:
        row = _forest_row(r)
        if row is not None:
            rows.append(row)
    return rows, len(records) - len(rows)


def _forest_row(r: Mapping[str, Any]) -> ForestRow | None:
    expect, stats, unit = r.get("expect"), r.get("stats"), str(r.get("unit") or "")
    if not expect or not stats or r.get("outcome") not in ("confirmed", "refuted", "inconclusive"):
        return None
    try:
        if parse_unit(unit).dimension == "flag":
            return None
    except ConfigError:  # an unknown unit in a merged report from another version
        return None
    stated = [expect.get("hi"), expect.get("lo")]
    scale = next((float(v) for v in stated if v is not None and float(v) > 0), None)
    if scale is None:
        return None
    wlo, whi = (expect.get("widened") or [expect.get("lo"), expect.get("hi")])[:2]
    band = (_side(wlo, -math.inf) / scale, _side(whi, math.inf) / scale)
    raw = r.get("interval") or [stats["ci_lo"], stats["ci_hi"]]
    interval = (_side(raw[0], -math.inf) / scale, _side(raw[1], math.inf) / scale)
    ci = (stats["ci_lo"] / scale, stats["ci_hi"] / scale) if stats.get("n", 0) > 1 else None
    median = float(stats["median"])
    return ForestRow(
        label=f"{r.get('id')} ({r.get('arch')})",
        outcome=str(r["outcome"]),
        scale=scale,
        band=band,
        interval=interval,
        ci=ci,
        median=median / scale,
        claimed=str(r.get("claimed") or ""),
        measured=format_value(median, unit),
    )


def forest_limits(rows: Sequence[ForestRow]) -> tuple[float, float]:
    """The log axis' range: every finite positive figure of every row, with room on both sides."""
    values = [
        v for row in rows for v in (*row.band, *row.interval, *(row.ci or ()), row.median) if math.isfinite(v) and v > 0
    ]
    lo, hi = (min(values), max(values)) if values else (0.1, 10.0)
    lo, hi = min(lo, 0.5), max(hi, 2.0)  # the bound (1) is always well inside
    return 10 ** (math.floor(math.log10(lo) * 4 - 1) / 4), 10 ** (math.ceil(math.log10(hi) * 4 + 1) / 4)


def forest_chart(
    records: Sequence[Mapping[str, Any]], stem: Path, title: str = "", *, left_out_note: bool = True
) -> list[Path] | None:
    """Draw the claims forest plot of report ``records`` into ``stem.png`` and ``stem.svg``.

    Returns the paths, or None when no record has a band and a measurement to draw.
    Raises ImportError naming ``pip install pytest-minix[chart]`` when matplotlib is missing.
    """
    rows, left_out = forest_rows(records)
    if not rows:
        return None
    matplotlib = _import_matplotlib("claims charts")
    xmin, xmax = forest_limits(rows)
    fig = matplotlib.figure.Figure(figsize=(_WIDTH_IN, 1.9 + 0.42 * len(rows)))
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_xlim(xmin, xmax)
    ax.xaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda x, _pos: f"{x:g}×"))
    for i, row in enumerate(rows):
        _draw_forest_row(ax, -i, row, xmin, xmax)
    ax.axvline(1.0, color="#555555", linewidth=0.8, linestyle="--", zorder=1)
    ax.set_ylim(-len(rows) + 0.4, 0.6)
    ax.set_yticks([-i for i in range(len(rows))], [row.label for row in rows], fontsize=9)
    for tick, row in zip(ax.get_yticklabels(), rows, strict=True):
        tick.set_color(VERDICT_COLOURS.get(row.outcome, "black"))
    right = ax.twinx()
    right.set_ylim(ax.get_ylim())
    right.set_yticks(
        [-i for i in range(len(rows))],
        [f"{row.outcome}: claimed {row.claimed}, measured {row.measured}" for row in rows],
        fontsize=8.5,
    )
    right.tick_params(length=0)
    for a in (ax, right):
        for side in ("top", "right"):
            a.spines[side].set_visible(False)
    right.spines["left"].set_visible(False)
    ax.grid(axis="x", which="major", linestyle=":", linewidth=0.6)
    ax.set_axisbelow(True)
    xlabel = "measured ÷ the claim's bound (log scale; 1 = the bound, dashed)"
    if left_out and left_out_note:
        xlabel += (
            f"\n{left_out} claim{'s' if left_out != 1 else ''} without a band or a numeric measurement: see the table"
        )
    ax.set_xlabel(xlabel, fontsize=9.5)
    if title:
        ax.set_title(title, fontsize=11.5, loc="left")
    _forest_legend(fig, ax, rows, matplotlib)
    fig.tight_layout()
    return _save(fig, Path(stem), matplotlib)


def _draw_forest_row(ax: Any, y: float, row: ForestRow, xmin: float, xmax: float) -> None:
    """The claimed band (grey box), the compared interval (thin), the CI (thick) and the median (dot)."""
    colour = VERDICT_COLOURS.get(row.outcome, "black")
    blo, bhi = max(row.band[0], xmin), min(row.band[1], xmax)
    if bhi > blo * 1.0001:
        ax.barh(y, bhi - blo, left=blo, height=0.62, color="#d9d9d9", edgecolor="#9e9e9e", linewidth=0.6, zorder=1)
    else:  # an exact value: a line at the value
        ax.plot([row.band[0]] * 2, [y - 0.31, y + 0.31], color="#7a7a7a", linewidth=2.5, zorder=1)
    lo, hi = max(row.interval[0], xmin), min(row.interval[1], xmax)
    ax.plot([lo, hi], [y, y], color=colour, linewidth=1.4, zorder=3, solid_capstyle="butt")
    for end, open_side, marker in ((lo, row.interval[0] <= xmin, "<"), (hi, row.interval[1] >= xmax, ">")):
        ax.plot([end], [y], marker=marker if open_side else "|", color=colour, markersize=7, zorder=3)
    if row.ci is not None:
        clo, chi = max(row.ci[0], xmin), min(row.ci[1], xmax)
        ax.plot([clo, chi], [y, y], color=colour, linewidth=5, zorder=4, solid_capstyle="butt", alpha=0.85)
    ax.plot([min(max(row.median, xmin), xmax)], [y], "o", color="white", markeredgecolor=colour, markersize=6, zorder=5)


def _forest_legend(fig: Any, ax: Any, rows: Sequence[ForestRow], matplotlib: Any) -> None:
    line, patch = matplotlib.lines.Line2D, matplotlib.patches.Patch
    handles = [
        patch(facecolor="#d9d9d9", edgecolor="#9e9e9e", label="claimed band"),
        line([], [], color="#444444", linewidth=5, label="95% CI of the measurement"),
        line([], [], color="#444444", linewidth=1.4, label="interval compared (with emulation / bound allowance)"),
        line([], [], marker="o", color="white", markeredgecolor="#444444", linestyle="", label="median"),
    ]
    outcomes = [o for o in VERDICT_COLOURS if any(r.outcome == o for r in rows)]
    handles += [patch(color=VERDICT_COLOURS[o], label=o) for o in outcomes]
    ax.legend(
        handles=handles,
        loc="upper left",
        bbox_to_anchor=(0.0, -0.09 - 0.35 / max(1, len(rows)) ** 0.5),
        ncol=4,
        fontsize=8.5,
        frameon=False,
    )
