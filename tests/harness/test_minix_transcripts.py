"""The MINIX profile against real MINIX serial bytes, replayed through the real Console and Shell.

No live MINIX runs here: a Unix-socket peer (QEMU's side of the chardev) plays
transcripts recorded from a real MINIX 3.4.0 boot (tests/fixtures/minix/README.md),
with the recorded line timing scaled down, and waits for the input MINIX waited for.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_minix.errors import GuestPanic, VMError
from pytest_minix.guest.shell import FUNCTIONS, PS1, Shell
from pytest_minix.guest.timeline import Timeline
from pytest_minix.paths import vm_dir
from pytest_minix.profiles import GuestProfile, load_profile, parse_profile
from pytest_minix.qemu.console import Console, Line

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "minix"
BOOT_MARKERS = ["kernel", "copyright", "root", "multiuser", "services", "daemons"]
UNAME_A = "Minix minix 3.4.0 Minix 3.4.0 (GENERIC) i386"


# -- transcripts --------------------------------------------------------------
@dataclass(frozen=True)
class Send:
    """Bytes MINIX printed, ``t`` seconds (recorded time) after QEMU started."""

    t: float
    data: bytes


@dataclass(frozen=True)
class Await:
    """Wait for typed input matching ``pattern``; ``echo`` sends it back as MINIX's tty does with echo on."""

    pattern: bytes
    echo: bool = False


Step = Send | Await


def transcript(name: str) -> list[Send]:
    """The ``.raw`` bytes cut into lines, each with its ``.log`` first-byte time; equal times merged."""
    raw = (FIXTURES / f"{name}.raw").read_bytes()
    pieces = [p + b"\n" for p in raw.split(b"\n")]
    pieces[-1] = pieces[-1][:-1]
    if not pieces[-1]:
        pieces.pop()
    times = [line.t for line in _log_lines(name)]
    assert len(times) == len(pieces), f"{name}: .log and .raw disagree on the line count"
    out: list[Send] = []
    for t, data in zip(times, pieces, strict=True):
        if out and out[-1].t == t:
            out[-1] = Send(t, out[-1].data + data)
        else:
            out.append(Send(t, data))
    return out


def split_after(sends: list[Send], token: bytes, start: int = 0) -> tuple[list[Send], list[Send]]:
    """Split the stream right after the first ``token`` at or after chunk ``start``."""
    for i in range(start, len(sends)):
        pos = sends[i].data.find(token)
        if pos >= 0:
            cut = pos + len(token)
            head = [*sends[:i], Send(sends[i].t, sends[i].data[:cut])]
            rest = sends[i + 1 :]
            if cut < len(sends[i].data):
                rest = [Send(sends[i].t, sends[i].data[cut:]), *rest]
            return head, rest
    raise AssertionError(f"{token!r} is not in the transcript")


def joined(sends: list[Send]) -> bytes:
    return b"".join(s.data for s in sends)


# -- the peer -----------------------------------------------------------------
class MinixReplay:
    """A listening Unix socket like QEMU's ``-chardev socket,server=on`` that plays a script.

    Sends keep the recorded gaps between lines times ``scale``; an Await blocks until the
    console has typed what MINIX was waiting for.
    """

    def __init__(self, path: Path, steps: Sequence[Step], scale: float = 0.0) -> None:
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(1)
        self.steps = steps
        self.scale = scale
        self.received = b""
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.conn: socket.socket | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self.server.settimeout(10)
            self.conn, _ = self.server.accept()
            self.conn.settimeout(10)
            start = time.monotonic()
            t0: float | None = None
            seen = 0  # input consumed by earlier Awaits
            for step in self.steps:
                if isinstance(step, Send):
                    t0 = step.t if t0 is None else t0
                    delay = start + (step.t - t0) * self.scale - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    self.conn.sendall(step.data)
                    continue
                pat = re.compile(step.pattern)
                while (m := pat.search(self.received, seen)) is None:
                    data = self.conn.recv(4096)
                    if not data:
                        raise ConnectionError("the console closed while the peer waited for input")
                    self.received += data
                seen = m.end()
                if step.echo:
                    self.conn.sendall(m.group(0).replace(b"\r", b"\r\n"))
        except BaseException as exc:
            self.error = exc
        finally:
            self.done.set()  # the connection stays open: a real guest does not hang up

    def finish(self, timeout: float = 10.0) -> None:
        """Wait until the script has been played; re-raise the peer's error."""
        assert self.done.wait(timeout), "the replay did not finish"
        if self.error is not None:
            raise self.error

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


@pytest.fixture
def profile() -> GuestProfile:
    return load_profile("minix")


Replayer = Callable[[Sequence[Step], float], tuple[Console, MinixReplay]]


@pytest.fixture
def replay(tmp_path: Path) -> Iterator[Replayer]:
    """``replay(steps, scale)`` -> a connected Console fed by a MinixReplay."""
    opened: list[tuple[Console, MinixReplay]] = []

    def start(steps: Sequence[Step], scale: float) -> tuple[Console, MinixReplay]:
        n = len(opened)
        peer = MinixReplay(tmp_path / f"s{n}.sock", steps, scale)
        con = Console(tmp_path / f"s{n}.sock", tmp_path / f"serial{n}.log")
        con.connect()
        opened.append((con, peer))
        return con, peer

    yield start
    for con, peer in opened:
        con.close()
        peer.close()


def _log_lines(name: str) -> list[Line]:
    """The ``.log``'s MINIX lines as Console Lines (recorded first-byte times)."""
    out: list[Line] = []
    for line in (FIXTURES / f"{name}.log").read_text(encoding="utf-8").splitlines():
        m = re.match(r"\[\s*(\d+\.\d+)\] ?(.*)$", line)
        # Unprefixed `#` lines and `>>>`/`<<<` lines are the capture script's notes.
        if m and not m.group(2).startswith((">>> ", "<<< ")):
            out.append(Line(float(m.group(1)), m.group(2)))
    return out


# -- the profile --------------------------------------------------------------
def test_profile_parses_with_both_arches() -> None:
    p = parse_profile(vm_dir() / "minix.toml")
    assert p.name == "minix" and p.artifacts == "minix"
    assert set(p.arches) == {"i386", "arm"}
    assert p.arch("arm").machine == "beaglexm"
    i386 = p.arch("i386")
    assert (i386.qemu, i386.machine, i386.initrd) == ("qemu-system-i386", "pc", "{modules}")
    assert "console=tty00" in i386.append and "cttyline" not in i386.append
    assert i386.args == ("-drive", "file={cdrom},if=ide,index=2,media=cdrom,readonly=on,format=raw")
    assert i386.append == "bootcd=1 cdproberoot=1 console=tty00"
    disk = i386.variant("disk")
    assert disk.append == "rootdevname=c0d0p0 console=tty00" and "file={disk},format=qcow2" in disk.args[1]
    assert "cttyline" not in disk.append and disk.initrd == "{modules}"
    assert (p.uname_s, p.checksum, p.login.user, p.login.password) == ("Minix", "cksum", "root", "")
    assert [m.name for m in p.markers] == [*BOOT_MARKERS, "login"]


def test_panic_patterns_spare_ordinary_output_and_driver_crashes(profile: GuestProfile) -> None:
    """Shell.run fails a command on these, so they must not match normal MINIX output."""
    normal = b"".join((FIXTURES / f"{n}.raw").read_bytes() for n in ("boot-login-commands", "boot-dirty-fsck"))
    text = normal.decode("utf-8", "replace")
    assert "kern.dump_on_panic = 0" in text and "Multiuser boot aborted" in text  # tempting false positives
    assert not [p.pattern for p in profile.panic_patterns if p.search(text)]
    # `minix-service fi random` crashes a driver that RS restarts: not fatal. The line's
    # format is `%s(%d): panic: ` + message (minix/lib/libsys/panic.c; message from sef_fi.c).
    crash = "random(172): panic: Crash!\nsyslib:panic.c: stacktrace: 0x8049a0b 0x80480e3\n"
    assert not any(p.search(crash) for p in profile.panic_patterns)
    assert all(any(p.search(line) for p in profile.noise_patterns) for line in crash.splitlines())
    assert not any(p.search(UNAME_A) for p in profile.noise_patterns)


# -- replays ------------------------------------------------------------------
def test_boot_to_login_markers_and_timing(replay: Replayer, profile: GuestProfile) -> None:
    scale = 0.1  # 12.7 recorded seconds in about 1.3 s, gaps large enough to measure
    sends = transcript("boot-to-login")
    con, peer = replay(list(sends), scale)
    m = con.expect(profile.login.prompt, 10, fail_on=profile.panic_patterns, what="the login prompt")
    peer.finish()
    assert m.before.endswith("Minix/i386 (minix) (console)\r\r\n\r\r\n")

    timeline = Timeline.from_lines(con.head(), profile.markers)
    assert [ms.name for ms in timeline.milestones] == BOOT_MARKERS
    # `login: ` is still a partial line: only the expect saw it (vm.py adds it from there).
    assert "login" not in timeline

    recorded = {ms.name: ms.t for ms in Timeline.from_lines(_log_lines("boot-to-login"), profile.markers).milestones}
    got = timeline.as_dict()
    first, last = recorded["kernel"], recorded["daemons"]
    span = got["daemons"] - got["kernel"]
    assert span == pytest.approx((last - first) * scale, rel=0.3)
    for name in BOOT_MARKERS:  # each milestone keeps its place within the boot
        assert (got[name] - got["kernel"]) / span == pytest.approx((recorded[name] - first) / (last - first), abs=0.1)
    # The prompt's time is its line's first byte, recorded 12.716 s after the banner's 0.411 s.
    assert (m.t - got["kernel"]) / span == pytest.approx((12.716 - first) / (last - first), abs=0.15)


def test_dirty_fsck_boot_keeps_markers_and_login(replay: Replayer, profile: GuestProfile) -> None:
    boot, rest = split_after(transcript("boot-dirty-fsck"), b"login: ")
    after_login, _ = split_after(rest, b"minix# ")  # MINIX waits for a command there
    con, peer = replay([*boot, Await(rb"root\r"), *after_login], 0.01)
    con.expect(profile.login.prompt, 10, fail_on=profile.panic_patterns, what="the login prompt")
    texts = [ln.text for ln in con.head()]
    assert sum("dirty, performing fsck" in t for t in texts) == 3
    assert sum("----- FILE SYSTEM MARKED CLEAN -----" in t for t in texts) == 3
    timeline = Timeline.from_lines(con.head(), profile.markers)
    assert [ms.name for ms in timeline.milestones] == BOOT_MARKERS
    root = timeline.get("root")
    assert root is not None and root.text == "Root device name is /dev/c0d0p0"
    # fsck ran between the root device and multi-user startup.
    last_clean = max(i for i, t in enumerate(texts) if "MARKED CLEAN" in t)
    root_i, multi_i = texts.index("Root device name is /dev/c0d0p0"), texts.index("Multiuser startup in progress ...")
    assert root_i < last_clean < multi_i
    con.write("root\r")
    con.expect(profile.login.shell_prompt, 10, what="the shell prompt")
    peer.finish()


def test_login_prompt_then_uname_and_interleaved_output(replay: Replayer, profile: GuestProfile) -> None:
    sends = transcript("boot-login-commands")
    boot, rest = split_after(sends, b"login: ")
    after_login, rest = split_after(rest, b"minix# ")
    uname, rest = split_after(rest, b"minix# ")
    _, shutdown = split_after(rest, b"minix# shutdown -p now\r\n")
    steps: list[Step] = [
        *boot,
        Await(rb"root\r"),
        *after_login,
        Await(rb"uname -a\r"),
        *uname,
        Await(rb"shutdown -p now\r"),
        *shutdown,
    ]
    con, peer = replay(steps, 0.005)

    con.expect(profile.login.prompt, 10, fail_on=profile.panic_patterns)
    con.write("root\r")
    m = con.expect(profile.login.shell_prompt, 10, fail_on=[profile.login.prompt], what="the shell prompt")
    assert m.text == "minix# "
    assert "We'd like your feedback" in m.before  # the motd came before it
    assert not any("minix#" in ln.text for ln in con.lines())  # a partial line, matched without its newline

    con.write("uname -a\r")
    m = con.expect(profile.login.shell_prompt, 10, fail_on=profile.panic_patterns, what="the prompt after uname")
    assert m.before == f"uname -a\r\n{UNAME_A}\r\n"  # echo, output, then the prompt again
    assert UNAME_A in [ln.text for ln in con.lines()]
    assert profile.uname_s == UNAME_A.split()[0]

    # Shutdown: `wall` writes right after the prompt and getty-style lines end in
    # `\r\r\n` with BELs; none of it may look like an idle prompt or a panic.
    con.write("shutdown -p now\r")
    con.expect(r"MINIX will now be shut down \.\.\.\r\n", 10, fail_on=profile.panic_patterns)
    peer.finish()
    texts = [ln.text for ln in con.lines()]
    wall = next(t for t in texts if t.startswith("minix# wall: "))
    assert not profile.login.shell_prompt.search(wall)
    assert "System going down IMMEDIATELY" in [t.rstrip() for t in texts]  # `\r\r\n` fully stripped
    assert not any(t.endswith("\r") for t in texts)
    assert "\x07*** FINAL System shutdown message from root@minix ***\x07" in [t.rstrip() for t in texts]


def test_cttyline_pitfall_fails_fast_with_the_tty_line(replay: Replayer, profile: GuestProfile) -> None:
    con, _ = replay(transcript("cttyline-pitfall"), 0.1)
    start = time.monotonic()
    with pytest.raises(GuestPanic) as exc:
        # 30 s, not boot_timeout: a regression fails this test without a 300 s wait.
        con.expect(profile.login.prompt, 30, fail_on=profile.panic_patterns, what="the login prompt")
    assert time.monotonic() - start < 5  # the harness can say at once why no login will come
    assert "TTY: not initializing rs232 line 0 (in use by kernel)" in str(exc.value)


def test_shell_login_against_replayed_minix(replay: Replayer, profile: GuestProfile) -> None:
    """The real Shell.login against MINIX's recorded login bytes (a replay, not a live MINIX)."""
    boot, rest = split_after(transcript("boot-login-commands"), b"login: ")
    after_login, _ = split_after(rest, b"minix# ")
    steps: list[Step] = [
        *boot,
        Await(rb"root\r"),
        *after_login,
        # The setup line, echoed (echo is on until its stty runs), then the new PS1;
        # then the frame functions (echo now off) and the prompt again.
        Await(rb"[^\r]*PS1=[^\r]*\r", echo=True),
        Send(after_login[-1].t, PS1.encode()),
        Await(rb"_pmS\(\)[^\r]*\r"),
        Send(0.0, PS1.encode()),
    ]
    con, peer = replay(steps, 0.01)
    con.expect(profile.login.prompt, 10, fail_on=profile.panic_patterns, what="the login prompt")
    t = Shell(con, profile).login(timeout=10)
    peer.finish()
    assert t >= 0
    typed = peer.received.decode()
    assert typed.startswith("root\r")
    setup, functions, _ = typed[len("root\r") :].split("\r")
    assert setup.startswith(profile.shell_setup + ";") and "PS1='[pm''-ok]# '" in setup
    assert functions == FUNCTIONS
    assert con.tail(1).endswith(PS1)


def test_boot_replayed_without_timing_keeps_every_marker(replay: Replayer, profile: GuestProfile) -> None:
    """The whole boot arriving at once (scale 0: one burst, as from a fast host) parses the same."""
    con, peer = replay(list(transcript("boot-to-login")), 0.0)
    m = con.expect(profile.login.prompt, 10, fail_on=profile.panic_patterns, what="the login prompt")
    peer.finish()
    assert m.before.endswith("Minix/i386 (minix) (console)\r\r\n\r\r\n")
    timeline = Timeline.from_lines(con.head(), profile.markers)
    assert [ms.name for ms in timeline.milestones] == BOOT_MARKERS
    assert [ln.text for ln in con.head()] == [ln.text for ln in _log_lines("boot-to-login")][: len(con.head())]


def test_login_survives_system_output_interleaved_with_it(replay: Replayer, profile: GuestProfile) -> None:
    """A driver crash report (libsys panic format, minix/lib/libsys/panic.c: derived, not captured) lands
    after `login: ` and inside the motd; the login and the harness prompt are still found."""
    boot, rest = split_after(transcript("boot-login-commands"), b"login: ")
    after_login, _ = split_after(rest, b"minix# ")
    noise = Send(after_login[0].t, b"\r\ne1000(-3): panic: Crash!\r\n")
    motd, prompt = after_login[:-1], after_login[-1]
    steps: list[Step] = [
        *boot,
        noise,
        Await(rb"root\r"),
        *motd,
        noise,
        prompt,
        Await(rb"[^\r]*PS1=[^\r]*\r", echo=True),
        Send(prompt.t, PS1.encode()),
        Await(rb"_pmS\(\)[^\r]*\r"),
        Send(prompt.t, PS1.encode()),
    ]
    con, peer = replay(steps, 0.0)
    con.expect(profile.login.prompt, 10, fail_on=profile.panic_patterns, what="the login prompt")
    Shell(con, profile).login(timeout=10)
    peer.finish()
    assert con.tail(1).endswith(PS1)
    assert sum(ln.text == "e1000(-3): panic: Crash!" for ln in con.lines()) == 2  # seen, and not taken as fatal


def test_a_command_that_ends_the_login_shell_is_noticed_by_inits_getty_line(
    replay: Replayer, profile: GuestProfile
) -> None:
    """`exit` soon after boot: MINIX's init holds getty back 30 s and says so at once (recorded on the live
    MINIX, tests/fixtures/minix/live/exit-login-shell.bin); that line, not the late `login: `, fails the command."""
    boot, rest = split_after(transcript("boot-login-commands"), b"login: ")
    after_login, _ = split_after(rest, b"minix# ")
    recorded = (FIXTURES / "live" / "exit-login-shell.bin").read_bytes()
    assert recorded.startswith(b"\x1eS2\r\n") and b"init: getty repeating too quickly" in recorded
    steps: list[Step] = [
        *boot,
        Await(rb"root\r"),
        *after_login,
        Await(rb"[^\r]*PS1=[^\r]*\r", echo=True),
        Send(after_login[-1].t, PS1.encode()),
        Await(rb"_pmS\(\)[^\r]*\r"),
        Send(0.0, PS1.encode()),
        Await(rb"_pmR 1\n"),
        Send(0.0, recorded.replace(b"\x1eS2", b"\x1eS1", 1)),  # the shell is gone; getty comes 30 s later
    ]
    con, peer = replay(steps, 0.0)
    con.expect(profile.login.prompt, 10, fail_on=profile.panic_patterns, what="the login prompt")
    shell = Shell(con, profile)
    shell.login(timeout=10)
    start = time.monotonic()
    with pytest.raises(VMError, match="ended the guest's login shell") as exc:
        shell.run("exit 3", timeout=60)
    assert time.monotonic() - start < Shell.LOGIN_GRACE + 3
    assert "init: getty repeating too quickly" in str(exc.value)
    assert "ended the guest's login shell" in (shell.broken or "")
    peer.finish()
