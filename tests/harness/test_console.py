"""Console layer on a real Unix socket (the test plays QEMU's side of the chardev)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pytest_minix.console import Console
from pytest_minix.errors import GuestPanic, VMError


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
