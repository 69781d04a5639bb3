"""Console layer on a real Unix socket (the test plays QEMU's side of the chardev)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_minix.errors import GuestPanic, VMError
from pytest_minix.qemu.console import Console, ConsoleStalled, TextBuffer


class FakeSerial:
    """A listening Unix socket like QEMU's ``-chardev socket,server=on``."""

    def __init__(self, path: Path) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.conn: socket.socket | None = None
        self._accepted = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.conn, _ = self.server.accept()
        self._accepted.set()

    def send(self, data: bytes) -> None:
        self._accepted.wait(5)
        assert self.conn is not None
        self.conn.sendall(data)

    def recv(self, n: int = 4096) -> bytes:
        self._accepted.wait(5)
        assert self.conn is not None
        return self.conn.recv(n)

    def close(self) -> None:
        if self.conn:
            self.conn.close()
        self.server.close()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Console, FakeSerial]]:
    serial = FakeSerial(tmp_path / "c.sock")
    con = Console(tmp_path / "c.sock", tmp_path / "serial.log")
    con.connect()
    yield con, serial
    serial.close()
    con.close()


def test_partial_line_visible_at_once(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair
    serial.send(b"Welcome\r\nminix login: ")
    m = con.expect(r"login: $", 5)
    assert m.before.endswith("Welcome\r\nminix ")
    assert [ln.text for ln in con.lines()] == ["Welcome"]


def test_line_timestamps_are_first_byte_times(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair
    con.set_t0(time.monotonic())
    serial.send(b"first ha")
    time.sleep(0.3)
    serial.send(b"lf\nsecond\n")
    con.expect("second\n", 5)
    first, second = con.lines()
    assert first.text == "first half"
    assert first.t < 0.2  # stamped when its first byte came, not when its newline did
    assert second.t >= 0.3


def test_match_split_across_reads(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair
    serial.send(b"MINIX 3.4")
    time.sleep(0.1)
    serial.send(b".0. Copyright 2016\n")
    m = con.expect(r"MINIX (\d+\.\d+\.\d+)\.", 5)
    assert m.match.group(1) == "3.4.0"


def test_fail_on_pattern_raises_with_log_path(pair: tuple[Console, FakeSerial], tmp_path: Path) -> None:
    con, serial = pair
    serial.send(b"booting\nKernel panic - not syncing: VFS\n")
    with pytest.raises(GuestPanic) as exc:
        con.expect("login: ", 5, fail_on=["Kernel panic - not syncing"])
    assert "not syncing" in str(exc.value) and str(tmp_path / "serial.log") in str(exc.value)


def test_timeout_names_last_lines(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair
    serial.send(b"stuck here\n")
    with pytest.raises(TimeoutError, match="stuck here"):
        con.expect("never", 0.3)


def test_a_guest_that_stops_printing_is_reported_as_stalled(pair: tuple[Console, FakeSerial]) -> None:
    """``idle``: output that stops (an out-of-memory boot) ends the wait long before the timeout."""
    con, serial = pair
    serial.send(b"Multiuser startup in progress ...\r\nanon_pagefault: out of memory\r\n")
    start = time.monotonic()
    with pytest.raises(ConsoleStalled, match="out of memory") as exc:
        con.expect("login: ", 60, idle=0.6, what="the login prompt")
    assert 0.5 <= time.monotonic() - start < 5
    assert exc.value.quiet >= 0.6 and "stalled" in str(exc.value)


def test_output_that_keeps_coming_is_not_a_stall(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair

    def drip() -> None:
        for i in range(8):
            serial.send(f"line {i}\n".encode())
            time.sleep(0.2)
        serial.send(b"login: ")

    t = threading.Thread(target=drip)
    t.start()
    try:
        m = con.expect("login: $", 10, idle=0.6)  # 1.6 s in all, never 0.6 s quiet
    finally:
        t.join()
    assert "line 7" in m.before


def test_eof_is_reported_not_waited_out(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair
    serial.send(b"bye\n")
    serial.close()
    start = time.monotonic()
    with pytest.raises(VMError, match="closed the console"):
        con.expect("never", 30)
    assert time.monotonic() - start < 5


def test_flood_keeps_memory_bounded(tmp_path: Path) -> None:
    serial = FakeSerial(tmp_path / "f.sock")
    con = Console(tmp_path / "f.sock", tmp_path / "f.log", max_pending=1 << 20, max_lines=1000)
    con.connect()
    try:
        chunk = (b"x" * 99 + b"\n") * 1000  # 100 kB
        for _ in range(50):  # 5 MB in all
            serial.send(chunk)
        serial.send(b"\xff\xfe binary \x00 bytes\nEND-MARK\n")
        m = con.expect("END-MARK", 30)
        assert m.dropped > 0  # the flood was cut, and the cut is reported
        assert len(m.before) <= 1 << 20
        assert len(con.lines()) == 1000
        assert "\ufffd" in con.lines()[-2].text  # undecodable bytes are replaced, not fatal
        assert (tmp_path / "f.log").stat().st_size > 5_000_000  # the raw log keeps everything
    finally:
        serial.close()
        con.close()


def test_write_reaches_the_guest_side(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair
    con.write("root\r")
    assert serial.recv() == b"root\r"


def test_raw_log_is_byte_exact(pair: tuple[Console, FakeSerial], tmp_path: Path) -> None:
    con, serial = pair
    data = b"a\r\nb\x1b[6n\r\nminix# "
    serial.send(data)
    con.expect("minix# $", 5)
    con.close()
    assert (tmp_path / "serial.log").read_bytes() == data


def test_endless_line_is_capped_but_expect_sees_all(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair
    serial.send(b"y" * (3 * Console.MAX_LINE) + b"TAIL-MARK")  # no newline at all
    con.expect("TAIL-MARK", 10)
    tail = con.tail(1)
    assert len(tail) < Console.MAX_LINE + 100
    assert tail.endswith("[pytest-minix: line truncated]")
    serial.send(b"\nnext\n")
    con.expect("next\n", 5)
    assert [ln.text for ln in con.lines()][-1] == "next"


def test_match_split_across_reads_and_anchors_at_window_edge(pair: tuple[Console, FakeSerial]) -> None:
    con, serial = pair
    serial.send(b"x" * 10_000 + b"PROM")
    with pytest.raises(TimeoutError):
        con.expect("PROMPT>", 0.3)  # scans the first part, so the next search starts near its end
    serial.send(b"PT>\n")
    m = con.expect("PROMPT>", 5)
    assert m.before == "x" * 10_000  # "PROM" was searched again through the overlap
    # ``^`` must not match in the middle of a line just because a search window starts there:
    # put a mid-line READY exactly where the next window begins (OVERLAP before the scanned end).
    filler = Console.OVERLAP - len("READY")
    serial.send(b"a" * 100 + b"READY" + b"b" * filler)
    with pytest.raises(TimeoutError):
        con.expect("zz", 0.3)
    serial.send(b"\nREADY\n")
    m = con.expect("^READY", 5)
    assert m.before == "\n" + "a" * 100 + "READY" + "b" * filler + "\n"


# -- the pending-text buffer against a plain-string model ---------------------------------


@st.composite
def _buffer_ops(draw: st.DrawFn) -> list[tuple[str, int | str]]:
    ops: list[tuple[str, int | str]] = []
    for _ in range(draw(st.integers(1, 40))):
        kind = draw(st.sampled_from(["append", "tail", "consume", "drop", "clear"]))
        if kind == "append":
            ops.append((kind, draw(st.text(alphabet="abc\n", max_size=30))))
        else:
            ops.append((kind, draw(st.integers(-5, 120))))
    return ops


@given(_buffer_ops())
@settings(max_examples=300, deadline=None)
def test_text_buffer_matches_a_string_model(ops: list[tuple[str, int | str]]) -> None:
    buf = TextBuffer()
    model, base = "", 0  # model holds the text from absolute offset ``base``
    for kind, arg in ops:
        if kind == "append":
            assert isinstance(arg, str)
            buf.append(arg)
            model += arg
        elif kind == "tail":
            assert isinstance(arg, int)
            assert buf.tail(base + arg) == model[max(arg, 0) :]
        elif kind == "consume":
            assert isinstance(arg, int)
            n = min(max(arg, 0), len(model))
            assert buf.consume(base + arg) == model[:n]
            model, base = model[n:], base + n
        elif kind == "drop":
            assert isinstance(arg, int)
            n = min(max(arg, 0), len(model))
            buf.drop(n)
            model, base = model[n:], base + n
        else:
            buf.clear()
            model, base = "", base + len(model)
        assert (buf.base, buf.end, len(buf)) == (base, base + len(model), len(model))
        assert buf.tail(buf.base) == model


def test_feed_is_linear_in_small_reads(tmp_path: Path) -> None:
    """12 MB in 64-byte reads with a waiter: the old single-string buffer copied 8 MiB per read.

    Not a timing test: it counts how much text the waiter's searches touched.
    """
    con = Console(tmp_path / "f.sock", tmp_path / "f.log")
    searched = 0
    tail = TextBuffer.tail

    def counting_tail(self: TextBuffer, start: int) -> str:
        nonlocal searched
        out = tail(self, start)
        searched += len(out)
        return out

    block = (b"pytest-minix-flood\n" * 4)[:64]
    got: list[int] = []

    def waiter() -> None:
        got.append(con.expect("END-MARK", 120).dropped)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TextBuffer, "tail", counting_tail)
        th = threading.Thread(target=waiter)
        th.start()
        for _ in range(12_000_000 // 64):
            con._feed(block, 0.0)
        con._feed(b"END-MARK\n", 0.0)
        th.join(60)
    assert got and got[0] > 0  # the default 8 MiB cap overflowed and the cut was reported
    # Each search covers only new text plus the overlap: a small multiple of the stream, not 8 MiB per read.
    assert searched < 12_000_000 * 3 + 200_000 * (Console.OVERLAP + 1)
