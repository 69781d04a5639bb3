"""A root shell over the serial console: login, run(), put() and get().

Each command is framed by markers printed with ``printf '\\036...'``: the marker's
control byte only exists in the *output* of printf, never in the typed text, so the
echo of a command can never be mistaken for its result. stdout is what the command
prints between the start and status markers; stderr goes to a guest file printed
after the status. All of this uses POSIX shell and printf only, so it works the same
on busybox ash and on MINIX's NetBSD sh.
"""

from __future__ import annotations

import hashlib
import itertools
import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from pytest_minix.errors import CommandTimeout, VMError
from pytest_minix.guest.lifecycle import Lifecycle
from pytest_minix.profiles import GuestProfile
from pytest_minix.qemu.console import Console, Match

PS1 = "[pm-ok]# "
# A command staged in a file and sourced, when it cannot be typed as it is (see Shell.run).
CMD_FILE = "/tmp/.pytest-minix.cmd"
DATA_FILE = "/tmp/.pytest-minix.put"  # a file put() under a name that cannot be typed is written here first
# Typed as two quoted halves so that the echo of the setup line cannot match the prompt.
PS1_TYPED = "'[pm''-ok]# '"
ERR_FILE = "/tmp/.pytest-minix.err"
# The frame's markers as shell functions, typed once at login: a command then types about
# 40 bytes of frame instead of about 200. MEASURED on MINIX (benchmarks/harness_overhead.py):
# its serial driver takes one interrupt per typed byte, so typing was ~80 % of run("true").
FUNCTIONS = (
    "_pmS(){ printf '\\036S%s\\n' \"$1\"; }; "
    "_pmR(){ _pms=$?; printf '\\036R%s %d\\n' \"$1\" $_pms; "
    f"[ -s {ERR_FILE} ] && {{ printf '\\036E%s\\n' \"$1\"; cat {ERR_FILE}; }}; printf '\\036Z%s\\n' \"$1\"; }}; "
    f"_pmE={ERR_FILE}"
)


def setup_lines(profile: GuestProfile) -> list[str]:
    """What the harness types after login, one line each: the profile's setup with the prompt, then the functions."""
    return [f"{profile.shell_setup}; PS1={PS1_TYPED}; PS2=''", FUNCTIONS]


@dataclass(frozen=True)
class Result:
    """What a command did: exit status, stdout, stderr and the wall time of the round trip."""

    command: str
    status: int
    stdout: str
    stderr: str
    duration: float
    truncated: bool = False

    @property
    def ok(self) -> bool:
        return self.status == 0

    def check(self) -> Result:
        """Return self, or raise AssertionError with the whole result when status != 0."""
        if self.status != 0:
            raise AssertionError(
                f"command {self.command!r} exited {self.status}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr}"
            )
        return self


_CRC_TABLE: list[int] = []


def posix_cksum(data: bytes) -> int:
    """The CRC printed by POSIX ``cksum`` (both guests have it; hashlib has no such CRC)."""
    if not _CRC_TABLE:
        for i in range(256):
            c = i << 24
            for _ in range(8):
                c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else (c << 1)
            _CRC_TABLE.append(c & 0xFFFFFFFF)
    crc = 0
    for b in data:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ b]
    n = len(data)
    while n:
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC_TABLE[(crc >> 24) ^ (n & 0xFF)]
        n >>= 8
    return (~crc) & 0xFFFFFFFF


def parse_od(text: str) -> bytes:
    """Bytes from ``od -An -v -tx1`` output."""
    return bytes(int(tok, 16) for tok in text.split())


# Exit status reported for a command line the shell abandoned (what sh reports for the error itself).
ABANDONED_STATUS = 2


class Shell:
    """Drives the guest's shell; marks the VM broken (its ``life``) when it cannot be resynchronised."""

    # After a login prompt where a command's end was expected: how long its status marker may
    # still take (a command that merely printed "login: " is followed by it at once).
    LOGIN_GRACE = 2.0

    def __init__(
        self, console: Console, profile: GuestProfile, *, life: Lifecycle | None = None, line_max: int = 200
    ) -> None:
        self.console = console
        self.profile = profile
        # The VM's lifecycle (shared with it); a shell on its own, as in the transcript replays, has its own.
        self.life = life or Lifecycle(f"shell on {console.log_path}")
        self._ids = itertools.count(1)
        self._staged: str | None = None  # the command CMD_FILE holds
        # Both MINIX (255) and Linux limit a canonical input line: keep under the smaller.
        self.line_max = line_max
        self._noise = profile.noise_patterns

    @property
    def broken(self) -> str | None:
        """Why this shell (its VM) can no longer be used, or None."""
        return self.life.broken

    # -- login ------------------------------------------------------------
    def login(self, timeout: float = 30.0) -> float:
        """Log in at the login prompt already on screen; return the time the prompt appeared."""
        lg = self.profile.login
        self.console.write(lg.user + "\r")
        if lg.password:
            self.console.expect(lg.password_prompt, timeout, what="the password prompt", exited=self.life.exit_reason)
            self.console.write(lg.password + "\r")
        self.console.expect(
            lg.shell_prompt,
            timeout,
            what="the shell prompt after login",
            exited=self.life.exit_reason,
            fail_on=[lg.prompt],
        )
        setup, functions = setup_lines(self.profile)
        self.console.write(setup + "\r")
        m = self.console.expect(re.escape(PS1) + "$", timeout, what="the harness prompt", exited=self.life.exit_reason)
        self.console.write(functions + "\r")
        self.console.expect(re.escape(PS1) + "$", timeout, what="the harness prompt", exited=self.life.exit_reason)
        return m.t

    # -- commands ---------------------------------------------------------
    def _frame(self, cmd: str, n: int, tty_stdin: bool = False) -> str:
        stdin = "" if tty_stdin else " </dev/null"
        return f"_pmS {n};{{ {cmd}\n}} 2>$_pmE{stdin};_pmR {n}\n"

    # Bytes a terminal's line discipline acts on instead of passing them (intr, quit, erase, kill,
    # eof, susp, CR, and the rest of the C0 set): such a command is staged, never typed.
    _TTY_SPECIAL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")

    def _typeable(self, frame: str) -> bool:
        """Whether ``frame`` reaches the shell unchanged when typed: no line too long, no special byte.

        A canonical-mode tty holds one line of at most about 255 bytes on MINIX (longer
        lines are lost and the command never starts); control bytes would be acted on.
        """
        if self._TTY_SPECIAL.search(frame):
            return False
        return all(len(line.encode()) < self.profile.input_max for line in frame.split("\n"))

    def _stage(self, cmd: str, timeout: float) -> str:
        """Write ``cmd`` to CMD_FILE in the guest; return the command that sources it in this shell.

        The same command staged again (a probe in a loop) reuses the file already there.
        """
        if self._staged != cmd:
            self._staged = None
            self._write_file(cmd.encode() + b"\n", CMD_FILE, timeout)
            self._staged = cmd
        return f". {CMD_FILE}"

    def forget_guest_state(self) -> None:
        """The guest's files changed under the shell (a snapshot was restored): stage anew."""
        self._staged = None

    def _clean(self, text: str) -> str:
        text = text.replace("\r\n", "\n")
        if self._noise and text:
            text = "".join(ln for ln in text.splitlines(keepends=True) if not any(p.search(ln) for p in self._noise))
        return text

    def run(self, cmd: str, timeout: float = 60.0, *, tty_stdin: bool = False) -> Result:
        """Run ``cmd`` in the guest shell; return status, stdout and stderr separately.

        stdin is /dev/null, so a command that reads it cannot swallow what is typed next;
        ``tty_stdin=True`` leaves the terminal as its stdin instead, for programs that
        check it is a tty (MINIX's POSIX test 3 calls tcgetattr on fd 0). Nothing is
        typed while such a command runs, except Ctrl-C when it times out.
        """
        if self.broken:
            raise VMError(f"The shell is unusable ({self.broken}); the VM must be rebooted.", self.console.log_path)
        start = time.monotonic()
        if not self._typeable(self._frame(cmd, 0, tty_stdin)):
            cmd = self._stage(cmd, timeout)
        n = next(self._ids)
        self.console.write(self._frame(cmd, n, tty_stdin))
        try:
            self.console.expect(f"\x1eS{n}\r?\n", timeout, what=f"the start of {cmd!r}", exited=self.life.exit_reason)
            rest = max(0.5, timeout - (time.monotonic() - start))
            end = f"\x1eR{n} (\\d+)\r?\n"
            login = self.profile.login
            rm = self.console.expect(
                [end, re.escape(PS1) + r"\Z", f"(?:{login.prompt.pattern})\\Z", *login.ended],
                rest,
                what=f"the end of {cmd!r}",
                exited=self.life.exit_reason,
                fail_on=self.profile.panic_patterns,
            )
            if rm.index == 1:
                return self._abandoned(cmd, rm.before, start, timeout)
            if rm.index >= 2:
                rm = self._login_prompt(cmd, rm, end)
            em = self.console.expect(
                f"\x1eZ{n}\r?\n", 10.0, what="the stderr of the command", exited=self.life.exit_reason
            )
        except TimeoutError as exc:
            self._recover(n)
            raise CommandTimeout(
                f"Command {cmd!r} did not finish within {timeout:.1f} s. {exc}", self.console.log_path
            ) from None
        except VMError as exc:
            raise self.life.with_exit(exc) from None
        stderr = em.before
        if stderr.startswith(f"\x1eE{n}"):
            stderr = stderr.split("\n", 1)[1] if "\n" in stderr else ""
        elif stderr.strip():
            stderr = ""
        stdout = rm.before
        truncated = rm.dropped > 0
        if truncated:
            stdout = f"[pytest-minix: {rm.dropped} bytes of output dropped]\n" + stdout
        return Result(
            cmd, int(rm.match.group(1)), self._clean(stdout), self._clean(stderr), time.monotonic() - start, truncated
        )

    def _login_prompt(self, cmd: str, seen: Match, end: str) -> Match:
        """The login prompt (or a profile's ``login.ended`` line) showed up where the command's end was expected.

        Either the command ended the login shell (``exit``, ``exec``, ``logout``): the status
        marker never comes, and waiting out the timeout would only hide why; or the command
        printed something that looks like a prompt: then its marker follows within moments.
        """
        try:
            rest = self.console.expect(end, self.LOGIN_GRACE, what=f"the end of {cmd!r}", exited=self.life.exit_reason)
        except TimeoutError:
            self.life.fail("a command ended the login shell")
            raise VMError(
                f"Command {cmd!r} ended the guest's login shell (exit, exec or logout): the guest shows "
                f"{seen.text.strip()!r} and the command's status never came. The VM is marked broken; the pool "
                f"boots a fresh one for the next test. To return a status, run it in a subshell: ( {cmd} ).",
                self.console.log_path,
            ) from None
        return Match(rest.index, rest.match, seen.before + seen.text + rest.before, rest.t, seen.dropped + rest.dropped)

    def _abandoned(self, cmd: str, before: str, start: float, timeout: float) -> Result:
        """The shell dropped the rest of the framed line and showed its prompt: no status marker came.

        POSIX shells do this when a special builtin fails (e.g. `: > /no/such/dir/x`): an
        interactive shell does not exit, but abandons the command line. The command failed;
        its error message went to the stderr file, which is read back with a new command.
        """
        # Saved unframed first: the next framed command's own `2>` would truncate the file.
        n = next(self._ids)
        self.console.write(f"cp {ERR_FILE} {ERR_FILE}.a 2>/dev/null; printf '\\036A{n}\\n'\n")
        self.console.expect(f"\x1eA{n}\r?\n", max(5.0, timeout), what="the saved stderr", exited=self.life.exit_reason)
        err = self.run(f"cat {ERR_FILE}.a 2>/dev/null; rm -f {ERR_FILE}.a", timeout=max(5.0, timeout)).stdout
        return Result(cmd, ABANDONED_STATUS, self._clean(before), self._clean(err), time.monotonic() - start)

    def _recover(self, n: int) -> None:
        """Interrupt a hung command and resync on a fresh marker, or mark the shell broken."""
        try:
            self.console.write("\x03")
            time.sleep(0.2)
            self.console.write(f"\nprintf '\\036Y{n}\\n'\n")
            self.console.expect(f"\x1eY{n}\r?\n", 10.0, what="resynchronisation", exited=self.life.exit_reason)
        except (TimeoutError, VMError) as exc:
            self.life.fail(f"no answer after interrupting a timed-out command ({str(exc).splitlines()[0]})")

    # -- files ------------------------------------------------------------
    def put(self, local: Path | str, remote: str, timeout: float = 120.0) -> None:
        """Copy a host file into the guest (printf octal escapes), verified by checksum."""
        data = Path(local).read_bytes()
        self._write_file(data, remote, timeout)
        self._verify(data, remote, timeout)

    def _write_file(self, data: bytes, remote: str, timeout: float) -> None:
        """Create ``remote`` holding ``data``, typed as printf octal escapes in lines the tty accepts.

        A name that could not be typed itself (control bytes, very long) is written under a
        fixed name first and renamed by a staged ``mv``; the fixed names never need staging.
        """
        q = shlex.quote(remote)
        if len(q) > 64 or not self._typeable(q):
            self._write_file(data, DATA_FILE, timeout)
            self.run(f"mv -f {DATA_FILE} {q}", timeout).check()
            return
        self.run(f": > {q}", timeout).check()
        per_line = max(1, (min(self.line_max, self.profile.input_max - 120) - len(q) - 20) // 4)
        lines = [
            "printf '" + "".join(f"\\{b:03o}" for b in data[i : i + per_line]) + f"' >> {q}"
            for i in range(0, len(data), per_line)
        ]
        # Several lines per round trip, but never more than the guest's tty input buffer
        # holds (a full MINIX queue discards characters): the profile's input_max.
        batch: list[str] = []
        size = 0
        for line in [*lines, None]:
            if line is None or size + len(line) + 1 > self.profile.input_max:
                if batch:
                    self.run("\n".join(batch), timeout).check()
                batch, size = [], 0
            if line is not None:
                batch.append(line)
                size += len(line) + 1

    def get(self, remote: str, local: Path | str, timeout: float = 120.0) -> bytes:
        """Copy a guest file to the host (od hex dump), verified by checksum."""
        # Redirected, so a name starting with "-" cannot be taken for an option of od.
        r = self.run(f"od -An -v -tx1 < {shlex.quote(remote)}", timeout).check()
        data = parse_od(r.stdout)
        self._verify(data, remote, timeout)
        Path(local).write_bytes(data)
        return data

    def _verify(self, data: bytes, remote: str, timeout: float) -> None:
        """Compare the guest's checksum of ``remote`` with the host's of ``data``."""
        tool = self.profile.checksum
        r = self.run(f"{tool} < {shlex.quote(remote)}", timeout).check()
        fields = r.stdout.split()
        if tool == "cksum":  # POSIX CRC and size
            want = f"{posix_cksum(data)} {len(data)}"
            got = " ".join(fields[:2])
        else:  # sha256sum-style: hex digest first
            want = hashlib.sha256(data).hexdigest()
            got = fields[0] if fields else ""
        if got != want:
            raise VMError(
                f"Checksum mismatch copying {remote!r}: the host computed {want}, "
                f"the guest's {tool} printed {r.stdout.strip()!r}.",
                self.console.log_path,
            )
