#!/usr/bin/env python3
"""Drive ``pytest-minix mcp`` from a script with the official MCP SDK client, as an assistant would.

Boots a guest, runs a command, samples memory, checks two claims, reads the serial log
and shuts down. Usage (from a checkout, in the project's venv):

    python examples/mcp_client.py --minix-guest reference --arch i386
    python examples/mcp_client.py --minix-guest minix --arch i386   # needs a MINIX image (fetched on first use)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from mcp import Client
from mcp.client.stdio import StdioServerParameters

# Claims that take a few seconds each (check_claims with no ids decides them all: minutes).
CHEAP_CLAIMS = {"reference": ["ref.mem.total_ram", "ref.proc.count"], "minix": ["boot.processes", "mem.kernel_text"]}


def show(title: str, result: object) -> None:
    print(f"== {title}")
    print(json.dumps(result, indent=1)[:1500])


async def main(guest: str, arch: str) -> str | None:
    """Returns None, or the reason the guest could not be booted."""
    # The SDK passes only a minimal environment to the server; hand it ours (cache location etc.).
    server = StdioServerParameters(command=sys.executable, args=["-m", "pytest_minix.cli", "mcp"], env=dict(os.environ))
    async with Client(server) as c:
        booted = await c.call_tool("boot", {"guest": guest, "arch": arch})
        if booted.is_error:
            return str(booted.content[0].text)  # e.g. no QEMU, or no MINIX image: the reason says what to do
        info = booted.structured_content or {}
        sid = info["session"]
        show("boot", {k: info[k] for k in ("session", "accel", "boot_seconds", "qemu_pid", "serial_log")})
        try:
            run = await c.call_tool("run", {"session": sid, "command": "uname -a; cat /proc/meminfo | head -3"})
            show("run", run.structured_content)
            mem = await c.call_tool("monitor_memory", {"session": sid, "seconds": 2, "interval": 1})
            show("monitor_memory (first sample)", (mem.structured_content or {}).get("samples", [None])[0])
            trace = await c.call_tool("trace_syscalls", {"session": sid, "command": "ls /"})
            show("trace_syscalls", trace.structured_content)
            log = await c.read_resource(f"minix://sessions/{sid}/serial-log")
            print("== serial log, last lines\n" + "\n".join(log.contents[0].text.splitlines()[-5:]))  # type: ignore[union-attr]
        finally:
            await c.call_tool("shutdown", {"session": sid})
        ids = CHEAP_CLAIMS.get(guest, ["*"])
        claims = await c.call_tool("check_claims", {"guest": guest, "arch": arch, "ids": ids})
        print("== check_claims\n" + ((claims.structured_content or {}).get("table") or claims.content[0].text))
    return None


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minix-guest", dest="guest", default="reference", help="guest profile to boot")
    ap.add_argument("--arch", default="i386", help="guest arch")
    args = ap.parse_args()
    sys.exit(asyncio.run(main(args.guest, args.arch)))
