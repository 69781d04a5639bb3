"""The ``pytest-minix`` command: an interactive console through a pty, and the image commands."""

from __future__ import annotations

import bz2
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from minix_layout import build_minix_iso

CLI = [sys.executable, "-m", "pytest_minix.cli"]


class PtySession:
    """A process on a pseudo-terminal, read with a timeout."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.buf = b""

    def expect(self, pattern: bytes, timeout: float) -> re.Match[bytes]:
        deadline = time.monotonic() + timeout
        while True:
            m = re.search(pattern, self.buf)
            if m:
                self.buf = self.buf[m.end() :]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{pattern!r} not seen in {timeout} s; output so far:\n{self.buf[-2000:]!r}")
            ready, _, _ = select.select([self.master], [], [], min(left, 0.5))
            if ready:
                try:
                    self.buf += os.read(self.master, 65536)
                except OSError:  # the process is gone and the pty closed
                    time.sleep(0.1)

    def send(self, data: bytes) -> None:
        os.write(self.master, data)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        os.close(self.master)


@pytest.mark.slow
@pytest.mark.qemu
def test_console_attaches_the_terminal_and_detaches_with_ctrl_bracket(tmp_path: Path) -> None:
    env = {**os.environ, "TERM": "dumb"}
    s = PtySession(
        [*CLI, "console", "--minix-guest=reference", "--arch=i386", "--minix-accel=tcg", f"--minix-log-dir={tmp_path}"],
        env,
    )
    try:
        m = s.expect(rb"QEMU pid (\d+); serial log (\S+)\. Detach with Ctrl-\]", 30)
        qemu_pid, log = int(m.group(1)), Path(m.group(2).decode())
        s.expect(rb"login: ", 90)  # the boot itself scrolled by on the terminal
        s.send(b"root\r")
        s.expect(rb"# ", 30)
        s.send(b"echo pm-$((6*7))\r")  # typed keys reach the guest, its answer reaches the terminal
        s.expect(rb"pm-42", 30)
        s.send(b"\x1d")  # Ctrl-]
        s.expect(rb"pytest-minix console: detached", 30)
        assert s.proc.wait(timeout=30) == 0
        with pytest.raises(ProcessLookupError):
            for _ in range(50):  # QEMU is stopped with the console, at once
                os.kill(qemu_pid, 0)
                time.sleep(0.1)
        assert b"pm-42" in log.read_bytes()  # and the session is in the serial log
    finally:
        s.close()


@pytest.fixture
def cache(tmp_path: Path, http_server, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A cache and a one-release manifest served from loopback, as environment for the CLI."""
    iso = build_minix_iso(tmp_path / "src.iso")
    url = http_server.add("/minix_R9.9.9.iso.bz2", bz2.compress(iso.read_bytes()))
    manifest = tmp_path / "releases.toml"
    manifest.write_text(f'[releases."9.9.9"]\nfile = "minix_R9.9.9.iso"\nurl = "{url}"\n')
    return {**os.environ, "PYTEST_MINIX_CACHE": str(tmp_path / "cache"), "PYTEST_MINIX_RELEASES": str(manifest)}


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], env=env, capture_output=True, text=True, timeout=120, check=False)


def test_fetch_images_verify_prune(cache: dict[str, str]) -> None:
    offline = run(cache, "fetch", "9.9.9", "--minix-offline")
    assert offline.returncode == 3 and "downloads are off" in offline.stderr
    assert run(cache, "images").stdout.startswith("no MINIX images cached")
    got = run(cache, "fetch", "9.9.9")
    assert got.returncode == 0, got.stderr
    sha = got.stdout.split("sha256 ")[1].split()[0]
    assert "trust on first use" in got.stderr
    listing = run(cache, "images").stdout
    assert re.search(rf"9\.9\.9 +\d+\.\d MiB +sha256 {sha} \(first use\)", listing), listing
    ok = run(cache, "verify", "9.9.9")
    assert ok.returncode == 0 and f"OK iso sha256 {sha}" in ok.stdout
    bad = run(cache, "verify", "9.9.9", "--sha256", "0" * 64)
    assert bad.returncode == 1 and "verify FAILED" in bad.stderr and "0" * 64 in bad.stderr
    image = Path(cache["PYTEST_MINIX_CACHE"]) / "images" / "9.9.9" / "minix_R9.9.9.iso"
    partial = image.with_name("stale.iso.bz2.part")
    partial.write_bytes(b"x")
    pruned = run(cache, "images", "--prune")
    assert f"removed {partial}" in pruned.stdout and image.is_file()
    assert "removed" in run(cache, "images", "--prune", "--all").stdout and not image.exists()


def test_fetch_of_unknown_release_lists_known_ones(cache: dict[str, str]) -> None:
    res = run(cache, "fetch", "1.0")
    assert res.returncode == 2 and "Unknown MINIX release '1.0'" in res.stderr and "9.9.9" in res.stderr
