"""The boot timeline: when each of a profile's markers first appeared on the console."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass

from pytest_minix.profiles import Marker
from pytest_minix.qemu.console import Line


@dataclass(frozen=True)
class Milestone:
    name: str
    t: float  # seconds from t0 (QMP cont) to the first byte of the matching line
    text: str


@dataclass(frozen=True)
class Phase:
    """The span between two observed milestones."""

    name: str  # "<from>-><to>"
    start: float
    end: float

    @property
    def duration(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class Timeline:
    milestones: tuple[Milestone, ...]

    @classmethod
    def from_lines(cls, lines: Iterable[Line], markers: Iterable[Marker], extra: Iterable[Milestone] = ()) -> Timeline:
        """First match of each marker, in time order; lines are scanned once."""
        pending = list(markers)
        found: list[Milestone] = list(extra)
        for line in lines:
            if not pending:
                break
            for m in list(pending):
                if m.regex.search(line.text):
                    found.append(Milestone(m.name, line.t, line.text))
                    pending.remove(m)
        return cls(tuple(sorted(found, key=lambda ms: ms.t)))

    def get(self, name: str) -> Milestone | None:
        return next((m for m in self.milestones if m.name == name), None)

    def __contains__(self, name: str) -> bool:
        return self.get(name) is not None

    def phases(self) -> list[Phase]:
        ms = self.milestones
        return [Phase(f"{a.name}->{b.name}", a.t, b.t) for a, b in itertools.pairwise(ms)]

    def as_dict(self) -> dict[str, float]:
        return {m.name: round(m.t, 4) for m in self.milestones}

    def format(self) -> str:
        return "\n".join(f"{m.t:9.3f} s  {m.name:<12} {m.text[:80]}" for m in self.milestones)
