"""``pytest-minix mcp``: the harness as Model Context Protocol tools, over stdio.

A thin layer over :mod:`pytest_minix.mcp.sessions` (which calls the same pool, shell, metrics
and claims engine as the pytest plugin) built with the official ``mcp`` SDK. Each tool
runs its blocking harness call in a worker thread under a deadline; harness errors reach
the client as tool errors with the harness's own one-paragraph message. When the client
disconnects (stdin closes) or the server gets SIGINT, SIGTERM or SIGHUP, every VM is shut
down and the state directories removed; QEMU also dies with the server process if it is
killed outright (PR_SET_PDEATHSIG), and the next pytest-minix run sweeps what is left.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from pathlib import Path
from types import FrameType
from typing import Any

from pytest_minix.errors import HarnessError
from pytest_minix.mcp.sessions import Limits, SessionManager
from pytest_minix.media.minix import add_source_options


def _missing_sdk() -> str:
    return (
        "pytest-minix mcp needs the Model Context Protocol SDK (the `mcp` package, version 2), which is "
        "not installed. Install it with `pip install 'pytest-minix[mcp]'` (or `pip install 'mcp>=2'`)."
    )


_SIGNUMS = {s.name: int(s) for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)}


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


def serve(args: argparse.Namespace) -> int:
    """Run the server on stdio until the client disconnects or a signal arrives; then stop every VM."""
    try:
        import mcp  # noqa: F401
    except ImportError:
        print(f"pytest-minix: {_missing_sdk()}", file=sys.stderr)
        return 2
    from pytest_minix.media.minix import source_from_args

    log_dir = Path(args.log_dir) if args.log_dir else Path(tempfile.mkdtemp(prefix="pytest-minix-mcp-"))
    src = source_from_args(args)
    try:
        manager = SessionManager(
            log_dir,
            accel=args.accel,
            limits=Limits(max_vms=args.max_vms),
            minix=src,
            claim_files=[Path(p).resolve() for p in args.claims],
            emulation_factor=args.emulation_factor,
            warm_start=not args.cold_boot,
        )
    except HarnessError as exc:
        print(f"pytest-minix mcp: {exc}", file=sys.stderr)
        return 2
    from pytest_minix.mcp.tools import build_server

    server = build_server(manager, call_timeout=args.call_timeout)
    # SIGINT too: a client may start the server with SIGINT ignored (as shells do for background jobs).
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(sig, _raise_interrupt)
    print(
        f"pytest-minix mcp: serving on stdio; at most {args.max_vms} VMs; serial logs in {log_dir}",
        file=sys.stderr,
        flush=True,
    )
    signalled = 0
    try:
        server.run("stdio")
    except KeyboardInterrupt as exc:
        signalled = _SIGNUMS.get(str(exc), int(signal.SIGINT))
    finally:
        manager.close()
        print("pytest-minix mcp: stopped; every VM shut down", file=sys.stderr, flush=True)
    if signalled:
        # The SDK's stdin reader is a thread blocked in read(); the client still holds the pipe
        # open, so a normal exit would wait for it forever. Everything is shut down: leave now.
        sys.stdout.flush()
        os._exit(128 + signalled)
    return 0


def add_parser(sub: Any) -> None:
    """The ``mcp`` subcommand of the CLI."""
    p = sub.add_parser("mcp", help="serve the harness as MCP tools on stdio (for AI assistants)")
    p.add_argument("--max-vms", type=_positive, default=2, help="VMs running at once, over all sessions (default 2)")
    p.add_argument(
        "--minix-accel", dest="accel", choices=["auto", "kvm", "tcg"], default="auto", help="accelerator (default auto)"
    )
    p.add_argument("--minix-log-dir", dest="log_dir", help="serial and QEMU logs (default: a new temporary directory)")
    p.add_argument(
        "--minix-claims",
        dest="claims",
        action="append",
        default=[],
        metavar="TOML",
        help="claims file to add to the shipped ones (repeatable)",
    )
    p.add_argument(
        "--minix-emulation-factor",
        dest="emulation_factor",
        type=_at_least_one,
        default=30.0,
        help="TCG slowdown allowed when deciding timing claims (default 30)",
    )
    p.add_argument(
        "--call-timeout",
        type=_seconds,
        default=1800.0,
        help="default deadline of profile_boot and check_claims, seconds (default 1800)",
    )
    p.add_argument(
        "--minix-cold-boot",
        dest="cold_boot",
        action="store_true",
        help="boot every VM: do not start from, nor save in, the boot cache",
    )
    add_source_options(p)
    p.set_defaults(func=serve)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value <= 14400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 14400 seconds")
    return value


def _at_least_one(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("is a slowdown factor and must be at least 1")
    return value
