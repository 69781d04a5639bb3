"""Progress of long steps (boot rounds, timing boots, system-call workloads) on stderr.

On a terminal: one live status line drawn by tqdm (the message and the time since the
step began, redrawn in place every half second, cleared when the step is done). Elsewhere
(CI logs, a pipe, an xdist worker whose stderr is shared with other workers): a plain line
per message, ``pytest-minix: [  12.3 s] boot round 1/3 (reference i386): kernel at 1.2 s``,
and nothing to clear. pytest's own output (stdout, ``-q`` included) is left alone.

A step is the span between the first message and ``done()``; messages come from any
thread (console readers report milestones).
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, ClassVar, TextIO

from tqdm import tqdm  # type: ignore[import-untyped]

PREFIX = "pytest-minix: "
TICK = 0.5  # seconds between redraws of the live line


class Progress:
    """``progress(message)`` reports a milestone of the current step; ``progress.done()`` ends the step.

    ``Progress(stream)`` is live (a tqdm status line) when ``stream`` is a terminal and plain
    (a line per message) otherwise; ``live=`` forces either. ``Progress(None)`` is silent.
    """

    _instances: ClassVar[dict[int, Progress]] = {}

    def __init__(self, stream: TextIO | None, *, live: bool | None = None) -> None:
        self.stream = stream
        self.live = bool(stream is not None and (_isatty(stream) if live is None else live))
        self.message = ""
        self.started: float | None = None  # monotonic start of the current step
        self._lock = threading.RLock()
        self._bar: Any = None  # a tqdm while a live step runs
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    @classmethod
    def for_config(cls, config: Any) -> Progress:
        """The session's Progress on the real stderr: live on a terminal, plain elsewhere and in xdist workers."""
        key = id(config)
        if key not in cls._instances:
            stream = sys.__stderr__
            worker = hasattr(config, "workerinput")
            cls._instances[key] = cls(stream, live=False if worker else None)
        return cls._instances[key]

    def elapsed(self) -> float:
        """Seconds since the current step began (0 between steps)."""
        return 0.0 if self.started is None else time.monotonic() - self.started

    def __call__(self, message: str) -> None:
        if self.stream is None:
            return
        with self._lock:
            if self.started is None:
                self.started = time.monotonic()
            self.message = message
            if self.live:
                self._show_live()
            else:
                self._write(f"{PREFIX}[{self.elapsed():6.1f} s] {message}\n")

    def done(self) -> None:
        """End the current step: the live line is cleared; plain output needs nothing."""
        if self.stream is None:
            return
        with self._lock:
            self.message, self.started = "", None
            bar, self._bar = self._bar, None
            self._stop.set()
            if bar is not None:
                bar.close()  # leave=False: the line is cleared

    # -- live mode -----------------------------------------------------------------------------

    def _show_live(self) -> None:
        if self._bar is None:
            self._bar = tqdm(
                desc=self.message,
                total=None,
                file=self.stream,
                bar_format=PREFIX + "{desc}, {elapsed}",
                leave=False,
                dynamic_ncols=True,  # trimmed to the terminal's width, so it stays one line
                mininterval=0,
                delay=0,
            )
            self._stop = threading.Event()
            self._ticker = threading.Thread(
                target=self._tick, args=(self._bar, self._stop), name="pytest-minix-progress", daemon=True
            )
            self._ticker.start()
        else:
            self._bar.set_description_str(self.message, refresh=True)

    def _tick(self, bar: Any, stop: threading.Event) -> None:
        """Redraws the line so that the elapsed time moves while no milestone comes."""
        while not stop.wait(TICK):
            with self._lock:
                if bar is not self._bar:
                    return
                bar.refresh()

    def _write(self, text: str) -> None:
        assert self.stream is not None
        self.stream.write(text)
        self.stream.flush()


def _isatty(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False
