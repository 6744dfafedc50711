"""`impp-conformance`: run the suite, list its cases, serve the reference service, list its flaws, compare runs."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
from pathlib import Path

from conformance import __version__, catalogue
from conformance.verdicts import EXIT_CODES, EXIT_UNREACHABLE, EXIT_USAGE

EPILOG = "exit codes:\n" + "\n".join(f"  {code}  {meaning}" for code, meaning in EXIT_CODES.items())


def _implemented() -> dict[str, list[str]]:
    """Case ID -> test node IDs in the suite, found by collecting it (no target is contacted)."""
    import pytest

    class Collector:
        def __init__(self) -> None:
            self.found: dict[str, list[str]] = {}

        def pytest_collection_modifyitems(self, items):
            from conformance.marks import case_of
            for item in items:
                ident = case_of(item)
                if ident:
                    self.found.setdefault(ident[0], []).append(item.nodeid)

    collector = Collector()
    with tempfile.TemporaryDirectory() as tmp:
        code = pytest.main(["--collect-only", "-q", "--pyargs", "conformance.suite", "-p", "no:cacheprovider",
                            "--out", tmp, "-o", "console_output_style=classic"], plugins=[collector])
    if code not in (0, 5):
        raise SystemExit(f"error: the suite does not collect (pytest exit {code})")
    return collector.found


def cmd_list(args: argparse.Namespace) -> int:
    import contextlib
    import io
    with contextlib.redirect_stdout(io.StringIO()):
        implemented = _implemented()
    rows = []
    for case in sorted(catalogue.cases().values(), key=lambda c: (catalogue.section_key(c.section), c.id)):
        rows.append({"id": case.id, "section": case.section, "level": case.level, "iut": case.iut,
                     "title": case.title, "implemented": case.id in implemented,
                     "tests": len(implemented.get(case.id, []))})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'case':<12} {'§':<5} {'level':<6} {'IUT':<8} {'tests':>5}  title")
    for row in rows:
        tests = str(row["tests"]) if row["implemented"] else "-"
        print(f"{row['id']:<12} {row['section']:<5} {row['level']:<6} {row['iut']:<8} {tests:>5}  {row['title']}")
    done = sum(r["implemented"] for r in rows)
    print(f"\n{done} of {len(rows)} cases implemented")
    return 0


def cmd_flaws(args: argparse.Namespace) -> int:
    from conformance.reference.flaws import FLAWS
    from conformance.reference_client.flaws import FLAWS as CLIENT_FLAWS
    groups = (("service", FLAWS), ("client", CLIENT_FLAWS))
    if args.json:
        print(json.dumps([{"name": f.name, "iut": iut, "summary": f.summary, "breaks": list(f.breaks)}
                          for iut, flaws in groups for f in flaws.values()], indent=2))
        return 0
    for iut, flaws in groups:
        print(f"# flaws of the reference {iut}")
        for flaw in flaws.values():
            print(f"{flaw.name}\n    {flaw.summary}\n    breaks: {', '.join(flaw.breaks)}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from conformance.reference.__main__ import serve
    from conformance.reference.config import ServiceConfig
    from conformance.reference.flaws import UnknownFlaw, check

    try:
        flaws = check(args.flaw)
    except UnknownFlaw as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="impp-reference-"))

    def announce(service, port, profile_path):
        print(profile_path.read_text(encoding="utf-8"))
        print(f"# profile written to {profile_path}", file=sys.stderr)
        print(f"# run the suite against it: impp-conformance run --profile {profile_path}", file=sys.stderr)
        print("# stop with Ctrl-C", file=sys.stderr, flush=True)

    try:
        asyncio.run(serve(ServiceConfig(data_dir=data, port=args.port, flaws=flaws), announce))
    except OSError as exc:
        print(f"error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        pass
    return 0


def cmd_run(args: argparse.Namespace, extra: list[str]) -> int:
    from conformance.profile import ProfileError, load
    from conformance.reference.flaws import UnknownFlaw, check

    profile = None
    if args.profile:
        if args.flaw:
            print("error: --flaw applies to the embedded reference service only; drop --profile or --flaw",
                  file=sys.stderr)
            return EXIT_USAGE
        try:
            profile = load(args.profile, secrets=not args.start)
        except ProfileError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    elif args.start:
        print("error: --start needs --profile (the profile names the start and stop commands)", file=sys.stderr)
        return EXIT_USAGE
    if args.baseline:
        from conformance.baseline import BaselineError
        from conformance.baseline import load as load_baseline
        try:
            load_baseline(args.baseline)
        except BaselineError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_USAGE
    from conformance.reference_client.flaws import FLAWS as CLIENT_FLAWS
    try:
        check([f for f in args.flaw if f not in CLIENT_FLAWS])
    except UnknownFlaw as exc:
        print(f"error: {exc} (or of the reference client: {', '.join(sorted(CLIENT_FLAWS))})", file=sys.stderr)
        return EXIT_USAGE
    unknown = [c for c in args.case if c not in catalogue.cases()]
    if unknown:
        print(f"error: --case {', '.join(unknown)}: not a case of the catalogue (see `impp-conformance list`)",
              file=sys.stderr)
        return EXIT_USAGE
    if args.start and profile.target.kind == "client":
        print("error: --start: a client profile has nothing to start (the harness is the client's service)",
              file=sys.stderr)
        return EXIT_USAGE
    if args.start:
        from conformance.launch import StartError, started
        try:
            with started(profile) as generated:
                baseline = args.baseline or (str(profile.target.baseline) if profile.target.baseline else None)
                return _run_pytest(args, extra, str(generated), baseline)
        except StartError as exc:
            print(f"error: cannot start the target: {exc}", file=sys.stderr)
            return EXIT_UNREACHABLE
    return _run_pytest(args, extra, args.profile, args.baseline)


def _run_pytest(args: argparse.Namespace, extra: list[str], profile: str | None, baseline: str | None) -> int:
    import pytest

    # This process imported the conformance package before pytest could mark its plugin for assertion rewriting;
    # the plugin does not rely on rewritten asserts, so pytest's warning about it is noise.
    # An explicit rootdir: otherwise pytest may take the profile's directory for one (it reads option values
    # as paths before the plugin's options are known), and the suite's node IDs would depend on it.
    suite_dir = Path(__file__).resolve().parent / "suite"
    pytest_args = ["--pyargs", "conformance.suite", "-p", "no:cacheprovider", "--out", args.out,
                   "--rootdir", str(suite_dir), "-o", "console_output_style=classic", "-q", "--no-header",
                   "-W", "ignore::pytest.PytestAssertRewriteWarning"]
    if profile:
        pytest_args += ["--profile", profile]
    for flaw in args.flaw:
        pytest_args += ["--flaw", flaw]
    for case_id in args.case:
        pytest_args += ["--case", case_id]
    if args.k:
        pytest_args += ["-k", args.k]
    if args.strict:
        pytest_args.append("--impp-strict")
    if args.run_id:
        pytest_args += ["--run-id", args.run_id]
    if baseline:
        pytest_args += ["--baseline", baseline]
    return int(pytest.main(pytest_args + extra))


def cmd_report(args: argparse.Namespace) -> int:
    from conformance.report.matrix import MatrixError, write
    try:
        page = write([Path(d) for d in args.runs], Path(args.out))
    except MatrixError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    print(f"matrix: {page}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="impp-conformance", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description="Security conformance suite for IMPP (instant messaging and "
                                                 "presence) implementations, after draft-ietf-impp-security §5.")
    parser.add_argument("--version", action="version", version=f"impp-conformance {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the suite (against the embedded reference service unless --profile)",
                         epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("--profile", help="target profile (TOML)")
    run.add_argument("--case", action="append", default=[], metavar="ID", help="only this case (repeatable)")
    run.add_argument("-k", metavar="EXPR", help="only tests matching this pytest -k expression")
    run.add_argument("--strict", action="store_true", help="SHOULD-level deviations (WARN) fail the run too")
    run.add_argument("--flaw", action="append", default=[], metavar="NAME",
                     help="switch on a flaw of the embedded reference service or client (repeatable)")
    run.add_argument("--out", default="reports", help="report directory (default: reports)")
    run.add_argument("--run-id", help="name of the run's report directory (default: time and target)")
    run.add_argument("--start", action="store_true",
                     help="start the target with the profile's control.start command first, stop it afterwards")
    run.add_argument("--baseline", metavar="FILE",
                     help="known deviations of the target (default: the profile's target.baseline)")

    listing = sub.add_parser("list", help="list the catalogue's cases and which are implemented")
    listing.add_argument("--json", action="store_true")

    serve = sub.add_parser("serve", help="run the reference service in the foreground and print its profile")
    serve.add_argument("--flaw", action="append", default=[], metavar="NAME")
    serve.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: any free port)")
    serve.add_argument("--data", help="data directory (default: a new temporary directory)")

    flaws = sub.add_parser("flaws", help="list the reference service's and client's flaws and the cases each breaks")
    flaws.add_argument("--json", action="store_true")

    report = sub.add_parser("report", help="one HTML page (and JSON) comparing several runs: cases x targets")
    report.add_argument("runs", nargs="+", metavar="RUN_DIR", help="run directories (reports/<run-id>)")
    report.add_argument("--out", default="reports/matrix", help="output directory (default: reports/matrix)")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "run":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "run":
        return cmd_run(args, extra)
    return {"list": cmd_list, "flaws": cmd_flaws, "serve": cmd_serve, "report": cmd_report}[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
