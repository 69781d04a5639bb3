"""The MCP tools and resources of ``pytest-minix mcp`` (needs the ``mcp`` SDK, version 2).

Each tool runs its blocking harness call (:mod:`pytest_minix.mcp.sessions`) in a worker thread
under a deadline; harness errors reach the client as tool errors carrying the harness's own
one-paragraph message. Argument types and bounds are the tools' JSON schemas, so a negative
timeout or a malformed snapshot name is refused before any VM is touched.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import os
import secrets
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ToolError
from mcp.server.mcpserver.resources import FunctionResource
from pydantic import Field

from pytest_minix.errors import HarnessError
from pytest_minix.mcp.sessions import SessionManager

T = TypeVar("T")

GUESTS_HELP = "guest profile: 'reference' (Linux+busybox, built locally) or 'minix' (MINIX 3, downloaded)"
ARCH_HELP = "architecture: 'i386' or 'arm'"
LOG_TAIL = 1 << 20  # a serial-log resource returns at most the last MiB

INSTRUCTIONS = """\
pytest-minix boots MINIX 3 (or the local Linux reference guest) under QEMU and measures it.
Boot a session with `boot`, run shell commands in the guest with `run` (they never run on
the host), and `shutdown` the session when done: VMs are limited. `profile_boot` and
`check_claims` boot fresh VMs of their own. Serial logs are resources:
minix://sessions/{session}/serial-log; the last claims report is minix://claims/last-report.
"""


Guest = Annotated[str, Field(description=GUESTS_HELP, min_length=1, max_length=64)]
Arch = Annotated[str, Field(description=ARCH_HELP, min_length=1, max_length=16)]
SessionId = Annotated[str, Field(description="a session id returned by boot", min_length=1, max_length=64)]
Command = Annotated[str, Field(description="a POSIX shell command, run in the guest", min_length=1, max_length=65536)]
Memory = Annotated[int | None, Field(description="guest RAM in MiB (default: the guest's own)", ge=16, le=65536)]
SnapName = Annotated[str, Field(description="snapshot name", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]


def build_server(manager: SessionManager, *, call_timeout: float = 1800.0) -> Any:
    """An MCPServer whose tools and resources call ``manager``."""
    from pytest_minix.version import harness_version

    server = MCPServer(name="pytest-minix", instructions=INSTRUCTIONS, version=harness_version())

    async def call(
        fn: Callable[..., T], *args: Any, timeout: float, what: str, on_timeout: Callable[[], None] | None = None
    ) -> T:
        """Run a blocking harness call in a thread; its errors and overruns become tool errors."""
        try:
            with anyio.fail_after(timeout):
                return await anyio.to_thread.run_sync(functools.partial(fn, *args), abandon_on_cancel=True)
        except TimeoutError:
            if on_timeout is not None:
                on_timeout()
            raise ToolError(
                f"{what} did not finish within {timeout:g} s and was stopped; its VMs were shut down. "
                "Pass a larger timeout, or fewer rounds or claims."
            ) from None
        except HarnessError as exc:
            raise ToolError(str(exc)) from None
        except ValueError as exc:
            raise ToolError(f"{what}: {exc}") from None

    def reporter(ctx: Context) -> Callable[[str], None]:
        """A progress callback for a worker thread: each message becomes an MCP progress notification.

        Long calls (boot rounds, claims) report as they go, so a client sees them alive and can
        keep its own timeout from firing. Without a progress token from the client, nothing is sent.
        """
        count = itertools.count(1)

        def report(message: str) -> None:
            with contextlib.suppress(Exception):  # the call may have been abandoned, or the client gone
                anyio.from_thread.run(ctx.report_progress, next(count), None, message)

        return report

    @server.tool()
    async def list_guests() -> dict[str, Any]:
        """The guests and arches this machine can boot: QEMU binaries and machines, boot media, accelerator."""
        from pytest_minix.guest.inventory import guests_inventory

        return await call(guests_inventory, timeout=120, what="list_guests")

    @server.tool()
    async def list_images() -> dict[str, Any]:
        """Cached MINIX images (with SHA-256) and locally built reference guests."""
        from pytest_minix.guest.inventory import images_inventory

        return await call(images_inventory, timeout=60, what="list_images")

    @server.tool()
    async def list_sessions() -> dict[str, Any]:
        """The open sessions: guest, arch, accelerator, QEMU pid, serial log, snapshots."""
        return {
            "sessions": manager.describe_records(),
            "max_vms": manager.limits.max_vms,
            "server_pid": os.getpid(),
            "log_dir": str(manager.log_dir),
        }

    @server.tool()
    async def boot(
        guest: Guest,
        arch: Arch,
        memory: Memory = None,
        timeout: Annotated[float | None, Field(description="boot timeout in seconds", gt=0, le=3600)] = None,
    ) -> dict[str, Any]:
        """A VM at a logged-in shell: the session id, and the boot timeline (phases, accelerator).

        When the boot cache holds this exact machine, the VM starts from that saved state in
        well under a second instead ("started": "warm", no timeline); profile_boot always boots.
        """
        deadline = (timeout or 600.0) + 120.0
        booted = await call(manager.boot, guest, arch, memory, timeout, timeout=deadline, what=f"boot {guest} {arch}")
        sid = booted["session"]

        def session_log() -> str:
            return serial_log(sid)

        # Listed (resources/list) from now on, and readable after shutdown too.
        server.add_resource(
            FunctionResource.from_function(
                session_log,
                uri=f"minix://sessions/{sid}/serial-log",
                name=f"serial-log-{sid}",
                description=f"Serial console log of session {sid} ({guest} {arch}), the last MiB",
                mime_type="text/plain",
            )
        )
        return booted

    @server.tool()
    async def run(
        session: SessionId,
        command: Command,
        timeout: Annotated[float, Field(description="seconds before the command is interrupted", gt=0, le=3600)] = 60.0,
    ) -> dict[str, Any]:
        """Run a shell command in the guest (never on the host), in a subshell: exit status, stdout, stderr.

        Files persist between calls; the working directory and shell variables do not.
        """
        return await call(manager.run, session, command, timeout, timeout=timeout + 60, what="run")

    @server.tool()
    async def profile_boot(
        guest: Guest,
        arch: Arch,
        rounds: Annotated[int, Field(description="fresh boots to time", ge=1, le=20)] = 3,
        memory: Memory = None,
        timeout: Annotated[float, Field(description="seconds for all rounds", gt=0, le=7200)] = call_timeout,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Boot fresh VMs ``rounds`` times; statistics of each boot milestone and phase (seconds from start)."""
        op = f"profile-{secrets.token_hex(4)}"
        progress = reporter(ctx) if ctx is not None else None
        return await call(
            manager.profile_boot,
            guest,
            arch,
            rounds,
            memory,
            op,
            progress,
            timeout=timeout,
            what=f"profile_boot {guest} {arch}",
            on_timeout=lambda: manager.abort(op),
        )

    @server.tool()
    async def trace_syscalls(
        session: SessionId,
        command: Command,
        timeout: Annotated[float, Field(gt=0, le=3600)] = 300.0,
    ) -> dict[str, Any]:
        """System-call frequency profile of a command (MINIX trace(1)); says why when the guest has no tracer."""
        return await call(
            manager.trace_syscalls, session, command, timeout, timeout=timeout + 60, what="trace_syscalls"
        )

    @server.tool()
    async def monitor_memory(
        session: SessionId,
        seconds: Annotated[float, Field(description="how long to sample", ge=0, le=600)] = 10.0,
        interval: Annotated[float, Field(description="seconds between samples", ge=0.2, le=60)] = 1.0,
    ) -> dict[str, Any]:
        """A time series of the guest's /proc/meminfo, QEMU's host RSS and page faults, and KVM counters."""
        return await call(
            manager.monitor_memory, session, seconds, interval, timeout=seconds + 120, what="monitor_memory"
        )

    @server.tool()
    async def check_claims(
        guest: Guest,
        arch: Arch,
        ids: Annotated[
            list[str] | None, Field(description="claim ids or fnmatch patterns (default: all)", max_length=200)
        ] = None,
        boot_rounds: Annotated[int, Field(description="fresh boots for boot metrics", ge=1, le=20)] = 3,
        timeout: Annotated[float, Field(gt=0, le=14400)] = call_timeout,
        ctx: Context | None = None,
    ) -> dict[str, Any]:
        """Measure and decide the claims for a guest and arch: verdicts (confirmed/refuted/inconclusive) with
        the measured figure beside the claimed one, as in the pytest report."""
        op = f"claims-{secrets.token_hex(4)}"
        progress = reporter(ctx) if ctx is not None else None
        return await call(
            manager.check_claims,
            guest,
            arch,
            ids or (),
            boot_rounds,
            op,
            progress,
            timeout=timeout,
            what=f"check_claims {guest} {arch}",
            on_timeout=lambda: manager.abort(op),
        )

    @server.tool()
    async def snapshot(session: SessionId, name: SnapName = "snap") -> dict[str, Any]:
        """Save the whole VM state (RAM, devices, disk) under ``name``."""
        return await call(manager.snapshot, session, name, timeout=300, what="snapshot")

    @server.tool()
    async def restore(session: SessionId, name: SnapName = "snap") -> dict[str, Any]:
        """Return the VM to a saved snapshot."""
        return await call(manager.restore, session, name, timeout=300, what="restore")

    @server.tool()
    async def shutdown(session: SessionId) -> dict[str, Any]:
        """Stop the session's VM. Its serial log stays readable as a resource."""
        return await call(manager.shutdown, session, timeout=60, what="shutdown")

    @server.resource("minix://sessions/{session}/serial-log", mime_type="text/plain")
    def serial_log(session: str) -> str:
        """A session's serial console log (the last MiB), open or shut down."""
        try:
            path = manager.serial_log(session)
        except HarnessError as exc:
            raise ResourceError(str(exc)) from None
        try:
            with open(path, "rb") as f:
                size = f.seek(0, 2)
                f.seek(max(0, size - LOG_TAIL))
                data = f.read()
        except OSError as exc:
            raise ResourceError(f"Cannot read the serial log {path}: {exc.strerror}.") from None
        head = f"[pytest-minix: first {size - len(data)} bytes omitted]\n" if size > len(data) else ""
        return head + data.decode("utf-8", errors="replace")

    @server.resource("minix://claims/last-report", mime_type="application/json")
    def last_report() -> str:
        """The last check_claims report (JSON: verdicts with claimed and measured values)."""
        if manager.last_report is None:
            raise ResourceError("No claims report yet: run the check_claims tool first.")
        return json.dumps(manager.last_report, indent=1)

    return server
