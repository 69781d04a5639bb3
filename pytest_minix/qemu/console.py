"""The serial console: a reader thread turning bytes into timestamped lines, and expect().

Each line carries the host time of its first byte relative to t0 (grabserial
semantics). A partial line (a prompt with no newline) is visible to ``expect`` as
soon as its bytes arrive. Memory stays bounded under a flood: the unconsumed text
and the retained lines are capped, and what was dropped is counted.
"""

from __future__ import annotations

import codecs
import contextlib
import re
import socket
import sys
import threading
import time
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pytest_minix.errors import GuestPanic, VMError

Pattern = str | re.Pattern[str]


class ConsoleLogWarning(UserWarning):
    """Writing the serial log failed (disk full, I/O error): logging stopped, the console goes on."""


class ConsoleStalled(TimeoutError):
    """No byte arrived from the guest for ``quiet`` seconds while a pattern was awaited."""

    def __init__(self, message: str, quiet: float) -> None:
        super().__init__(message)
        self.quiet = quiet


@dataclass(frozen=True)
class Line:
    """One console line: ``t`` is seconds from t0 to its first byte."""

    t: float
    text: str


@dataclass(frozen=True)
class Match:
    """A successful expect: which pattern, the match, the text before it, and when."""

    index: int
    match: re.Match[str]
    before: str
    t: float
    dropped: int = 0

    @property
    def text(self) -> str:
        return self.match.group(0)


def _compile(p: Pattern) -> re.Pattern[str]:
    return p if isinstance(p, re.Pattern) else re.compile(p, re.MULTILINE)


class TextBuffer:
    """Unconsumed console text as a deque of chunks, so appending never copies.

    A single growing string costs a copy of the whole buffer per read: under a
    flood of megabytes that is quadratic. Here appends are O(chunk), searches
    join only the unsearched tail (plus an overlap), and a consume joins once.
    Offsets are absolute stream offsets.
    """

    def __init__(self) -> None:
        self._chunks: deque[str] = deque()
        self.base = 0  # absolute offset of the first retained character
        self.end = 0  # absolute offset just past the last character

    def __len__(self) -> int:
        return self.end - self.base

    def append(self, text: str) -> None:
        if text:
            self._chunks.append(text)
            self.end += len(text)

    def tail(self, start: int) -> str:
        """The text from absolute offset ``start`` (clamped to the buffer) to the end.

        The chunks it spans are merged into one, so the next call walks few chunks.
        """
        start = max(start, self.base)
        parts: list[str] = []
        covered = self.end
        while self._chunks and covered > start:
            chunk = self._chunks.pop()
            parts.append(chunk)
            covered -= len(chunk)
        merged = "".join(reversed(parts))
        if merged:
            self._chunks.append(merged)
        return merged[start - covered :]

    def consume(self, upto: int) -> str:
        """Remove and return the text from the start up to absolute offset ``upto``."""
        upto = min(max(upto, self.base), self.end)
        parts: list[str] = []
        pos = self.base
        while pos < upto:
            chunk = self._chunks.popleft()
            if pos + len(chunk) > upto:
                keep = upto - pos
                parts.append(chunk[:keep])
                self._chunks.appendleft(chunk[keep:])
                pos = upto
            else:
                parts.append(chunk)
                pos += len(chunk)
        self.base = upto
        return "".join(parts)

    def drop(self, n: int) -> None:
        """Forget the oldest ``n`` characters (the flood cap)."""
        upto = min(self.base + n, self.end)
        while self._chunks and self.base + len(self._chunks[0]) <= upto:
            self.base += len(self._chunks.popleft())
        if self.base < upto:
            self._chunks[0] = self._chunks[0][upto - self.base :]
            self.base = upto

    def clear(self) -> None:
        self._chunks.clear()
        self.base = self.end


class Console:
    """A chardev socket attached to the guest's first serial port."""

    # Patterns are searched again over this many characters before the new data, so
    # a match split across two reads is still found without rescanning everything.
    OVERLAP = 4096
    # Longest line kept in lines()/tail(); the raw log and expect() are not limited by it.
    MAX_LINE = 64 << 10

    def __init__(
        self,
        sock_path: Path,
        log_path: Path,
        *,
        max_pending: int = 8 << 20,
        max_lines: int = 20000,
        head_lines: int = 5000,
    ) -> None:
        self.sock_path = sock_path
        self.log_path = log_path
        self.t0 = time.monotonic()
        self._sock: socket.socket | None = None
        self._log: BinaryIO | None = None
        self._cond = threading.Condition()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._pending = TextBuffer()  # decoded text not yet consumed by expect
        self._scanned = 0  # absolute offset up to which patterns have been searched
        self._line_starts: deque[tuple[int, float]] = deque(maxlen=max_lines)
        self._max_pending = max_pending
        self._dropped = 0
        self._lines: deque[Line] = deque(maxlen=max_lines)
        self._head: list[Line] = []
        self._head_max = head_lines
        self._partial: list[str] = []
        self._partial_len = 0
        self._partial_t: float | None = None
        self._eof = False
        self._eof_reason = ""
        self._thread: threading.Thread | None = None
        self.listeners: list[Callable[[Line], None]] = []
        self.taps: list[Callable[[bytes], None]] = []  # raw bytes as they arrive (interactive console)
        self.bytes_received = 0
        self.last_received = 0.0  # host monotonic time of the last byte from the guest
        # The first error writing the log file (e.g. ENOSPC): logging stops there, the console does not.
        self.log_error: OSError | None = None

    @property
    def log_error_message(self) -> str | None:
        """Why the serial log is incomplete, or None while it is whole."""
        if self.log_error is None:
            return None
        reason = self.log_error.strerror or str(self.log_error)
        return (
            f"Writing the serial log {self.log_path} failed ({reason.lower()}); logging stopped there, so the "
            f"log is incomplete. The VM and its console go on. Free space or choose another --minix-log-dir."
        )

    # -- connection -------------------------------------------------------
    def connect(self, timeout: float = 10.0, exited: Callable[[], str | None] | None = None) -> None:
        """Connect to QEMU's listening chardev socket and start the reader thread.

        ``exited`` says why QEMU is gone (None while it runs), as for :meth:`expect`.
        """
        deadline = time.monotonic() + timeout
        while True:
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(str(self.sock_path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                s.close()
                gone = exited() if exited is not None else None
                if gone:
                    raise VMError(f"{gone}; its console socket never became ready.", self.log_path) from None
                if time.monotonic() > deadline:
                    raise VMError(f"QEMU's console socket {self.sock_path} never appeared.", self.log_path) from None
                time.sleep(0.01)
        self._sock = s
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab", buffering=0)  # noqa: SIM115 - lives as long as the console
        self._thread = threading.Thread(target=self._reader, name=f"console:{self.log_path.name}", daemon=True)
        self._thread.start()

    def set_t0(self, t0: float) -> None:
        """Set the boot's t0 (host monotonic time of QMP ``cont``)."""
        self.t0 = t0

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.shutdown(socket.SHUT_RDWR)
            self._sock.close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._log is not None:
            self._log.close()
            self._log = None

    # -- reading ----------------------------------------------------------
    def _reader(self) -> None:
        assert self._sock is not None
        reason = "console closed"
        try:
            while True:
                data = self._sock.recv(65536)
                if not data:
                    reason = "QEMU closed the console (the VM exited)"
                    break
                self._feed(data, time.monotonic())
        except OSError as exc:
            reason = f"console read failed: {exc}"
        with self._cond:
            self._eof = True
            self._eof_reason = reason
            self._cond.notify_all()

    def _feed(self, data: bytes, now: float) -> None:
        if self._log is not None:
            try:
                self._log.write(data)
            except OSError as exc:
                self._log_failed(exc)
        self.bytes_received += len(data)
        self.last_received = now
        for tap in self.taps:
            tap(data)
        text = self._decoder.decode(data)
        t = now - self.t0
        completed: list[Line] = []
        with self._cond:
            pos = 0
            while pos < len(text):
                if self._partial_t is None:
                    self._partial_t = t
                    self._line_starts.append((self._pending.end + pos, t))
                nl = text.find("\n", pos)
                if nl < 0:
                    self._add_partial(text[pos:])
                    break
                self._add_partial(text[pos:nl])
                line = Line(self._partial_t, "".join(self._partial).rstrip("\r"))
                self._partial = []
                self._partial_len = 0
                self._partial_t = None
                completed.append(line)
                pos = nl + 1
            for line in completed:
                self._lines.append(line)
                if len(self._head) < self._head_max:
                    self._head.append(line)
            self._pending.append(text)
            if len(self._pending) > self._max_pending:
                cut = len(self._pending) - self._max_pending // 2
                self._pending.drop(cut)
                self._dropped += cut
            self._cond.notify_all()
        for line in completed:
            for listener in self.listeners:
                listener(line)

    def _add_partial(self, piece: str) -> None:
        # A line with no newline (binary output, `yes | tr -d '\n'`) must not grow without bound:
        # the retained line keeps its first MAX_LINE characters; expect() still sees everything.
        if self._partial_len > self.MAX_LINE:
            return  # already truncated and noted
        if self._partial_len + len(piece) > self.MAX_LINE:
            piece = piece[: self.MAX_LINE - self._partial_len] + " [pytest-minix: line truncated]"
            self._partial_len = self.MAX_LINE + 1
        else:
            self._partial_len += len(piece)
        self._partial.append(piece)

    def _log_failed(self, exc: OSError) -> None:
        """A full disk must not stop the console: remember the first error, stop logging, and say so once."""
        log, self._log = self._log, None
        self.log_error = exc
        if log is not None:
            with contextlib.suppress(OSError):
                log.close()
        message = self.log_error_message
        print(f"pytest-minix: {message}", file=sys.stderr, flush=True)
        warnings.warn(ConsoleLogWarning(message), stacklevel=2)

    def lines(self) -> list[Line]:
        """The retained complete lines (the most recent ``max_lines``)."""
        with self._cond:
            return list(self._lines)

    def head(self) -> list[Line]:
        """The first lines since the console opened (the boot), never dropped."""
        with self._cond:
            return list(self._head)

    def tail(self, n: int = 20) -> str:
        """The last ``n`` lines plus any partial line, for error messages."""
        with self._cond:
            lines = [ln.text for ln in list(self._lines)[-n:]]
            if self._partial:
                lines.append("".join(self._partial))
        return "\n".join(lines)

    @property
    def eof(self) -> bool:
        return self._eof

    def _time_at(self, offset: int) -> float:
        # Matches are almost always in the last few lines: scan from the end rather than
        # copying every retained line start on each match.
        for start, t in reversed(self._line_starts):
            if start <= offset:
                return t
        return self._line_starts[0][1] if self._line_starts else time.monotonic() - self.t0

    def discard(self) -> None:
        """Forget unconsumed text (before sending a command whose output matters)."""
        with self._cond:
            self._pending.clear()
            self._scanned = self._pending.end

    def expect(
        self,
        patterns: Pattern | Sequence[Pattern],
        timeout: float,
        *,
        fail_on: Iterable[Pattern] = (),
        what: str = "",
        exited: Callable[[], str | None] | None = None,
        idle: float | None = None,
    ) -> Match:
        """Wait until one of ``patterns`` appears in the unconsumed console text.

        On a match, text up to its end is consumed. A ``fail_on`` match raises
        GuestPanic at once; ``exited`` returning a reason (QEMU exited, VM stopped)
        raises VMError; the timeout raises TimeoutError with the last lines, and so
        does ``idle`` seconds without a byte from the guest (as ConsoleStalled).
        """
        pats = [_compile(p) for p in ([patterns] if isinstance(patterns, (str, re.Pattern)) else patterns)]
        fails = [_compile(p) for p in fail_on]
        started = time.monotonic()
        deadline = started + timeout
        with self._cond:
            while True:
                # One character before the window keeps ``^`` and lookbehinds honest at its edge.
                window_start = max(self._scanned - self.OVERLAP - 1, self._pending.base)
                window = self._pending.tail(window_start)
                skip = 1 if window_start > self._pending.base else 0
                best: tuple[int, int, re.Match[str]] | None = None
                for i, p in enumerate(pats):
                    m = p.search(window, skip)
                    if m and (best is None or m.start() < best[0]):
                        best = (m.start(), i, m)
                for p in fails:
                    fm = p.search(window, skip)
                    if fm and (best is None or fm.start() < best[0]):
                        line_end = window.find("\n", fm.end())
                        context = window[max(0, fm.start() - 2000) : line_end if line_end >= 0 else None]
                        raise GuestPanic(
                            f"The guest printed a failure pattern {p.pattern!r} while waiting for {what or 'output'}:\n"
                            f"{context[-2000:]}\n",
                            self.log_path,
                        )
                if best is not None:
                    _, i, m = best
                    t = self._time_at(window_start + m.start())
                    before = self._pending.consume(window_start + m.start())
                    self._pending.consume(window_start + m.end())
                    dropped, self._dropped = self._dropped, 0
                    self._scanned = self._pending.base
                    return Match(i, m, before, t, dropped)
                self._scanned = self._pending.end
                if self._eof:
                    raise VMError(
                        f"{self._eof_reason} while waiting for {what or [p.pattern for p in pats]}. "
                        f"Last console lines:\n{self.tail()}\n",
                        self.log_path,
                    )
                if exited is not None:
                    reason = exited()
                    if reason:
                        raise VMError(
                            f"{reason} while waiting for {what or [p.pattern for p in pats]}. "
                            f"Last console lines:\n{self.tail()}\n",
                            self.log_path,
                        )
                now = time.monotonic()
                if idle is not None:
                    quiet = now - max(self.last_received, started)
                    if quiet >= idle:
                        raise ConsoleStalled(
                            f"The guest printed nothing for {quiet:.0f} s while the harness waited for "
                            f"{what or [p.pattern for p in pats]}: it stalled. Last console lines:\n{self.tail()}\n",
                            quiet,
                        )
                remaining = deadline - now
                if remaining <= 0:
                    raise TimeoutError(
                        f"No {what or [p.pattern for p in pats]} on the console within {timeout:.1f} s. "
                        f"Last console lines:\n{self.tail()}\n"
                    )
                # Wake at least every 0.2 s so a dead QEMU (or a stall) is noticed while waiting.
                self._cond.wait(min(remaining, 0.2) if exited or idle else remaining)

    # -- writing ----------------------------------------------------------
    def write(self, data: str | bytes) -> None:
        """Send bytes to the guest's serial port."""
        if self._sock is None:
            raise VMError("The console is not connected.", self.log_path)
        raw = data.encode() if isinstance(data, str) else data
        try:
            self._sock.sendall(raw)
        except OSError as exc:
            raise VMError(f"Writing to the console failed ({exc}): QEMU is gone.", self.log_path) from None
