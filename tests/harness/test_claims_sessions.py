"""The claims engine in whole pytest sessions: every verdict path, the report files, exit statuses.

Deliberately true, false and undecidable claims about the reference guest run through
the real plugin, a real QEMU boot and the real metrics.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

CLAIMS = """
[[claim]]
id = "t.true"
statement = "The guest reports 200-256 MiB of RAM"
source = "test"
guest = "reference"
arch = "i386"
metric = "mem.total_ram"
unit = "MiB"
min = 200
max = 256
measured_as = "MemTotal"

[[claim]]
id = "t.false"
statement = "The guest reports at most 100 MiB of RAM"
source = "test, deliberately false"
guest = "reference"
arch = "i386"
metric = "mem.total_ram"
unit = "MiB"
max = 100
measured_as = "MemTotal"

[[claim]]
id = "t.undecided"
statement = "At most 150 processes"
source = "test, too few samples"
guest = "reference"
arch = "i386"
metric = "proc.count"
unit = "count"
max = 150
min_samples = 3
measured_as = "entries of /proc"
"""

SUITE = """
import pytest
pytestmark = pytest.mark.claims("mem.", "proc.")

def test_claim(claim_verdict, enforce_verdict):
    enforce_verdict(claim_verdict)
"""

ARGS = (
    "-p",
    "no:cacheprovider",
    "--minix-guest=reference",
    "--arch=i386",
    "--minix-accel=tcg",
    "--minix-claims-select=t.*",
    "-rs",
)


@pytest.fixture
def session(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makefile(".toml", claims=CLAIMS)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


@pytest.mark.qemu
def test_confirmed_refuted_and_inconclusive(session: pytest.Pytester) -> None:
    report = session.path / "out" / "claims.json"
    result = session.runpytest_subprocess(
        *ARGS, "--minix-claims=claims.toml", f"--minix-claims-report={report}", "--junitxml=junit.xml"
    )
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the OS differs from the claim: 1, not the harness's 10
    out = result.stdout.str()
    # The failure shows claimed and measured side by side.
    assert re.search(r"claimed: +<= 100 MiB", out) and re.search(r"measured: +2\d\d MiB", out), out
    assert "inconclusive: n=1 below the claim's minimum of 3 samples" in out
    assert "pytest-minix validation report" in out and "3 claims: 1 confirmed, 1 refuted, 1 inconclusive" in out
    data = json.loads(report.read_text())
    verdicts = {v["id"]: v for v in data["verdicts"]}
    assert {k: v["outcome"] for k, v in verdicts.items()} == {
        "t.true": "confirmed",
        "t.false": "refuted",
        "t.undecided": "inconclusive",
    }
    t = verdicts["t.true"]
    assert t["conditions"]["accel"] == "tcg" and t["conditions"]["qemu_version"].startswith("7.")
    assert len(t["conditions"]["image_sha256"]) == 64 and t["stats"]["n"] == 1 and t["unit"] == "MiB"
    assert data["pytest_minix"]["emulation_factor"] == 30.0
    md = report.with_suffix(".md").read_text()
    assert "| t.false | i386 | <= 100 MiB |" in md and "## Measured as" in md
    # JUnit XML carries the figures as properties, for CI gates.
    props = {(p.get("name"), p.get("value")) for p in ET.parse(session.path / "junit.xml").iter("property")}
    assert ("claim_outcome", "refuted") in props and ("claim", "t.false") in props
    assert any(name == "claim_median" for name, _ in props)


@pytest.mark.qemu
def test_strict_makes_inconclusive_fail(session: pytest.Pytester) -> None:
    strict = (
        "--minix-claims=claims.toml",
        "--minix-claims-strict",
        "--minix-claims-select=t.undecided",
    )  # the last select wins
    result = session.runpytest_subprocess(*ARGS, *strict)
    result.assert_outcomes(failed=1)
    assert "inconclusive under --minix-claims-strict" in result.stdout.str()


def test_harness_errors_have_their_own_exit_status(session: pytest.Pytester) -> None:
    result = session.runpytest_subprocess(*ARGS, "--minix-claims=claims.toml", "--minix-qemu-i386=/nonexistent/qemu")
    result.assert_outcomes(errors=3)
    assert result.ret == 10
    out = result.stdout.str()
    assert "the harness broke in 3 test(s); exit status 10" in out and "apt-get install qemu-system-x86" in out


@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_malformed_claims_fail_at_start_with_file_and_line(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", bad=CLAIMS.replace('unit = "count"', 'unit = "parsecs"'))
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--minix-guest=reference", "--minix-claims=bad.toml"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    line = next(i for i, ln in enumerate(CLAIMS.splitlines(), 1) if 'unit = "count"' in ln) - 1  # makefile strips
    assert "Malformed claims file" in err and f"bad.toml:{line}" in err and "parsecs" in err, err


@pytest.mark.usefixtures("fault_trial", "no_leaks")  # a row of the fault matrix
def test_unknown_metric_fails_at_start(pytester: pytest.Pytester) -> None:
    pytester.makefile(".toml", bad=CLAIMS.replace('metric = "proc.count"', 'metric = "proc.cuont"'))
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--minix-guest=reference", "--minix-claims=bad.toml"
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "proc.cuont" in result.stderr.str() and "proc.count" in result.stderr.str()


def test_missing_claims_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--minix-claims=nope.toml")
    assert result.ret == pytest.ExitCode.USAGE_ERROR and "--minix-claims nope.toml: no such file" in result.stderr.str()


def test_every_whitepaper_claim_is_loaded_with_provenance() -> None:
    from pytest_minix.measure.registry import metric_units
    from pytest_minix.paths import claims_dir
    from pytest_minix.verdicts.claims import load_claims

    claims = load_claims([claims_dir() / "whitepaper.toml"], metric_units())
    ids = {c.id for c in claims}
    shared = Path(__file__).resolve().parents[3] / "shared" / "whitepaper-claims.md"
    if shared.is_file():  # the source list exists beside the project in CI, not in a user's clone
        listed = set(re.findall(r"^\| ([a-z_]+\.[a-z_.0-9]+) \|", shared.read_text(), re.MULTILINE))
        # Every listed id is encoded (kernel_init per arch and kernel_vbase per chapter are split).
        covered = {i.rsplit(".", 1)[0] if i.endswith((".i386", ".arm", ".ch4", ".ch14")) else i for i in ids}
        assert listed <= covered | ids, listed - covered - ids
        assert len(listed) == 24
    assert all(c.source and c.measured_as and c.guest == "minix" for c in claims)


@pytest.mark.qemu
def test_verdicts_from_xdist_workers_reach_the_report(session: pytest.Pytester) -> None:
    report = session.path / "claims.json"
    result = session.runpytest_subprocess(
        *ARGS, "--minix-claims=claims.toml", f"--minix-claims-report={report}", "-n", "2"
    )
    result.assert_outcomes(passed=1, failed=1, skipped=1)
    assert "3 claims: 1 confirmed, 1 refuted, 1 inconclusive" in result.stdout.str()
    assert len(json.loads(report.read_text())["verdicts"]) == 3
