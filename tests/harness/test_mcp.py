"""``pytest-minix mcp`` end to end: the official MCP SDK client drives the server over stdio,
and the server boots real reference guests.

Each test starts its own server process (``python -m pytest_minix.cli mcp``). QEMU
processes are checked by the PIDs the server reports, never by name.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

mcp = pytest.importorskip("mcp", reason="the MCP SDK (pip install 'pytest-minix[mcp]') is not installed")
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.shared.exceptions import MCPError  # noqa: E402

from pytest_minix.mcp.sessions import check_command  # noqa: E402

pytestmark = pytest.mark.slow

TOOLS = {
    "list_guests",
    "list_images",
    "list_sessions",
    "boot",
    "run",
    "profile_boot",
    "trace_syscalls",
    "monitor_memory",
    "check_claims",
    "snapshot",
    "restore",
    "shutdown",
}


# Installed into the reference guest to exercise trace_syscalls' tracing path (the reference guest
# has no tracer): MINIX trace(1)'s -f/-o options and its output format (minix/usr.bin/trace/trace.1).
TRACE_STANDIN = """cat > /usr/bin/trace <<'EOF'
#!/bin/sh
out=/dev/stderr
while [ $# -gt 0 ]; do case "$1" in -f) shift ;; -o) out=$2; shift 2 ;; *) break ;; esac; done
"$@"
{ echo "Tracing sh (pid 42)"; echo 'open("/etc/passwd", O_RDONLY) = 3'
  echo 'read(3, "root:x:0:0:ro"..., 4096) = 27'; echo 'read(3, "", 4096) = 0'; echo 'close(3) = 0'
  echo 'Process exited normally with code 0'; } > "$out"
EOF
chmod +x /usr/bin/trace"""


def _server_params(tmp_path: Path, *extra: str) -> StdioServerParameters:
    # The SDK passes only a safe subset of the environment by default; the server needs the cache settings.
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "pytest_minix.cli", "mcp", "--minix-accel=tcg", f"--minix-log-dir={tmp_path / 'logs'}", *extra],
        env=dict(os.environ),
        cwd=str(tmp_path),
    )


@asynccontextmanager
async def _client(tmp_path: Path, *extra: str) -> AsyncIterator[Client]:
    """A connected SDK client; the server's stderr goes to ``tmp_path/server.stderr``."""
    with open(tmp_path / "server.stderr", "a") as errlog:
        async with Client(stdio_client(_server_params(tmp_path, *extra), errlog=errlog)) as c:
            yield c


def _ok(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content[0].text
    data: dict[str, Any] = result.structured_content
    return data


def _err(result: Any) -> str:
    assert result.is_error, f"expected a tool error, got {result.structured_content}"
    text: str = result.content[0].text
    return text


def _gone(pid: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0]
        except (OSError, IndexError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.1)
    return False


def _arch(pytestconfig: pytest.Config) -> str:
    arch = pytestconfig.getoption("minix_arch", None) or "i386"
    return "i386" if arch == "all" else str(arch)


def _need_reference(pytestconfig: pytest.Config) -> None:
    if pytestconfig.getoption("minix_guest", None) not in (None, "reference"):
        pytest.skip("the MCP end-to-end tests boot the reference guest: run with --minix-guest=reference")


@pytest.fixture
def arch(pytestconfig: pytest.Config) -> str:
    _need_reference(pytestconfig)
    return _arch(pytestconfig)


# -- the tools, one session ---------------------------------------------------------------------


async def _tools(tmp_path: Path, arch: str) -> None:
    # A cold boot, so that boot returns a timeline (a warm start has none: test_warm_start.py).
    async with _client(tmp_path, "--minix-cold-boot") as c:
        tools = {t.name: t for t in (await c.list_tools()).tools}
        assert set(tools) == TOOLS
        assert tools["run"].input_schema["properties"]["timeout"]["exclusiveMinimum"] == 0

        guests = _ok(await c.call_tool("list_guests", {}))
        ref = next(g for g in guests["guests"] if g["guest"] == "reference")
        row = next(a for a in ref["arches"] if a["arch"] == arch)
        assert row["bootable"] and row["qemu"]
        images = _ok(await c.call_tool("list_images", {}))
        assert "minix_releases" in images and "reference_builds" in images

        booted = _ok(await c.call_tool("boot", {"guest": "reference", "arch": arch}))
        sid, pid = booted["session"], booted["qemu_pid"]
        assert booted["accel"] == "tcg" and booted["arch"] == arch
        names = [m["name"] for m in booted["milestones"]]
        assert "kernel" in names and "shell" in names
        assert all(p["seconds"] >= 0 for p in booted["phases"])
        assert booted["boot_seconds"] > 0
        assert not _gone(pid, 0)

        r = _ok(await c.call_tool("run", {"session": sid, "command": "uname -s; echo err >&2; exit 3"}))
        assert (r["status"], r["stdout"], r["stderr"]) == (3, "Linux\n", "err\n")
        # Quotes, newlines, $(...) and ; reach the guest shell literally; nothing runs on the host.
        canary = tmp_path / "host-canary"
        cmd = f"printf '%s\\n' 'a \"b\" $(touch {canary}); c'\necho \"line 2\""
        r = _ok(await c.call_tool("run", {"session": sid, "command": cmd}))
        assert r["stdout"] == f'a "b" $(touch {canary}); c\nline 2\n'
        assert not canary.exists()
        # An unclosed quote is refused with the shell's reason; the session goes on.
        msg = _err(await c.call_tool("run", {"session": sid, "command": 'echo "unterminated'}))
        assert "syntax" in msg and "Nothing was run" in msg
        msg = _err(await c.call_tool("run", {"session": sid, "command": "echo \x03x"}))
        assert "control characters" in msg and "U+0003" in msg
        # A command that overruns its timeout is interrupted: a tool error naming it; the shell answers after.
        msg = _err(await c.call_tool("run", {"session": sid, "command": "sleep 30", "timeout": 1}))
        assert "sleep 30" in msg and "did not finish within 1.0 s" in msg
        r = _ok(await c.call_tool("run", {"session": sid, "command": "echo still-here"}))
        assert r["stdout"] == "still-here\n"

        trace = _ok(await c.call_tool("trace_syscalls", {"session": sid, "command": "ls /"}))
        assert trace["available"] is False and "no system-call tracer" in trace["reason"]
        # The tracing path itself, with a stand-in for MINIX's trace(1) (its options and output format):
        # quoting through `sh -c`, the trace file read back, the command's own output kept apart.
        _ok(await c.call_tool("run", {"session": sid, "command": TRACE_STANDIN}))
        cmd = 'echo \'open("looks like a call")\'; echo "$((6*7))"'
        trace = _ok(await c.call_tool("trace_syscalls", {"session": sid, "command": cmd}))
        assert trace["available"] is True and trace["tracer"] == "/usr/bin/trace"
        assert trace["calls"] == {"read": 2, "open": 1, "close": 1} and trace["total"] == 4
        assert trace["command_output"] == 'open("looks like a call")\n42\n'

        mem = _ok(await c.call_tool("monitor_memory", {"session": sid, "seconds": 1.0, "interval": 0.5}))
        samples = mem["samples"]
        assert len(samples) == 3 and [s["t"] for s in samples] == sorted(s["t"] for s in samples)
        assert samples[-1]["t"] >= 0.9
        for s in samples:
            assert 200 < s["guest_meminfo"]["MemTotal"] <= 256
            assert 0 < s["guest_meminfo"]["MemAvailable"] <= s["guest_meminfo"]["MemTotal"]
            assert s["host"]["rss_mib"] > 10 and s["host"]["minor_faults"] > 0
        assert "tcg" in mem["kvm_note"]

        _ok(await c.call_tool("run", {"session": sid, "command": "echo before > /tmp/state"}))
        snap = _ok(await c.call_tool("snapshot", {"session": sid, "name": "s1"}))
        assert snap["snapshots"] == ["s1"]
        _ok(await c.call_tool("run", {"session": sid, "command": "echo after > /tmp/state"}))
        _ok(await c.call_tool("restore", {"session": sid, "name": "s1"}))
        r = _ok(await c.call_tool("run", {"session": sid, "command": "cat /tmp/state"}))
        assert r["stdout"] == "before\n"
        assert "No snapshot named 'nope'" in _err(await c.call_tool("restore", {"session": sid, "name": "nope"}))

        sessions = _ok(await c.call_tool("list_sessions", {}))
        assert [s["session"] for s in sessions["sessions"]] == [sid]

        log = (await c.read_resource(f"minix://sessions/{sid}/serial-log")).contents[0]
        assert "Linux version" in log.text and "still-here" in log.text
        listed = {str(r.uri) for r in (await c.list_resources()).resources}
        assert f"minix://sessions/{sid}/serial-log" in listed and "minix://claims/last-report" in listed

        down = _ok(await c.call_tool("shutdown", {"session": sid}))
        assert down["stopped"] and down["qemu_pid"] == pid
        assert _gone(pid, 5), f"QEMU {pid} still runs after shutdown"
        # The log stays readable after the session ended; the session id is refused for commands.
        log = (await c.read_resource(f"minix://sessions/{sid}/serial-log")).contents[0]
        assert "still-here" in log.text
        assert "has been shut down" in _err(await c.call_tool("run", {"session": sid, "command": "true"}))


@pytest.mark.qemu
def test_tools_end_to_end(tmp_path: Path, pytestconfig: pytest.Config, fault_arch: str) -> None:
    """Every arch selected with --arch (both under --arch=all)."""
    _need_reference(pytestconfig)
    asyncio.run(_tools(tmp_path, fault_arch))


# -- bad arguments: schema or tool errors, and the server stays up ------------------------------


def test_bad_arguments_are_errors_and_the_server_stays_up(tmp_path: Path, arch: str) -> None:
    async def main() -> None:
        async with _client(tmp_path, "--minix-offline") as c:
            cases: list[tuple[str, dict[str, Any], str]] = [
                ("boot", {"guest": "plan9", "arch": arch}, "Unknown guest 'plan9'"),
                ("boot", {"guest": "reference", "arch": "mips"}, "has no arch 'mips'"),
                ("boot", {"guest": "reference", "arch": arch, "memory": 1}, "greater than or equal to 16"),
                ("boot", {"guest": "reference", "arch": arch, "timeout": -5}, "greater than 0"),
                ("boot", {"arch": arch}, "guest"),
                ("run", {"session": "s-00000000", "command": "true"}, "No session 's-00000000'"),
                ("run", {"session": "s-00000000", "command": "true", "timeout": -1}, "greater than 0"),
                ("run", {"session": "s-00000000", "command": ""}, "at least 1 character"),
                ("monitor_memory", {"session": "x", "seconds": 5, "interval": 0}, "greater than or equal to 0.2"),
                ("profile_boot", {"guest": "reference", "arch": arch, "rounds": 0}, "greater than or equal to 1"),
                ("snapshot", {"session": "x", "name": "a b;quit"}, "pattern"),
                ("check_claims", {"guest": "reference", "arch": arch, "ids": ["no.such.*"]}, "matches 'no.such.*'"),
                ("shutdown", {"session": "s-nope"}, "No session 's-nope'"),
                ("no_such_tool", {}, "no_such_tool"),
            ]
            from pytest_minix.media.images import ImageStore

            if not ImageStore().cached():
                # No MINIX image here and the server is --minix-offline: the harness's one-paragraph reason.
                cases.append(("boot", {"guest": "minix", "arch": "i386"}, "pytest-minix fetch"))
            for tool, args, expect in cases:
                msg = _err(await c.call_tool(tool, args))
                assert expect in msg, f"{tool}({args}): {msg}"
                # The server is still up and answering after each.
                assert _ok(await c.call_tool("list_sessions", {}))["sessions"] == []
            with pytest.raises(MCPError, match="No claims report yet"):
                await c.read_resource("minix://claims/last-report")
            with pytest.raises(MCPError, match="No session 's-nope' was started"):
                await c.read_resource("minix://sessions/s-nope/serial-log")
            assert _ok(await c.call_tool("list_sessions", {}))["sessions"] == []

    asyncio.run(main())


# -- the VM cap, profile_boot and check_claims ---------------------------------------------------


@pytest.mark.qemu
def test_vm_cap_profile_boot_and_claims(tmp_path: Path, arch: str) -> None:
    async def main() -> None:
        async with _client(tmp_path, "--max-vms=2") as c:
            a = _ok(await c.call_tool("boot", {"guest": "reference", "arch": arch}))
            b = _ok(await c.call_tool("boot", {"guest": "reference", "arch": arch, "memory": 128}))
            assert a["qemu_pid"] != b["qemu_pid"] and b["memory_mib"] == 128
            msg = _err(await c.call_tool("boot", {"guest": "reference", "arch": arch}))
            assert "limit of 2" in msg and a["session"] in msg and b["session"] in msg
            assert "limit of 2" in _err(await c.call_tool("profile_boot", {"guest": "reference", "arch": arch}))
            _ok(await c.call_tool("shutdown", {"session": b["session"]}))
            # One slot free: claims need two (the shared VM and a fresh boot), a profile one.
            msg = _err(await c.call_tool("check_claims", {"guest": "reference", "arch": arch}))
            assert "needs 2 VM(s)" in msg
            notes: list[tuple[float, str | None]] = []

            async def on_progress(progress: float, total: float | None, message: str | None) -> None:
                notes.append((progress, message))

            prof = _ok(
                await c.call_tool(
                    "profile_boot", {"guest": "reference", "arch": arch, "rounds": 2}, progress_callback=on_progress
                )
            )
            # Each boot was reported as it finished (MCP progress notifications).
            assert [p for p, _ in notes] == [1, 2], notes
            assert notes[1][1] and notes[1][1].startswith(f"boot 2/2 of reference {arch}: shell at "), notes
            assert prof["rounds"] == 2 and len(prof["boots"]) == 2 and prof["accel"] == ["tcg"]
            shell = prof["milestones"]["shell"]
            assert shell["n"] == 2 and 0 < shell["min"] <= shell["mean"] <= shell["max"]
            assert shell["ci95"][0] <= shell["mean"] <= shell["ci95"][1]
            assert all(Path(x["serial_log"]).is_file() for x in prof["boots"])
            _ok(await c.call_tool("shutdown", {"session": a["session"]}))
            for pid in (a["qemu_pid"], b["qemu_pid"]):
                assert _gone(pid, 5)

            ids = ["ref.mem.total_ram", "ref.syscall.profile"]
            notes.clear()
            rep = _ok(
                await c.call_tool(
                    "check_claims", {"guest": "reference", "arch": arch, "ids": ids}, progress_callback=on_progress
                )
            )
            assert [m for _, m in notes if m and m.startswith("claim ")] == [
                "claim 1/2 ref.mem.total_ram: confirmed",
                "claim 2/2 ref.syscall.profile: reported",
            ]
            outcomes = {v["id"]: v["outcome"] for v in rep["verdicts"]}
            assert outcomes == {"ref.mem.total_ram": "confirmed", "ref.syscall.profile": "reported"}
            ram = next(v for v in rep["verdicts"] if v["id"] == "ref.mem.total_ram")
            assert ram["measured"] and ram["claimed"]  # the measured figure beside the claimed one
            assert "1 confirmed" in rep["summary"] and "ref.mem.total_ram" in rep["table"]
            last = json.loads((await c.read_resource("minix://claims/last-report")).contents[0].text)
            assert last["verdicts"] == rep["verdicts"]
            assert _ok(await c.call_tool("list_sessions", {}))["sessions"] == []

    asyncio.run(main())


def _children(pid: int) -> set[int]:
    """Live child processes of ``pid`` (every thread's), by PID."""
    kids: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            kids.update(int(x) for x in (task / "children").read_text().split())
    return {k for k in kids if not _gone(k, 0)}


@pytest.mark.qemu
def test_overrun_call_is_stopped_with_its_vms(tmp_path: Path, arch: str) -> None:
    async def main() -> None:
        async with _client(tmp_path) as c:
            server = _ok(await c.call_tool("list_sessions", {}))["server_pid"]
            msg = _err(
                await c.call_tool("profile_boot", {"guest": "reference", "arch": arch, "rounds": 5, "timeout": 2})
            )
            assert "did not finish within 2 s and was stopped" in msg
            deadline = time.monotonic() + 10
            while _children(server) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            assert not _children(server), f"QEMU children left after the overrun: {_children(server)}"
            # The slot came back and the server goes on.
            booted = _ok(await c.call_tool("boot", {"guest": "reference", "arch": arch}))
            assert _children(server) == {booted["qemu_pid"]}

    asyncio.run(main())


# -- nothing left behind: a killed client, a signalled server -----------------------------------

CLIENT = """
import asyncio, json, os, sys, time
from mcp import Client
from mcp.client.stdio import StdioServerParameters

async def main():
    params = StdioServerParameters(command=sys.executable, args=json.loads(sys.argv[1]), env=dict(os.environ))
    async with Client(params) as c:
        r = await c.call_tool("boot", {"guest": "reference", "arch": sys.argv[2]})
        s = await c.call_tool("list_sessions", {})
        print(json.dumps({"qemu": r.structured_content["qemu_pid"], "server": s.structured_content["server_pid"],
                          "log_dir": s.structured_content["log_dir"]}), flush=True)
        time.sleep(600)

asyncio.run(main())
"""


def _start_client(tmp_path: Path, arch: str) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    script = tmp_path / "client.py"
    script.write_text(CLIENT)
    args = ["-m", "pytest_minix.cli", "mcp", "--minix-accel=tcg", f"--minix-log-dir={tmp_path / 'logs'}"]
    with open(tmp_path / "client.stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(script), json.dumps(args), arch],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            cwd=tmp_path,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line:
        proc.kill()
        pytest.fail(f"the client never booted a guest:\n{(tmp_path / 'client.stderr').read_text()[-3000:]}")
    return proc, json.loads(line)


def _listening_tcp_sockets(pid: int) -> list[str]:
    """TCP sockets in LISTEN state that belong to ``pid`` (matched by socket inode)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for row in Path(table).read_text().splitlines()[1:]:
            cols = row.split()
            if cols[3] == "0A" and cols[9] in inodes:
                found.append(f"{table}: {cols[1]}")
    return found


@pytest.mark.qemu
def test_killed_client_leaves_no_qemu(tmp_path: Path, arch: str) -> None:
    proc, info = _start_client(tmp_path, arch)
    try:
        assert not _gone(info["qemu"], 0) and not _gone(info["server"], 0)
        assert _listening_tcp_sockets(info["server"]) == [], "the MCP server listens on TCP"
        assert _listening_tcp_sockets(info["qemu"]) == [], "QEMU listens on TCP"
        proc.kill()  # SIGKILL: the client cannot say goodbye; the server sees its stdin close
        proc.wait(10)
        assert _gone(info["qemu"], 15), f"QEMU {info['qemu']} outlived its killed client"
        assert _gone(info["server"], 15), f"the MCP server {info['server']} outlived its killed client"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


@pytest.mark.qemu
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGKILL], ids=lambda s: s.name)
def test_signalled_server_stops_its_vms(tmp_path: Path, arch: str, sig: signal.Signals) -> None:
    proc, info = _start_client(tmp_path, arch)
    try:
        os.kill(info["server"], sig)
        assert _gone(info["qemu"], 10), f"QEMU {info['qemu']} outlived the server after {sig.name}"
        assert _gone(info["server"], 10), f"the server ignored {sig.name}"
        stderr = (tmp_path / "client.stderr").read_text()
        if sig == signal.SIGKILL:
            # Nothing can clean up at once: QEMU died with the server (PR_SET_PDEATHSIG); its state
            # directory is left for the next session's sweep, which checks the owner is gone.
            assert "every VM shut down" not in stderr
        else:
            # It shut down in order, not merely killed with its parent: the log says so.
            assert "every VM shut down" in stderr, stderr[-2000:]
    finally:
        proc.kill()
        proc.wait(10)


# -- unit: what a command may hold ---------------------------------------------------------------


@pytest.mark.parametrize("bad", ["", "   ", "echo \x00", "a\x1eR1 0", "\x1b[6n", "x\ry"])
def test_commands_with_control_characters_or_nothing_are_refused(bad: str) -> None:
    from pytest_minix.mcp.sessions import SessionError

    with pytest.raises(SessionError):
        check_command(bad)


def test_tabs_newlines_and_unicode_are_fine() -> None:
    cmd = textwrap.dedent("""\
        for x in 1 2; do
        \techo "ünï $x"
        done""")
    assert check_command(cmd) == cmd


def test_bad_server_options_fail_at_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[claim]]\nid = "x"\nstatement = "s"\nmetric = "no.such.metric"\n')
    cli = [sys.executable, "-m", "pytest_minix.cli", "mcp", f"--minix-log-dir={tmp_path / 'logs'}"]
    r = subprocess.run(
        [*cli, f"--minix-claims={bad}"], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and f"{bad}:" in r.stderr, r.stderr
    assert "serving" not in r.stderr
    for opt, expect in (
        ("--max-vms=0", "--max-vms: must be at least 1"),
        ("--call-timeout=-5", "--call-timeout: must be more than 0"),
        ("--minix-emulation-factor=0.5", "--minix-emulation-factor: is a slowdown factor"),
    ):
        r = subprocess.run([*cli, opt], stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and expect in r.stderr, r.stderr


@pytest.mark.qemu
def test_example_client_runs(tmp_path: Path, arch: str) -> None:
    """examples/mcp_client.py, as a user would run it, against the reference guest."""
    example = Path(__file__).resolve().parents[2] / "examples" / "mcp_client.py"
    r = subprocess.run(
        [sys.executable, str(example), "--minix-guest", "reference", "--arch", arch],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    for part in ("== boot", "== run", "== monitor_memory", "== trace_syscalls", "== serial log", "== check_claims"):
        assert part in r.stdout, r.stdout[-3000:]
    assert "ref.mem.total_ram" in r.stdout and "confirmed" in r.stdout
