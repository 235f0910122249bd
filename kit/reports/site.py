"""The site of runs under ``reports/``: ``index.html`` (the entry point) lists every run, newest
first, with its profile, date, commit, data checksum, status and the headline Sharpe ratio (with its
95% interval) of each strategy; ``runs/<run_id>/index.html`` is one page per run (status, the review
summary, its stage pages, provenance); ``compare.html`` sets two runs side by side (parameters,
commit and data that changed; headline figures).

With a Quarto >= 1.4 on PATH the site is a Quarto website rendered in a temporary project folder
outside the repository (the home page a Quarto table listing generated from each run's ``run.json``
and ``metrics.json``), then copied into ``reports/`` with its shared ``site_libs/``; only run pages
whose run changed since the last build are re-rendered (``reports/.site.json`` records what was
built). Without Quarto, or when its render fails, the same pages are written as plain HTML and the
home page says so. Every page opens from disk without a server.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

from ..base.atomic import atomic_path, atomic_write_text
from ..paths import REPO_ROOT, REPORTS_DIR
from . import render as _render
from .artifacts import load_metrics
from .render import quarto_project, renderer_label, renderer_name, run_quarto
from .summary import SUMMARY_NAME, fmt_pct, fmt_ratio, run_status

__all__ = ["SITE_VERSION", "collect_runs", "choose_pair", "compare_runs", "build_site", "build_index"]

SITE_VERSION = 1
"""Bumped when the pages' layout changes, so every run page is rebuilt once."""

_MANIFEST = ".site.json"
e = html.escape


# --- what the pages show -----------------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def collect_runs(reports_dir=REPORTS_DIR) -> list[dict]:
    """One record per run folder under ``reports_dir/runs`` (those holding a ``run.json``), newest
    first (by start time, then run id).

    Returns
    -------
    list of dict with keys ``run_id``, ``dir`` (Path), ``info`` (``run.json``; ``{}`` if unreadable),
    ``params`` (``params.yaml``), ``metrics`` (``metrics.json``), ``status`` and ``detail``
    (:func:`kit.reports.summary.run_status`; ``unreadable`` when ``run.json`` is not JSON),
    ``started`` (ISO UTC string or ""), ``summary`` (True when ``summary.html`` exists),
    ``fingerprint`` (sha256 of what the run page shows).
    """
    runs = []
    for run_dir in sorted((Path(reports_dir) / "runs").glob("*")):
        if not (run_dir / "run.json").is_file():
            continue
        info = _read_json(run_dir / "run.json")
        try:
            params = yaml.safe_load((run_dir / "params.yaml").read_text()) or {}
        except (OSError, yaml.YAMLError):
            params = {}
        if info is None:
            status, detail, info = "unreadable", "run.json is not valid JSON", {}
        else:
            status, detail = run_status(info, params)
        try:
            metrics = load_metrics(run_dir)
        except (OSError, json.JSONDecodeError):
            metrics = {}
        summary = (run_dir / f"{SUMMARY_NAME}.html").exists()
        h = hashlib.sha256()
        for name in ("run.json", "metrics.json", "params.yaml"):
            p = run_dir / name
            h.update(p.read_bytes() if p.exists() else b"-")
        h.update(f"{summary}{SITE_VERSION}".encode())
        runs.append({
            "run_id": run_dir.name, "dir": run_dir, "info": info, "params": params, "metrics": metrics,
            "status": status, "detail": detail, "started": str(info.get("started_utc") or ""),
            "summary": summary, "fingerprint": h.hexdigest(),
        })
    runs.sort(key=lambda r: (r["started"], r["run_id"]), reverse=True)
    return runs


def _strategies(run: dict) -> dict:
    return (run["metrics"].get("backtest") or {}).get("strategies") or {}


def _headline_html(run: dict) -> str:
    """``<b>name</b> Sharpe [low, high]`` per strategy, one per line, or an empty string."""
    return "<br>".join(
        f"<b>{e(str(name))}</b> {fmt_ratio(s.get('sharpe_ratio'))}&nbsp;"
        f"[{fmt_ratio(s.get('sharpe_ci_low'))},&nbsp;{fmt_ratio(s.get('sharpe_ci_high'))}]"
        for name, s in _strategies(run).items()
    )


def _status_html(run: dict) -> str:
    return f'<span class="kit-status-{e(run["status"])}" title="{e(run["detail"])}">{e(run["status"])}</span>'


def _pages_html(run: dict, prefix: str) -> str:
    links = []
    if run["summary"]:
        links.append(f'<a href="{prefix}{SUMMARY_NAME}.html"><b>summary</b></a>')
    for name, s in (run["info"].get("notebooks") or {}).items():
        if s.get("html"):
            links.append(f'<a href="{prefix}{e(s["html"])}">{e(name)}</a>')
    return " · ".join(links)


def _table(headers: list[str], rows: list[list[str]], num: set[int] = frozenset(), diff_rows: set[int] = frozenset()) -> str:
    """An HTML table (cells already HTML); ``num`` the indices of right-aligned numeric columns,
    ``diff_rows`` the rows to highlight."""
    th = "".join(f'<th class="{"num" if i in num else ""}">{h}</th>' for i, h in enumerate(headers))
    body = "".join(
        f'<tr class="{"kit-diff" if k in diff_rows else ""}">'
        + "".join(f'<td class="{"num" if i in num else ""}">{c}</td>' for i, c in enumerate(row)) + "</tr>"
        for k, row in enumerate(rows)
    )
    return f'<table class="table table-sm kit-table"><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>'


def _run_page_body(run: dict) -> str:
    """The HTML body of a run's page (shared by the Quarto and plain-HTML builds)."""
    info, params = run["info"], run["params"]
    parts = [f'<p>Status: {_status_html(run)}: {e(run["detail"])}.</p>']
    if run["summary"]:
        parts.append(f'<p class="lead"><a href="{SUMMARY_NAME}.html">Review summary</a>: what was tested, the headline '
                     "figures with their intervals, equity curves, gate decisions and caveats.</p>")
    rows = []
    for name, s in (info.get("notebooks") or {}).items():
        page = f'<a href="{e(s["html"])}">{e(name)}</a>' if s.get("html") else e(name)
        rows.append([page, e(str(s.get("status", "?"))), fmt_ratio(s.get("seconds"), 1)])
    for name in params.get("notebooks") or []:
        if name not in (info.get("notebooks") or {}):
            rows.append([e(name), "not run", ""])
    parts.append("<h2>Stages</h2>" + (_table(["stage", "status", "seconds"], rows, num={2}) if rows else "<p>No stage ran.</p>"))
    strategies = _strategies(run)
    if strategies:
        bt = run["metrics"]["backtest"]
        hrows = [[e(str(n)), fmt_ratio(s.get("sharpe_ratio")), f"[{fmt_ratio(s.get('sharpe_ci_low'))},&nbsp;{fmt_ratio(s.get('sharpe_ci_high'))}]",
                  fmt_ratio(s.get("deflated_sharpe_ratio")), fmt_pct(s.get("annual_return")), fmt_pct(s.get("max_drawdown"))]
                 for n, s in strategies.items()]
        parts.append(
            f"<h2>Headline</h2><p>Out of sample {e(str(bt.get('start', '?')))} to {e(str(bt.get('end', '?')))}, "
            f"{e(str(bt.get('n_symbols', '?')))} symbols, net of {fmt_ratio(bt.get('cost_bps'), 1)} bps of traded notional; "
            "Sharpe ratios annualised with their 95% interval; return in % a year.</p>"
            + _table(["strategy", "Sharpe", "95% CI", "deflated Sharpe", "return", "max drawdown"], hrows, num={1, 2, 3, 4, 5})
        )
    prov = [
        ["profile", e(str(info.get("profile", "?"))) + (f": {e(str(params['description']))}" if params.get("description") else "")],
        ["started / finished (UTC)", f"{e(str(info.get('started_utc', '?')))} / {e(str(info.get('finished_utc', '-')))}"],
        ["duration", f"{fmt_ratio(info.get('seconds'), 1)} s"],
        ["git commit", f"<code>{e(str(info.get('git_commit', '?')))}</code>" + (" (uncommitted changes)" if info.get("git_dirty") else "")],
        ["data", f"<code>{e(str(info.get('data_path', '?')))}</code><br>sha256 <code>{e(str(info.get('data_sha256', '?')))}</code>"],
        ["renderer", e(str(info.get("renderer", "?")))],
        ["python, platform", f"{e(str(info.get('python', '?')))}, {e(str(info.get('platform', '?')))}"],
        ["versions", ", ".join(f"{e(k)} {e(str(v))}" for k, v in (info.get("versions") or {}).items())],
    ]
    if info.get("reused_artifacts_from"):
        src = info["reused_artifacts_from"]
        prov.append(["artifacts reused from", f'<a href="../{e(str(src.get("run_id")))}/index.html">{e(str(src.get("run_id")))}</a>'])
    if info.get("error"):
        prov.append(["error", f"<code>{e(str(info['error']))}</code>"])
    parts.append("<h2>Provenance</h2>" + _table(["field", "value"], prov))
    parts.append('<p>Recorded files: <a href="run.json">run.json</a> · <a href="params.yaml">params.yaml</a> · '
                 '<a href="metrics.json">metrics.json</a> · <a href="artifacts/">artifacts/</a></p>')
    return "\n".join(parts)


# --- comparing two runs ------------------------------------------------------------------------


def choose_pair(runs: list[dict], compare: tuple[str, str] | None = None) -> tuple[dict, dict] | None:
    """The two runs the compare page shows, ``(older, newer)``: the two named in ``compare`` (run
    ids, in either order), else the newest run and the newest earlier run of the same profile (or,
    when there is none, the run before it). None with fewer than two runs.

    Raises
    ------
    ValueError
        A run named in ``compare`` is not among ``runs``, or both names are the same.
    """
    by_id = {r["run_id"]: r for r in runs}
    if compare:
        a, b = compare
        missing = [x for x in (a, b) if x not in by_id]
        if missing:
            raise ValueError(f"compare: no run {missing[0]!r} under runs/ (runs: {', '.join(list(by_id)[:5])}...)")
        if a == b:
            raise ValueError(f"compare: the two runs must differ, got {a!r} twice")
        pair = sorted((by_id[a], by_id[b]), key=lambda r: (r["started"], r["run_id"]))
        return pair[0], pair[1]
    if len(runs) < 2:
        return None
    newest = runs[0]
    older = next((r for r in runs[1:] if r["info"].get("profile") == newest["info"].get("profile")), runs[1])
    return older, newest


def _flatten(d, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if str(k).startswith("_") or k == "path":
            continue  # YAML templates (merged into the sections) and where the profile was read from
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def _git_log(old: str, new: str, limit: int = 30) -> list[str] | None:
    """``git log --oneline old..new`` in the repository (None when either commit is unknown here)."""
    try:
        out = subprocess.run(["git", "log", "--oneline", f"-{limit}", f"{old}..{new}"], cwd=REPO_ROOT,
                             capture_output=True, text=True, check=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return out.splitlines()


def compare_runs(old: dict, new: dict) -> dict:
    """What changed between two runs (records of :func:`collect_runs`).

    Returns
    -------
    dict with ``provenance`` (list of ``(field, old, new)``), ``params`` (the parameters that differ,
    ``(dotted key, old, new)``; a key missing on one side is ``None`` there), ``commits`` (``git log
    --oneline old..new`` lines; None when unavailable), ``headline`` (``(strategy, old stats dict or
    None, new stats dict or None)``) and ``stages`` (``(stage, old seconds, new seconds)``).
    """
    oi, ni = old["info"], new["info"]
    fields = [("profile", "profile"), ("started (UTC)", "started_utc"), ("git commit", "git_commit"), ("uncommitted changes", "git_dirty"),
              ("data file", "data_path"), ("data sha256", "data_sha256"), ("renderer", "renderer"), ("python", "python")]
    provenance = [(label, oi.get(key), ni.get(key)) for label, key in fields]
    provenance.append(("status", old["detail"], new["detail"]))
    for mod in sorted(set(oi.get("versions") or {}) | set(ni.get("versions") or {})):
        provenance.append((f"{mod} version", (oi.get("versions") or {}).get(mod), (ni.get("versions") or {}).get(mod)))
    po, pn = _flatten(old["params"]), _flatten(new["params"])
    params = [(k, po.get(k), pn.get(k)) for k in sorted(set(po) | set(pn)) if po.get(k) != pn.get(k)]
    commits = None
    if oi.get("git_commit") and ni.get("git_commit") and oi["git_commit"] != ni["git_commit"]:
        commits = _git_log(oi["git_commit"], ni["git_commit"])
    so, sn = _strategies(old), _strategies(new)
    headline = [(name, so.get(name), sn.get(name)) for name in list(dict.fromkeys([*sn, *so]))]
    stages = [(name, (oi.get("notebooks") or {}).get(name, {}).get("seconds"), (ni.get("notebooks") or {}).get(name, {}).get("seconds"))
              for name in dict.fromkeys([*(oi.get("notebooks") or {}), *(ni.get("notebooks") or {})])]
    return {"provenance": provenance, "params": params, "commits": commits, "headline": headline, "stages": stages}


def _compare_body(pair: tuple[dict, dict] | None) -> str:
    how = ("<p>Another pair: <code>python -m kit index --compare OLD_RUN NEW_RUN</code> (run ids), then reload this page.</p>")
    if pair is None:
        return "<p>Fewer than two runs: nothing to compare yet.</p>" + how
    old, new = pair
    c = compare_runs(old, new)
    link = lambda r: f'<a href="runs/{e(r["run_id"])}/index.html">{e(r["run_id"])}</a>'  # noqa: E731
    parts = [f"<p>Older run {link(old)} against newer run {link(new)}. Highlighted rows differ.</p>" + how]
    fmt = lambda v: "-" if v is None else e(json.dumps(v) if isinstance(v, (list, dict, bool)) else str(v))  # noqa: E731
    rows = [[e(f), fmt(a), fmt(b)] for f, a, b in c["provenance"]]
    parts.append("<h2>Provenance</h2>" + _table(["", "older", "newer"], rows, diff_rows={i for i, (_, a, b) in enumerate(c["provenance"]) if a != b}))
    if c["params"]:
        rows = [[f"<code>{e(k)}</code>", fmt(a), fmt(b)] for k, a, b in c["params"]]
        parts.append(f"<h2>Parameters that differ ({len(rows)})</h2>" + _table(["parameter", "older", "newer"], rows))
    else:
        parts.append("<h2>Parameters</h2><p>The same parameters in both runs.</p>")
    if c["commits"] is not None:
        parts.append(f"<h2>Commits between them ({len(c['commits'])}{'+' if len(c['commits']) >= 30 else ''})</h2>"
                     + ("<pre>" + e("\n".join(c["commits"])) + "</pre>" if c["commits"] else "<p>None on the older run's side "
                        "(the newer commit is not a descendant of the older one).</p>"))
    rows = []
    for name, a, b in c["headline"]:
        a, b = a or {}, b or {}
        d = (b.get("sharpe_ratio") - a.get("sharpe_ratio")) if all(isinstance(x.get("sharpe_ratio"), (int, float)) for x in (a, b)) else None
        rows.append([e(str(name)),
                     f"{fmt_ratio(a.get('sharpe_ratio'))}&nbsp;[{fmt_ratio(a.get('sharpe_ci_low'))},&nbsp;{fmt_ratio(a.get('sharpe_ci_high'))}]",
                     f"{fmt_ratio(b.get('sharpe_ratio'))}&nbsp;[{fmt_ratio(b.get('sharpe_ci_low'))},&nbsp;{fmt_ratio(b.get('sharpe_ci_high'))}]",
                     f"{d:+.2f}" if d is not None else "n/a",
                     fmt_ratio(a.get("deflated_sharpe_ratio")), fmt_ratio(b.get("deflated_sharpe_ratio")),
                     fmt_pct(a.get("annual_return")), fmt_pct(b.get("annual_return")),
                     fmt_pct(a.get("max_drawdown")), fmt_pct(b.get("max_drawdown"))])
    parts.append(
        "<h2>Headline side by side</h2><p>Out-of-sample Sharpe ratios with their 95% intervals, deflated Sharpe ratios, "
        "annual return and maximum drawdown (%). Overlapping intervals: the two runs are not distinguishable on this evidence.</p>"
        + (_table(["strategy", "Sharpe, older", "Sharpe, newer", "change", "DSR, older", "DSR, newer", "return, older",
                   "return, newer", "max DD, older", "max DD, newer"], rows, num=set(range(1, 10)))
           if rows else "<p>Neither run recorded backtest figures.</p>")
    )
    rows = [[e(n), fmt_ratio(a, 1), fmt_ratio(b, 1)] for n, a, b in c["stages"]]
    if rows:
        parts.append("<h2>Stage times (seconds)</h2>" + _table(["stage", "older", "newer"], rows, num={1, 2}))
    return "\n".join(parts)


# --- building ----------------------------------------------------------------------------------


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,Arial,sans-serif;margin:0;color:#222;line-height:1.45}
main{max-width:1200px;margin:0 auto;padding:1em 2em}nav{background:#1f4e79;padding:.6em 2em}nav a{color:#fff;margin-right:1.5em;text-decoration:none}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border-bottom:1px solid #ddd;padding:4px 10px;vertical-align:top;font-size:.9em;text-align:left}
th{border-bottom:2px solid #999}td{overflow-wrap:anywhere}td code{word-break:break-all}.num{text-align:right;font-variant-numeric:tabular-nums}code{font-size:.9em;color:#7d12ba}
.kit-status-ok{color:#1b7f3b;font-weight:600}.kit-status-failed,.kit-status-interrupted{color:#b00020;font-weight:600}
.kit-status-incomplete,.kit-status-partial,.kit-status-running,.kit-status-unreadable{color:#a15c00;font-weight:600}.kit-diff{background:#fff4ce}
.note{color:#555;font-size:.9em}"""


def _html_page(title: str, body: str, root: str) -> str:
    return (f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{e(title)}</title><style>{_CSS}</style></head><body>'
            f'<nav><a href="{root}index.html"><b>Deep momentum research kit</b></a><a href="{root}index.html">Runs</a>'
            f'<a href="{root}compare.html">Compare</a></nav><main><h1>{e(title)}</h1>\n{body}\n</main></body></html>\n')


def _home_rows(runs: list[dict]) -> list[list[str]]:
    return [[f'<a href="runs/{e(r["run_id"])}/index.html">{e(r["run_id"])}</a>', e(r["started"].replace("T", " ")[:19]),
             e(str(r["info"].get("profile", ""))), _status_html(r),
             f'<code>{e(str(r["info"].get("git_commit", ""))[:7])}</code>' + ("*" if r["info"].get("git_dirty") else ""),
             f'<code>{e(str(r["info"].get("data_sha256", ""))[:12])}</code>', _headline_html(r), _pages_html(r, f"runs/{r['run_id']}/")]
            for r in runs]


_HOME_INTRO = ("Every run, newest first. Headline: each strategy's out-of-sample Sharpe ratio, net of the run's costs, "
               "with its 95% interval. Status: ok, partial (only some stages asked for), failed, interrupted, or "
               "incomplete (no finish recorded). A commit marked * was run with uncommitted changes.")
_HOME_HEAD = ["run", "started (UTC)", "profile", "status", "commit", "data sha256", "headline Sharpe [95% CI]", "pages"]


def _build_html(reports_dir: Path, runs: list[dict], pair, note: str) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    for r in runs:
        atomic_write_text(r["dir"] / "index.html", _html_page(f"Run {r['run_id']}", _run_page_body(r), "../../"))
    atomic_write_text(reports_dir / "compare.html", _html_page("Compare two runs", _compare_body(pair), ""))
    body = (f"<p>{_HOME_INTRO}</p>" + _table(_HOME_HEAD, _home_rows(runs)) + f'<p class="note">{e(note)} Built {stamp}.</p>')
    atomic_write_text(reports_dir / "index.html", _html_page("Runs", body, ""))


def _qmd(title: str, body_html: str, extra: dict | None = None) -> str:
    front = yaml.safe_dump({"title": title, **(extra or {})}, sort_keys=False, allow_unicode=True)
    return f"---\n{front}---\n\n```{{=html}}\n{body_html}\n```\n"


def _build_quarto(reports_dir: Path, runs: list[dict], pair, stale: list[dict], note: str) -> None:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    with tempfile.TemporaryDirectory(prefix="kit-quarto-site-") as tmp:
        tmp = Path(tmp)
        pages = ["index.qmd", "compare.qmd"] + [f"runs/{r['run_id']}/index.qmd" for r in stale]
        quarto_project(tmp, pages, {
            "project": {"type": "website", "output-dir": "_site"},
            "website": {"title": "Deep momentum research kit", "search": False,
                        "navbar": {"left": [{"href": "index.qmd", "text": "Runs"}, {"href": "compare.qmd", "text": "Compare"}]}},
            "format": {"html": {"embed-resources": False, "toc": False, "page-layout": "full"}},
        })
        items = []
        for r, row in zip(runs, _home_rows(runs), strict=True):
            items.append({"title": r["run_id"], "path": f"runs/{r['run_id']}/index.html",
                          "date": r["started"][:19] or "1970-01-01T00:00:00",
                          **{k: v for k, v in zip(["profile", "status", "commit", "data", "headline", "pages"], row[2:], strict=True)}})
        (tmp / "runs.yml").write_text(yaml.safe_dump(items, sort_keys=False, allow_unicode=True))
        listing = {"contents": "runs.yml", "type": "table", "sort": "date desc", "date-format": "YYYY-MM-DD HH:mm",
                   "fields": ["title", "date", "profile", "status", "commit", "data", "headline", "pages"],
                   "field-display-names": dict(zip(["title", "date", "profile", "status", "commit", "data", "headline", "pages"],
                                                   _HOME_HEAD, strict=True)),
                   "sort-ui": True, "filter-ui": True, "page-size": 100}
        (tmp / "index.qmd").write_text(
            "---\n" + yaml.safe_dump({"title": "Runs", "listing": listing}, sort_keys=False, allow_unicode=True) + "---\n\n"
            + f"{_HOME_INTRO}\n\n::: {{#runs-listing}}\n:::\n\n<p class=\"text-muted small\">{e(note)} Built {stamp}.</p>\n")
        (tmp / "compare.qmd").write_text(_qmd("Compare two runs", _compare_body(pair)))
        for r in stale:
            (tmp / "runs" / r["run_id"]).mkdir(parents=True)
            (tmp / "runs" / r["run_id"] / "index.qmd").write_text(_qmd(f"Run {r['run_id']}", _run_page_body(r)))
        run_quarto(["render"], cwd=tmp)
        site = tmp / "_site"
        shutil.copytree(site / "site_libs", reports_dir / "site_libs", dirs_exist_ok=True)
        for r in stale:
            with atomic_path(r["dir"] / "index.html") as dst:
                shutil.copyfile(site / "runs" / r["run_id"] / "index.html", dst)
        for name in ("compare.html", "index.html"):
            with atomic_path(reports_dir / name) as dst:
                shutil.copyfile(site / name, dst)


def build_site(reports_dir=REPORTS_DIR, renderer: str = "auto", compare: tuple[str, str] | None = None, full: bool = False) -> Path:
    """(Re)build the site of runs in ``reports_dir`` and return ``reports_dir/index.html``.

    Parameters
    ----------
    reports_dir : the reports folder (holding ``runs/``).
    renderer : ``"auto"`` (Quarto when a Quarto >= 1.4 is on PATH), ``"quarto"`` or ``"nbconvert"``
        (the plain-HTML build).
    compare : two run ids for ``compare.html``; default: the newest run and the previous run of its
        profile (:func:`choose_pair`).
    full : re-render every run page, not only those whose run changed since the last build.

    Raises
    ------
    ValueError
        ``compare`` names an unknown run, or the same run twice.
    RuntimeError
        ``renderer='quarto'`` without a usable Quarto. (A Quarto render that fails is reported on
        stderr and the plain-HTML site written instead: the site never stops a run.)
    """
    reports_dir = Path(reports_dir)
    (reports_dir / "runs").mkdir(parents=True, exist_ok=True)
    runs = collect_runs(reports_dir)
    pair = choose_pair(runs, compare)
    which = renderer_name(renderer)
    manifest = _read_json(reports_dir / _MANIFEST) or {}
    if which == "quarto":
        label = renderer_label("quarto")
        built = manifest.get("pages", {}) if manifest.get("renderer") == label and not full else {}
        stale = [r for r in runs if built.get(r["run_id"]) != r["fingerprint"] or not (r["dir"] / "index.html").exists()]
        try:
            _build_quarto(reports_dir, runs, pair, stale, f"Site built by {label}.")
        except RuntimeError as exc:
            print(f"kit: the Quarto build of the site failed, writing the plain-HTML site instead: {exc}", file=sys.stderr)
            which = "nbconvert"
        else:
            pages = {r["run_id"]: r["fingerprint"] for r in runs}
            atomic_write_text(reports_dir / _MANIFEST, json.dumps({"renderer": label, "pages": pages}, indent=1))
    if which != "quarto":
        why = "Quarto not on PATH" if not _render.quarto_path() else "Quarto not used"
        _build_html(reports_dir, runs, pair, f"Site built by the kit's plain-HTML fallback ({why}).")
        atomic_write_text(reports_dir / _MANIFEST, json.dumps({"renderer": "html", "pages": {}}, indent=1))
    return reports_dir / "index.html"


build_index = build_site
"""The name the run loop and ``python -m kit index`` call: :func:`build_site`."""
