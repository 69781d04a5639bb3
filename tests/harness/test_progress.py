"""Progress on stderr: a live tqdm status line on a terminal, a plain line per milestone elsewhere."""

from __future__ import annotations

import io
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from pytest_minix.plugin import progress as progress_mod
from pytest_minix.plugin.progress import Progress


class FakeStream(io.StringIO):
    """A stderr that says whether it is a terminal."""

    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_terminal_gets_one_live_line_redrawn_and_cleared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(progress_mod, "TICK", 0.05)
    out = FakeStream(tty=True)
    p = Progress(out)
    assert p.live
    p("boot round 1/3 (reference i386): starting")
    p("boot round 1/3 (reference i386): kernel at 1.2 s")
    drawn = out.getvalue().count("\r")
    time.sleep(0.4)  # no milestone meanwhile: the ticker redraws (the elapsed time moves)
    assert out.getvalue().count("\r") > drawn
    p.done()
    text = out.getvalue()
    assert "\n" not in text  # redrawn in place, never a new line
    frames = text.split("\r")
    assert "pytest-minix: boot round 1/3 (reference i386): kernel at 1.2 s, 00:00" in frames
    assert frames[-1] == "" and frames[-2].strip() == ""  # cleared at the end
    assert "\x1b[" not in text  # tqdm draws it: no hand-written escape codes
    settled = out.getvalue()
    time.sleep(0.2)
    assert out.getvalue() == settled  # the ticker stopped with the step


def test_not_a_terminal_gets_a_plain_line_per_milestone() -> None:
    out = FakeStream(tty=False)
    p = Progress(out)
    assert not p.live
    p("boot round 1/3 (reference i386): starting")
    p("boot round 1/3 (reference i386): kernel at 1.2 s")
    p.done()
    p("kernel timing boot 1/3 (cttyline=0)")  # a new step starts its clock again
    lines = out.getvalue().splitlines(keepends=True)
    assert [ln.split("] ", 1)[1] for ln in lines] == [
        "boot round 1/3 (reference i386): starting\n",
        "boot round 1/3 (reference i386): kernel at 1.2 s\n",
        "kernel timing boot 1/3 (cttyline=0)\n",
    ]
    assert all(ln.startswith("pytest-minix: [   0.0 s] ") for ln in lines)
    assert "\r" not in out.getvalue() and "\x1b" not in out.getvalue()


def test_live_can_be_forced_either_way_and_none_is_silent() -> None:
    assert not Progress(FakeStream(tty=True), live=False).live
    assert Progress(FakeStream(tty=False), live=True).live
    silent = Progress(None)
    silent("x")
    silent.done()
    assert not silent.live


def test_messages_from_other_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Milestones arrive from console reader threads while the main thread ends steps."""
    monkeypatch.setattr(progress_mod, "TICK", 0.01)
    out = FakeStream(tty=True)
    p = Progress(out)
    threads = [threading.Thread(target=lambda i=i: [p(f"t{i} m{j}") for j in range(50)]) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    p.done()
    assert out.getvalue().split("\r")[-2].strip() == ""


@pytest.mark.parametrize(
    ("tty", "worker", "live"),
    [(True, False, True), (False, False, False), (True, True, False)],
    ids=["terminal", "not-a-terminal", "xdist-worker"],
)
def test_for_config_follows_stderr(monkeypatch: pytest.MonkeyPatch, tty: bool, worker: bool, live: bool) -> None:
    monkeypatch.setattr(Progress, "_instances", {})
    stream = FakeStream(tty=tty)
    monkeypatch.setattr(sys, "__stderr__", stream)
    config = SimpleNamespace(workerinput={"workerid": "gw0"}) if worker else SimpleNamespace()
    p = Progress.for_config(config)
    assert p is Progress.for_config(config)  # one per session
    assert p.stream is stream and p.live == live
