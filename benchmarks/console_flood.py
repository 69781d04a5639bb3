#!/usr/bin/env python3
"""Console throughput under a flood, in-process: how fast ``Console`` takes text while an
``expect()`` waits, for several read sizes.

No QEMU: the reader's work (``Console._feed``, as the reader thread calls it) is driven
directly, with a real waiter thread blocked in ``expect()`` the whole time, so the figure
is the harness's own cost per byte. QEMU's serial device under TCG delivers far less than
this; the point is that the harness never becomes the bottleneck, at any buffer fill.

Usage: ``python benchmarks/console_flood.py [--mbytes 12] [--reads 64,512,4096] [--json PATH]``;
``--smoke`` makes a minimal run (CI checks that the script still works with it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from pytest_minix.qemu.console import Console


def run(total: int, read: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="pm-bench-") as d:
        con = Console(Path(d) / "c.sock", Path(d) / "c.log")  # default caps: 8 MiB pending
        block = (b"pytest-minix-flood\n" * (read // 19 + 1))[:read]
        dropped: list[int] = []
        waiter = threading.Thread(target=lambda: dropped.append(con.expect("END-MARK", 3600).dropped))
        waiter.start()
        start = time.perf_counter()
        for _ in range(total // read):
            con._feed(block, 0.0)
        con._feed(b"END-MARK\n", 0.0)
        waiter.join()
        took = time.perf_counter() - start
    return {
        "read_bytes": read,
        "mbytes": total / 1e6,
        "seconds": round(took, 3),
        "mb_per_s": round(total / took / 1e6, 1),
        "dropped": dropped[0],
    }


# The minimal run CI makes (--smoke; tests/harness/test_benchmark_scripts.py): well under a second.
SMOKE = {"mbytes": 1.0, "reads": "512,4096"}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mbytes", type=float, help="megabytes fed per read size (default 12)")
    ap.add_argument("--reads", help="read sizes in bytes, comma-separated (default 64,512,4096)")
    ap.add_argument(
        "--smoke",
        action="store_true",
        help=f"minimal run, to check that the script works (not a measurement): --mbytes {SMOKE['mbytes']:g}, "
        f"--reads {SMOKE['reads']} unless given",
    )
    ap.add_argument("--json", type=Path, help="write the arguments and one row per read size here")
    args = ap.parse_args(argv)
    if args.mbytes is None:
        args.mbytes = SMOKE["mbytes"] if args.smoke else 12.0
    if args.reads is None:
        args.reads = SMOKE["reads"] if args.smoke else "64,512,4096"
    rows = [run(int(args.mbytes * 1e6), int(r)) for r in args.reads.split(",")]
    for r in rows:
        print(
            f"{r['mbytes']:g} MB in {r['read_bytes']:>5} B reads: {r['seconds']:6.2f} s, "
            f"{r['mb_per_s']:6.1f} MB/s, {r['dropped']} characters dropped at the cap"
        )
    if args.json:
        info = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        }
        doc = {"info": info, "args": {k: str(v) for k, v in vars(args).items()}, "rows": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
