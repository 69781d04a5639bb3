"""Live progress on the terminal for long steps (boot rounds, timing boots).

One status line on stderr, redrawn in place with the elapsed time, only when stderr is a
terminal: pytest's own output (stdout, including ``-q``) is left alone, and logs and CI
output get nothing.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any, ClassVar, TextIO


class Progress:
    """``progress(message)`` shows a status line; ``progress.done()`` clears it."""

    _instances: ClassVar[dict[int, Progress]] = {}

    def __init__(self, stream: TextIO | None) -> None:
        self.stream = stream
        self.message = ""
        self.started = 0.0
        self._lock = threading.Lock()
        self._ticker: threading.Thread | None = None

    @classmethod
    def for_config(cls, config: Any) -> Progress:
        key = id(config)
        if key not in cls._instances:
            stream = sys.__stderr__
            live = stream is not None and stream.isatty() and not hasattr(config, "workerinput")
            cls._instances[key] = cls(stream if live else None)
        return cls._instances[key]

    def __call__(self, message: str) -> None:
        if self.stream is None:
            return
        with self._lock:
            self.message, self.started = message, time.monotonic()
            if self._ticker is None:
                self._ticker = threading.Thread(target=self._tick, name="pytest-minix-progress", daemon=True)
                self._ticker.start()
        self._draw()

    def _draw(self) -> None:
        if self.stream is None or not self.message:
            return
        text = f"pytest-minix: {self.message}, {time.monotonic() - self.started:5.1f} s"
        self.stream.write("\r\x1b[K" + text[:150])
        self.stream.flush()

    def _tick(self) -> None:
        while True:
            time.sleep(0.5)
            with self._lock:
                if not self.message:
                    self._ticker = None
                    return
            self._draw()

    def done(self) -> None:
        if self.stream is None:
            return
        with self._lock:
            self.message = ""
        self.stream.write("\r\x1b[K")
        self.stream.flush()
