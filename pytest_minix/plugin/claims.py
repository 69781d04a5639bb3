"""The claims half of the plugin: load claims, parametrize the suites, measure, decide, report.

Data flow: claims files -> one test per (claim, arch) -> metric.measure() (cached per
session, so claims sharing a metric share its samples) -> verdict -> the test's outcome
(confirmed passes, refuted fails, inconclusive skips) and a JSON record in the test's
``user_properties`` -> on the controlling process (xdist-safe) the validation report.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_minix.errors import GuestUnavailable, HarnessError
from pytest_minix.guest.pool import VMPool
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import METRICS, harness_version, metric_units
from pytest_minix.paths import claims_dir
from pytest_minix.plugin.media import need_media
from pytest_minix.plugin.options import harness_config
from pytest_minix.plugin.progress import Progress
from pytest_minix.verdicts.claims import Claim, ClaimsError, load_claims, select_claims
from pytest_minix.verdicts.evaluate import Evaluator
from pytest_minix.verdicts.report import ClaimsReport, verdict_record
from pytest_minix.verdicts.verdict import Verdict

VERDICT_PROPERTY = "pytest_minix_verdict"
HARNESS_ERROR_PROPERTY = "pytest_minix_harness_error"
# Exit status when the harness itself broke (no QEMU, bad image, a guest that never
# booted): CI can tell it from 1, "a claim was refuted" or "a test failed".
HARNESS_ERROR_EXIT = 10
DEFAULT_EMULATION_FACTOR = 30.0
DEFAULT_BOOT_ROUNDS = 3


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minix-claims", "pytest-minix: claims and the validation report")
    group.addoption(
        "--minix-claims",
        dest="minix_claims",
        action="append",
        default=[],
        metavar="FILE",
        help="add a claims file (repeatable); the shipped claims/*.toml are always loaded",
    )
    group.addoption(
        "--minix-claims-select",
        dest="minix_claims_select",
        default=None,
        metavar="PATTERNS",
        help="only claims whose id matches these comma-separated fnmatch patterns (e.g. 'boot.*')",
    )
    group.addoption(
        "--minix-claims-strict",
        dest="minix_claims_strict",
        action="store_true",
        default=False,
        help="inconclusive verdicts fail instead of skipping",
    )
    group.addoption(
        "--minix-claims-report",
        dest="minix_claims_report",
        default=None,
        metavar="PATH.json",
        help="write the validation report as JSON there, with a Markdown twin beside it",
    )
    group.addoption(
        "--minix-boot-rounds",
        dest="minix_boot_rounds",
        default=None,
        type=int,
        metavar="N",
        help=f"fresh boots per arch for boot metrics (default {DEFAULT_BOOT_ROUNDS}) [ini: minix_boot_rounds]",
    )
    group.addoption(
        "--minix-emulation-factor",
        dest="minix_emulation_factor",
        default=None,
        type=float,
        metavar="F",
        help="how much slower than hardware TCG may run guest code when deciding timing claims "
        f"(default {DEFAULT_EMULATION_FACTOR:g}) [ini: minix_emulation_factor]",
    )
    parser.addini("minix_boot_rounds", "fresh boots per arch for boot metrics", default=None)
    parser.addini("minix_emulation_factor", "TCG emulation factor for timing claims", default=None)
    parser.addini("minix_claims", "extra claims files", type="linelist", default=[])
    parser.addini(
        "minix_posix_known_failures", "MINIX POSIX tests run as xfail (default: 53 75 85 isofs vnd)", default=None
    )
    parser.addini("minix_posix_timeout", "seconds per MINIX POSIX test (default 600)", default=None)


@dataclass
class ClaimsSession:
    """The session's claims, settings, measurements (taken once, in ``evaluator``) and collected verdicts."""

    claims: list[Claim]
    boot_rounds: int
    emulation_factor: float
    strict: bool
    report_path: Path | None
    evaluator: Evaluator
    records: dict[str, dict[str, Any]]  # nodeid -> verdict record (filled on the controller)
    harness_errors: list[str]


_SESSION = pytest.StashKey[ClaimsSession]()


def claim_files(config: pytest.Config) -> list[Path]:
    files = sorted(claims_dir().glob("*.toml"))
    extra = [*config.getini("minix_claims"), *config.getoption("minix_claims")]
    for f in extra:
        p = Path(str(f)).expanduser()
        if not p.is_file():
            raise pytest.UsageError(f"--minix-claims {p}: no such file. Give the path of a claims TOML file.")
        files.append(p.resolve())
    return files


def _number(config: pytest.Config, opt: str, ini: str, default: float, kind: type, minimum: float) -> Any:
    value = config.getoption(opt)
    if value is None:
        raw = config.getini(ini)
        try:
            value = kind(raw) if raw not in (None, "") else default
        except ValueError:
            raise pytest.UsageError(f"ini {ini} must be a number, got {raw!r}.") from None
    if value < minimum:
        raise pytest.UsageError(
            f"--{opt.removeprefix('minix_').replace('_', '-')} must be at least {minimum}, got {value}."
        )
    return value


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claims(*metric_prefixes): parametrize `claim` over claims of these metrics")
    try:
        claims = load_claims(claim_files(config), metric_units())
    except ClaimsError as exc:
        raise pytest.UsageError(f"Malformed claims file: {exc}") from None
    selected = select_claims(claims, config.getoption("minix_claims_select"))
    report = config.getoption("minix_claims_report")
    rounds = int(_number(config, "minix_boot_rounds", "minix_boot_rounds", DEFAULT_BOOT_ROUNDS, int, 1))
    factor = float(
        _number(config, "minix_emulation_factor", "minix_emulation_factor", DEFAULT_EMULATION_FACTOR, float, 1.0)
    )
    config.stash[_SESSION] = ClaimsSession(
        claims=selected,
        boot_rounds=rounds,
        emulation_factor=factor,
        strict=bool(config.getoption("minix_claims_strict")),
        report_path=Path(report).resolve() if report else None,
        evaluator=Evaluator(boot_rounds=rounds, emulation_factor=factor),
        records={},
        harness_errors=[],
    )
    config.pluginmanager.register(ReportCollector(config), "pytest-minix-claims-report")


@dataclass(frozen=True)
class ClaimCase:
    """One claim on one arch: a test's parameter."""

    claim: Claim
    arch: str

    def __str__(self) -> str:
        return f"{self.claim.id}-{self.arch}"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:

    if "minix_arch" in metafunc.fixturenames:
        arches = harness_config(metafunc.config, Path("vm-logs")).arches
        metafunc.parametrize("minix_arch", arches, ids=list(arches))
    markers = list(metafunc.definition.iter_markers("claims"))
    if "claim" not in metafunc.fixturenames or not markers:  # only tests marked @pytest.mark.claims(...)
        return
    session = metafunc.config.stash[_SESSION]
    settings = harness_config(metafunc.config, Path("vm-logs"))
    prefixes = tuple(p for m in markers for p in m.args)
    cases = [
        ClaimCase(c, arch)
        for c in session.claims
        for arch in settings.arches
        if c.applies(settings.guest, arch) and (not prefixes or c.metric.startswith(prefixes))
    ]
    metafunc.parametrize("claim", cases, ids=[str(c) for c in cases], indirect=True)


@pytest.fixture
def claim(request: pytest.FixtureRequest) -> ClaimCase:
    """The (claim, arch) this test decides."""
    case: ClaimCase = request.param
    return case


@pytest.fixture
def claim_verdict(request: pytest.FixtureRequest, claim: ClaimCase, vm_pool: VMPool) -> Verdict:
    """Measure the claim's metric on its arch (once per session per metric) and decide the claim."""

    session = request.config.stash[_SESSION]
    need_media(request, vm_pool, claim.arch)
    measurement = measure(request, session, vm_pool, claim.claim.metric, claim.arch)
    verdict = session.evaluator.decide(claim.claim, measurement)
    request.node.user_properties.extend(verdict_properties(verdict, claim.arch))
    return verdict


@pytest.fixture
def minix_measure(request: pytest.FixtureRequest, vm_pool: VMPool) -> Any:
    """``minix_measure(metric_id, arch)``: a session-cached Measurement; skips if the guest is unavailable."""

    session = request.config.stash[_SESSION]

    def run(metric_id: str, arch: str) -> Measurement:
        if metric_id not in METRICS:
            raise KeyError(f"unknown metric {metric_id!r}; known: {', '.join(sorted(METRICS))}")
        need_media(request, vm_pool, arch)
        return measure(request, session, vm_pool, metric_id, arch)

    return run


def measure(
    request: pytest.FixtureRequest, session: ClaimsSession, pool: VMPool, metric_id: str, arch: str
) -> Measurement:
    """The metric's measurement for this arch, taken once per session (claims sharing a metric share it)."""
    progress = _progress(request)
    return session.evaluator.measure(pool, metric_id, arch, progress=progress, on_done=progress.done)


def _progress(request: pytest.FixtureRequest) -> Any:

    return Progress.for_config(request.config)


@pytest.fixture
def enforce_verdict(request: pytest.FixtureRequest) -> Any:
    """``enforce_verdict(verdict)``: pass, fail or skip the test by the verdict (``--minix-claims-strict`` aware)."""
    return functools.partial(enforce, strict=request.config.stash[_SESSION].strict)


def enforce(verdict: Verdict, strict: bool = False) -> None:
    """Confirmed passes; refuted fails with claimed and measured side by side; inconclusive skips (fails if strict)."""
    if verdict.outcome == "refuted":
        pytest.fail(verdict.side_by_side(), pytrace=False)
    if verdict.outcome == "inconclusive":
        if strict:
            pytest.fail(f"inconclusive under --minix-claims-strict:\n{verdict.side_by_side()}", pytrace=False)
        pytest.skip(f"inconclusive: {verdict.reason}")


def verdict_properties(verdict: Verdict, arch: str) -> list[tuple[str, object]]:
    """JUnit properties: a few flat ones for CI gates, and the whole record as JSON."""

    record = verdict_record(verdict)
    record["arch"] = arch
    props: list[tuple[str, object]] = [
        ("claim", verdict.claim.id),
        ("claim_arch", arch),
        ("claim_outcome", verdict.outcome),
        ("claim_claimed", verdict.claim.expect.text if verdict.claim.expect else "report only"),
        ("claim_measured", verdict.measured_text()),
    ]
    if verdict.stats is not None:
        stats = verdict.stats
        props += [("claim_median", stats.median), ("claim_n", stats.n), ("claim_unit", verdict.claim.unit)]
    if verdict.emulation_factor is not None:
        props.append(("claim_emulation_factor", verdict.emulation_factor))
    props.append((VERDICT_PROPERTY, json.dumps(record, default=str)))
    return props


# -- collection on the controlling process ---------------------------------------------------
@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if (
        call.excinfo is not None
        and call.excinfo.errisinstance(HarnessError)
        and not call.excinfo.errisinstance(GuestUnavailable)
    ):
        report.user_properties.append((HARNESS_ERROR_PROPERTY, f"{item.nodeid}: {call.excinfo.value}"))
    return report


class ReportCollector:
    """Registered per session: gathers verdict records from test reports (workers' too) and reports them."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session = config.stash[_SESSION]
        self.chart_note = ""

    def boots(self) -> list[tuple[str, list[tuple[str, float]]]]:
        """Per arch, the fresh boots' milestones (from the first boot metric that carries them)."""
        boots: list[tuple[str, list[tuple[str, float]]]] = []
        seen: set[str] = set()
        for r in self.session.records.values():
            milestones = (r.get("extra") or {}).get("milestones")
            if not milestones or r["arch"] in seen:
                continue
            seen.add(r["arch"])
            for i, ms in enumerate(milestones, 1):
                points = sorted(ms.items(), key=lambda kv: kv[1])
                boots.append((f"{r['guest']} {r['arch']} boot {i}", [("cont", 0.0), *points]))
        return boots

    def write_chart(self, report_path: Path) -> str:
        """The boot timeline chart beside the report (PNG and SVG), if there were boots and matplotlib."""
        boots = self.boots()
        if not boots:
            return ""
        from pytest_minix.verdicts.chart import timeline_chart

        stem = report_path.with_name(report_path.stem + ".timeline")
        try:
            png, svg = timeline_chart(boots, stem, title="Boot timelines (seconds from QMP cont)")
        except ImportError as exc:
            return f"no timeline chart: {exc}"
        return f"timeline chart: {png} and {svg}"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        s = self.session
        for name, value in report.user_properties:
            if name == VERDICT_PROPERTY and report.when == "call":
                s.records[report.nodeid] = json.loads(str(value))
            elif name == HARNESS_ERROR_PROPERTY and str(value) not in s.harness_errors:
                s.harness_errors.append(str(value))

    def report(self) -> Any:

        s = self.session
        meta = {
            "harness_version": harness_version(),
            "emulation_factor": s.emulation_factor,
            "boot_rounds": s.boot_rounds,
            "strict": s.strict,
            "claims_files": [str(p) for p in claim_files(self.config)],
            "args": list(self.config.invocation_params.args),
        }
        report = ClaimsReport(meta)
        for nodeid in sorted(s.records):
            report.add_record(s.records[nodeid])
        return report

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput"):  # an xdist worker: the controller reports
            return
        s = self.session
        if s.records and s.report_path is not None:
            self.report().write(s.report_path)
            self.chart_note = self.write_chart(s.report_path)
        if s.harness_errors:
            session.exitstatus = HARNESS_ERROR_EXIT

    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        s = self.session
        tr = terminalreporter
        if s.records:
            tr.section("pytest-minix validation report")
            # At least 132 columns: claim ids must not be cut; CI logs do not wrap.
            for line in self.report().table(width=max(tr._tw.fullwidth, 132)).splitlines():
                tr.write_line(line)
            if s.report_path is not None:
                tr.write_line(f"report: {s.report_path} and {s.report_path.with_suffix('.md')}")
            if self.chart_note:
                tr.write_line(self.chart_note)
        if s.harness_errors:
            tr.write_line(
                f"pytest-minix: the harness broke in {len(s.harness_errors)} test(s); "
                f"exit status {HARNESS_ERROR_EXIT}:",
                red=True,
            )
            for e in s.harness_errors[:10]:
                tr.write_line(f"  {e.splitlines()[0][:300]}")
