"""One page comparing several runs: cases as rows, targets as columns, each cell the case's verdict linking to its
evidence, in the manner of Autobahn's and quic-interop-runner's result pages. This is what an interop event
publishes. Written as `index.html`, `matrix.json` and `matrix.md`."""

from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

from conformance import __version__, catalogue
from conformance.verdicts import Verdict

from .model import worst

COLOURS = {"pass": "#2e7d32", "fail": "#c62828", "warn": "#ef6c00", "info": "#1565c0", "error": "#6a1b9a",
           "unsupported": "#757575", "na": "#9e9e9e", "xfail": "#8d6e63", "xpass": "#ad1457"}


class MatrixError(Exception):
    pass


def _load(run_dir: Path) -> dict[str, Any]:
    path = run_dir / "results.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MatrixError(f"{run_dir}: no results.json (is this a run directory?)") from None
    except (OSError, json.JSONDecodeError) as exc:
        raise MatrixError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict) or "tests" not in data or "target" not in data:
        raise MatrixError(f"{path}: not a results.json written by impp-conformance")
    data["_dir"] = run_dir.resolve()
    return data


def build(run_dirs: list[Path], out: Path) -> dict[str, Any]:
    runs = [_load(d) for d in run_dirs]
    names: list[str] = []
    for run in runs:
        name = run["target"].get("name") or run["run_id"]
        while name in names:
            name += "'"
        names.append(name)
    matrix: dict[str, dict[str, Any]] = {}
    for name, run in zip(names, runs):
        for test in run["tests"]:
            cell = matrix.setdefault(test["case_id"], {}).setdefault(name, {"tests": []})
            evidence = test.get("evidence", {}).get("transcript")
            link = os.path.relpath(run["_dir"] / evidence, out) if evidence else None
            cell["tests"].append({"nodeid": test["nodeid"], "verdict": test["verdict"], "message": test["message"],
                                  "transcript": link})
    for cells in matrix.values():
        for cell in cells.values():
            cell["verdict"] = worst([Verdict(t["verdict"]) for t in cell["tests"]]).value
    order = sorted(matrix, key=lambda c: (catalogue.section_key(catalogue.get(c).section), c))
    return {"tool": "impp-conformance", "version": __version__,
            "targets": [{"name": n, "run_id": r["run_id"], "started": r["started"], "exit_code": r.get("exit_code"),
                         "duration": r.get("duration"), "summary": r.get("summary"),
                         "report": os.path.relpath(r["_dir"] / "report.html", out)} for n, r in zip(names, runs)],
            "cases": {c: matrix[c] for c in order}}


def render_html(data: dict[str, Any]) -> str:
    names = [t["name"] for t in data["targets"]]
    esc = html.escape
    rows = []
    section = None
    for case_id, cells in data["cases"].items():
        case = catalogue.get(case_id)
        if case.section_title != section:
            section = case.section_title
            rows.append(f'<tr class="section"><th colspan="{len(names) + 2}">{esc(section)}</th></tr>')
        tds = []
        for name in names:
            cell = cells.get(name)
            if cell is None:
                tds.append('<td class="none">—</td>')
                continue
            verdict = cell["verdict"]
            first = next((t for t in cell["tests"] if t["verdict"] == verdict), cell["tests"][0])
            title = "\n".join(f"{t['verdict'].upper()} {t['nodeid'].split('::')[-1]}"
                              + (f": {t['message']}" if t["message"] else "") for t in cell["tests"])
            label = esc(Verdict(verdict).label)
            inner = f'<a href="{esc(first["transcript"])}">{label}</a>' if first["transcript"] else label
            tds.append(f'<td style="background:{COLOURS[verdict]}" title="{esc(title)}">{inner}'
                       f'<span class="n">{len(cell["tests"])}</span></td>')
        rows.append(f'<tr><td class="id" title="{esc(case.quote)}">{esc(case_id)}</td>'
                    f'<td class="level">{esc(case.level)}</td>{"".join(tds)}</tr>')
    heads = "".join(f'<th><a href="{esc(t["report"])}">{esc(t["name"])}</a><br><small>exit {t["exit_code"]}, '
                    f'{t["duration"]}s</small></th>' for t in data["targets"])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>IMPP security conformance matrix</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 4px 10px; text-align: center; }}
td.id, td.level {{ text-align: left; font-family: monospace; }}
tr.section th {{ background: #eee; text-align: left; }}
td a {{ color: white; text-decoration: none; font-weight: bold; }}
td {{ color: white; }} td.id, td.level, td.none {{ color: black; }}
span.n {{ font-size: 70%; margin-left: 4px; opacity: 0.8; }}
</style></head><body>
<h1>IMPP security conformance: results across targets</h1>
<p>Rows are the cases of the catalogue (hover for the quote of section 5), columns the targets. A cell is the worst
verdict among the case's tests (their number in small print); it links to that test's transcript, and hovering
shows every test with its message. Generated by impp-conformance {esc(data["version"])}.</p>
<table><tr><th>case</th><th>level</th>{heads}</tr>
{"".join(rows)}
</table></body></html>
"""


def render_markdown(data: dict[str, Any]) -> str:
    """The same matrix as a Markdown table (for a results page in the repository)."""
    names = [t["name"] for t in data["targets"]]
    lines = ["| case | level | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for case_id, cells in data["cases"].items():
        case = catalogue.get(case_id)
        verdicts = [Verdict(cells[n]["verdict"]).label if n in cells else "—" for n in names]
        lines.append(f"| {case_id} {case.title} | {case.level} | " + " | ".join(verdicts) + " |")
    return "\n".join(lines) + "\n"


def write(run_dirs: list[Path], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    data = build(run_dirs, out)
    (out / "matrix.json").write_text(json.dumps(data, indent=2), encoding="utf-8")
    (out / "matrix.md").write_text(render_markdown(data), encoding="utf-8")
    page = out / "index.html"
    page.write_text(render_html(data), encoding="utf-8")
    return page
