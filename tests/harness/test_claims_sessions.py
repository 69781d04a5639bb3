"""The claims engine in whole pytest sessions: every verdict path, the report files, every exit status.

Deliberately true, false and undecidable claims about the reference guest run through
the real plugin, a real QEMU boot and the real metrics. Exit statuses: 0 decided (or
inconclusive, or reported), 1 refuted (or inconclusive under --minix-claims-strict), 10 the
harness broke, 11 claims not run because their guest is unavailable. Every session that
asks for a report gets one, valid by the schema shipped in the package.
"""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from pytest_minix.verdicts.report import load_schema

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

[[claim]]
id = "t.reported"
statement = "RAM the guest reports"
source = "test, report only"
guest = "reference"
arch = "i386"
metric = "mem.total_ram"
unit = "MiB"
report_only = true
measured_as = "MemTotal"
"""

# Claims about MINIX, for sessions in which its image is not there.
MINIX_CLAIMS = """
[[claim]]
id = "t.minix.ram"
statement = "MINIX reports 200-256 MiB of RAM"
source = "test"
guest = "minix"
arch = "i386"
metric = "mem.total_ram"
unit = "MiB"
min = 200
max = 256
measured_as = "MemTotal"

[[claim]]
id = "t.minix.procs"
statement = "At most 150 processes"
source = "test"
guest = "minix"
arch = "i386"
metric = "proc.count"
unit = "count"
max = 150
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


def valid_report(path: Path) -> dict[str, Any]:
    """The JSON report at ``path``, checked against the shipped schema, and its Markdown twin's existence."""
    data: dict[str, Any] = json.loads(path.read_text())
    jsonschema.Draft202012Validator(load_schema()).validate(data)
    assert path.with_suffix(".md").is_file()
    return data


def outcomes(data: dict[str, Any]) -> dict[str, str]:
    return {v["id"]: v["outcome"] for v in data["verdicts"]}


@pytest.mark.qemu
def test_confirmed_refuted_and_inconclusive(session: pytest.Pytester) -> None:
    report = session.path / "out" / "claims.json"
    result = session.runpytest_subprocess(
        *ARGS, "--minix-claims=claims.toml", f"--minix-claims-report={report}", "--junitxml=junit.xml"
    )
    result.assert_outcomes(passed=2, failed=1, skipped=1)  # confirmed and reported pass
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the OS differs from the claim: 1, not the harness's 10
    out = result.stdout.str()
    # The failure shows claimed and measured side by side.
    assert re.search(r"claimed: +<= 100 MiB", out) and re.search(r"measured: +2\d\d MiB", out), out
    assert "inconclusive: n=1 below the claim's minimum of 3 samples" in out
    summary = "4 claims: 2 decided (1 confirmed, 1 refuted), 1 inconclusive, 1 reported"
    assert "pytest-minix validation report" in out and f"pytest-minix: {summary}" in out
    data = valid_report(report)
    verdicts = {v["id"]: v for v in data["verdicts"]}
    assert outcomes(data) == {
        "t.true": "confirmed",
        "t.false": "refuted",
        "t.undecided": "inconclusive",
        "t.reported": "reported",
    }
    assert [v["id"] for v in data["verdicts"]][:2] == ["t.false", "t.undecided"]  # refuted first
    assert data["summary"] == {
        "total": 4,
        "decided": 2,
        "confirmed": 1,
        "refuted": 1,
        "inconclusive": 1,
        "reported": 1,
        "not_run": 0,
        "harness_error": 0,
    }
    t = verdicts["t.true"]
    assert t["conditions"]["accel"] == "tcg" and t["conditions"]["qemu_version"].startswith("7.")
    assert len(t["conditions"]["image_sha256"]) == 64 and t["stats"]["n"] == 1 and t["unit"] == "MiB"
    meta = data["pytest_minix"]
    assert meta["emulation_factor"] == 30.0 and meta["exit_status"] == 1 and meta["accel_requested"] == "tcg"
    assert meta["guest"] == "reference" and meta["arches"] == ["i386"] and meta["host"] and meta["date"]
    [env] = data["environment"]
    assert env["accel"] == ["tcg"] and env["image_sha256"] == [t["conditions"]["image_sha256"]]
    md = report.with_suffix(".md").read_text()
    assert md.startswith(f"# pytest-minix validation report\n\n**{summary}**")
    assert "| ❌ refuted | The guest reports at most 100 MiB of RAM<br>`t.false` | i386 | <= 100 MiB |" in md
    assert "| accelerator used | tcg (requested: tcg) |" in md
    # The forest plot of the claims beside the report, linked from the Markdown.
    assert (report.parent / "claims.claims.png").is_file() and "![Claims" in md and "(claims.claims.png)" in md
    # JUnit XML carries the figures as properties, for CI gates.
    props = {(p.get("name"), p.get("value")) for p in ET.parse(session.path / "junit.xml").iter("property")}
    assert ("claim_outcome", "refuted") in props and ("claim", "t.false") in props
    assert ("claim_outcome", "reported") in props
    assert any(name == "claim_median" for name, _ in props)


@pytest.mark.qemu
def test_strict_makes_inconclusive_fail(session: pytest.Pytester) -> None:
    report = session.path / "strict.json"
    strict = (
        "--minix-claims=claims.toml",
        "--minix-claims-strict",
        "--minix-claims-select=t.undecided,t.reported",
        f"--minix-claims-report={report}",
    )  # the last select wins
    result = session.runpytest_subprocess(*ARGS, *strict)
    result.assert_outcomes(passed=1, failed=1)  # the report-only claim is no reason to fail
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "inconclusive under --minix-claims-strict" in result.stdout.str()
    data = valid_report(report)
    assert outcomes(data) == {"t.undecided": "inconclusive", "t.reported": "reported"}
    assert data["pytest_minix"]["strict"] is True and data["pytest_minix"]["exit_status"] == 1


@pytest.mark.qemu
def test_decided_claims_exit_0_and_ini_twins_set_up_a_strict_run(session: pytest.Pytester) -> None:
    """What a CI team writes once in its ini file: claims, selection, strictness, report path."""
    session.makeini(
        """
        [pytest]
        minix_claims = claims.toml
        minix_claims_select = t.true,t.reported
        minix_claims_strict = true
        minix_claims_report = reports/validation.json
        minix_boot_rounds = 2
        minix_emulation_factor = 20
        """
    )
    result = session.runpytest_subprocess(*ARGS[:-2])  # no --minix-claims-select on the command line
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK  # strict, and green: report-only claims are not inconclusive
    out = result.stdout.str()
    assert "pytest-minix: 2 claims: 1 decided (1 confirmed, 0 refuted), 1 reported" in out
    data = valid_report(session.path / "reports" / "validation.json")  # relative to the ini file
    assert outcomes(data) == {"t.true": "confirmed", "t.reported": "reported"}
    meta = data["pytest_minix"]
    assert (meta["strict"], meta["boot_rounds"], meta["emulation_factor"], meta["exit_status"]) == (True, 2, 20.0, 0)


def test_harness_errors_have_their_own_exit_status(session: pytest.Pytester) -> None:
    report = session.path / "broken.json"
    result = session.runpytest_subprocess(
        *ARGS, "--minix-claims=claims.toml", "--minix-qemu-i386=/nonexistent/qemu", f"--minix-claims-report={report}"
    )
    result.assert_outcomes(errors=4)
    assert result.ret == 10
    out = result.stdout.str()
    assert "the harness broke in 4 test(s); exit status 10" in out and "apt-get install qemu-system-x86" in out
    assert "pytest-minix: 4 claims: 0 decided, 4 harness error" in out
    data = valid_report(report)
    assert set(outcomes(data).values()) == {"harness_error"}
    assert all("QemuNotFound" in v["reason"] for v in data["verdicts"]), data["verdicts"][0]["reason"]
    assert data["pytest_minix"]["exit_status"] == 10


def test_claims_a_stopped_session_never_reached_are_in_the_report(session: pytest.Pytester) -> None:
    report = session.path / "stopped.json"
    result = session.runpytest_subprocess(
        *ARGS,
        "--minix-claims=claims.toml",
        "--minix-qemu-i386=/nonexistent/qemu",
        f"--minix-claims-report={report}",
        "-x",
    )
    assert result.ret == 10
    data = valid_report(report)
    got = sorted((v["outcome"], v["cause"]) for v in data["verdicts"])
    assert got == [("harness_error", None), *[("not_run", "not_reached")] * 3]
    assert "3 not run (session stopped first)" in result.stdout.str()


@pytest.fixture
def no_minix_image(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.Pytester:
    """A session about MINIX claims with an empty cache and downloads off: the guest is unavailable."""
    cache = tmp_path / "empty-cache"
    cache.mkdir()
    monkeypatch.setenv("PYTEST_MINIX_CACHE", str(cache))
    monkeypatch.delenv("PYTEST_MINIX_OFFLINE", raising=False)
    pytester.makefile(".toml", claims=MINIX_CLAIMS)
    pytester.makepyfile(test_suite=SUITE)
    return pytester


NO_IMAGE_ARGS = (
    "-p",
    "no:cacheprovider",
    "--minix-guest=minix",
    "--arch=i386",
    "--minix-offline",
    "--minix-claims=claims.toml",
    "--minix-claims-select=t.minix.*",
)


def test_claims_not_run_for_lack_of_an_image_have_their_own_exit_status(no_minix_image: pytest.Pytester) -> None:
    report = no_minix_image.path / "out" / "validation.json"
    result = no_minix_image.runpytest_subprocess(*NO_IMAGE_ARGS, f"--minix-claims-report={report}")
    result.assert_outcomes(skipped=2)
    assert result.ret == 11  # not 0: nothing was checked
    out = result.stdout.str()
    assert "pytest-minix: 2 claims: 0 decided, 2 not run (guest unavailable)" in out
    assert "pass --minix-allow-not-run (ini minix_allow_not_run) to accept that (exit status 11)" in out
    data = valid_report(report)
    assert data["summary"]["not_run"] == 2 and data["summary"]["decided"] == 0
    for v in data["verdicts"]:
        assert v["outcome"] == "not_run" and v["cause"] == "guest_unavailable"
        assert "--minix-offline" in v["reason"] and "pytest-minix fetch" in v["reason"]
    assert data["pytest_minix"]["exit_status"] == 11 and data["environment"] == []
    md = report.with_suffix(".md").read_text()
    assert "**2 claims: 0 decided, 2 not run (guest unavailable)**" in md
    assert "> **2 claims not run (guest unavailable):** The MINIX" in md and "![" not in md


@pytest.mark.parametrize("how", ["option", "ini"])
def test_not_run_can_be_accepted_for_local_runs(no_minix_image: pytest.Pytester, how: str) -> None:
    if how == "ini":
        no_minix_image.makeini("[pytest]\nminix_allow_not_run = true\n")
    extra = ("--minix-allow-not-run",) if how == "option" else ()
    result = no_minix_image.runpytest_subprocess(*NO_IMAGE_ARGS, *extra)
    result.assert_outcomes(skipped=2)
    assert result.ret == pytest.ExitCode.OK
    assert "2 claims not run: guest unavailable; --minix-allow-not-run keeps the exit status 0" in result.stdout.str()


@pytest.mark.parametrize(
    ("ini", "message"),
    [
        ("minix_boot_rounds = abc", "ini minix_boot_rounds must be a whole number (at least 1)"),
        ("minix_boot_rounds = 0", "ini minix_boot_rounds must be at least 1, got 0"),
        ("minix_boot_rounds = 2.5", "ini minix_boot_rounds must be a whole number (at least 1)"),
        ("minix_emulation_factor = 0.5", "ini minix_emulation_factor must be at least 1, got 0.5"),
        ("minix_emulation_factor = fast", "ini minix_emulation_factor must be a number (at least 1)"),
    ],
)
def test_numeric_ini_settings_are_checked_at_start(pytester: pytest.Pytester, ini: str, message: str) -> None:
    pytester.makeini(f"[pytest]\n{ini}\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--minix-guest=reference")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert message in result.stderr.str(), result.stderr.str()


def test_numeric_options_win_over_their_ini_twins(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nminix_boot_rounds = abc\n")
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest_subprocess(
        "-p", "no:cacheprovider", "--minix-guest=reference", "--minix-boot-rounds=2", "--collect-only", "-q"
    )
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    bad = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--minix-guest=reference", "--minix-boot-rounds=0")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR and "--minix-boot-rounds must be at least 1" in bad.stderr.str()


def test_help_documents_the_exit_statuses(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--help")
    out = " ".join(result.stdout.str().split())
    for text in (
        "--minix-allow-not-run",
        "[ini: minix_claims_strict]",
        "[ini: minix_claims_report]",
        "[ini: minix_claims_select]",
        "10 the harness broke",
        "11 claims were not run because their guest was unavailable",
        "minix_allow_not_run (bool)",
    ):
        assert text in out, text


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
    result.assert_outcomes(passed=2, failed=1, skipped=1)
    assert "4 claims: 2 decided (1 confirmed, 1 refuted), 1 inconclusive, 1 reported" in result.stdout.str()
    assert len(valid_report(report)["verdicts"]) == 4
