#!/usr/bin/env python3
"""Console throughput under a flood, in-process: how fast ``Console`` takes text while an
``expect()`` waits, for several read sizes.

No QEMU: the reader's work (``Console._feed``, as the reader thread calls it) is driven
directly, with a real waiter thread blocked in ``expect()`` the whole time, so the figure
is the harness's own cost per byte. QEMU's serial device under TCG delivers far less than
this; the point is that the harness never becomes the bottleneck, at any buffer fill.

Usage: ``python benchmarks/console_flood.py [--mbytes 12] [--reads 64,512,4096] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path

from pytest_minix.console import Console


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
    return {"read_bytes": read, "mbytes": total / 1e6, "seconds": round(took, 3),
            "mb_per_s": round(total / took / 1e6, 1), "dropped": dropped[0]}  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mbytes", type=float, default=12.0)
    ap.add_argument("--reads", default="64,512,4096", help="read sizes in bytes, comma-separated")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    rows = [run(int(args.mbytes * 1e6), int(r)) for r in args.reads.split(",")]
    for r in rows:
        print(f"{r['mbytes']:.0f} MB in {r['read_bytes']:>5} B reads: {r['seconds']:6.2f} s, "
              f"{r['mb_per_s']:6.1f} MB/s, {r['dropped']} characters dropped at the cap")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
