import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat
import pytest

from kit import reports
from kit.reports import render

ROOT = Path(__file__).resolve().parent.parent


def test_run_id_format():
    rid = reports.new_run_id(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), sha="abcdef1234567")
    assert rid == "20260102T030405-abcdef1"
    assert re.fullmatch(r"\d{8}T\d{6}-(\w{7}|nogit)", reports.new_run_id())


def test_run_dirs_are_never_reused(tmp_path):
    a = reports.create_run_dir(tmp_path, "20260101T000000-abc1234")
    (a / "marker").write_text("first")
    b = reports.create_run_dir(tmp_path, "20260101T000000-abc1234")
    c = reports.create_run_dir(tmp_path, "20260101T000000-abc1234")
    assert len({a, b, c}) == 3 and (a / "marker").read_text() == "first"
    assert b.name.endswith("-2") and (b / "artifacts").is_dir()


def test_save_metrics_merges_sections_atomically(tmp_path):
    reports.save_metrics(tmp_path, "train", {"folds": 3, "nan": float("nan")})
    reports.save_metrics(tmp_path, "backtest", {"sharpe": 0.5})
    m = reports.load_metrics(tmp_path)
    assert m == {"train": {"folds": 3, "nan": None}, "backtest": {"sharpe": 0.5}}
    assert not list(tmp_path.glob(".*tmp"))


def test_index_lists_runs_newest_first_with_headline(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "quarto_path", lambda: None)  # the plain-HTML site
    for rid, sharpe, status in (("20260101T000000-aaaaaaa", 0.31, "ok"), ("20260201T000000-bbbbbbb", 0.42, "failed")):
        run = reports.create_run_dir(tmp_path, rid)
        (run / "run.json").write_text(json.dumps({"run_id": rid, "profile": "smoke", "status": status, "git_commit": "c" * 40,
                                                  "data_sha256": "d" * 64, "notebooks": {"30_backtest": {"status": status, "html": "30_backtest.html"}}}))
        reports.save_metrics(run, "backtest", {"cost_bps": 5, "n_symbols": 6, "start": "2016-01-04", "end": "2021-04-21",
                                               "strategies": {"DMN (LSTM)": {"sharpe_ratio": sharpe, "sharpe_ci_low": -0.1, "sharpe_ci_high": 0.9, "annual_return": 0.01, "max_drawdown": -0.1}}})
    page = reports.build_index(tmp_path).read_text()
    assert page.index("20260201T000000-bbbbbbb") < page.index("20260101T000000-aaaaaaa")
    assert "<b>DMN (LSTM)</b> 0.42&nbsp;[-0.10,&nbsp;0.90]" in page and "<b>DMN (LSTM)</b> 0.31&nbsp;[-0.10,&nbsp;0.90]" in page
    assert 'href="runs/20260201T000000-bbbbbbb/30_backtest.html"' in page and 'href="runs/20260201T000000-bbbbbbb/index.html"' in page
    assert 'class="kit-status-failed"' in page and "dddddddddddd" in page and "plain-HTML fallback (Quarto not on PATH)" in page
    run_page = (tmp_path / "runs" / "20260201T000000-bbbbbbb" / "index.html").read_text()
    assert "failed" in run_page and "net of 5.0 bps" in run_page and 'href="30_backtest.html"' in run_page
    compare = (tmp_path / "compare.html").read_text()
    assert "20260101T000000-aaaaaaa" in compare and "20260201T000000-bbbbbbb" in compare and "+0.11" in compare


def _nb_with_title(title="# My title\n\nFirst paragraph.", image=True):
    """A small 'executed' notebook: a title cell, two sections, a code cell with an image output."""
    import base64
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    cells = [nbformat.v4.new_markdown_cell(title), nbformat.v4.new_markdown_cell("## Section A\nText A."),
             nbformat.v4.new_code_cell("x = 1 + 1\nprint(x)", execution_count=1,
                                       outputs=[nbformat.v4.new_output("stream", name="stdout", text="2\n")])]
    if image:
        fig = Figure(figsize=(3, 2))
        FigureCanvasAgg(fig)
        fig.subplots().plot([0, 1, 4])
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
        cells.append(nbformat.v4.new_code_cell("plot()", execution_count=2, outputs=[nbformat.v4.new_output(
            "display_data", data={"image/png": base64.b64encode(buf.getvalue()).decode(), "text/plain": "<Figure>"})]))
    cells.append(nbformat.v4.new_markdown_cell("## Section B\nText B."))
    cells.append(nbformat.v4.new_markdown_cell("## Caveats\n* A small sample."))
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def test_render_falls_back_to_nbconvert_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "quarto_path", lambda: None)
    path = tmp_path / "x.ipynb"
    nb = _nb_with_title()
    nb.cells[2].metadata["tags"] = ["remove-input"]
    nbformat.write(nb, path)
    html = reports.render_notebook(path, run_info={"run_id": "r1", "profile": "p", "git_commit": "0123456789abcdef", "data_sha256": "f" * 64}).read_text()
    assert "Rendered by nbconvert" in html and "Quarto not on PATH" in html
    assert "r1" in html and "0123456789ab" in html
    # the banner sits under the title and above the rest of the title cell
    assert html.index(">My title") < html.index("Rendered by nbconvert") < html.index("First paragraph") < html.index("Section A")
    assert "x = 1 + 1" not in html and "data:image/png;base64," in html  # input removed by tag, image embedded
    with pytest.raises(RuntimeError, match="quarto"):
        reports.render_notebook(path, renderer="quarto")
    with pytest.raises(ValueError, match="renderer must be"):
        reports.render_notebook(path, renderer="pandoc")


@pytest.mark.slow
def test_lock_prevents_overlapping_runs(tmp_path):
    with reports.run_lock(tmp_path):
        code = "import sys; from kit import reports\ntry:\n    with reports.run_lock(sys.argv[1]): print('got')\nexcept reports.RunLockedError: print('locked')"
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "locked"
    with reports.run_lock(tmp_path):
        pass  # released after the block


def test_profiles_are_valid_and_complete():
    for name in ("smoke", "report", "daily", "full", "full10"):
        p = reports.load_profile(name)
        assert p["notebooks"] == ["10_explore", "20_train", "30_backtest", "35_factors", "50_audit"]
        params = reports.notebook_parameters(p, "30_backtest", "/tmp/x")
        assert params["cost_bps"] > 0 and params["run_dir"] == "/tmp/x"
    report = reports.load_profile("report")["shared"]
    assert report["n_symbols"] >= 50
    # full10 is full on 10 stocks in a scope of its own: every other section and setting the same
    full, full10 = reports.load_profile("full"), reports.load_profile("full10")
    assert full10["shared"] == {**full["shared"], "symbols": [], "n_symbols": 10}
    assert {k: v for k, v in full10["20_train"].items() if k != "registry_scope"} == {k: v for k, v in full["20_train"].items() if k != "registry_scope"}
    assert full10["20_train"]["registry_scope"] != full["20_train"]["registry_scope"]
    with pytest.raises(reports.ProfileError, match="not found"):
        reports.load_profile("no-such-profile")


@pytest.mark.slow
def test_bad_profile_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("notebooks: [99_missing]\n")
    with pytest.raises(reports.ProfileError, match="99_missing"):
        reports.load_profile(path=bad)
    out = subprocess.run([sys.executable, "-m", "kit", "run", "--profile", "no-such-profile"], capture_output=True, text=True)
    assert out.returncode == 2 and "not found" in out.stderr


def test_notebooks_committed_clean_with_one_parameters_cell():
    paths = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert [p.stem for p in paths][:3] == ["10_explore", "20_train", "30_backtest"]
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, path
        assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code"), path


@pytest.mark.slow
def test_run_profile_end_to_end_explore_only(tmp_path):
    """A real papermill run of one notebook into a temporary reports folder, its page rendered by
    Quarto when a Quarto >= 1.4 is on PATH (as in CI), else by nbconvert."""
    before = _git_state()
    run = reports.run_profile("smoke", reports_dir=tmp_path, renderer="auto", notebooks=["10_explore"])
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "ok" and info["data_sha256"] and info["git_commit"]
    label = "Rendered by Quarto" if info["renderer"] == "quarto" else "Rendered by nbconvert"
    assert label in (run / "10_explore.html").read_text() and label in (run / "summary.html").read_text()
    assert info["notebooks"]["10_explore"]["render_seconds"] > 0 and (run / "params.yaml").exists()
    assert reports.load_metrics(run)["explore"]["n_symbols"] == 6
    assert run.name in (tmp_path / "index.html").read_text() and (run / "index.html").exists()
    assert _git_state() == before and not (ROOT / ".quarto").exists()
    # a later run reuses the first run's artifacts and metrics, and records where they came from
    (run / "artifacts" / "positions_dmn_lstm.parquet").write_bytes(b"stand-in")
    again = reports.run_profile("smoke", reports_dir=tmp_path, renderer="nbconvert", notebooks=["10_explore"], reuse_artifacts=run.name)
    assert again != run and (again / "artifacts" / "positions_dmn_lstm.parquet").read_bytes() == b"stand-in"
    assert json.loads((again / "run.json").read_text())["reused_artifacts_from"]["run_id"] == run.name
    with pytest.raises(reports.ProfileError, match="reuse_artifacts"):
        reports.run_profile("smoke", reports_dir=tmp_path, notebooks=["10_explore"], reuse_artifacts="no-such-run")


@pytest.mark.slow
def test_a_misspelt_profile_key_is_refused_before_anything_runs(tmp_path):
    import subprocess
    import sys

    import yaml

    root = Path(__file__).resolve().parent.parent
    profile = yaml.safe_load((root / "params" / "smoke.yaml").read_text())
    profile["20_train"] = {**profile["20_train"], "epoch": 3}
    path = tmp_path / "smoke-typo.yaml"
    path.write_text(yaml.safe_dump(profile))
    with pytest.raises(reports.ProfileError, match=r"section '20_train': unknown key 'epoch' \(did you mean 'epochs'\?\)"):
        reports.check_profile(reports.load_profile(path=path))
    out = subprocess.run([sys.executable, "-m", "kit", "run", "--profile-file", str(path), "--reports-dir", str(tmp_path / "reports")],
                         capture_output=True, text=True, cwd=root, timeout=300)
    assert out.returncode == 2 and "'epoch'" in out.stderr and "'epochs'" in out.stderr, out.stderr
    assert not (tmp_path / "reports" / "runs").exists()  # nothing ran, no run folder


def test_profile_check_covers_shared_and_top_level_keys():
    p = reports.load_profile("smoke")
    reports.check_profile(p)  # the committed profile is clean
    bad = {**p, "shared": {**p["shared"], "n_symbol": 3}}
    with pytest.raises(reports.ProfileError, match=r"section 'shared': unknown key 'n_symbol' \(did you mean 'n_symbols'\?\)"):
        reports.check_profile(bad)
    with pytest.raises(reports.ProfileError, match=r"unknown top-level key '20_trian' \(did you mean '20_train'\?\)"):
        reports.check_profile({**p, "20_trian": {}})


# --- the Quarto path with a fake quarto on PATH (runs everywhere) ------------------------------

FAKE_QUARTO = """#!{python}
import json, os, pathlib, sys
import yaml
args = sys.argv[1:]
if args == ["--version"]:
    print(os.environ.get("FAKE_QUARTO_VERSION", "1.7.34"))
    sys.exit(0)
cwd = pathlib.Path.cwd()
cfg = yaml.safe_load((cwd / "_quarto.yml").read_text()) if (cwd / "_quarto.yml").exists() else None
rec = {{"args": args, "cwd": str(cwd), "files": sorted(p.name for p in cwd.iterdir()), "config": cfg,
        "theme": (cwd / "theme.scss").read_text() if (cwd / "theme.scss").exists() else None}}
if os.environ.get("FAKE_QUARTO_FAIL"):
    print("ERROR: fake failure", file=sys.stderr)
    sys.exit(1)
if len(args) > 1 and args[1].endswith(".ipynb"):
    rec["cells"] = ["".join(c["source"]) for c in json.loads((cwd / args[1]).read_text())["cells"]]
    (cwd / (args[1][:-6] + ".html")).write_text("<html>fake quarto page</html>")
elif args == ["render"]:
    for page in cfg["project"]["render"]:
        out = cwd / "_site" / (page[:-4] + ".html")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("<html>fake site page " + page + "</html>")
    (cwd / "_site" / "site_libs").mkdir(parents=True, exist_ok=True)
    (cwd / "_site" / "site_libs" / "lib.js").write_text("//")
with open(os.environ["FAKE_QUARTO_LOG"], "a") as fh:
    fh.write(json.dumps(rec) + "\\n")
"""


@pytest.fixture
def fake_quarto(tmp_path, monkeypatch):
    """A ``quarto`` on PATH that records its arguments, working directory and project files."""
    bindir = tmp_path / "fakebin"
    bindir.mkdir()
    exe = bindir / "quarto"
    exe.write_text(FAKE_QUARTO.format(python=sys.executable))
    exe.chmod(0o755)
    log = tmp_path / "quarto-calls.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}:{os.environ.get('PATH', '')}")
    monkeypatch.setenv("FAKE_QUARTO_LOG", str(log))
    render._quarto_version_at.cache_clear()
    yield lambda: [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    render._quarto_version_at.cache_clear()


def _git_state():
    out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=all"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout if out.returncode == 0 else None


def test_quarto_renders_in_a_temporary_project_outside_the_repo(tmp_path, monkeypatch, fake_quarto):
    run = tmp_path / "reports" / "runs" / "r1"
    run.mkdir(parents=True)
    nbformat.write(_nb_with_title("# 10 · Explore\n\n**Question.** Why?"), run / "10_explore.ipynb")
    before = _git_state()
    monkeypatch.chdir(tmp_path)  # a relative notebook path (the old bug: "No valid input files passed to render")
    out = reports.render_notebook(Path("reports/runs/r1/10_explore.ipynb"), run_info={"run_id": "r1", "profile": "smoke"})
    assert out == (run / "10_explore.html").resolve() and out.read_text() == "<html>fake quarto page</html>"
    (call,) = [c for c in fake_quarto() if c["args"][:1] == ["render"]]
    assert call["args"] == ["render", "10_explore.ipynb", "--to", "html", "--no-execute"]  # no dot-prefixed temp name
    cwd = Path(call["cwd"])
    assert not cwd.is_relative_to(ROOT) and cwd != run and not cwd.exists()  # outside the repo, removed afterwards
    assert call["files"] == ["10_explore.ipynb", "_quarto.yml", "theme.scss"]
    cfg = call["config"]
    assert cfg["project"]["render"] == ["10_explore.ipynb"]  # the notebook is part of the project: settings apply
    html = cfg["format"]["html"]
    assert html["toc"] is True and html["code-fold"] is True and html["embed-resources"] is True
    assert html["theme"] == ["cosmo", "theme.scss"] and cfg["execute"]["enabled"] is False
    assert "$web-font-path: false;" in call["theme"]
    # the banner goes right under the title heading (so Quarto takes the title from the notebook)
    assert call["cells"][0] == "# 10 · Explore" and "Rendered by Quarto 1.7.34" in call["cells"][1]
    assert call["cells"][1].startswith("::: {.callout-note") and call["cells"][2].startswith("**Question.**")
    assert call["cells"][-1].startswith("## Caveats\n\n::: {.callout-warning") and "* A small sample." in call["cells"][-1]
    assert sorted(p.name for p in run.iterdir()) == ["10_explore.html", "10_explore.ipynb"]
    assert _git_state() == before and not (ROOT / ".quarto").exists()


def test_quarto_failure_and_versions(tmp_path, monkeypatch, fake_quarto):
    path = tmp_path / "x.ipynb"
    nbformat.write(_nb_with_title(), path)
    monkeypatch.setenv("FAKE_QUARTO_FAIL", "1")
    with pytest.raises(RuntimeError, match="fake failure"):
        reports.render_notebook(path, renderer="quarto")
    assert not (tmp_path / "x.html").exists()
    monkeypatch.delenv("FAKE_QUARTO_FAIL")
    monkeypatch.setenv("FAKE_QUARTO_VERSION", "1.3.450")  # older than 1.4: auto falls back, quarto refuses
    render._quarto_version_at.cache_clear()
    assert render.quarto_version() == (1, 3, 450) and reports.renderer_name("auto") == "nbconvert"
    assert "Quarto 1.3.450 on PATH is older than 1.4" in reports.render_notebook(path).read_text()
    with pytest.raises(RuntimeError, match="1.3.450.*1.4 or later"):
        reports.renderer_name("quarto")
    monkeypatch.setenv("FAKE_QUARTO_VERSION", "1.4.549")
    render._quarto_version_at.cache_clear()
    assert reports.renderer_name("auto") == "quarto"


def _fake_run(reports_dir, rid, *, status="ok", started="2026-01-01T00:00:00+00:00", sharpe=0.7, cost_bps=5.0,
              universe=None, stages=("10_explore", "20_train", "30_backtest", "50_audit"), returns=True):
    """A run folder as a finished run leaves it (run.json, params.yaml, metrics.json, returns), no notebooks."""
    import numpy as np
    import pandas as pd
    import yaml

    run = reports.create_run_dir(reports_dir, rid)
    shared = {"symbols": ["AAA", "BBB"], "n_symbols": 0, "universe_as_of": "2009-12-31", "start": "2008-01-01", "end": "2021-04-21"}
    if universe:
        shared["universe"] = universe
    params = {"name": "smoke", "description": "a test", "notebooks": ["10_explore", "20_train", "30_backtest", "50_audit"],
              "shared": shared, "20_train": {"epochs": 3, "test_size": 504}, "30_backtest": {"cost_bps": cost_bps, "max_gross": 0.95}}
    (run / "params.yaml").write_text(yaml.safe_dump(params))
    info = {"run_id": rid, "profile": "smoke", "status": status, "started_utc": started, "git_commit": "a" * 40, "git_dirty": False,
            "data_path": "/x/store.parquet", "data_sha256": "b" * 64, "renderer": "nbconvert",
            "notebooks": {n: {"status": "ok", "seconds": 1.0, "html": f"{n}.html"} for n in stages}}
    if status == "failed":
        info["notebooks"][stages[-1]]["status"] = "failed"
    if status != "running":
        info["finished_utc"] = started
    (run / "run.json").write_text(json.dumps(info))
    reports.save_metrics(run, "explore", {"n_symbols": 2, "symbols": ["AAA", "BBB"], "start": "2008-01-02", "end": "2021-04-21",
                                          "trading_days": 3349, "validation": {"missing_day": 2, "bad_row": 0}})
    reports.save_metrics(run, "train", {"models": ["dmn_lstm"], "folds": 3, "leakage_rows": 0, "oos_start": "2016-01-04",
                                        "oos_end": "2021-04-21", "configurations_tried": 2, "search": {}})
    strat = {"DMN (LSTM)": {"sharpe_ratio": sharpe, "sharpe_ci_low": -0.16, "sharpe_ci_high": 1.56, "sharpe_boot_low": -0.2,
                            "sharpe_boot_high": 1.55, "annual_return": 0.0277, "annual_volatility": 0.0403,
                            "probabilistic_sharpe_ratio": 0.94, "deflated_sharpe_ratio": 0.86, "max_drawdown": -0.0402,
                            "turnover": 0.047, "days": 300},
             "Long only": {"sharpe_ratio": 1.2, "sharpe_ci_low": 0.32, "sharpe_ci_high": 2.08, "annual_return": 0.126,
                           "deflated_sharpe_ratio": float("nan"), "max_drawdown": -0.168, "days": 300}}
    reports.save_metrics(run, "backtest", {"models": ["dmn_lstm"], "cost_bps": cost_bps, "n_symbols": 2, "start": "2016-01-04",
                                           "end": "2021-04-21", "n_trials": 2, "strategies": strat,
                                           "cost_sweep": [{"strategy": "DMN (LSTM)", "cost_bps": c, "sharpe_ratio": sharpe - c / 50} for c in (0.0, 5.0, 10.0)]})
    reports.save_metrics(run, "registry", {"models": {"dmn_lstm": {"label": "u2_dmn_lstm_v1", "gate": "failed", "status": "candidate",
                                                                   "reasons": "direction_accuracy = 0.4911 (needs >= 0.52)"}}})
    reports.save_metrics(run, "audit", {"thresholds": {"min_direction_accuracy": 0.52, "min_folds": 2}})
    if returns:
        dates = pd.bdate_range("2016-01-04", periods=300)
        rng = np.random.default_rng(0)
        reports.save_returns(run, {"DMN (LSTM)": pd.Series(rng.normal(2e-4, 0.01, 300), index=dates),
                                   "Long only": pd.Series(rng.normal(4e-4, 0.01, 300), index=dates)})
    return run


def test_run_status_names_incomplete_failed_and_partial_runs():
    params = {"notebooks": ["a", "b", "c"]}
    ok = {"status": "ok", "finished_utc": "x", "notebooks": {k: {"status": "ok"} for k in "abc"}}
    assert reports.summary.run_status(ok, params) == ("ok", "ok (3 of 3 stages)")
    assert reports.summary.run_status({**ok, "notebooks": {"a": {"status": "ok"}}}, params)[0] == "partial"
    failed = {"status": "failed", "notebooks": {"a": {"status": "ok"}, "b": {"status": "failed"}}}
    assert reports.summary.run_status(failed, params) == ("failed", "failed at b (1 of 3 stages done)")
    status, detail = reports.summary.run_status({"status": "running", "notebooks": {"a": {"status": "ok"}}}, params)
    assert status == "incomplete" and "its process died" in detail and "1 of 3" in detail
    assert reports.summary.run_status({"status": "interrupted", "notebooks": {}}, params)[0] == "interrupted"


def test_compare_pairs_and_differences(tmp_path):
    a = _fake_run(tmp_path, "20260101T000000-aaaaaaa", started="2026-01-01T00:00:00+00:00", sharpe=0.5)
    b = _fake_run(tmp_path, "20260102T000000-bbbbbbb", started="2026-01-02T00:00:00+00:00", sharpe=0.7, cost_bps=10.0)
    runs = reports.site.collect_runs(tmp_path)
    old, new = reports.site.choose_pair(runs)
    assert (old["dir"], new["dir"]) == (a, b)
    assert reports.site.choose_pair(runs, (b.name, a.name))[0]["dir"] == a  # either order: older first
    with pytest.raises(ValueError, match="no run 'nope'"):
        reports.site.choose_pair(runs, (a.name, "nope"))
    c = reports.compare_runs(old, new)
    assert c["params"] == [("30_backtest.cost_bps", 5.0, 10.0)]
    (name, so, sn) = c["headline"][0]
    assert name == "DMN (LSTM)" and so["sharpe_ratio"] == 0.5 and sn["sharpe_ratio"] == 0.7
    assert ("started (UTC)", "2026-01-01T00:00:00+00:00", "2026-01-02T00:00:00+00:00") in c["provenance"]
    assert c["commits"] is None  # same commit on both sides


def test_summary_notebook_says_what_was_tested_and_what_to_distrust(tmp_path):
    import base64

    from PIL import Image

    run = _fake_run(tmp_path, "20260101T000000-aaaaaaa")
    nb = reports.summary.summary_notebook(run, "quarto")
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].source == "# Review summary · run 20260101T000000-aaaaaaa"
    for needle in ("2 symbols (a fixed list): AAA, BBB", "not recorded by this run; treat as survivors", "2016-01-04 to 2021-04-21",
                   "walk-forward in 3 blocks of 504 trading days", "2 (the deflated Sharpe ratio corrects for them)",
                   "5.0 bps of traded notional; sweep over 0, 5, 10 bps", "| DMN (LSTM) | 2.8% | 4.0% | 0.70 | [-0.16,\u00a01.56] | [-0.20,\u00a01.55] | 0.94 | 0.86 | -4.0% | 4.70% |",
                   "| Long only | 12.6% | n/a | 1.20 | [0.32,\u00a02.08] | n/a | n/a | n/a | -16.8% | n/a |",
                   "{#tbl-headline}", "@fig-equity", "0 of 1 model(s) gated in this run passed", "direction_accuracy = 0.4911", "Survivorship",
                   "Sharpe intervals excluding 0: Long only", "best deflated Sharpe ratio (DMN (LSTM), 0.86) is below 0.95",
                   "1.2 years", "No model gated in this run passed the promotion gate", "::: {.callout-warning", "[10_explore](10_explore.html)"):
        assert needle in text, needle
    (fig,) = [c for c in nb.cells if c.cell_type == "code"]
    assert "#| label: fig-equity" in fig.source and "remove-input" in fig.metadata["tags"]
    png = base64.b64decode(fig.outputs[0]["data"]["image/png"])
    assert Image.open(__import__("io").BytesIO(png)).size[0] > 500
    plain = "\n".join(c.source for c in reports.summary.summary_notebook(run, "nbconvert").cells if c.cell_type == "markdown")
    assert ":::" not in plain and "@fig" not in plain and "> **What to distrust**" in plain
    # a point-in-time universe drops the survivorship caveat; a failed run without a backtest says so
    pit = _fake_run(tmp_path, "20260102T000000-ccccccc", universe="point_in_time", status="failed", returns=False,
                    stages=("10_explore", "20_train"))
    (pit / "metrics.json").write_text(json.dumps({k: v for k, v in json.loads((pit / "metrics.json").read_text()).items() if k != "backtest"}))
    text = "\n".join(c.source for c in reports.summary.summary_notebook(pit, "quarto").cells if c.cell_type == "markdown")
    assert "Survivorship" not in text and "point-in-time: symbols that were index members" in text
    assert "This run is failed" in text and "`30_backtest` did not finish" in text and "| 30_backtest | not run |" in text
    with pytest.raises(FileNotFoundError, match="no run.json"):
        reports.summary.summary_notebook(tmp_path)


def test_build_summary_with_nbconvert_embeds_the_figure(tmp_path, monkeypatch):
    monkeypatch.setattr(render, "quarto_path", lambda: None)
    run = _fake_run(tmp_path, "20260101T000000-aaaaaaa")
    html = reports.build_summary(run).read_text()
    assert len(re.findall(r'<img[^>]*src="data:image/png;base64,', html)) == 1 and "Rendered by nbconvert" in html and "Review summary" in html
    assert "#| label" not in html and (run / "summary.ipynb").exists()
    assert reports.summary.summary_page(tmp_path / "no-such-run", "nbconvert", None) is None  # reported, never raised


def test_site_with_fake_quarto_renders_only_changed_run_pages(tmp_path, fake_quarto, capsys, monkeypatch):
    import yaml

    a = _fake_run(tmp_path, "20260101T000000-aaaaaaa", started="2026-01-01T00:00:00+00:00")
    b = _fake_run(tmp_path, "20260102T000000-bbbbbbb", started="2026-01-02T00:00:00+00:00", status="running", stages=("10_explore",))
    before = _git_state()
    assert reports.build_site(tmp_path) == tmp_path / "index.html"
    renders = lambda: [c for c in fake_quarto() if c["args"] == ["render"]]  # noqa: E731
    first = renders()[-1]
    assert first["config"]["project"]["type"] == "website" and first["config"]["format"]["html"]["theme"] == ["cosmo", "theme.scss"]
    assert sorted(first["config"]["project"]["render"]) == sorted(
        ["index.qmd", "compare.qmd", f"runs/{a.name}/index.qmd", f"runs/{b.name}/index.qmd"])
    assert not Path(first["cwd"]).is_relative_to(ROOT) and "runs.yml" in first["files"]
    assert "fake site page index.qmd" in (tmp_path / "index.html").read_text()
    assert (a / "index.html").exists() and (tmp_path / "site_libs" / "lib.js").exists() and (tmp_path / "compare.html").exists()
    reports.build_site(tmp_path)  # nothing changed: only the home and compare pages
    assert sorted(renders()[-1]["config"]["project"]["render"]) == ["compare.qmd", "index.qmd"]
    info = json.loads((b / "run.json").read_text())
    (b / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    reports.build_site(tmp_path)
    assert sorted(renders()[-1]["config"]["project"]["render"]) == ["compare.qmd", "index.qmd", f"runs/{b.name}/index.qmd"]
    assert _git_state() == before
    # the listing is generated from run.json and metrics.json
    monkeypatch.setattr(reports.site, "run_quarto", lambda args, cwd: (_ for _ in ()).throw(AssertionError(
        yaml.safe_load((Path(cwd) / "runs.yml").read_text()))))
    with pytest.raises(AssertionError) as info_:
        reports.build_site(tmp_path)
    items = info_.value.args[0]
    assert [i["title"] for i in items] == [b.name, a.name] and "interrupted" in items[0]["status"]
    assert "<b>DMN (LSTM)</b> 0.70&nbsp;[-0.16,&nbsp;1.56]" in items[1]["headline"] and items[1]["data"] == "<code>bbbbbbbbbbbb</code>"
    # a failing Quarto build falls back to the plain-HTML site and says so
    monkeypatch.undo()
    monkeypatch.setenv("PATH", f"{tmp_path / 'fakebin'}:{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_QUARTO_LOG", str(tmp_path / "quarto-calls.jsonl"))
    monkeypatch.setenv("FAKE_QUARTO_FAIL", "1")
    page = reports.build_site(tmp_path).read_text()
    assert "plain-HTML fallback" in page and "Quarto site build failed" not in page
    assert "the Quarto build of the site failed" in capsys.readouterr().err


def test_execute_options_use_ipc_and_a_progress_bar(capsys, monkeypatch):
    monkeypatch.setattr(render.sys.stderr, "isatty", lambda: True, raising=False)
    opts = render.execute_options("[1/2] 10_explore")
    km = opts["kernel_manager_class"]()
    assert km.transport == "ipc" and os.path.isabs(km.ip) and km.ip.startswith(tempfile.gettempdir())
    assert opts["progress_bar"]["desc"] == "[1/2] 10_explore" and opts["log_output"] is False
    monkeypatch.setattr(render.sys.stderr, "isatty", lambda: False, raising=False)
    assert render.execute_options("x")["progress_bar"] is False  # a cron log gets the stage lines only
    line = render.stage_line(2, 4, "20_train", {"status": "ok", "seconds": 12.34, "render_seconds": 3.0}, time.perf_counter() - 5, "quarto")
    assert re.match(r"\[2/4\] 20_train +ok +12\.3 s  \(run 5\.\d s\)  page by quarto in 3\.0 s", line)
    assert line in capsys.readouterr().out


@pytest.mark.slow
def test_kernel_runs_over_ipc_without_the_tcp_warning(tmp_path, capfd, monkeypatch):
    import papermill as pm

    monkeypatch.setattr(render.sys.stderr, "isatty", lambda: True, raising=False)  # the bar shows on a terminal

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import json, ipykernel.connect as c\n"
                                                                  "print(json.load(open(c.get_connection_file()))['transport'])")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, tmp_path / "in.ipynb")
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), cwd=str(tmp_path), **render.execute_options("[1/1] t"))
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["text"].strip() == "ipc"
    err = capfd.readouterr().err
    assert "without encryption" not in err and "[1/1] t" in err  # the progress bar, on stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.ipynb", "out.ipynb"]  # no socket files left in the cwd


# --- the real Quarto (when on PATH) ------------------------------------------------------------


def _usable_quarto() -> bool:
    v = render.quarto_version()
    return bool(v and v >= render.QUARTO_MIN_VERSION)


needs_quarto = pytest.mark.skipif(not _usable_quarto(), reason="no Quarto >= 1.4 on PATH (CI installs one from ../shared/tools/quarto)")


def _page_css(html: str) -> str:
    """The page's CSS: inline <style> blocks and the data: URIs Quarto embeds (URL- or base64-encoded)."""
    import base64
    import urllib.parse

    css = re.findall(r"<style[^>]*>(.*?)</style>", html, flags=re.S)
    for enc, data in re.findall(r'data:text/css(;base64)?,([^"]*)"', html):
        css.append(base64.b64decode(data).decode() if enc else urllib.parse.unquote(data))
    return "\n".join(css)


@pytest.mark.slow
@needs_quarto
def test_real_quarto_page_has_title_toc_folded_code_theme_images_and_banner(tmp_path, monkeypatch):
    folder = tmp_path / "run"
    folder.mkdir()
    nbformat.write(_nb_with_title(), folder / "x.ipynb")
    before, gitignore = _git_state(), (ROOT / ".gitignore").read_bytes()
    monkeypatch.chdir(tmp_path)
    t0 = time.perf_counter()
    out = reports.render_notebook("run/x.ipynb", renderer="quarto", run_info={"run_id": "r1", "profile": "smoke", "git_commit": "abc"})
    print(f"rendered by {render.renderer_label('quarto')} in {time.perf_counter() - t0:.1f} s")
    html = out.read_text()
    assert re.search(r'<h1 class="title">My title</h1>', html)  # the title comes from the notebook, not a file name
    toc = re.search(r'<nav id="TOC".*?</nav>', html, flags=re.S).group(0)
    assert "Section A" in toc and "Section B" in toc
    assert '<details class="code-fold">' in html and 'x <span class="op">=</span>' in html  # folded, highlighted
    css = _page_css(html)
    assert ".kit-status-ok" in css and "--bs-body-font-family" in css and "fonts.googleapis" not in css  # theme layer, :root kept
    assert len(re.findall(r'<img[^>]*src="data:image/png;base64,', html)) == 1
    assert re.search(r'callout-warning.*A small sample', html, flags=re.S)  # caveats in a callout
    assert html.index('<h1 class="title">') < html.index("Rendered by Quarto") < html.index("First paragraph") < html.index('id="section-a"')
    assert sorted(p.name for p in folder.iterdir()) == ["x.html", "x.ipynb"] and not (tmp_path / ".quarto").exists()
    assert _git_state() == before and not (ROOT / ".quarto").exists() and (ROOT / ".gitignore").read_bytes() == gitignore


@pytest.mark.slow
@needs_quarto
def test_real_quarto_summary_and_site(tmp_path):
    before = _git_state()
    run = _fake_run(tmp_path, "20260101T000000-aaaaaaa", stages=("10_explore",))
    nbformat.write(_nb_with_title(), run / "10_explore.ipynb")
    reports.render_notebook(run / "10_explore.ipynb", "quarto")
    summary = reports.build_summary(run, "quarto").read_text()
    assert re.search(r'<h1 class="title">Review summary · run 20260101T000000-aaaaaaa</h1>', summary)
    assert 'id="fig-equity"' in summary and 'id="tbl-headline"' in summary and "callout-warning" in summary
    assert len(re.findall(r'<img[^>]*src="data:image/png;base64,', summary)) == 1 and "Rendered by Quarto" in summary
    index = reports.build_site(tmp_path, "quarto").read_text()
    assert "quarto-listing-table" in index and "20260101T000000-aaaaaaa" in index and "Site built by Quarto" in index
    assert "<b>DMN (LSTM)</b> 0.70&nbsp;[-0.16,&nbsp;1.56]" in index and 'href="runs/20260101T000000-aaaaaaa/summary.html"' in index
    page = (run / "index.html").read_text()
    assert 'href="summary.html"' in page and "site_libs/bootstrap" in page and (tmp_path / "site_libs").is_dir()
    assert "Fewer than two runs" in (tmp_path / "compare.html").read_text()
    assert _git_state() == before and not (ROOT / ".quarto").exists()


# --- screenshots with Chromium -----------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--hide-scrollbars"]


def _chromium(page: Path, *mode: str) -> subprocess.CompletedProcess:
    with tempfile.TemporaryDirectory(prefix="kit-chromium-") as profile:
        return subprocess.run([str(CHROMIUM), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *mode, page.resolve().as_uri()],
                              capture_output=True, text=True, timeout=180, check=True)


def page_problems(dom: str, folder: Path) -> list[str]:
    """What is wrong with a page as the browser built it: error cells, and images that are remote,
    missing or not decodable."""
    import base64
    import io
    from html.parser import HTMLParser

    from PIL import Image

    problems, images = [], []

    class Parser(HTMLParser):
        def handle_starttag(self, tag, attrs):
            a = dict(attrs)
            if "cell-output-error" in (a.get("class") or "") or a.get("id") == "papermill-error-cell":
                problems.append(f"error cell: <{tag} {a}>")
            if tag == "img":
                images.append(a.get("src") or "")

    Parser().feed(dom)
    if "Traceback (most recent call last)" in dom:
        problems.append("a Python traceback is shown")
    for src in images:
        if src.startswith("data:image/"):
            try:
                Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1]))).verify()
            except Exception as exc:  # noqa: BLE001 - any decoding failure is a broken image
                problems.append(f"undecodable embedded image: {exc}")
        elif not src or src.startswith(("http:", "https:")) or not (folder / src).exists():
            problems.append(f"missing image: {src[:80]!r}")
    return problems, len(images)


def test_page_problems_finds_error_cells_and_missing_images(tmp_path):
    import base64
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (4, 4), "red").save(buf, format="PNG")
    good = f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'
    assert page_problems(f"<html><body><p>fine</p>{good}</body></html>", tmp_path) == ([], 1)
    bad = ('<div class="cell-output cell-output-error">boom</div><img src="figure-html/missing.png">'
           '<img src="data:image/png;base64,AAAA">')
    problems, n = page_problems(bad, tmp_path)
    assert n == 2 and len(problems) == 3 and "error cell" in problems[0] and "missing image" in problems[1]


@pytest.mark.slow
@pytest.mark.skipif(not CHROMIUM.exists(), reason="/usr/bin/chromium absent (Debian package chromium; CI installs it with apt-get)")
def test_screenshots_of_the_summary_and_a_stage_page(tmp_path):
    """Opens a run's summary.html and one stage page in headless Chromium, saves PNG screenshots into
    the run folder (``screenshots/``), and fails on an error cell or a missing image. The run is
    ``$KIT_SCREENSHOT_RUN`` when set (e.g. a smoke run), else a small one made here."""
    from PIL import Image

    if os.environ.get("KIT_SCREENSHOT_RUN"):
        run = Path(os.environ["KIT_SCREENSHOT_RUN"])
    else:
        run = _fake_run(tmp_path, "20260101T000000-aaaaaaa", stages=("10_explore",))
        nbformat.write(_nb_with_title(), run / "10_explore.ipynb")
        reports.render_notebook(run / "10_explore.ipynb", "auto")
        reports.build_summary(run, "auto")
    info = json.loads((run / "run.json").read_text())
    stage = next(v["html"] for v in info["notebooks"].values() if v.get("html"))
    shots = run / "screenshots"
    shots.mkdir(exist_ok=True)
    for name in ("summary.html", stage):
        page = run / name
        png = shots / f"{page.stem}.png"
        _chromium(page, "--window-size=1280,2400", f"--screenshot={png}")
        problems, n_images = page_problems(_chromium(page, "--dump-dom", "--virtual-time-budget=3000").stdout, run)
        assert not problems, (name, problems)
        src = run / f"{page.stem}.ipynb"
        expected = sum("image/png" in o.get("data", {}) for c in nbformat.read(src, 4).cells if c.cell_type == "code" for o in c.outputs)
        assert n_images >= expected >= 1, (name, n_images, expected)
        img = Image.open(png).convert("L")
        assert img.size == (1280, 2400) and img.getextrema()[0] < 100  # not a blank page
        print(f"screenshot: {png}")
def test_profile_check_covers_the_foundation_keys():
    p = reports.load_profile("foundation")
    reports.check_profile(p)  # weights are not needed to check a profile: a model without them is skipped at run time
    assert p["20_train"]["foundation_models"] == ["chronos_bolt", "timesfm"]
    for patch, match in [
        ({"models": ["dmn_lstm", "timesfm"]}, "'timesfm', a foundation model read from local weights: list it in foundation_models"),
        ({"foundation_models": ["lag_llama"]}, "unknown foundation model 'lag_llama'"),
        ({"foundation_fine_tune": "yes"}, "foundation_fine_tune must be true or false"),
        ({"foundation_context_length": 0}, "foundation_context_length must be an integer >= 2"),
    ]:
        bad = {**p, "20_train": {**p["20_train"], **patch}}
        with pytest.raises(reports.ProfileError, match=match):
            reports.check_values(bad, ["20_train"])
