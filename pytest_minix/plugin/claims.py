"""The claims half of the plugin: load claims, parametrize the suites, measure, decide, report.

Data flow: claims files -> one test per (claim, arch) -> metric.measure() (cached per
session, so claims sharing a metric share its samples) -> verdict -> the test's outcome
(confirmed and reported pass, refuted fails, inconclusive skips) and a JSON record in the
test's ``user_properties`` -> on the controlling process (xdist-safe) the validation report
and the exit status. A claim test that gets no verdict still gets a record: not run (its
guest was unavailable, or it was skipped) or a harness error.
"""

from __future__ import annotations

import datetime
import functools
import json
import platform
import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest

from pytest_minix.errors import GuestUnavailable, HarnessError
from pytest_minix.guest.pool import VMPool
from pytest_minix.measure.measurement import Measurement
from pytest_minix.measure.registry import METRICS, metric_units
from pytest_minix.paths import claims_dir
from pytest_minix.plugin.media import need_media
from pytest_minix.plugin.options import harness_config
from pytest_minix.plugin.pools import vm_starts
from pytest_minix.plugin.progress import Progress
from pytest_minix.verdicts.claims import Claim, ClaimsError, load_claims, select_claims
from pytest_minix.verdicts.evaluate import Evaluator
from pytest_minix.verdicts.report import ClaimsReport, NotRunCause, case_record, report_outcome, verdict_record
from pytest_minix.verdicts.verdict import Verdict
from pytest_minix.version import harness_version

VERDICT_PROPERTY = "pytest_minix_verdict"
# A claim test that ended without a verdict: its not-run or harness-error record (JSON).
CASE_PROPERTY = "pytest_minix_claim_case"
HARNESS_ERROR_PROPERTY = "pytest_minix_harness_error"
# Exit statuses beside pytest's own (0 all passed, 1 a test failed, 2 interrupted, 3 internal
# error, 4 usage error, 5 no tests). CI can tell "the OS differs from the claim" (1) from
# "the harness broke" (10) and from "nothing could be checked here" (11).
HARNESS_ERROR_EXIT = 10
NOT_RUN_EXIT = 11
EXIT_STATUSES = (
    "exit statuses: 0 every selected claim confirmed, reported or inconclusive; "
    "1 a claim was refuted (or a test failed, or an inconclusive one under --minix-claims-strict); "
    f"{HARNESS_ERROR_EXIT} the harness broke (no QEMU, a bad image, a guest that never booted); "
    f"{NOT_RUN_EXIT} claims were not run because their guest was unavailable (no image, no machine "
    "for the arch) and --minix-allow-not-run was not given; 4 bad options or a malformed claims file"
)
DEFAULT_EMULATION_FACTOR = 30.0
DEFAULT_BOOT_ROUNDS = 3


def _addini_typed(parser: pytest.Parser, name: str, help_: str, kind: Literal["int", "float"]) -> None:
    """An ini setting of type ``kind`` ("int", "float"), or a string one on a pytest that has no such type."""
    try:
        parser.addini(name, help_, type=kind, default=None)
    except (AssertionError, ValueError, TypeError):
        parser.addini(name, help_, default=None)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("minix-claims", "pytest-minix: claims and the validation report")
    group.addoption(
        "--minix-claims",
        dest="minix_claims",
        action="append",
        default=[],
        metavar="FILE",
        help="add a claims file (repeatable); the shipped claims/*.toml are always loaded [ini: minix_claims]",
    )
    group.addoption(
        "--minix-claims-select",
        dest="minix_claims_select",
        default=None,
        metavar="PATTERNS",
        help="only claims whose id matches these comma-separated fnmatch patterns (e.g. 'boot.*') "
        "[ini: minix_claims_select]",
    )
    group.addoption(
        "--minix-claims-strict",
        dest="minix_claims_strict",
        action="store_true",
        default=None,
        help="inconclusive verdicts fail instead of skipping (report-only claims still pass) "
        "[ini: minix_claims_strict]",
    )
    group.addoption(
        "--minix-claims-report",
        dest="minix_claims_report",
        default=None,
        metavar="PATH.json",
        help="write the validation report there (every selected claim, whatever happened to it), with a "
        "Markdown twin and the claims and boot timeline charts beside it [ini: minix_claims_report]",
    )
    group.addoption(
        "--minix-allow-not-run",
        dest="minix_allow_not_run",
        action="store_true",
        default=None,
        help=f"claims not run because their guest is unavailable do not make the exit status {NOT_RUN_EXIT} "
        f"(for local runs without an image) [ini: minix_allow_not_run]. {EXIT_STATUSES}",
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
    parser.addini("minix_claims", "extra claims files", type="linelist", default=[])
    parser.addini("minix_claims_select", "comma-separated fnmatch patterns of claim ids to run", default=None)
    parser.addini("minix_claims_strict", "inconclusive verdicts fail instead of skipping", type="bool", default=False)
    parser.addini("minix_claims_report", "validation report path (JSON; relative to the ini file)", default=None)
    parser.addini(
        "minix_allow_not_run",
        f"claims not run for lack of their guest do not make the exit status {NOT_RUN_EXIT}",
        type="bool",
        default=False,
    )
    _addini_typed(parser, "minix_boot_rounds", "fresh boots per arch for boot metrics (whole number >= 1)", "int")
    _addini_typed(parser, "minix_emulation_factor", "TCG emulation factor for timing claims (number >= 1)", "float")
    parser.addini(
        "minix_posix_known_failures", "MINIX POSIX tests run as xfail (default: 53 75 85 isofs vnd)", default=None
    )
    parser.addini("minix_posix_timeout", "seconds per MINIX POSIX test (default 600)", default=None)


@dataclass
class ClaimsSession:
    """The session's claims, settings, measurements (taken once, in ``evaluator``) and collected records."""

    claims: list[Claim]
    boot_rounds: int
    emulation_factor: float
    strict: bool
    report_path: Path | None
    evaluator: Evaluator
    records: dict[str, dict[str, Any]]  # nodeid -> record (filled on the controller)
    harness_errors: list[str]
    allow_not_run: bool = False
    started: str = ""  # ISO 8601 UTC
    # nodeid -> (claim, arch) of every collected claim test (without xdist: the controller collects)
    expected: dict[str, tuple[Claim, str]] = field(default_factory=dict)
    exit_note: str = ""


_SESSION = pytest.StashKey[ClaimsSession]()
# Set on a claim test's item when its guest turned out to be unavailable (it skips).
_UNAVAILABLE = pytest.StashKey[str]()


def claim_files(config: pytest.Config) -> list[Path]:
    files = sorted(claims_dir().glob("*.toml"))
    extra = [*config.getini("minix_claims"), *config.getoption("minix_claims")]
    for f in extra:
        p = Path(str(f)).expanduser()
        if not p.is_file():
            raise pytest.UsageError(f"--minix-claims {p}: no such file. Give the path of a claims TOML file.")
        files.append(p.resolve())
    return files


def _number(config: pytest.Config, name: str, default: float, kind: type, minimum: float) -> Any:
    """A numeric setting from its option (typed by argparse) or else its ini twin; checked against ``minimum``."""
    what = "a whole number" if kind is int else "a number"
    value = config.getoption(name)
    source = "--" + name.replace("_", "-")
    if value is None:
        source = f"ini {name}"
        try:
            raw = config.getini(name)
        except (pytest.UsageError, ValueError, TypeError) as exc:
            raise pytest.UsageError(f"{source} must be {what} (at least {minimum:g}): {exc}") from None
        if raw is None or raw == "":
            return default
        try:
            if isinstance(raw, bool) or (kind is int and isinstance(raw, float)):
                raise ValueError
            value = kind(raw)
        except (TypeError, ValueError):
            raise pytest.UsageError(f"{source} must be {what} (at least {minimum:g}), got {raw!r}.") from None
    if value < minimum:
        raise pytest.UsageError(f"{source} must be at least {minimum:g}, got {value!r}.")
    return value


def _flag(config: pytest.Config, name: str) -> bool:
    """A yes/no setting: the option when given, else its ini twin."""
    value = config.getoption(name)
    return bool(config.getini(name)) if value is None else bool(value)


def _report_path(config: pytest.Config) -> Path | None:
    """--minix-claims-report (relative to the current directory) or its ini twin (relative to the ini file)."""
    value = config.getoption("minix_claims_report")
    if value:
        path = Path(str(value)).expanduser()
        return path if path.is_absolute() else (config.invocation_params.dir / path).resolve()
    raw = config.getini("minix_claims_report")
    if not raw:
        return None
    base = config.inipath.parent if config.inipath is not None else config.rootpath
    path = Path(str(raw)).expanduser()
    return path if path.is_absolute() else (base / path).resolve()


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "claims(*metric_prefixes): parametrize `claim` over claims of these metrics")
    try:
        claims = load_claims(claim_files(config), metric_units())
    except ClaimsError as exc:
        raise pytest.UsageError(f"Malformed claims file: {exc}") from None
    select = config.getoption("minix_claims_select") or config.getini("minix_claims_select") or None
    selected = select_claims(claims, select)
    report = _report_path(config)
    if report is not None and report.suffix == ".md":
        raise pytest.UsageError(
            f"--minix-claims-report {report}: give the JSON report's path (e.g. {report.with_suffix('.json')}); "
            "its Markdown twin is written beside it."
        )
    rounds = int(_number(config, "minix_boot_rounds", DEFAULT_BOOT_ROUNDS, int, 1))
    factor = float(_number(config, "minix_emulation_factor", DEFAULT_EMULATION_FACTOR, float, 1.0))
    config.stash[_SESSION] = ClaimsSession(
        claims=selected,
        boot_rounds=rounds,
        emulation_factor=factor,
        strict=_flag(config, "minix_claims_strict"),
        report_path=report,
        evaluator=Evaluator(boot_rounds=rounds, emulation_factor=factor),
        records={},
        harness_errors=[],
        allow_not_run=_flag(config, "minix_allow_not_run"),
        started=datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
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


def _case(item: pytest.Item) -> ClaimCase | None:
    """The (claim, arch) a collected test decides, if it is a claim test."""
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("claim") if callspec is not None else None
    return case if isinstance(case, ClaimCase) else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Remember every selected claim test, so that one the session never reached is in the report too."""
    session = config.stash[_SESSION]
    session.expected = {item.nodeid: (case.claim, case.arch) for item in items if (case := _case(item)) is not None}


@pytest.fixture
def claim(request: pytest.FixtureRequest) -> ClaimCase:
    """The (claim, arch) this test decides."""
    case: ClaimCase = request.param
    return case


@pytest.fixture
def claim_verdict(request: pytest.FixtureRequest, claim: ClaimCase, vm_pool: VMPool) -> Verdict:
    """Measure the claim's metric on its arch (once per session per metric) and decide the claim."""

    session = request.config.stash[_SESSION]
    try:
        need_media(request, vm_pool, claim.arch)
    except pytest.skip.Exception as exc:  # the guest cannot be had here: the claim is not run
        request.node.stash[_UNAVAILABLE] = str(exc.msg)
        raise
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
    """Confirmed and reported pass; refuted fails with claimed and measured side by side; inconclusive skips
    (fails if strict)."""
    outcome = report_outcome(verdict)
    if outcome == "refuted":
        pytest.fail(verdict.side_by_side(), pytrace=False)
    if outcome == "inconclusive":
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
        ("claim_outcome", record["outcome"]),
        ("claim_claimed", verdict.claimed_text()),
        ("claim_measured", verdict.measured_text()),
    ]
    if verdict.stats is not None:
        stats = verdict.stats
        props += [("claim_median", stats.median), ("claim_n", stats.n), ("claim_unit", verdict.unit)]
    if verdict.emulation_factor is not None:
        props.append(("claim_emulation_factor", verdict.emulation_factor))
    props.append((VERDICT_PROPERTY, json.dumps(record, default=str)))
    return props


# -- collection on the controlling process ---------------------------------------------------
def _error_text(call: pytest.CallInfo[None]) -> str:
    """The exception of ``call`` on one line, as the report shows a harness error."""
    if call.excinfo is None:
        return "unknown error"
    return " ".join(call.excinfo.exconly().split())[:2000]


def _skip_reason(report: pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return str(longrepr or "skipped")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    harness_broke = (
        call.excinfo is not None
        and call.excinfo.errisinstance(HarnessError)
        and not call.excinfo.errisinstance(GuestUnavailable)
    )
    case = _case(item)
    has_verdict = any(name == VERDICT_PROPERTY for name, _ in item.user_properties)
    if case is not None and not has_verdict and report.when in ("setup", "call"):
        # A claim test that ended without a verdict still gets its record.
        record = None
        if report.skipped:
            unavailable = item.stash.get(_UNAVAILABLE, None)
            cause: NotRunCause = "guest_unavailable" if unavailable is not None else "skipped"
            record = case_record(case.claim, case.arch, "not_run", unavailable or _skip_reason(report), cause)
        elif report.failed:
            # Whatever broke before the verdict (a metric's exception, a guest that never booted) is the harness's.
            harness_broke = True
            record = case_record(case.claim, case.arch, "harness_error", _error_text(call))
        if record is not None:
            report.user_properties.append((CASE_PROPERTY, json.dumps(record)))
    if harness_broke:
        report.user_properties.append((HARNESS_ERROR_PROPERTY, f"{item.nodeid}: {_error_text(call)}"))
    return report


class ReportCollector:
    """Registered per session: gathers claim records from test reports (workers' too), reports them and
    sets the exit status."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session = config.stash[_SESSION]
        self.chart_notes: list[str] = []
        self.written: tuple[Path, Path] | None = None
        self.write_error = ""
        self.status: int | None = None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        s = self.session
        for name, value in report.user_properties:
            verdict = name == VERDICT_PROPERTY and report.when == "call"
            if verdict or (name == CASE_PROPERTY and report.nodeid not in s.records):
                s.records[report.nodeid] = json.loads(str(value))
            elif name == HARNESS_ERROR_PROPERTY and str(value) not in s.harness_errors:
                s.harness_errors.append(str(value))

    def _all_records(self) -> dict[str, dict[str, Any]]:
        """Every selected claim test's record: those never reached (the session stopped first) included."""
        s = self.session
        records = dict(s.records)
        for nodeid, (claim, arch) in s.expected.items():
            if nodeid not in records:
                why = "the session ended before this claim's test ran (stopped by -x, a failure or an interrupt)"
                records[nodeid] = case_record(claim, arch, "not_run", why, "not_reached")
        return records

    def _guest_unavailable(self) -> list[dict[str, Any]]:
        return [
            r for r in self._all_records().values() if r["outcome"] == "not_run" and r["cause"] == "guest_unavailable"
        ]

    def report(self, exit_status: int | None = None) -> ClaimsReport:
        s = self.session
        settings = harness_config(self.config, Path("vm-logs"))
        meta: dict[str, Any] = {
            "date": s.started,
            "host": socket.gethostname(),
            "platform": f"{platform.system()} {platform.release()} {platform.machine()}",
            "harness_version": harness_version(),
            "guest": settings.guest,
            "arches": list(settings.arches),
            "accel_requested": settings.accel,
            "emulation_factor": s.emulation_factor,
            "boot_rounds": s.boot_rounds,
            "strict": s.strict,
            "allow_not_run": s.allow_not_run,
            "claims_files": [str(p) for p in claim_files(self.config)],
            "args": list(self.config.invocation_params.args),
            # Whether the shared VMs booted or started from the boot cache (boot metrics always boot).
            "vm_starts": vm_starts(self.config),
        }
        if exit_status is not None:
            meta["exit_status"] = exit_status
        report = ClaimsReport(meta)
        records = self._all_records()
        for nodeid in sorted(records):
            report.add_record(records[nodeid])
        return report

    def exit_status(self, exitstatus: int) -> int:
        """pytest's exit status, or ours: 10 when the harness broke, 11 when claims could not be run."""
        s = self.session
        ok_or_failed = (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)
        if s.harness_errors and exitstatus in ok_or_failed:
            s.exit_note = f"the harness broke in {len(s.harness_errors)} test(s)"
            return HARNESS_ERROR_EXIT
        unavailable = self._guest_unavailable()
        if unavailable and exitstatus == pytest.ExitCode.OK:
            n = len(unavailable)
            what = f"{n} claim{'s' if n != 1 else ''} not run: guest unavailable"
            if s.allow_not_run:
                s.exit_note = f"{what}; --minix-allow-not-run keeps the exit status 0"
                return int(exitstatus)
            s.exit_note = f"{what}; pass --minix-allow-not-run (ini minix_allow_not_run) to accept that"
            return NOT_RUN_EXIT
        return int(exitstatus)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if hasattr(self.config, "workerinput"):  # an xdist worker: the controller reports
            return
        s = self.session
        status = self.status = self.exit_status(int(session.exitstatus))
        if status != session.exitstatus:
            session.exitstatus = status
        if s.report_path is not None:
            report = self.report(exit_status=status)
            try:
                self.written = report.write(s.report_path)
            except OSError as exc:
                self.write_error = f"could not write the report {s.report_path}: {exc}"
                return
            self.chart_notes = report.chart_notes

    @pytest.hookimpl(trylast=True)  # after the other sections: the summary line closes the report
    def pytest_terminal_summary(self, terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
        if hasattr(config, "workerinput"):
            return
        s = self.session
        tr = terminalreporter
        report = self.report()
        if report.records:
            tr.section("pytest-minix validation report")
            # At least 132 columns: claim ids must not be cut; CI logs do not wrap.
            for line in report.table(width=max(tr._tw.fullwidth, 132)).splitlines()[:-1]:
                tr.write_line(line)
        if self.written is not None:
            tr.write_line(f"report: {self.written[0]} and {self.written[1]}")
            for note in self.chart_notes:
                tr.write_line(note)
        if self.write_error:
            tr.write_line(f"pytest-minix: {self.write_error}", red=True)
        if s.harness_errors:
            tr.write_line(
                f"pytest-minix: the harness broke in {len(s.harness_errors)} test(s); "
                f"exit status {HARNESS_ERROR_EXIT}:",
                red=True,
            )
            for e in s.harness_errors[:10]:
                tr.write_line(f"  {e.splitlines()[0][:300]}")
        if report.records:
            counts = report.counts()
            bad = counts["refuted"] or counts["harness_error"]
            colour = (
                {"red": True}
                if bad
                else {"yellow": True}
                if report.summary()["decided"] < len(report.records)
                else {"green": True}
            )
            tr.write_line(f"pytest-minix: {report.summary_line()}", bold=True, **colour)
        if s.exit_note:
            tr.write_line(f"pytest-minix: {s.exit_note} (exit status {self.status})")
