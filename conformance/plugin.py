"""The pytest plugin: options, the IUT and role fixtures, verdicts by catalogue level, evidence and reports.

It is inert unless the conformance suite is being run (`pytest --pyargs conformance.suite`, a path inside it, or
`--profile`), so it never touches other test runs in the same environment.
"""

from __future__ import annotations

import dataclasses
import datetime
import sys
import time
import traceback
from pathlib import Path

import pytest

from conformance import __version__, catalogue
from conformance.adapters import adapter_class
from conformance.baseline import Baseline, BaselineError
from conformance.baseline import apply as apply_baseline
from conformance.baseline import load as load_baseline
from conformance.client_side import ClientSide, ClientSideError, profile_target, reference_target
from conformance.evidence import STANDARD_FILES, slug, write_case_evidence
from conformance.marks import MARKER, case_of
from conformance.profile import Profile, ProfileError
from conformance.profile import load as load_profile
from conformance.reference.flaws import UnknownFlaw
from conformance.reference.flaws import check as check_flaws
from conformance.reference.launcher import LaunchError, ReferenceProcess
from conformance.reference_client.flaws import FLAWS as CLIENT_FLAWS
from conformance.report import console
from conformance.report.model import RunResult, TestResult
from conformance.target import Iut
from conformance.transport.wire import Recorder
from conformance.verdicts import (EXIT_USAGE, NotApplicable, Unsupported, Verdict, exit_code, is_failure, ledger,
                                  reset_ledger, verdict_for)

SUITE_PACKAGE = "conformance.suite"
SUITE_DIR = Path(__file__).parent / "suite"
CLIENT_SUITE_DIR = SUITE_DIR / "clients"
STATE = pytest.StashKey["ItemState"]()
HARNESS = "impp-conformance-harness"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("impp-conformance", "IMPP security conformance")
    group.addoption("--profile", default=None, help="target profile (TOML); default: the embedded reference service")
    group.addoption("--flaw", action="append", default=[], dest="impp_flaws",
                    help="switch on a flaw of the embedded reference service (repeatable)")
    group.addoption("--impp-strict", action="store_true", dest="impp_strict",
                    help="a SHOULD-level deviation (WARN) also makes the run fail")
    group.addoption("--out", default="reports", dest="impp_out", help="directory for run reports (default: reports)")
    group.addoption("--run-id", default=None, dest="impp_run_id", help="name of this run's report directory")
    group.addoption("--case", action="append", default=[], dest="impp_cases",
                    help="run only this catalogue case (repeatable), e.g. --case IMPP-5.1-2")
    group.addoption("--baseline", default=None, dest="impp_baseline",
                    help="known deviations of the target (TOML); default: the profile's target.baseline")


def _runs_suite(config: pytest.Config) -> bool:
    if config.getoption("profile"):
        return True
    for arg in config.args:
        if arg.split("::")[0].startswith(SUITE_PACKAGE):
            return True
        try:
            Path(arg.split("::")[0]).resolve().relative_to(SUITE_DIR)
            return True
        except (ValueError, OSError):
            continue
    return False


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{MARKER}(case_id, step=None): the catalogue case a conformance test checks")
    if _runs_suite(config):
        config.pluginmanager.register(Harness(config), HARNESS)


def stable_id(item: pytest.Item) -> str:
    """The test's ID relative to the suite package, whatever pytest chose as rootdir (which depends on the
    command line), so reports, baselines and matrices compare across runs and machines."""
    try:
        return f"{Path(item.path).resolve().relative_to(SUITE_DIR.resolve()).as_posix()}::{item.name}"
    except ValueError:
        return item.nodeid


@dataclasses.dataclass
class ItemState:
    nodeid: str
    case_id: str
    step: str | None
    level: str
    verdict: Verdict = Verdict.PASS
    message: str = ""
    notes: list[str] = dataclasses.field(default_factory=list)
    evidence: dict[str, str] = dataclasses.field(default_factory=dict)
    duration: float = 0.0
    evidence_dir: Path | None = None
    recorder: Recorder | None = None


class Harness:
    """Session state of one conformance run."""

    def __init__(self, config: pytest.Config):
        self.config = config
        self.strict = config.getoption("impp_strict")
        self.started = time.monotonic()
        requested = config.getoption("impp_flaws")
        self.client_flaws = tuple(sorted({f for f in requested if f in CLIENT_FLAWS}))
        try:
            self.flaws = tuple(sorted(check_flaws([f for f in requested if f not in CLIENT_FLAWS])))
        except UnknownFlaw as exc:
            pytest.exit(f"error: {exc} (or of the reference client: {', '.join(sorted(CLIENT_FLAWS))})",
                        returncode=EXIT_USAGE)
        profile_path = config.getoption("profile")
        self.profile: Profile | None = None
        if profile_path and requested:
            pytest.exit("error: --flaw applies to the embedded reference service and client only; drop --profile or "
                        "--flaw", returncode=EXIT_USAGE)
        target_name = "reference" + "".join(f"+{f}" for f in (*self.flaws, *self.client_flaws))
        # Which IUTs this run tests: a profile names one; the embedded references are both, unless the flaws asked
        # for belong to one of them only (then only its cases run: the other's verdicts could not change).
        self.kinds = {"service", "client"}
        if self.flaws and not self.client_flaws:
            self.kinds = {"service"}
        elif self.client_flaws and not self.flaws:
            self.kinds = {"client"}
        if profile_path:
            try:
                self.profile = load_profile(profile_path)
            except ProfileError as exc:
                self._refuse(config, exc)
            target_name = self.profile.target.name
            self.kinds = {self.profile.target.kind}
        baseline_path = config.getoption("impp_baseline") or (self.profile.target.baseline if self.profile else None)
        self.baseline: Baseline | None = None
        if baseline_path:
            try:
                self.baseline = load_baseline(baseline_path)
            except BaselineError as exc:
                self._refuse(config, exc)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_id = config.getoption("impp_run_id") or f"{stamp}-{_safe(target_name)}"
        out = Path(config.getoption("impp_out"))
        self.run_dir = (out / run_id).resolve()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.client_side: ClientSide | None = None
        if "client" in self.kinds:
            client = profile_target(self.profile) if self.profile else reference_target(self.client_flaws)
            self.client_side = ClientSide(client, self.run_dir, self.profile)
        self.run = RunResult(tool="impp-conformance", version=__version__, run_id=run_id,
                             target={"name": target_name, "profile": str(profile_path) if profile_path else None,
                                     "embedded": not profile_path,
                                     "flaws": [*self.flaws, *self.client_flaws], "kinds": sorted(self.kinds),
                                     "baseline": str(self.baseline.path) if self.baseline else None},
                             started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                             strict=self.strict)
        self.reference: ReferenceProcess | None = None
        self.adapter = None
        self.iut: Iut | None = None
        self.target_error: str | None = None
        if getattr(config.option, "htmlpath", None) is None and config.pluginmanager.hasplugin("html"):
            config.option.htmlpath = str(self.run_dir / "report.html")
            config.option.self_contained_html = True
        if getattr(config.option, "xmlpath", None) is None:
            config.option.xmlpath = str(self.run_dir / "junit.xml")
        self._point_latest(out, run_id)

    @staticmethod
    def _refuse(config: pytest.Config, problem: Exception) -> None:
        """Nothing can be tested: leave a results.json saying why, and stop with exit code 2."""
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_id = config.getoption("impp_run_id") or f"{stamp}-profile-error"
        run_dir = Path(config.getoption("impp_out")) / run_id
        run_dir.mkdir(parents=True, exist_ok=True)
        RunResult(tool="impp-conformance", version=__version__, run_id=run_id,
                  target={"profile": config.getoption("profile")},
                  started=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  strict=bool(config.getoption("impp_strict")), exit_code=EXIT_USAGE,
                  error=f"error: {problem}").write(run_dir / "results.json")
        pytest.exit(f"error: {problem}", returncode=EXIT_USAGE)

    @staticmethod
    def _point_latest(out: Path, run_id: str) -> None:
        latest = out / "latest"
        try:
            if latest.is_symlink() or latest.exists():
                latest.unlink()
            latest.symlink_to(run_id, target_is_directory=True)
        except OSError:
            pass  # a report without the convenience link is still a report

    # -- target --------------------------------------------------------------------------------------------------

    def start_target(self, portal) -> Iut:
        if self.target_error:
            raise TargetError(self.target_error)
        if self.iut is not None:
            return self.iut
        try:
            profile = self.profile
            if profile is None:
                self.reference = ReferenceProcess(self.run_dir / "reference", self.flaws)
                profile = self.reference.start()
                self.run.target["profile"] = str(self.reference.profile_path)
            self.run.target.update(protocol=profile.target.protocol, domain=profile.target.domain)
            self.adapter = adapter_class(profile.target.protocol)(profile, portal)
            self.run.target["address"] = "%s:%s" % self.adapter.address
            recorder = Recorder()
            try:
                self.adapter.preflight(recorder)
            finally:
                write_case_evidence(self.run_dir / "preflight", recorder, "preflight: reach the target, log in once")
        except Exception as exc:  # LaunchError, TargetUnreachable, DNS trouble, ...
            self.target_error = f"target unreachable: {exc}" if not isinstance(exc, LaunchError) else str(exc)
            self.run.error = self.target_error
            raise TargetError(self.target_error) from None
        self.iut = Iut(profile=profile, address=self.adapter.address, reference=self.reference)
        return self.iut

    def stop_target(self) -> None:
        if self.reference is not None:
            self.reference.stop()
        if self.client_side is not None:
            self.client_side.stop()

    def start_client_side(self, portal) -> ClientSide:
        try:
            self.client_side.start(portal)
        except ClientSideError as exc:
            if not self.run.error:
                self.run.error = str(exc)
            raise TargetError(str(exc)) from None
        return self.client_side

    # -- selection ------------------------------------------------------------------------------------------------------

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        other_kind = [item for item in items if _kind_of(item) not in self.kinds]
        if other_kind:  # the cases of the IUT kind this run does not test (a client profile: the service cases)
            config.hook.pytest_deselected(items=other_kind)
            items[:] = [item for item in items if _kind_of(item) in self.kinds]
        wanted = config.getoption("impp_cases")
        if not wanted:
            return
        unknown = [c for c in wanted if c not in catalogue.cases()]
        if unknown:
            pytest.exit(f"error: --case {', '.join(unknown)}: not a case of the catalogue "
                        f"(`impp-conformance list` shows them)", returncode=EXIT_USAGE)
        keep, drop = [], []
        for item in items:
            ident = case_of(item)
            (keep if ident and ident[0] in wanted else drop).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep

    # -- verdicts --------------------------------------------------------------------------------------------------------

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        ident = case_of(item)
        if ident is None:
            return
        case_id, step = ident
        level = catalogue.get(case_id).level_of(step)
        state = ItemState(nodeid=stable_id(item), case_id=case_id, step=step, level=level)
        state.evidence_dir = self.run_dir / "cases" / slug(state.nodeid)
        item.stash[STATE] = state
        item.user_properties += [("case", case_id), ("level", level)]
        reset_ledger()

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo):
        outcome = yield
        report: pytest.TestReport = outcome.get_result()
        state = item.stash.get(STATE, None)
        if state is None:
            return
        report.impp_case = state.case_id
        report.impp_nodeid = state.nodeid
        state.duration += report.duration
        exc = call.excinfo.value if call.excinfo is not None else None
        if call.when == "setup" and exc is not None:
            self._settle(state, exc, item)
            self._shape(report, state, item)
        elif call.when == "call":
            self._settle(state, exc, item)
            if exc is None and ledger().negatives and not ledger().controls:
                state.verdict = Verdict.ERROR
                state.message = ("harness defect: a negative check ran without a positive control "
                                 f"({ledger().negatives[0]})")
            state.notes = list(ledger().notes)
            item.user_properties.append(("verdict", state.verdict.value))
            self._shape(report, state, item)
            _forget_last_failure(exc)
        elif call.when == "teardown":
            if exc is not None and state.verdict in (Verdict.PASS, Verdict.WARN, Verdict.INFO):
                state.verdict = Verdict.ERROR
                state.message = f"teardown failed: {_one_line(exc)}"
                self._shape(report, state, item)
            self._record(item, state)

    def _settle(self, state: ItemState, exc: BaseException | None, item: pytest.Item) -> None:
        self._judge(state, exc, item)
        deviation = self.baseline.find(state.case_id, state.nodeid) if self.baseline else None
        if deviation is not None:
            state.verdict, state.message = apply_baseline(deviation, state.verdict, state.message)

    def _judge(self, state: ItemState, exc: BaseException | None, item: pytest.Item) -> None:
        if isinstance(exc, pytest.skip.Exception):
            exc = Unsupported(str(exc.msg))
        state.verdict = verdict_for(exc, state.level, self.strict)
        if exc is None:
            state.message = ""
        elif isinstance(exc, (AssertionError, Unsupported, NotApplicable)) or state.verdict is not Verdict.ERROR:
            state.message = _one_line(exc)
        elif isinstance(exc, TargetError):
            state.message = str(exc)
        else:
            state.message = _one_line(exc)
            if not isinstance(exc, (TimeoutError, ConnectionError)) and type(exc).__module__ != "conformance.verdicts":
                state.evidence_dir.mkdir(parents=True, exist_ok=True)
                (state.evidence_dir / "harness-error.txt").write_text(
                    "".join(traceback.format_exception(exc)), encoding="utf-8")
                state.evidence["harness-error"] = str((state.evidence_dir / "harness-error.txt")
                                                      .relative_to(self.run_dir))

    def _shape(self, report: pytest.TestReport, state: ItemState, item: pytest.Item) -> None:
        """Make pytest's own outcome agree with the verdict, with a one-line message instead of a traceback."""
        verdict = state.verdict
        report.impp_verdict = verdict.value
        case = catalogue.get(state.case_id)
        message = f"{state.case_id} [{state.level}] {verdict.label}: {state.message}" if state.message else ""
        if is_failure(verdict, self.strict) or verdict is Verdict.ERROR:
            report.outcome = "failed"
            report.longrepr = f"{message}\n  quote: \"{case.quote}\"\n  remediation: {case.remediation}"
        elif verdict in (Verdict.UNSUPPORTED, Verdict.NA):
            report.outcome = "skipped"
            report.longrepr = (str(item.path), item.location[1] or 0, message)
        elif verdict is Verdict.XFAIL:
            report.outcome = "skipped"
            report.wasxfail = message
        else:
            report.outcome = "passed"
            report.longrepr = None
            if message:
                report.sections.append(("verdict", message))

    def _record(self, item: pytest.Item, state: ItemState) -> None:
        self.run.tests.append(TestResult(nodeid=state.nodeid, case_id=state.case_id, step=state.step,
                                         level=state.level, verdict=state.verdict, duration=round(state.duration, 4),
                                         message=state.message, notes=state.notes, evidence=dict(state.evidence)))

    def pytest_report_teststatus(self, report: pytest.TestReport, config: pytest.Config):
        verdict = getattr(report, "impp_verdict", None)
        if verdict is None or (report.when != "call" and report.outcome == "passed"):
            return None
        return {
            "pass": ("passed", ".", "PASS"), "fail": ("failed", "F", "FAIL"), "warn": ("warn", "W", "WARN"),
            "info": ("info", "I", "INFO"), "unsupported": ("unsupported", "U", "UNSUPPORTED"),
            "na": ("n/a", "N", "N/A"), "error": ("error", "E", "ERROR"), "xfail": ("xfailed", "x", "XFAIL"),
            "xpass": ("xpassed", "X", "XPASS"),
        }[verdict]

    # -- html report columns -----------------------------------------------------------------------------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(1, '<th class="sortable" data-column-type="case">Case</th>')
        cells.insert(2, "<th>Level</th>")
        cells.insert(3, "<th>Verdict</th>")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        import html
        ident = getattr(report, "impp_case", None)
        case = catalogue.get(ident) if ident else None
        cells.insert(1, f'<td class="col-case" title="{html.escape(case.quote) if case else ""}">'
                        f'{html.escape(ident or "")}</td>')
        cells.insert(2, f"<td>{html.escape(case.level) if case else ''}</td>")
        cells.insert(3, f"<td>{html.escape(getattr(report, 'impp_verdict', '') or '').upper()}</td>")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_html(self, report: pytest.TestReport, data: list[str]) -> None:
        import html
        ident = getattr(report, "impp_case", None)
        if not ident or report.when != "call":
            return
        case = catalogue.get(ident)
        data.insert(0, f"<div><b>{html.escape(ident)}</b> ({html.escape(case.section_title)}, {case.level}): "
                       f"“{html.escape(case.quote)}”</div>")
        case_dir = f"cases/{slug(getattr(report, 'impp_nodeid', report.nodeid))}"
        files = [f"{case_dir}/transcript.txt"]
        for name in ("capture.pcap", "tls-keys.log"):  # pytest-html calls this after the test's teardown
            if (self.run_dir / case_dir / name).exists():
                files.append(f"{case_dir}/{name}")
        folder = self.run_dir / case_dir
        if folder.is_dir():  # files the test wrote itself (shrunk malformed samples, ...)
            files += [f"{case_dir}/{p.name}" for p in sorted(folder.iterdir())
                      if p.is_file() and p.name not in STANDARD_FILES]
        links = ", ".join(f'<a href="{html.escape(f)}">{html.escape(f)}</a>' for f in files)
        data.insert(1, f"<div>evidence: {links}</div>")

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_report_title(self, report) -> None:
        report.title = f"IMPP security conformance: {self.run.target['name']}"

    # -- end of run --------------------------------------------------------------------------------------------------

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        self.stop_target()
        if self.baseline is not None:
            self.run.target["baseline_unused"] = [f"{d.case} {d.test}" for d in self.baseline.unused()]
        self.run.duration = time.monotonic() - self.started
        if self.run.tests:
            code = exit_code([t.verdict for t in self.run.tests], self.strict)
            session.exitstatus = code
        self.run.exit_code = int(session.exitstatus)
        self.run.write(self.run_dir / "results.json")

    def pytest_terminal_summary(self, terminalreporter) -> None:
        if not self.run.tests and not self.run.error:
            return
        write = terminalreporter.write_line
        terminalreporter.section(f"IMPP conformance: {self.run.target['name']}")
        if self.run.error:
            write(self.run.error)
        for entry in self.run.target.get("baseline_unused") or []:
            write(f"note: baseline entry {entry} matched no test in this run")
        for line in console.table(self.run):
            write(line)
        write("")
        write(f"results: {self.run_dir / 'results.json'}")
        if getattr(self.config.option, "htmlpath", None):
            write(f"report:  {self.config.option.htmlpath}")
        write(f"exit code {self.run.exit_code} ({self.run.duration:.1f}s)")


class TargetError(Exception):
    """The target could not be started or reached; every case is an ERROR with this one-line reason."""


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if not isinstance(exc, (AssertionError, Unsupported, NotApplicable)) and type(exc).__module__ != "conformance.verdicts":
        text = f"{type(exc).__name__}: {text}"
    return text[:500]


def _forget_last_failure(exc: BaseException | None) -> None:
    """pytest keeps a failed test's exception for post-mortem debugging (sys.last_traceback) until the next test's
    call: its frames hold that test's whole cast, every stream's received units and the case's recording, which a
    hostile IUT can fill to their limits. The verdict and the evidence are taken by now; let them go, so that memory
    stays bounded by one case's worth (ARCHITECTURE rule 8). `--pdb` is unaffected: it gets the exception from
    pytest itself."""
    if exc is None or getattr(sys, "last_value", None) is not exc:
        return
    for name in ("last_type", "last_value", "last_traceback", "last_exc"):
        if hasattr(sys, name):
            delattr(sys, name)


def _kind_of(item: pytest.Item) -> str:
    """The kind of IUT a suite test checks: the client cases live in suite/clients/."""
    try:
        Path(item.path).resolve().relative_to(CLIENT_SUITE_DIR.resolve())
        return "client"
    except ValueError:
        return "service"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+" else "_" for c in name)[:80]


# -- fixtures ---------------------------------------------------------------------------------------------------------


def _harness(request: pytest.FixtureRequest) -> Harness:
    harness = request.config.pluginmanager.get_plugin(HARNESS)
    if harness is None:
        pytest.fail("the impp-conformance harness is not active: run the suite with "
                    "`pytest --pyargs conformance.suite` or `impp-conformance run`")
    return harness


@pytest.fixture(scope="session")
def _impp_portal():
    from anyio.from_thread import start_blocking_portal
    with start_blocking_portal(backend="asyncio") as portal:
        yield portal


@pytest.fixture(scope="session")
def iut(request: pytest.FixtureRequest, _impp_portal) -> Iut:
    """The implementation under test (restartable where the profile allows it)."""
    return _harness(request).start_target(_impp_portal)


@pytest.fixture
def cast(request: pytest.FixtureRequest, iut: Iut):
    """Every account logged in and brought to a clean state; the roles are its members."""
    harness = _harness(request)
    state: ItemState = request.node.stash[STATE]
    recorder = state.recorder = Recorder()
    state.evidence_dir.mkdir(parents=True, exist_ok=True)
    runtime = harness.adapter.runtime(recorder, state.case_id, keylog=state.evidence_dir / "tls-keys.log")
    members = harness.adapter.cast(runtime)
    try:
        members.assemble()
        yield members
    finally:
        members.dismiss()
        files = write_case_evidence(state.evidence_dir, recorder, f"{request.node.nodeid} ({state.case_id})")
        for kind, path in files.items():
            state.evidence[kind] = str(path.relative_to(harness.run_dir))
        keylog = state.evidence_dir / "tls-keys.log"
        if keylog.exists():
            state.evidence["tls-keylog"] = str(keylog.relative_to(harness.run_dir))
        # Written out: let the recording go now (it may be as large as its byte limit), not whenever the garbage
        # collector comes to the cast's reference cycles; and not at the end of the run with the item either.
        recorder.chunks.clear()
        state.recorder = None


@pytest.fixture
def alice(cast):
    """Presentity and inbox."""
    return cast.parties["alice"]


@pytest.fixture
def bob(cast):
    """Authorized watcher and sender (once alice approves him)."""
    return cast.parties["bob"]


@pytest.fixture
def mallory(cast):
    """An authenticated stranger acting maliciously."""
    return cast.parties["mallory"]


@pytest.fixture
def unauthenticated(cast):
    """A factory of streams that never authenticate."""
    return cast.unauthenticated


@pytest.fixture
def eavesdropper(cast):
    """A passive eavesdropper on every connection the test's parties make to the IUT."""
    from conformance.attacker.eavesdropper import Eavesdropper
    return Eavesdropper(cast.rt.recorder)


@pytest.fixture
def remote_server(cast):
    """The harness as another domain's server, meeting the IUT on its server-to-server port."""
    return cast.remote_server


@pytest.fixture
def flood(cast):
    """Bounded load on the IUT while the test's parties go on (IMPP-5.3); stops by itself at the profile's bounds."""
    return cast.flood


@pytest.fixture
def mitm(request: pytest.FixtureRequest, cast):
    """An active attacker on the path between the parties it intercepts and the IUT (one test at a time)."""
    from conformance.attacker.on_path import OnPathAttacker
    with OnPathAttacker(cast.rt, _harness(request).adapter.stream_hooks()).engaged() as attacker:
        yield attacker



# -- the client cases: the client IUT, the harness as its service, the parties it meets there ---------------------------


@pytest.fixture
def client_bench(request: pytest.FixtureRequest, _impp_portal):
    """One client case's world: the stand-in service with a clean slate for the client's account, the harness's
    parties logged in to it, and the client IUT ready to be started."""
    from conformance.adapters.xmpp.cast import Cast
    from conformance.adapters.xmpp.client_under_test import ClientUnderTest
    harness = _harness(request)
    side = harness.start_client_side(_impp_portal)
    state: ItemState = request.node.stash[STATE]
    recorder = state.recorder = Recorder()
    state.evidence_dir.mkdir(parents=True, exist_ok=True)
    runtime = side.adapter.runtime(recorder, state.case_id, keylog=state.evidence_dir / "tls-keys.log")
    side.stand_in.recorder = recorder
    side.stand_in.clean_slate("alice")
    cast = Cast(runtime, accounts=("bob", "mallory"))  # alice is the client IUT's account
    bench = ClientBench(cast, ClientUnderTest(runtime, side.target, side.stand_in), side.stand_in)
    try:
        cast.assemble()
        yield bench
    finally:
        try:
            bench.client.dismiss()
        finally:
            cast.dismiss()
            side.stand_in.recorder = None
            files = write_case_evidence(state.evidence_dir, recorder, f"{request.node.nodeid} ({state.case_id})")
            for kind, path in files.items():
                state.evidence[kind] = str(path.relative_to(harness.run_dir))
            recorder.chunks.clear()
            state.recorder = None


@dataclasses.dataclass
class ClientBench:
    cast: object
    client: object
    stand_in: object


@pytest.fixture
def client(client_bench):
    """The client IUT, logging in as alice on the harness's stand-in service."""
    return client_bench.client


@pytest.fixture
def contact(client_bench):
    """bob: in the client's contact list, each allowed to see the other's presence."""
    client_bench.stand_in.befriends("alice", "bob")
    return client_bench.cast.parties["bob"]


@pytest.fixture
def stranger(client_bench):
    """mallory: authenticated on the same service, but no contact of the client's."""
    return client_bench.cast.parties["mallory"]


@pytest.fixture
def service(client_bench):
    """The harness as the client's genuine service: what the client's streams carried, as the service saw it."""
    return client_bench.stand_in


@pytest.fixture
def impostor(request: pytest.FixtureRequest, client_bench):
    """An attacker between the client IUT and its service (or answering in the service's place)."""
    from conformance.adapters.xmpp.impostor import Impostor
    from conformance.adapters.xmpp.on_path import XmppStreamHooks
    from conformance.attacker.on_path import OnPathAttacker
    hooks = XmppStreamHooks(direct_tls=False)
    with OnPathAttacker(client_bench.cast.rt, hooks).engaged() as attacker:
        yield Impostor(attacker, client_bench.stand_in, hooks)
