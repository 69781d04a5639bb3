"""pytest-benchmark integration: guest-measured durations as benchmarks, compared only like with like.

A boot phase is timed by the guest's console, not by pytest-benchmark's clock. The
``minix_benchmark`` fixture records a :class:`Measurement` as one benchmark, grouped by
metric when the test's ``benchmark`` marker gives no group: the test is given
pytest-benchmark's documented ``benchmark`` marker with ``timer=replay_timer`` (at
collection, merged into the marker it already has), and :func:`replay` runs
``benchmark.pedantic`` with one round per sample, each round advancing that clock by the
sample. pytest-benchmark's statistics, ``--benchmark-autosave``, ``--benchmark-compare``
and ``--benchmark-compare-fail`` then work on the real boot figures. Only public
interfaces of pytest-benchmark are used, except one, named at :func:`_drop_from_comparison`.

Boot times compare only under the same conditions: the accelerator actually used (a KVM
to TCG fallback makes boots 10-30 times slower), QEMU's version, the host CPU and the
guest's ``-cpu`` model, the guest image's SHA-256. Each benchmark carries its conditions
in ``extra_info``; the run's machine info carries them per arch. ``--benchmark-compare``
against a saved benchmark taken under other conditions is refused for that benchmark: it
is taken out of the comparison (so ``--benchmark-compare-fail`` does not gate on it), a
``BenchmarkConditionsWarning`` names the differences, and a red section at the end of the
run repeats them.

Runs that keep or compare benchmarks (``--benchmark-autosave``, ``--benchmark-save``,
``--benchmark-json``, ``--benchmark-compare``, ``--benchmark-only``, ``--benchmark-enable``)
boot at least :data:`BENCHMARK_BOOT_ROUNDS` times per arch unless ``--minix-boot-rounds``
(or the ini ``minix_boot_rounds``) says otherwise.
"""

from __future__ import annotations

import os
import platform
import shutil
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_minix.measure.measurement import Conditions, Measurement
from pytest_minix.plugin.pools import vm_starts
from pytest_minix.qemu.binary import qemu_version
from pytest_minix.version import harness_version

BENCHMARK_BOOT_ROUNDS = 5

# What must be equal for two boot benchmarks to be compared: the fields of Conditions (not the
# harness version: a harness change is what a comparison is for) and the host's CPU model.
COMPARED = ("guest", "arch", "accel", "qemu_version", "cpu", "image_sha256", "host_cpu")

DISABLED = (
    "pytest-benchmark is disabled (under pytest-xdist, or --benchmark-disable): run the timing "
    "tests in their own session without -n, e.g. `pytest tests/boot -p no:xdist`"
)


class BenchmarkConditionsWarning(pytest.PytestWarning):
    """A saved benchmark was taken under other conditions (accelerator, QEMU, CPU, image): not compared."""


# -- the replayed clock ------------------------------------------------------------------------
class _ReplayClock:
    """The time pytest-benchmark reads in a replayed benchmark: the sum of the samples replayed so far."""

    def __init__(self) -> None:
        self.now = 0.0
        self.reads = 0


_CLOCK = _ReplayClock()


def replay_timer() -> float:
    """pytest-benchmark's timer for replayed samples: ``pytest.mark.benchmark(timer=replay_timer)``.

    The ``minix_benchmark`` fixture puts it on its test by itself.
    """
    _CLOCK.reads += 1
    return _CLOCK.now


def replay(benchmark: Any, samples: Sequence[float], extra: dict[str, Any] | None = None) -> None:
    """Record ``samples`` (seconds) as the benchmark's rounds; the test must use :func:`replay_timer`.

    pytest-benchmark turns itself off under xdist (and with --benchmark-disable): then the
    test skips, saying how to run the timing tests. A benchmark that does not read
    :func:`replay_timer` fails before recording anything.
    """
    if benchmark.disabled:
        pytest.skip(DISABLED)
    if not samples:
        pytest.skip("no samples to record")
    pending = list(samples)
    reads = _CLOCK.reads

    def one_round() -> None:
        if _CLOCK.reads == reads:
            raise RuntimeError(
                "this benchmark does not use pytest_minix's replayed clock, so it would record how long "
                "replaying took, not the samples: use the minix_benchmark fixture, or mark the test "
                "@pytest.mark.benchmark(timer=pytest_minix.plugin.benchmark.replay_timer)"
            )
        if pending:  # not after the rounds (--benchmark-cprofile runs the target once more)
            _CLOCK.now += pending.pop(0)

    benchmark.extra_info.update(extra or {})
    benchmark.pedantic(one_round, rounds=len(samples), iterations=1, warmup_rounds=0)


def measurement_info(m: Measurement) -> dict[str, Any]:
    """What a benchmark's ``extra_info`` carries: raw samples, their unit, conditions and phases."""
    return {
        "metric": m.metric,
        "unit": m.unit,
        "samples": list(m.samples),
        "conditions": m.conditions.as_dict(),
        "note": m.note,
        "phases": m.extra.get("phases"),
        "milestones": m.extra.get("milestones"),
    }


def _host_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def comparable(conditions: Conditions | dict[str, Any], host_cpu: str) -> dict[str, str]:
    """The conditions two benchmarks must share to be compared (:data:`COMPARED`)."""
    d = conditions.as_dict() if isinstance(conditions, Conditions) else conditions
    values = {**d, "host_cpu": host_cpu}
    return {k: str(values.get(k) or "") for k in COMPARED}


def differences(now: dict[str, str], saved: dict[str, str]) -> dict[str, tuple[str, str]]:
    """``{key: (saved, now)}`` for every condition known on both sides that differs."""
    return {k: (saved[k], now[k]) for k in COMPARED if saved.get(k) and now.get(k) and saved[k] != now[k]}


# -- session state -----------------------------------------------------------------------------
@dataclass
class Refusal:
    """One benchmark not compared with one saved run, and why."""

    nodeid: str
    saved: str  # the saved run: its file(s), or its date
    diff: dict[str, tuple[str, str]]
    dropped: bool  # taken out of pytest-benchmark's comparison

    def line(self) -> str:
        what = "; ".join(f"{k}: {old or '?'} -> {new or '?'}" for k, (old, new) in self.diff.items())
        return f"{self.nodeid} vs {self.saved}: {what}"


@dataclass
class _State:
    recorded: dict[str, dict[str, str]] = field(default_factory=dict)  # nodeid -> comparable conditions
    compared: list[dict[str, Any]] = field(default_factory=list)  # saved runs (--benchmark-compare)
    benchmark_session: Any = None  # pytest-benchmark's session, as its compare hook hands it to us
    refusals: list[Refusal] = field(default_factory=list)


_STATE = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    if _STATE not in config.stash:
        config.stash[_STATE] = _State()
    return config.stash[_STATE]


def benchmark_run(config: pytest.Config) -> bool:
    """Does this session keep or compare benchmark results (and are benchmarks on)?"""
    opt = config.getoption
    if opt("benchmark_skip", False) or (opt("benchmark_disable", False) and not opt("benchmark_enable", False)):
        return False
    if os.environ.get("PYTEST_XDIST_WORKER") or opt("dist", "no") != "no":
        return False  # pytest-benchmark turns itself off under xdist
    keeps = ("benchmark_autosave", "benchmark_save", "benchmark_json", "benchmark_compare", "benchmark_only")
    return any(opt(name, None) for name in (*keeps, "benchmark_enable"))


@pytest.hookimpl(tryfirst=True)  # before the claims plugin reads the boot rounds
def pytest_configure(config: pytest.Config) -> None:
    _state(config)
    if not benchmark_run(config) or config.getoption("minix_boot_rounds", None) is not None:
        return
    try:
        ini = config.getini("minix_boot_rounds")
    except ValueError:  # not registered: no claims plugin, nothing reads it
        return
    if ini in (None, ""):
        config.option.minix_boot_rounds = BENCHMARK_BOOT_ROUNDS


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Tests using ``minix_benchmark`` read the replayed clock: its ``timer`` joins their ``benchmark`` marker."""
    if not config.pluginmanager.has_plugin("benchmark"):
        return  # -p no:benchmark: no marker to add (the fixture is missing too, and says so)
    for item in items:
        if "minix_benchmark" not in getattr(item, "fixturenames", ()):
            continue
        marker = item.get_closest_marker("benchmark")
        kwargs = {**(marker.kwargs if marker else {}), "timer": replay_timer}
        item.add_marker(pytest.mark.benchmark(**kwargs), append=False)  # the closest one: pytest-benchmark's


@pytest.fixture
def minix_benchmark(request: pytest.FixtureRequest, benchmark: Any) -> Callable[[Measurement], None]:
    """``minix_benchmark(measurement)``: record a measurement's samples as this test's benchmark.

    Group: the test's ``benchmark`` marker's, else the metric id. Skips at once, before any
    boot, when pytest-benchmark is off (under xdist, ``--benchmark-disable``).
    """
    if benchmark.disabled:
        pytest.skip(DISABLED)
    state = _state(request.config)
    nodeid = request.node.nodeid

    def record(m: Measurement) -> None:
        if benchmark.group is None:
            benchmark.group = m.metric
        replay(benchmark, m.samples, measurement_info(m))
        now = comparable(m.conditions, _host_cpu())
        state.recorded[nodeid] = now
        _check(state, nodeid, now)

    return record


def _check(state: _State, nodeid: str, now: dict[str, str]) -> None:
    """Refuse the comparison of ``nodeid`` with every saved run taken under other conditions."""
    for run in state.compared:
        host_cpu = str(((run.get("machine_info") or {}).get("pytest_minix") or {}).get("host_cpu") or "")
        for bench in run.get("benchmarks") or []:
            saved = (bench.get("extra_info") or {}).get("conditions")
            if bench.get("fullname") != nodeid or not isinstance(saved, dict):
                continue
            diff = differences(now, comparable(saved, host_cpu))
            if not diff:
                continue
            paths = _drop_from_comparison(state.benchmark_session, bench)
            refusal = Refusal(nodeid, ", ".join(paths) or str(run.get("datetime", "a saved run")), diff, bool(paths))
            state.refusals.append(refusal)
            warnings.warn(
                BenchmarkConditionsWarning(
                    f"not compared, the conditions differ: {refusal.line()}"
                    + ("" if refusal.dropped else " (could not take it out of pytest-benchmark's comparison)")
                ),
                stacklevel=3,
            )


def _drop_from_comparison(benchmark_session: Any, bench: dict[str, Any]) -> list[str]:
    """Take one saved benchmark out of pytest-benchmark's comparison; the files it came from.

    The one non-public interface used: ``BenchmarkSession.compared_mapping`` (``{path:
    {fullname: saved benchmark}}``, filled when the saved runs are loaded, read when the
    comparison is made at the end of the session). tests/harness/test_benchmark_conditions.py
    fails if it changes; pyproject.toml bounds pytest-benchmark below the next major version.
    """
    mapping = getattr(benchmark_session, "compared_mapping", None)
    paths = []
    if isinstance(mapping, dict):
        for path, benches in mapping.items():
            if isinstance(benches, dict) and benches.get(bench.get("fullname")) is bench:
                del benches[bench["fullname"]]
                paths.append(str(path))
    return paths


@pytest.hookimpl(wrapper=True, optionalhook=True)
def pytest_benchmark_compare_machine_info(
    config: pytest.Config, benchmarksession: Any, machine_info: dict[str, Any], compared_benchmark: dict[str, Any]
) -> Any:
    """Keep each saved run: its benchmarks are checked against this run's conditions as they are recorded.

    The conditions that matter, above all the accelerator actually used, are known only once
    the guests have booted, and pytest-benchmark loads the saved runs before any test. So its
    own check (a warning when machine info differs at all) is shown both machine infos
    without ``conditions``, which would always differ then, and is given them back after.
    """
    state = _state(config)
    state.benchmark_session = benchmarksession
    state.compared.append(compared_benchmark)
    held = []
    for info in (machine_info, compared_benchmark.get("machine_info")):
        ours = info.get("pytest_minix") if isinstance(info, dict) else None
        if isinstance(ours, dict) and "conditions" in ours:
            held.append((ours, ours.pop("conditions")))
    try:
        return (yield)
    finally:
        for ours, conditions in held:
            ours["conditions"] = conditions


@pytest.hookimpl(optionalhook=True)
def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict[str, Any]) -> None:
    """What makes this run's figures comparable: per arch, the conditions its benchmarks were taken under.

    ``conditions`` is filled when results are saved, after the tests (empty while saved runs
    are loaded for ``--benchmark-compare``, before any boot). A value that differed between
    benchmarks of one arch (KVM failed mid-session) is the list of values.
    """
    per_arch: dict[str, dict[str, set[str]]] = {}
    for cond in _state(config).recorded.values():
        entry = per_arch.setdefault(cond["arch"], {})
        for k in COMPARED:
            if k not in ("arch", "host_cpu"):
                entry.setdefault(k, set()).add(cond[k])
    conditions = {
        arch: {k: next(iter(v)) if len(v) == 1 else sorted(v) for k, v in entry.items()}
        for arch, entry in sorted(per_arch.items())
    }
    qemus = {b: qemu_version(p) for b in ("qemu-system-i386", "qemu-system-arm") if (p := shutil.which(b))}
    machine_info["pytest_minix"] = {
        "harness_version": harness_version(),
        "host_cpu": _host_cpu(),
        "guest": config.getoption("minix_guest", None) or config.getini("minix_guest") or "minix",
        "accel_requested": config.getoption("minix_accel", None) or config.getini("minix_accel") or "auto",
        "conditions": conditions,
        "qemu": qemus,
        # Shared VMs started from the boot cache are "warm"; boot benchmarks time their own cold boots.
        "vm_starts": vm_starts(config),
        "warm_start": any(s.get("how") == "warm" for s in vm_starts(config)),
    }


@pytest.hookimpl(trylast=True)  # after pytest-benchmark's table
def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    refusals = _state(config).refusals
    if not refusals:
        return
    tr = terminalreporter
    tr.write_sep("=", "benchmark comparison REFUSED: saved results taken under other conditions", red=True, bold=True)
    for r in refusals:
        tr.write_line(("not compared: " if r.dropped else "NOT COMPARABLE, ignore its rows: ") + r.line(), red=True)
    tr.write_line(
        "Boot times under another accelerator, QEMU, CPU or guest image are not comparable (a KVM to TCG "
        "fallback alone makes boots 10-30x slower), so these were left out of the comparison and of "
        "--benchmark-compare-fail. This run's results are saved as usual (with --benchmark-autosave): "
        "compare with a run taken under the same conditions (--benchmark-compare=NNNN).",
        red=True,
    )
