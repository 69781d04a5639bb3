"""Tests of image downloads: real HTTP over loopback, with cuts, stalls, errors and resumes."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from loopback_http import LoopbackHTTPServer, Request

from pytest_minix.errors import DownloadError, HarnessError
from pytest_minix.media import download as download_mod
from pytest_minix.media.download import download

SIZE = 2_000_000
DATA = random.Random(3).randbytes(SIZE)
SHA = hashlib.sha256(DATA).hexdigest()
CUT = 700_000
FAST: dict[str, Any] = {"timeout": 2.0, "backoff": 0.0, "progress": False}


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    # A proxy from the environment would take the loopback traffic elsewhere.
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


def ranges(reqs: list[Request]) -> list[str | None]:
    return [r.range for r in reqs]


def statuses(reqs: list[Request]) -> list[int | None]:
    return [r.status for r in reqs]


def part_of(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def test_downloads_whole_file_into_new_directory(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/minix.iso.bz2", DATA)
    dest = tmp_path / "cache" / "images" / "minix.iso.bz2"
    r = download(url, dest, **FAST)
    assert r.path == dest and dest.read_bytes() == DATA
    assert (r.size, r.sha256, r.attempts, r.resumed_from) == (SIZE, SHA, 1, 0)
    assert not part_of(dest).exists()
    assert [(q.method, q.range, q.status) for q in http_server.requests("/minix.iso.bz2")] == [("GET", None, 200)]


def test_unknown_length_ends_at_end_of_stream(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, send_length=False)
    r = download(url, tmp_path / "img", **FAST)
    assert (r.size, r.sha256, r.attempts) == (SIZE, SHA, 1)


def test_resumes_after_cut_connection(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, mode="cut", cut_at=CUT)
    dest = tmp_path / "img"
    r = download(url, dest, retries=2, **FAST)
    reqs = http_server.requests("/img")
    assert ranges(reqs) == [None, f"bytes={CUT}-"] and statuses(reqs) == [200, 206]
    assert (r.attempts, r.resumed_from, r.size) == (2, CUT, SIZE)
    assert r.sha256 == SHA and dest.read_bytes() == DATA
    assert not part_of(dest).exists()


def test_resumes_part_left_by_earlier_call(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, mode="cut", cut_at=CUT)
    dest = tmp_path / "img"
    with pytest.raises(DownloadError) as e:
        download(url, dest, retries=0, **FAST)
    msg = str(e.value)
    assert url in msg and f"got {CUT} of {SIZE} bytes" in msg and "after 1 attempt:" in msg
    assert part_of(dest).read_bytes() == DATA[:CUT] and not dest.exists()

    r = download(url, dest, retries=0, **FAST)
    assert (r.attempts, r.resumed_from, r.sha256) == (1, CUT, SHA) and dest.read_bytes() == DATA
    assert ranges(http_server.requests("/img")) == [None, f"bytes={CUT}-"]


def test_server_without_ranges_restarts_from_zero(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, mode="cut", cut_at=CUT, ranges=False)
    dest = tmp_path / "img"
    r = download(url, dest, retries=1, **FAST)
    reqs = http_server.requests("/img")
    assert ranges(reqs) == [None, f"bytes={CUT}-"] and statuses(reqs) == [200, 200]
    assert (r.attempts, r.resumed_from, r.sha256) == (2, 0, SHA)
    assert dest.read_bytes() == DATA  # truncated, not appended to


def test_foreign_part_is_replaced_when_server_ignores_ranges(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, mode="no-range")
    dest = tmp_path / "img"
    part_of(dest).write_bytes(b"x" * 1000)
    r = download(url, dest, **FAST)
    assert statuses(http_server.requests("/img")) == [200]
    assert r.resumed_from == 0 and dest.read_bytes() == DATA and r.sha256 == SHA


def test_404_fails_at_once_and_drops_part(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/gone.iso.bz2", DATA, mode="404")
    dest = tmp_path / "gone.iso.bz2"
    part_of(dest).write_bytes(DATA[:1000])
    with pytest.raises(DownloadError) as e:
        download(url, dest, retries=3, **FAST)
    assert isinstance(e.value, HarnessError)
    assert str(e.value) == f"Could not download {url} after 1 attempt: HTTP 404 Not Found."
    assert statuses(http_server.requests("/gone.iso.bz2")) == [404]
    assert not part_of(dest).exists() and not dest.exists()


def test_stalled_server_times_out_after_bounded_attempts(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, mode="stall", stall_after=100_000)
    t0 = time.monotonic()
    with pytest.raises(DownloadError, match=r"after 3 attempts: timed out after 0\.5 s waiting for data") as e:
        download(url, tmp_path / "img", timeout=0.5, retries=2, backoff=0, progress=False)
    elapsed = time.monotonic() - t0
    assert url in str(e.value) and f"of {SIZE} bytes" in str(e.value)
    assert len(http_server.requests("/img")) == 3
    assert 1.5 <= elapsed < 4.0


def test_silent_server_times_out_waiting_for_response(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, mode="hang")
    with pytest.raises(DownloadError, match=r"after 2 attempts: timed out after 0\.5 s waiting for a response"):
        download(url, tmp_path / "img", timeout=0.5, retries=1, backoff=0, progress=False)
    assert statuses(http_server.requests("/img")) == [None, None]


def test_short_bodies_are_resumed_until_retries_run_out(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    step = 300_000
    url = http_server.add("/img", DATA, mode="truncated", cut_at=step)
    dest = tmp_path / "img"
    with pytest.raises(DownloadError) as e:
        download(url, dest, retries=3, **FAST)
    msg = str(e.value)
    assert msg == f"Could not download {url} after 4 attempts: the connection broke (got {4 * step} of {SIZE} bytes)."
    assert ranges(http_server.requests("/img")) == [None, *(f"bytes={k * step}-" for k in (1, 2, 3))]
    assert part_of(dest).read_bytes() == DATA[: 4 * step]  # kept, and a correct prefix


def test_partial_ranges_count_as_short_and_are_resumed(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    # Each 206 is complete and valid but covers less than the rest of the file.
    url = http_server.add("/img", DATA, mode="cut", cut_at=CUT, max_range=500_000)
    r = download(url, tmp_path / "img", retries=3, **FAST)
    assert ranges(http_server.requests("/img")) == [None, *(f"bytes={CUT + k * 500_000}-" for k in (0, 1, 2))]
    assert (r.attempts, r.resumed_from, r.sha256) == (4, CUT + 1_000_000, SHA)


def test_flaky_500_then_success_with_backoff(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, mode="flaky500", fail_times=2)
    t0 = time.monotonic()
    r = download(url, tmp_path / "img", timeout=2.0, retries=3, backoff=0.05, progress=False)
    assert time.monotonic() - t0 >= 0.05 + 0.1  # slept backoff * 2**0 then * 2**1
    assert statuses(http_server.requests("/img")) == [500, 500, 200]
    assert (r.attempts, r.sha256) == (3, SHA)


def test_persistent_500_fails_after_retries(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA, mode="flaky500", fail_times=99)
    with pytest.raises(DownloadError, match=r"after 2 attempts: HTTP 500 Internal Server Error\.$"):
        download(url, tmp_path / "img", retries=1, **FAST)
    assert len(http_server.requests("/img")) == 2


def test_refused_connection_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    url = f"http://127.0.0.1:{port}/img"
    with pytest.raises(DownloadError, match=r"after 3 attempts: connection error \(.*Connection refused\)"):
        download(url, tmp_path / "img", retries=2, **FAST)


@pytest.mark.parametrize("url", ["ftp://example.org/minix.iso", "file:///etc/hostname", "minix.iso", "http:///x"])
def test_only_http_urls_are_accepted(url: str, tmp_path: Path) -> None:
    dest = tmp_path / "sub" / "img"
    with pytest.raises(DownloadError, match=r"only http:// and https:// URLs"):
        download(url, dest, **FAST)
    assert not dest.parent.exists()


def test_complete_part_is_finished_on_416(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA)
    dest = tmp_path / "img"
    part_of(dest).write_bytes(DATA)
    r = download(url, dest, **FAST)
    reqs = http_server.requests("/img")
    assert ranges(reqs) == [f"bytes={SIZE}-"] and statuses(reqs) == [416]
    assert (r.attempts, r.resumed_from, r.size, r.sha256) == (1, SIZE, SIZE, SHA)
    assert dest.read_bytes() == DATA and not part_of(dest).exists()


def test_oversized_part_is_dropped_on_416(http_server: LoopbackHTTPServer, tmp_path: Path) -> None:
    url = http_server.add("/img", DATA)
    dest = tmp_path / "img"
    part_of(dest).write_bytes(DATA + b"stale tail")
    r = download(url, dest, retries=0, **FAST)  # the restart is not a retry
    reqs = http_server.requests("/img")
    assert ranges(reqs) == [f"bytes={SIZE + 10}-", None] and statuses(reqs) == [416, 200]
    assert (r.attempts, r.resumed_from, r.sha256) == (2, 0, SHA) and dest.read_bytes() == DATA


class FakeBar:
    """Records how the progress bar is made; raises KeyboardInterrupt after ``interrupt_after`` bytes."""

    made: list[dict[str, Any]]
    interrupt_after: int | None = None

    def __init__(self, **kwargs: Any) -> None:
        self.made.append(kwargs)
        self.n = kwargs["initial"]

    def update(self, n: int) -> None:
        self.n += n
        if self.interrupt_after is not None and self.n >= self.interrupt_after:
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


@pytest.fixture
def fake_bar(monkeypatch: pytest.MonkeyPatch) -> type[FakeBar]:
    bar = type("Bar", (FakeBar,), {"made": []})
    monkeypatch.setattr(download_mod, "tqdm", bar)
    return bar


def test_keyboard_interrupt_keeps_part_for_resume(
    http_server: LoopbackHTTPServer, tmp_path: Path, fake_bar: type[FakeBar]
) -> None:
    url = http_server.add("/img", DATA)
    dest = tmp_path / "img"
    fake_bar.interrupt_after = CUT
    with pytest.raises(KeyboardInterrupt):
        download(url, dest, progress=True, chunk_size=1 << 16, timeout=2.0, backoff=0)
    kept = part_of(dest).stat().st_size
    assert CUT <= kept < SIZE and part_of(dest).read_bytes() == DATA[:kept] and not dest.exists()

    fake_bar.interrupt_after = None
    r = download(url, dest, progress=True, timeout=2.0, backoff=0)
    assert (r.resumed_from, r.sha256) == (kept, SHA)
    last = fake_bar.made[-1]
    assert last["total"] == SIZE and last["initial"] == kept
    assert last["unit"] == "B" and last["unit_scale"] is True and last["file"] is sys.stderr


class Stderr:
    def __init__(self, tty: bool) -> None:
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> int:
        return len(s)

    def flush(self) -> None:
        pass


@pytest.mark.parametrize(("progress", "tty", "shown"), [(None, True, True), (None, False, False), (False, True, False)])
def test_progress_bar_follows_stderr_tty(
    http_server: LoopbackHTTPServer,
    tmp_path: Path,
    fake_bar: type[FakeBar],
    monkeypatch: pytest.MonkeyPatch,
    progress: bool | None,
    tty: bool,
    shown: bool,
) -> None:
    url = http_server.add("/img", DATA[:1000])
    monkeypatch.setattr(sys, "stderr", Stderr(tty))
    download(url, tmp_path / "img", progress=progress, timeout=2.0)
    assert len(fake_bar.made) == int(shown)


def test_serves_directory_from_another_process(tmp_path: Path) -> None:
    (tmp_path / "img").write_bytes(DATA)
    script = Path(__file__).with_name("loopback_http.py")
    cmd = [sys.executable, str(script), str(tmp_path), "--mode", "cut", "--cut-at", str(CUT)]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) as proc:
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.startswith("PORT ")
            base = f"http://127.0.0.1:{int(line.split()[1])}"
            r = download(f"{base}/img", tmp_path / "out" / "img", **FAST)
            assert (r.sha256, r.resumed_from) == (SHA, CUT)
            with urllib.request.urlopen(f"{base}/_log", timeout=5) as resp:
                log = json.load(resp)
            seen = [(e["path"], e["range"], e["status"]) for e in log]
            assert seen == [("/img", None, 200), ("/img", f"bytes={CUT}-", 206)]
        finally:
            proc.terminate()
            assert proc.wait(timeout=5) == 0
