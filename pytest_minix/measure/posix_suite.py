"""Output of MINIX's POSIX test suite (``/usr/tests/minix-posix/run``) and of ``/usr/bin/time``.

Formats, from the MINIX source and the real transcript tests/fixtures/minix/posix-tests-1-13:

* Each test program prints ``Test %2d `` at start (minix/tests/common.c start()), then
  ``ok`` or, after a newline, one line per error
  (``<file>:<line>: Subtest N,  error N,  errno N: <strerror>``) and ``<n> errors``,
  or ``Too many errors; test aborted`` (common.c e_f(), quit()). Observed: ``Test  1 ok``.
* ``run`` itself prints ``warning: skipping test<i>`` for a missing binary, and for a
  full run ``All N tests completed without error (S skipped).`` or ``Testing
  completed. Score: P passed, F failed, skipped S`` and ``The following tests failed: ...``.
* ``run -T`` (TAP): ``1..N``, ``ok test <i>``, ``not ok test <i>``, and every other line
  prefixed ``# `` (minix/tests/run). Source only: not captured on a running MINIX.
* ``/usr/bin/time`` (NetBSD) prints ``%10.2f real %10.2f user %10.2f sys`` (observed:
  ``       63.76 real        15.30 user         7.48 sys``), resolution one clock tick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# The suite's entries in MINIX 3.4 (minix/tests/run: test1-94, the shell tests and the file-system tests).
POSIX_TESTS: tuple[str, ...] = (*(str(i) for i in range(1, 95)), "sh1", "sh2", "interp", "mfs", "isofs", "vnd", "rmib")

_TEST = re.compile(r"^Test +(\w+) (.*)$")
_ERRORS = re.compile(r"^(\d+) errors$")
_SUBTEST = re.compile(r"^\S+:\d+: Subtest \d+, +error \d+, +errno \d+: .*$")
_SKIP = re.compile(r"^(?:# )?warning: skipping test(\w+)$")
_TAP = re.compile(r"^(not )?ok test (\w+)\s*$")
_PLAN = re.compile(r"^1\.\.(\d+)$")
_TIME = re.compile(r"^\s*(\d+\.\d+) real\s+(\d+\.\d+) user\s+(\d+\.\d+) sys\s*$", re.MULTILINE)


@dataclass
class TestOutcome:
    """One test program's result; ``detail`` holds its error lines."""

    name: str
    ok: bool
    errors: int | None = None
    detail: list[str] = field(default_factory=list)


@dataclass
class SuiteResult:
    outcomes: dict[str, TestOutcome] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    planned: int | None = None  # TAP plan
    unfinished: str | None = None  # a test that started and never finished (hung or killed)

    @property
    def passed(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if o.ok]

    @property
    def failed(self) -> list[str]:
        return [n for n, o in self.outcomes.items() if not o.ok]


def _lines(text: str) -> list[str]:
    return [ln.rstrip("\r") for ln in text.replace("\r\n", "\n").split("\n")]


def parse_run(text: str) -> SuiteResult:
    """Results of ``./run`` in its plain mode (what a person sees on the console)."""
    res = SuiteResult()
    current: TestOutcome | None = None
    for line in _lines(text):
        if m := _SKIP.match(line):
            res.skipped.append(m.group(1))
            continue
        if m := _TEST.match(line):
            name, rest = m.group(1), m.group(2).strip()
            current = TestOutcome(name, ok=False)
            res.outcomes[name] = current
            if rest == "ok":
                current.ok, current.errors, current = True, 0, None
            elif rest:
                current.detail.append(rest)
            continue
        if current is None:
            continue
        if m := _ERRORS.match(line):
            current.errors = int(m.group(1))
            current = None
        elif line == "Too many errors; test aborted":
            current.detail.append(line)
            current.errors = sum(1 for d in current.detail if _SUBTEST.match(d))
            current = None
        elif line.strip():
            current.detail.append(line)
    if current is not None:  # started, never said ok or N errors
        res.unfinished = current.name
        del res.outcomes[current.name]
    return res


def parse_tap(text: str) -> SuiteResult:
    """Results of ``./run -T`` (TAP); diagnostics (``# ...``) attach to the test before them."""
    res = SuiteResult()
    last: TestOutcome | None = None
    for line in _lines(text):
        if m := _PLAN.match(line):
            res.planned = int(m.group(1))
        elif m := _TAP.match(line):
            last = TestOutcome(m.group(2), ok=m.group(1) is None)
            res.outcomes[last.name] = last
        elif m := _SKIP.match(line):
            res.skipped.append(m.group(1))
        elif line.startswith("#") and last is not None:
            last.detail.append(line[1:].strip())
    return res


def parse_time(text: str) -> tuple[float, float, float] | None:
    """(real, user, sys) seconds from ``/usr/bin/time`` output, or None when absent."""
    m = _TIME.search(text)
    return (float(m.group(1)), float(m.group(2)), float(m.group(3))) if m else None
