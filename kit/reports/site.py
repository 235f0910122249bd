"""The site of runs: ``reports/index.html`` lists every run, newest first, with its headline figures."""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path

from ..base.atomic import atomic_write_text
from ..paths import REPORTS_DIR
from .artifacts import load_metrics

__all__ = ["build_index"]



def _fmt(v, pct=False):
    if v is None:
        return "n/a"
    return f"{v:.1%}" if pct else f"{v:.2f}"



def build_index(reports_dir=REPORTS_DIR) -> Path:
    """Write ``reports_dir/index.html``: every run, newest first, with status, profile, commit,
    links to its pages and the headline figures of ``metrics.json['backtest']['strategies']``."""
    reports_dir = Path(reports_dir)
    runs = sorted((p for p in (reports_dir / "runs").glob("*") if (p / "run.json").exists()), key=lambda p: p.name, reverse=True)
    rows = []
    for run in runs:
        try:
            info = json.loads((run / "run.json").read_text())
        except json.JSONDecodeError:
            continue
        metrics = load_metrics(run)
        links = " ".join(
            f'<a href="runs/{html.escape(run.name)}/{html.escape(v["html"])}">{html.escape(k)}</a>'
            for k, v in info.get("notebooks", {}).items()
            if v.get("html")
        )
        bt = metrics.get("backtest", {})
        strategies = bt.get("strategies", {})
        figures = "<br>".join(
            f"<b>{html.escape(name)}</b>: Sharpe {_fmt(s.get('sharpe_ratio'))} "
            f"[{_fmt(s.get('sharpe_ci_low'))}, {_fmt(s.get('sharpe_ci_high'))}], "
            f"return {_fmt(s.get('annual_return'), True)}, max DD {_fmt(s.get('max_drawdown'), True)}"
            for name, s in strategies.items()
        )
        scope = ""
        if bt:
            scope = f"{bt.get('n_symbols', '?')} symbols, out of sample {bt.get('start', '?')} to {bt.get('end', '?')}, net of {bt.get('cost_bps', '?')} bps"
        rows.append(
            "<tr>"
            f"<td>{html.escape(run.name)}</td><td>{html.escape(info.get('profile', ''))}</td>"
            f"<td class='{html.escape(info.get('status', ''))}'>{html.escape(info.get('status', ''))}</td>"
            f"<td>{html.escape(info.get('renderer', ''))}</td><td>{info.get('seconds', '')}</td>"
            f"<td>{links}</td><td>{html.escape(scope)}</td><td>{figures}</td>"
            "</tr>"
        )
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Deep momentum research kit: runs</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;vertical-align:top;font-size:0.9em}}.failed{{color:#b00}}.ok{{color:#070}}</style>
</head><body>
<h1>Runs</h1>
<p>Newest first. Figures are out-of-sample, walk-forward, net of the stated costs; Sharpe ratios are
annualised with their 95% confidence interval. Generated {dt.datetime.now(dt.UTC).strftime('%Y-%m-%d %H:%M UTC')}.</p>
<table><tr><th>run</th><th>profile</th><th>status</th><th>renderer</th><th>seconds</th><th>pages</th><th>scope</th><th>headline (out of sample)</th></tr>
{''.join(rows)}
</table></body></html>
"""
    return atomic_write_text(reports_dir / "index.html", page)

