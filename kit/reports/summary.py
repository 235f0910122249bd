"""The one-page review summary of a run (``summary.html``): the page a reviewer opens first.

Built only from what the run recorded (``run.json``, ``params.yaml``, ``metrics.json``, the tables
and returns under ``artifacts/`` read through :mod:`kit.reports.artifacts`, and the Caveats cells of
the executed stage notebooks); nothing is re-run. It says what was tested (universe, dates,
point-in-time or survivors when recorded, costs, configurations tried), shows the headline table
with intervals and deflated Sharpe ratios, the equity curves, the promotion-gate decisions, caveats,
and links to each stage page. The page is a notebook (``summary.ipynb``, outputs filled in here)
rendered by :func:`kit.reports.render_notebook`, so it gets the same renderer, banner and theme as
the stage pages.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
from pathlib import Path

import yaml

from ..base.atomic import atomic_path
from ..conventions import TRADING_DAYS
from .artifacts import load_metrics, load_returns, load_table
from .render import callout, render_notebook, renderer_name

__all__ = ["SUMMARY_NAME", "summary_notebook", "build_summary", "summary_page", "run_status", "fmt_pct", "fmt_ratio"]

SUMMARY_NAME = "summary"
"""Stem of the summary page in a run folder (``summary.ipynb`` and ``summary.html``)."""


# --- small readers and formatters --------------------------------------------------------------


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_params(run_dir: Path) -> dict:
    try:
        return yaml.safe_load((run_dir / "params.yaml").read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def fmt_pct(v, digits: int = 1) -> str:
    """A fraction as a percentage (``0.0123`` -> ``"1.2%"``); ``"n/a"`` for None, NaN or infinities."""
    return f"{v:.{digits}%}" if _finite(v) else "n/a"


def fmt_ratio(v, digits: int = 2) -> str:
    """A ratio with ``digits`` decimals (``0.6977`` -> ``"0.70"``); ``"n/a"`` for None, NaN or infinities."""
    return f"{v:.{digits}f}" if _finite(v) else "n/a"


def _interval(lo, hi) -> str:
    return f"[{fmt_ratio(lo)},\u00a0{fmt_ratio(hi)}]" if _finite(lo) and _finite(hi) else "n/a"  # no line break inside


def _cell_text(v) -> str:
    return str(v).replace("|", "\\|").replace("\n", " ")


def _md_table(headers: list[str], rows: list[list], align: str, caption: str = "", label: str = "", renderer: str = "quarto") -> str:
    """A Markdown pipe table; ``align`` one letter per column (``l`` or ``r``). Under Quarto a caption
    with ``label`` (``tbl-...``) makes it a cross-referenceable table."""
    sep = ["---:" if a == "r" else ":---" for a in align]
    lines = ["| " + " | ".join(_cell_text(h) for h in headers) + " |", "|" + "|".join(sep) + "|"]
    lines += ["| " + " | ".join(_cell_text(c) for c in row) + " |" for row in rows]
    text = "\n".join(lines)
    if caption:
        if renderer == "quarto":
            text += f"\n\n: {caption}" + (f" {{#{label}}}" if label else "")
        else:
            text += f"\n\n*{caption}*"
    return text


def run_status(info: dict, params: dict | None = None) -> tuple[str, str]:
    """``(status, detail)`` of a run for display, with a one-sentence detail naming the stages concerned.

    ``ok``: every stage it ran finished; ``partial``: ok, but only some of the profile's stages were
    asked for (``--notebooks``); ``failed``; ``interrupted`` (recorded so by the run loop);
    ``incomplete``: ``run.json`` still says ``running`` with no finish time, so the run is either
    still going or its process died.

    Parameters
    ----------
    info : the run's ``run.json``.
    params : the run's ``params.yaml`` (its ``notebooks`` list), or None.
    """
    status = str(info.get("status") or "unknown")
    stages = info.get("notebooks") or {}
    planned = list((params or {}).get("notebooks") or [])
    failed = [k for k, v in stages.items() if v.get("status") not in ("ok", None)]
    done = [k for k, v in stages.items() if v.get("status") == "ok"]
    missing = [n for n in planned if n not in stages]
    of = f"{len(done)} of {len(planned) or len(stages)} stages"
    if status == "failed":
        return "failed", f"failed{' at ' + ', '.join(failed) if failed else ''} ({of} done)"
    if status == "interrupted":
        return "interrupted", f"interrupted ({of} done)"
    if status == "running" and not info.get("finished_utc"):
        return "incomplete", f"no finish recorded: still running, or its process died ({of} done)"
    if status == "ok" and missing:
        return "partial", f"ok, {of} of the profile asked for ({', '.join(done)})"
    if status == "ok":
        return "ok", f"ok ({of})"
    return status, status


def _notebook_title_and_caveats(path: Path) -> tuple[str, str]:
    """(title, caveats markdown) of an executed notebook: its first ``# `` heading and the cell under
    its ``## Caveats`` heading (empty strings when absent)."""
    try:
        cells = json.loads(path.read_text()).get("cells", [])
    except (OSError, json.JSONDecodeError):
        return "", ""
    title, caveats = "", ""
    for cell in cells:
        if cell.get("cell_type") != "markdown":
            continue
        text = "".join(cell.get("source", []))
        if not title:
            m = re.match(r"\s*# (.+)", text)
            if m:
                title = m.group(1).strip()
        m = re.match(r"\s*## Caveats\s*\n(.*)", text, flags=re.S)
        if m:
            caveats = m.group(1).strip()
    return title, caveats


# --- the figure --------------------------------------------------------------------------------


def _equity_png(returns) -> bytes:
    """PNG of the growth of 1 (log scale) and the drawdown of each strategy's daily net returns."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from ..analytics import drawdown

    fig = Figure(figsize=(9, 5.2), dpi=110)
    FigureCanvasAgg(fig)
    ax1, ax2 = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2.2, 1]})
    for name in returns.columns:
        r = returns[name].dropna()
        if r.empty:
            continue
        (1.0 + r).cumprod().plot(ax=ax1, lw=1.1, label=str(name))
        (100 * drawdown(r)).plot(ax=ax2, lw=0.9, label=str(name))
    ax1.set_ylabel("growth of 1")
    ax1.axhline(1.0, color="black", lw=0.5)
    ax1.legend(fontsize=8, ncol=min(5, len(returns.columns)), loc="upper left")
    ax1.grid(alpha=0.3)
    ax2.set_ylabel("drawdown (%)")
    ax2.grid(alpha=0.3)
    ax2.set_xlabel("")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


# --- the notebook ------------------------------------------------------------------------------


def summary_notebook(run_dir, renderer: str = "quarto"):
    """The summary page of a run as a notebook (Markdown cells and filled-in outputs, never executed).

    Parameters
    ----------
    run_dir : the run folder (``reports/runs/<run_id>``).
    renderer : ``"quarto"`` or ``"nbconvert"``: which Markdown flavour (callouts, cross-references).

    Returns
    -------
    nbformat.NotebookNode

    Raises
    ------
    FileNotFoundError
        ``run_dir`` has no ``run.json``.
    """
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

    run_dir = Path(run_dir)
    if not (run_dir / "run.json").exists():
        raise FileNotFoundError(f"not a run folder (no run.json): {run_dir}")
    q = renderer == "quarto"
    info = _read_json(run_dir / "run.json")
    params = _read_params(run_dir)
    metrics = load_metrics(run_dir)
    shared = params.get("shared") or {}
    explore, train, bt = metrics.get("explore") or {}, metrics.get("train") or {}, metrics.get("backtest") or {}
    registry, audit = metrics.get("registry") or {}, metrics.get("audit") or {}
    status, detail = run_status(info, params)
    run_id = info.get("run_id", run_dir.name)
    cells = []
    md = cells.append

    md(new_markdown_cell(f"# Review summary · run {run_id}"))
    intro = (
        f"Profile **{info.get('profile', '?')}**"
        + (f": {params['description']}" if params.get("description") else "")
        + f". Status: **{detail}**.\n\n"
        "This page is built from what the run recorded (`run.json`, `params.yaml`, `metrics.json` and "
        "`artifacts/`); nothing was re-run to make it. The stage pages linked at the end hold the detail. "
        "[All runs](../../index.html)."
    )
    md(new_markdown_cell(intro))
    if status != "ok":
        md(new_markdown_cell(callout(
            "note" if status == "partial" else "important", f"This run is {status}",
            f"{detail}. Sections below show what the finished stages recorded; a missing section means the "
            "stage that writes it did not finish.", renderer)))

    # what was tested
    symbols = explore.get("symbols") or []
    n_sym = explore.get("n_symbols") or bt.get("n_symbols") or len(symbols) or shared.get("n_symbols")
    if shared.get("n_symbols"):
        selection = f"the {shared['n_symbols']} most liquid symbols as known on {shared.get('universe_as_of', '?')}"
    elif shared.get("symbols"):
        selection = "a fixed list"
    else:
        selection = "not recorded"
    shown = ", ".join(symbols[:12]) + (f" and {len(symbols) - 12} more" if len(symbols) > 12 else "")
    membership = shared.get("universe")
    if membership == "point_in_time":
        membership_text = "point-in-time: symbols that were index members on each decision date"
    elif membership == "survivors":
        membership_text = "survivors: today's constituents throughout (flatters long exposure)"
    else:
        membership_text = "not recorded by this run; treat as survivors (current constituents), which flatters long exposure"
    findings = sum(v for v in (explore.get("validation") or {}).values() if isinstance(v, (int, float)))
    models = train.get("models") or bt.get("models") or []
    epochs = (params.get("20_train") or {}).get("epochs")
    search = train.get("search") or {}
    tried = train.get("configurations_tried", bt.get("n_trials"))
    sweep = sorted({row.get("cost_bps") for row in bt.get("cost_sweep") or [] if _finite(row.get("cost_bps"))})
    reused = info.get("reused_artifacts_from")
    rows = [
        ["Universe", f"{n_sym or '?'} symbols ({selection})" + (f": {shown}" if shown else "")],
        ["Membership", membership_text],
        ["Data", f"{explore.get('start', shared.get('start', '?'))} to {explore.get('end', shared.get('end', '?'))}"
                 + (f", {explore['trading_days']} trading days" if explore.get("trading_days") else "")
                 + (f"; {findings} validation findings" if explore.get("validation") is not None else "")
                 + f"; `{Path(str(info.get('data_path', '?'))).name}` sha256 `{str(info.get('data_sha256', ''))[:16]}`"],
        ["Out of sample", f"{train.get('oos_start', bt.get('start', '?'))} to {train.get('oos_end', bt.get('end', '?'))}"
                          + (f", walk-forward in {train['folds']} blocks" if train.get("folds") else "")
                          + (f" of {(params.get('20_train') or {}).get('test_size')} trading days, retrained before each"
                             if (params.get("20_train") or {}).get("test_size") else "")
                          + (f"; {train['leakage_rows']} leakage rows" if "leakage_rows" in train else "")],
        ["Models", (", ".join(f"`{m}`" for m in models) or "not recorded")
                   + (f"; at most {epochs} epochs per fold" if epochs else "")],
        ["Configurations tried", (f"{tried} (the deflated Sharpe ratio corrects for them)" if tried is not None else "not recorded")
                                 + ("; searched: " + ", ".join(f"`{k}` {v.get('trials', '?')} trials" for k, v in search.items()) if search else "")],
        ["Costs", (f"{fmt_ratio(bt['cost_bps'], 1)} bps of traded notional" if _finite(bt.get("cost_bps")) else "not recorded")
                  + (f"; sweep over {', '.join(fmt_ratio(c, 0) for c in sweep)} bps" if sweep else "")
                  + (f"; gross exposure capped at {fmt_pct((params.get('30_backtest') or {}).get('max_gross'), 0)} of equity"
                     if _finite((params.get("30_backtest") or {}).get("max_gross")) else "")],
        ["Code", f"git `{str(info.get('git_commit', '?'))[:12]}`" + (" with uncommitted changes" if info.get("git_dirty") else "")
                 + (f"; positions reused from run `{reused.get('run_id')}` (git `{str(reused.get('git_commit', ''))[:12]}`)" if reused else "")],
    ]
    md(new_markdown_cell("## What was tested\n\n" + _md_table(["What", "Recorded"], rows, "ll")))

    # headline
    strategies = bt.get("strategies") or {}
    if not strategies:
        perf = load_table(run_dir, "performance", index_col=0)
        strategies = perf.to_dict(orient="index") if perf is not None else {}
    if strategies:
        head = ["Strategy", "Return", "Volatility", "Sharpe", "95% CI", "Bootstrap 95% CI", "PSR", "DSR", "Max DD", "Turnover"]
        rows = [
            [name, fmt_pct(s.get("annual_return")), fmt_pct(s.get("annual_volatility")), fmt_ratio(s.get("sharpe_ratio")),
             _interval(s.get("sharpe_ci_low"), s.get("sharpe_ci_high")), _interval(s.get("sharpe_boot_low"), s.get("sharpe_boot_high")),
             fmt_ratio(s.get("probabilistic_sharpe_ratio")), fmt_ratio(s.get("deflated_sharpe_ratio")), fmt_pct(s.get("max_drawdown")),
             fmt_pct(s.get("turnover"), 2)]
            for name, s in strategies.items()
        ]
        ref = "@tbl-headline" if q else "The table"
        text = (
            "## Headline\n\n"
            f"{ref} gives each strategy's out-of-sample daily net returns "
            f"({bt.get('start', '?')} to {bt.get('end', '?')}, net of {fmt_ratio(bt.get('cost_bps'), 1)} bps), annualised over "
            f"{TRADING_DAYS} trading days. Sharpe ratios carry two 95% intervals: Mertens (2002), which assumes independent "
            "days, and a stationary bootstrap, which allows for autocorrelation. PSR is the probability that the true Sharpe "
            "ratio exceeds 0; the deflated Sharpe ratio (Bailey & López de Prado, 2014) is that probability corrected for "
            f"the {bt.get('n_trials', tried if tried is not None else '?')} configurations tried.\n\n"
            + _md_table(head, rows, "lrrrrrrrrr", "Out-of-sample performance, net of costs. Return (CAGR) and volatility in % a "
                        "year; Sharpe ratios annualised; 95% CI: Mertens; PSR: probabilistic Sharpe ratio; DSR: deflated Sharpe "
                        "ratio; Max DD: maximum drawdown in %; Turnover: mean daily one-way turnover, % of equity",
                        "tbl-headline", renderer)
        )
        md(new_markdown_cell(text))
    else:
        md(new_markdown_cell("## Headline\n\nNo backtest figures recorded: stage `30_backtest` did not finish in this run."))

    # equity curves
    returns = load_returns(run_dir)
    if returns is not None and len(returns):
        png = _equity_png(returns)
        ref = "@fig-equity" if q else "The figure below"
        md(new_markdown_cell(f"## Equity curves\n\n{ref} compounds each strategy's daily net returns "
                             "(`artifacts/strategy_returns.parquet`); below it, the drawdown from the running peak."))
        caption = "Growth of 1 and drawdown, out of sample, net of costs"
        src = f'#| label: fig-equity\n#| fig-cap: "{caption}"\n#| echo: false\n# drawn by kit.reports.summary from the run\'s returns'
        cell = new_code_cell(src, metadata={"tags": ["remove-input"]})
        cell.outputs = [new_output("display_data", data={"image/png": base64.b64encode(png).decode("ascii"), "text/plain": caption})]
        cells.append(cell)
    else:
        md(new_markdown_cell("## Equity curves\n\nNo strategy returns recorded (`30_backtest` did not finish)."))

    # cost sensitivity
    if bt.get("cost_sweep"):
        by = {}
        for row in bt["cost_sweep"]:
            by.setdefault(row.get("strategy"), {})[row.get("cost_bps")] = row.get("sharpe_ratio")
        costs = sorted({c for d in by.values() for c in d if _finite(c)})
        rows = [[name] + [fmt_ratio(d.get(c)) for c in costs] for name, d in by.items()]
        md(new_markdown_cell("### Cost sensitivity\n\nSharpe ratio at each cost, bps of traded notional.\n\n"
                             + _md_table(["Strategy"] + [f"{fmt_ratio(c, 0)} bps" for c in costs], rows, "l" + "r" * len(costs))))

    # promotion gate
    decisions = registry.get("models") or {r.get("name", r.get("label")): r for r in audit.get("this_run") or []}
    thresholds = audit.get("thresholds") or {}
    if decisions:
        why = {"passed": "all criteria met", "registered before": "gated by an earlier run, not again"}
        rows = [[f"`{name}`", f"`{d.get('label', '')}`", d.get("gate", "?"), d.get("status", "?"), d.get("reasons") or why.get(d.get("gate"), "")]
                for name, d in decisions.items()]
        gated = [d for d in decisions.values() if d.get("gate") in ("passed", "failed")]
        passed = sum(1 for d in gated if d.get("gate") == "passed")
        before = len(decisions) - len(gated)
        crit = ", ".join(f"{k} {v}" for k, v in thresholds.items()) if thresholds else "see `20_train`"
        md(new_markdown_cell(
            "## Promotion gate\n\n"
            + "; ".join(([f"{passed} of {len(gated)} model(s) gated in this run passed"] if gated else [])
                        + ([f"{before} model(s) registered and gated by an earlier run (same architecture and training data), "
                            "shown with their current status"] if before else []))
            + f" (criteria: {crit}). A model that passes becomes its scope's active model; one that fails stays a candidate.\n\n"
            + _md_table(["Model", "Registered as", "Gate", "Status", "Reasons"], rows, "lllll")))
    else:
        md(new_markdown_cell("## Promotion gate\n\nNo gate decisions recorded (`20_train` did not register models in this run)."))

    # caveats
    caveats = []
    if status != "ok":
        caveats.append(f"The run is **{status}** ({detail}).")
    if info.get("git_dirty"):
        caveats.append("Made from uncommitted changes: the commit alone does not reproduce it.")
    if reused:
        caveats.append(f"Positions and metrics of earlier stages were copied from run `{reused.get('run_id')}`, not computed in this run.")
    if membership != "point_in_time":
        caveats.append("Survivorship: the universe is not point-in-time, so stocks that left the index are missing and "
                       "long-biased results are flattered.")
    if strategies:
        excl = [n for n, s in strategies.items() if _finite(s.get("sharpe_ci_low")) and s["sharpe_ci_low"] > 0]
        caveats.append("The 95% interval of every strategy's Sharpe ratio includes 0: no strategy is distinguishable from "
                       "no skill on this evidence." if not excl else
                       f"Sharpe intervals excluding 0: {', '.join(excl)}; the others include 0.")
        dsr = {n: s.get("deflated_sharpe_ratio") for n, s in strategies.items() if _finite(s.get("deflated_sharpe_ratio"))}
        if dsr:
            best = max(dsr, key=dsr.get)
            if dsr[best] < 0.95:
                caveats.append(f"After correcting for the configurations tried, the best deflated Sharpe ratio ({best}, "
                               f"{fmt_ratio(dsr[best])}) is below 0.95: not significant at the 5% level.")
        days = max((s.get("days") or 0) for s in strategies.values())
        if days and days < 5 * TRADING_DAYS:
            caveats.append(f"The out-of-sample period is {days / TRADING_DAYS:.1f} years: short for strategies with Sharpe ratios near 1.")
    if n_sym and isinstance(n_sym, int) and n_sym < 20:
        caveats.append(f"{n_sym} symbols: results describe these stocks, not a diversified momentum portfolio.")
    if epochs and isinstance(epochs, int) and epochs <= 5:
        caveats.append(f"Models trained for at most {epochs} epochs (profile `{info.get('profile')}`): a test of the machinery, "
                       "not a research result.")
    gates = [d.get("gate") for d in decisions.values()]
    if "failed" in gates and "passed" not in gates:
        caveats.append("No model gated in this run passed the promotion gate.")
    if decisions and all(g == "registered before" for g in gates):
        caveats.append("This run's models were registered and gated by an earlier run; the gate was not applied again.")
    body = "\n".join(f"* {c}" for c in caveats) or "* None computed from the recorded figures."
    text = "## Caveats\n\n" + callout("warning", "What to distrust", body, renderer)
    stage_caveats = []
    for name in info.get("notebooks") or {}:
        title, cav = _notebook_title_and_caveats(run_dir / f"{name}.ipynb")
        if cav:
            stage_caveats.append(f"**[{title or name}]({name}.html)**\n\n{cav}")
    if stage_caveats:
        text += "\n\nFrom the stage pages:\n\n" + "\n\n".join(stage_caveats)
    md(new_markdown_cell(text))

    # stage pages
    rows = []
    for name, s in (info.get("notebooks") or {}).items():
        title, _ = _notebook_title_and_caveats(run_dir / f"{name}.ipynb")
        page = f"[{title or name}]({s['html']})" if s.get("html") else (title or name)
        rows.append([page, s.get("status", "?"), fmt_ratio(s.get("seconds"), 1)])
    for name in params.get("notebooks") or []:
        if name not in (info.get("notebooks") or {}):
            rows.append([name, "not run", ""])
    md(new_markdown_cell("## Stage pages\n\n" + (_md_table(["Stage", "Status", "Seconds"], rows, "llr") if rows else "No stage ran.")
                         + "\n\nRecorded files: [run.json](run.json), [params.yaml](params.yaml), [metrics.json](metrics.json)."))

    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.validate(nb)
    return nb


def build_summary(run_dir, renderer: str = "auto", run_info: dict | None = None) -> Path:
    """Write ``summary.ipynb`` (:func:`summary_notebook`) into the run folder and render it to
    ``summary.html`` with :func:`kit.reports.render_notebook`.

    Parameters
    ----------
    run_dir : the run folder.
    renderer : ``"auto"``, ``"quarto"`` or ``"nbconvert"``.
    run_info : the run's ``run.json`` contents for the banner (read from the folder when None).

    Returns
    -------
    Path of ``summary.html``.

    Raises
    ------
    FileNotFoundError
        ``run_dir`` has no ``run.json``.
    RuntimeError
        The renderer failed.
    """
    import nbformat

    run_dir = Path(run_dir)
    which = renderer_name(renderer)
    nb = summary_notebook(run_dir, which)
    path = run_dir / f"{SUMMARY_NAME}.ipynb"
    with atomic_path(path) as tmp:
        nbformat.write(nb, str(tmp))
    return render_notebook(path, which, run_info if run_info is not None else _read_json(run_dir / "run.json"))


def summary_page(run_dir, renderer: str, run_info: dict | None) -> Path | None:
    """The run loop's call at the end of a run: :func:`build_summary`, with one line on stdout saying
    where the page is and how long it took. A failure to build the summary is printed (stderr) and
    returns None instead of raising, so it never hides the run's own outcome.

    Parameters
    ----------
    run_dir, renderer, run_info : as for :func:`build_summary`.
    """
    import sys
    import time

    t0 = time.perf_counter()
    try:
        path = build_summary(run_dir, renderer, run_info)
    except Exception as exc:  # noqa: BLE001 - reported; the run's status and error stand
        print(f"kit: no review summary for {Path(run_dir).name}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return None
    print(f"summary: {path} ({time.perf_counter() - t0:.1f} s)", flush=True)
    return path
