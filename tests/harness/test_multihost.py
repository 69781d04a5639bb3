"""Beyond one machine with the existing engines: shards (one per arch or host) merged into one report,
and pytest-xdist's execnet transports (shown with the local `popen` gateway; `ssh=` works the same way)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

CLAIMS = """
[[claim]]
id = "t.ram"
statement = "The guest reports 200-256 MiB of RAM"
source = "test"
guest = "reference"
arch = ["i386", "arm"]
metric = "mem.total_ram"
unit = "MiB"
min = 200
max = 256
measured_as = "MemTotal"

[[claim]]
id = "t.ram.false"
statement = "At most 100 MiB"
source = "test, deliberately false"
guest = "reference"
arch = ["i386", "arm"]
metric = "mem.total_ram"
unit = "MiB"
max = 100
measured_as = "MemTotal"
"""

SUITE = """
import pytest
pytestmark = pytest.mark.claims("mem.")

def test_claim(claim_verdict, enforce_verdict):
    enforce_verdict(claim_verdict)
"""

ARGS = (
    "-p",
    "no:cacheprovider",
    "--minix-guest=reference",
    "--minix-accel=tcg",
    "--minix-claims=claims.toml",
    "--minix-claims-select=t.*",
)


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", claims=CLAIMS)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


@pytest.mark.qemu
def test_shards_per_arch_merge_into_one_report(project: pytest.Pytester) -> None:
    """What a CI matrix does: one job per arch (or host), each writing its report; a last job merges them."""
    for arch in ("i386", "arm"):
        r = project.runpytest_subprocess(*ARGS, f"--arch={arch}", f"--minix-claims-report=shard-{arch}.json")
        r.assert_outcomes(passed=1, failed=1)
    out = project.path / "merged.json"
    cmd = [
        sys.executable,
        "-m",
        "pytest_minix.cli",
        "merge-reports",
        "shard-i386.json",
        "shard-arm.json",
        "-o",
        str(out),
        "--fail-on-refuted",
    ]
    res = subprocess.run(cmd, cwd=project.path, capture_output=True, text=True, check=False)
    assert res.returncode == 1, res.stderr  # a refuted claim in any shard fails the merged gate
    data = json.loads(out.read_text())
    assert sorted((v["id"], v["arch"], v["outcome"]) for v in data["verdicts"]) == [
        ("t.ram", "arm", "confirmed"),
        ("t.ram", "i386", "confirmed"),
        ("t.ram.false", "arm", "refuted"),
        ("t.ram.false", "i386", "refuted"),
    ]
    assert [m["source"] for m in data["pytest_minix"]["merged_from"]] == ["shard-i386.json", "shard-arm.json"]
    assert data["summary"] == {
        "total": 4,
        "decided": 4,
        "confirmed": 2,
        "refuted": 2,
        "inconclusive": 0,
        "reported": 0,
        "not_run": 0,
        "harness_error": 0,
    }
    assert "4 claims: 4 decided (2 confirmed, 2 refuted)" in res.stdout
    assert out.with_suffix(".md").read_text().count("<br>`t.ram") == 4  # one row per claim and arch


def test_merge_rejects_something_that_is_not_a_report(project: pytest.Pytester) -> None:
    (project.path / "junk.json").write_text('{"hello": 1}')
    res = subprocess.run(
        [sys.executable, "-m", "pytest_minix.cli", "merge-reports", "junk.json", "-o", "m.json"],
        cwd=project.path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 2 and "not a pytest-minix claims report" in res.stderr


@pytest.mark.qemu
def test_execnet_gateways_distribute_the_suite(project: pytest.Pytester) -> None:
    """`-d --tx ...`: each gateway is a worker with its own VMs; verdicts come back to one report.

    Here two local `popen` gateways; across hosts the same with `--tx ssh=user@host//python=...`
    (pytest-minix and QEMU installed there, the project checked out at the same path)."""
    py = sys.executable
    r = project.runpytest_subprocess(
        *ARGS,
        "--arch=all",
        "-d",
        "--tx",
        f"popen//python={py}",
        "--tx",
        f"popen//python={py}",
        "--minix-claims-report=dist.json",
    )
    r.assert_outcomes(passed=2, failed=2)
    data = json.loads((project.path / "dist.json").read_text())
    assert len(data["verdicts"]) == 4
    assert "created: 2/2 workers" in r.stdout.str()
