"""Boot timeline charts: one bar per boot, its phases as coloured segments (needs the ``chart`` extra)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_INSTALL_HINT = "pip install pytest-minix[chart]"
_WIDTH_IN = 12.0
_AXES_WIDTH_PT = (_WIDTH_IN - 2.5) * 72  # the figure less the row labels, about
_BAR = 0.45  # bar height, in rows
_CHAR_PT = 5.2  # generous width of a character at font size 8, in points
_LEVEL_PT = 11  # vertical step between stacked milestone labels, in points

Boot = tuple[str, Sequence[tuple[str, float]]]


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


def _label(name: str, t: float) -> str:
    return f"{name} {t:.2f} s"


def timeline_chart(boots: Sequence[Boot], stem: Path, title: str = "") -> list[Path]:
    """Draw boot timelines and write ``stem.png`` and ``stem.svg``; returns both paths.

    ``boots``: (label, [(milestone, seconds from QMP cont), ...] in time order) per boot.
    Phases are named "<from> -> <to>"; a phase has the same colour in every row. Raises
    ImportError naming ``pip install pytest-minix[chart]`` when matplotlib is missing.
    """
    try:
        import matplotlib
        from matplotlib.figure import Figure
        from matplotlib.patches import Patch
    except ImportError as e:
        raise ImportError(f"timeline charts need matplotlib: {_INSTALL_HINT}") from e
    # A bare Figure renders without pyplot: no GUI backend is touched and a caller's pyplot
    # state is left alone (Agg renders the PNG regardless of the selected backend).

    phases = _phase_colours(boots, matplotlib)
    end = max((t for _, ms in boots for _, t in ms), default=0.0) or 1.0
    xmax = end * 1.15  # room for the last milestone's label
    levels = [_label_levels(ms, xmax / _AXES_WIDTH_PT) for _, ms in boots]
    stacked = max((max(lv, default=0) + 1 for lv in levels), default=1)
    # A row holds its bar and, in the gap above it, its stack of labels.
    row_in = max(1.0, (_LEVEL_PT * stacked + 16) / ((1 - _BAR) * 72))
    rows = max(1, len(boots))

    fig = Figure(figsize=(_WIDTH_IN, 1.2 + row_in * rows))
    ax = fig.add_subplot()
    for row, (_, milestones) in enumerate(boots):
        _draw_boot(ax, -row, milestones, levels[row], phases, end)  # first boot on top
    _frame(ax, boots, rows, xmax, title)
    _legend(ax, phases, Patch)
    fig.tight_layout()
    return _save(fig, Path(stem), matplotlib)


def _phase_colours(boots: Sequence[Boot], matplotlib: Any) -> dict[str, str]:
    """Phase name -> colour, in order of first appearance."""
    phases: dict[str, str] = {}
    maps = [matplotlib.colormaps[name] for name in ("tab10", "Dark2")]
    palette = itertools.cycle([cmap(i) for cmap in maps for i in range(cmap.N)])
    for _, milestones in boots:
        for (a, _), (b, _) in itertools.pairwise(milestones):
            if f"{a} -> {b}" not in phases:
                phases[f"{a} -> {b}"] = matplotlib.colors.to_hex(next(palette))
    return phases


def _draw_boot(
    ax: Any,
    y: float,
    milestones: Sequence[tuple[str, float]],
    levels: Sequence[int],
    phases: dict[str, str],
    end: float,
) -> None:
    """One boot's row at height ``y``: a bar segment per phase, a tick and a label per milestone."""
    for (a, ta), (b, tb) in itertools.pairwise(milestones):
        width = tb - ta
        ax.barh(y, width, left=ta, height=_BAR, color=phases[f"{a} -> {b}"], edgecolor="white")
        if width > end * 0.06:  # room for the duration inside the segment
            ax.text(ta + width / 2, y, f"{width:.2f} s", ha="center", va="center", fontsize=8)
    top = y + _BAR / 2 + 0.05
    for (name, t), level in zip(milestones, levels, strict=True):
        ax.plot([t, t], [y - _BAR / 2, top], color="black", linewidth=0.8)
        ax.annotate(
            _label(name, t), (t, top), xytext=(2, 1 + _LEVEL_PT * level), textcoords="offset points", fontsize=8
        )


def _frame(ax: Any, boots: Sequence[Boot], rows: int, xmax: float, title: str) -> None:
    """Row labels, limits, the time axis and its grid, the title."""
    ax.set_yticks([-r for r in range(len(boots))], [label for label, _ in boots])
    ax.set_ylim(-(rows - 1) - 0.5, 1 - _BAR / 2)
    ax.set_xlim(0, xmax)
    ax.set_xlabel("seconds from QMP cont")
    ax.grid(axis="x", linestyle=":", linewidth=0.6)
    ax.set_axisbelow(True)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(title)


def _legend(ax: Any, phases: dict[str, str], patch: Any) -> None:
    """The phases and their colours, beside the plot."""
    if phases:
        ax.legend(
            handles=[patch(color=c, label=name) for name, c in phases.items()],
            title="phase",
            loc="upper left",
            bbox_to_anchor=(1.01, 1.0),  # beside the plot, so its place does not depend on the figure height
            fontsize=8,
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
