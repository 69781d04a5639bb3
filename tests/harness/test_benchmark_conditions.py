"""Boot benchmarks compare only like with like; machine info records the conditions; benchmark runs boot 5 times.

Child pytest sessions record hand-made measurements (no QEMU) through the ``minix_benchmark``
fixture under conditions set by environment variables, save them, and compare them under
other conditions. The same sessions check that the replayed clock records the samples
exactly (read back from the saved JSON), and they fail if pytest-benchmark changes the one
non-public interface the plugin uses (``BenchmarkSession.compared_mapping``).
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import pytest

from pytest_minix.measure.measurement import Conditions
from pytest_minix.plugin.benchmark import BENCHMARK_BOOT_ROUNDS, COMPARED, comparable, differences

SUITE = """
import os
import pytest
from pytest_minix.measure.measurement import Conditions, Measurement


def measurement(metric):
    cond = Conditions(
        guest="reference",
        arch="i386",
        accel=os.environ["FAKE_ACCEL"],
        cpu="pc default",
        qemu_version=os.environ.get("FAKE_QEMU", "7.2.22"),
        image_sha256="ab" * 32,
        harness_version="0.1.0",
    )
    samples = [float(s) for s in os.environ["FAKE_SAMPLES"].split(",")]
    return Measurement(metric, "s", samples, cond, timing=True)


@pytest.mark.parametrize(
    "metric_id", [pytest.param("boot.to_login", marks=pytest.mark.benchmark(group="boot.to_login"))]
)
def test_marked(minix_benchmark, metric_id):
    minix_benchmark(measurement(metric_id))


def test_unmarked(minix_benchmark):
    minix_benchmark(measurement("boot.to_shell"))
"""

ARGS = ("-p", "no:cacheprovider", "--minix-guest=reference", "--arch=i386", "--minix-accel=tcg", "-rs")
SAMPLES = [4.1, 4.4, 4.2, 4.9, 4.3]


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def run(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    accel: str,
    samples: list[float],
    *args: str,
    qemu: str = "7.2.22",
) -> pytest.RunResult:
    # Run under xdist, the child would see the worker's variables and pytest-benchmark would turn itself off.
    for var in ("PYTEST_XDIST_WORKER", "PYTEST_XDIST_WORKER_COUNT", "PYTEST_XDIST_TESTRUNUID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FAKE_ACCEL", accel)
    monkeypatch.setenv("FAKE_QEMU", qemu)
    monkeypatch.setenv("FAKE_SAMPLES", ",".join(map(str, samples)))
    storage = pytester.path / "bench"
    return pytester.runpytest_subprocess(*ARGS, f"--benchmark-storage=file://{storage}", *args)


def saved_runs(pytester: pytest.Pytester) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((pytester.path / "bench").glob("*/*.json"))]


def test_saved_benchmarks_carry_their_conditions_and_exact_samples(
    suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = run(suite, monkeypatch, "kvm", SAMPLES, "--benchmark-autosave", "--benchmark-save-data")
    result.assert_outcomes(passed=2)
    [saved] = saved_runs(suite)
    info = saved["machine_info"]["pytest_minix"]
    assert info["conditions"] == {
        "i386": {
            "guest": "reference",
            "accel": "kvm",
            "qemu_version": "7.2.22",
            "cpu": "pc default",
            "image_sha256": "ab" * 32,
        }
    }
    assert info["host_cpu"] and info["harness_version"] and info["accel_requested"] == "tcg"
    benches = {b["name"]: b for b in saved["benchmarks"]}
    # One group per metric: from the marker, or the metric id when the test gives none.
    assert benches["test_marked[boot.to_login]"]["group"] == "boot.to_login"
    assert benches["test_unmarked"]["group"] == "boot.to_shell"
    for b in benches.values():
        # The replayed clock makes each round last exactly one sample.
        assert b["stats"]["data"] == pytest.approx(SAMPLES)
        assert b["stats"]["rounds"] == len(SAMPLES) and b["stats"]["min"] == pytest.approx(min(SAMPLES))
        assert b["options"]["timer"] == "replay_timer"
        assert b["extra_info"]["conditions"]["accel"] == "kvm" and b["extra_info"]["samples"] == SAMPLES


def test_compare_across_conditions_is_refused_loudly(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    run(suite, monkeypatch, "kvm", SAMPLES, "--benchmark-autosave").assert_outcomes(passed=2)
    # KVM fell back to TCG (and QEMU changed): boots 20x slower. Not a regression: not comparable.
    slow = [20 * s for s in SAMPLES]
    result = run(
        suite, monkeypatch, "tcg", slow, "--benchmark-compare", "--benchmark-compare-fail=median:10%", qemu="8.2.2"
    )
    out = result.stdout.str()
    assert result.ret == 0, out
    assert "benchmark comparison REFUSED: saved results taken under other conditions" in out
    for name in ("test_marked[boot.to_login]", "test_unmarked"):
        assert any(
            line.startswith(f"not compared: test_suite.py::{name} vs ")
            and "accel: kvm -> tcg" in line
            and "qemu_version: 7.2.22 -> 8.2.2" in line
            for line in out.splitlines()
        ), out
    assert "BenchmarkConditionsWarning: not compared, the conditions differ" in out
    assert "Performance has regressed" not in out
    assert "(0001" not in out  # no row of the saved run in the table: only this run's (NOW)


def test_compare_under_the_same_conditions_still_gates(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    run(suite, monkeypatch, "kvm", SAMPLES, "--benchmark-autosave").assert_outcomes(passed=2)
    slow = [2 * s for s in SAMPLES]
    result = run(suite, monkeypatch, "kvm", slow, "--benchmark-compare", "--benchmark-compare-fail=median:10%")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret != 0 and "Performance has regressed" in out, out
    assert "REFUSED" not in out and "(0001" in out


def test_a_benchmark_without_the_replayed_clock_fails(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_plain="""
        from pytest_minix.plugin.benchmark import replay

        def test_plain(benchmark):
            replay(benchmark, [1.0, 2.0])
        """
    )
    result = pytester.runpytest_subprocess(*ARGS)
    result.assert_outcomes(failed=1)
    assert "does not use pytest_minix's replayed clock" in result.stdout.str()


def test_disabled_benchmarks_skip_before_measuring(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_off="""
        import pytest

        @pytest.fixture
        def boots():
            raise AssertionError("measured although pytest-benchmark is off")

        def test_phase(minix_benchmark, boots):
            pass
        """
    )
    result = pytester.runpytest_subprocess(*ARGS, "--benchmark-disable")
    result.assert_outcomes(skipped=1)
    assert "pytest-benchmark is disabled" in result.stdout.str()


ROUNDS_SUITE = """
def test_rounds(pytestconfig):
    print("BOOT-ROUNDS", pytestconfig.getoption("minix_boot_rounds"))
"""


@pytest.mark.parametrize(
    ("args", "ini", "rounds"),
    [
        ((), None, None),  # a plain run: the claims plugin's default (3)
        (("--benchmark-autosave",), None, BENCHMARK_BOOT_ROUNDS),
        (("--benchmark-compare",), None, BENCHMARK_BOOT_ROUNDS),
        (("--benchmark-json=out.json",), None, BENCHMARK_BOOT_ROUNDS),
        (("--benchmark-autosave", "--minix-boot-rounds=2"), None, 2),  # the user's choice wins
        (("--benchmark-autosave",), "4", None),  # ... also in the ini (read from there by the claims plugin)
        (("--benchmark-autosave", "--benchmark-disable"), None, None),
    ],
    ids=["plain", "autosave", "compare", "json", "explicit", "ini", "disabled"],
)
def test_benchmark_runs_boot_at_least_five_times(
    pytester: pytest.Pytester, args: tuple[str, ...], ini: str | None, rounds: int | None
) -> None:
    pytester.makepyfile(test_rounds=ROUNDS_SUITE)
    if ini:
        pytester.makeini(f"[pytest]\nminix_boot_rounds = {ini}\n")
    result = pytester.runpytest_subprocess(*ARGS, "-s", f"--benchmark-storage=file://{pytester.path / 'b'}", *args)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines([f"*BOOT-ROUNDS {rounds}*"])


# -- pure ------------------------------------------------------------------------------------------
def test_differences_name_what_changed_and_ignore_the_unknown() -> None:
    cond = Conditions(guest="minix", arch="i386", accel="kvm", cpu="pc default", qemu_version="7.2.22")
    now = comparable(cond, "AMD EPYC")
    assert set(now) == set(COMPARED) and now["host_cpu"] == "AMD EPYC"
    saved = comparable({**cond.as_dict(), "accel": "tcg", "image_sha256": "ff" * 32}, "Intel Xeon")
    # image_sha256 is unknown now (""), so it cannot be told apart; the harness version is not compared.
    assert differences(now, saved) == {"accel": ("tcg", "kvm"), "host_cpu": ("Intel Xeon", "AMD EPYC")}
    assert differences(now, comparable({**cond.as_dict(), "harness_version": "9"}, "AMD EPYC")) == {}


def test_pytest_benchmark_interfaces_we_rely_on() -> None:
    """Fails if pytest-benchmark renames the hooks we implement or the one attribute we touch."""
    from pytest_benchmark import hookspec
    from pytest_benchmark.session import BenchmarkSession

    assert "compared_mapping" in vars(BenchmarkSession)  # _drop_from_comparison
    params = inspect.signature(hookspec.pytest_benchmark_compare_machine_info).parameters
    assert list(params) == ["config", "benchmarksession", "machine_info", "compared_benchmark"]
    assert list(inspect.signature(hookspec.pytest_benchmark_update_machine_info).parameters) == [
        "config",
        "machine_info",
    ]
    assert Path(hookspec.__file__).is_file()
