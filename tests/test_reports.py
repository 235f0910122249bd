import datetime as dt
import json
import re
import subprocess
import sys
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


def test_index_lists_runs_newest_first_with_headline(tmp_path):
    for rid, sharpe in (("20260101T000000-aaaaaaa", 0.31), ("20260201T000000-bbbbbbb", 0.42)):
        run = reports.create_run_dir(tmp_path, rid)
        (run / "run.json").write_text(json.dumps({"run_id": rid, "profile": "smoke", "status": "ok", "notebooks": {"30_backtest": {"html": "30_backtest.html"}}}))
        reports.save_metrics(run, "backtest", {"cost_bps": 5, "n_symbols": 6, "start": "2016-01-04", "end": "2021-04-21",
                                               "strategies": {"DMN (LSTM)": {"sharpe_ratio": sharpe, "sharpe_ci_low": -0.1, "sharpe_ci_high": 0.9, "annual_return": 0.01, "max_drawdown": -0.1}}})
    page = reports.build_index(tmp_path).read_text()
    assert page.index("20260201T000000-bbbbbbb") < page.index("20260101T000000-aaaaaaa")
    assert "Sharpe 0.42 [-0.10, 0.90]" in page and "net of 5 bps" in page
    assert 'href="runs/20260201T000000-bbbbbbb/30_backtest.html"' in page


def test_render_falls_back_to_nbconvert_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell("# Hello"), nbformat.v4.new_code_cell("1 + 1")])
    path = tmp_path / "x.ipynb"
    nbformat.write(nb, path)
    html = reports.render_notebook(path, run_info={"run_id": "r1", "profile": "p", "git_commit": "0123456789abcdef", "data_sha256": "f" * 64}).read_text()
    assert "Rendered by nbconvert" in html and "Quarto not on PATH" in html
    assert "r1" in html and "0123456789ab" in html
    with pytest.raises(RuntimeError, match="quarto"):
        reports.render_notebook(path, renderer="quarto")


@pytest.mark.slow
def test_lock_prevents_overlapping_runs(tmp_path):
    with reports.run_lock(tmp_path):
        code = "import sys; from kit import reports\ntry:\n    with reports.run_lock(sys.argv[1]): print('got')\nexcept reports.RunLockedError: print('locked')"
        out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, check=True).stdout
        assert out.strip() == "locked"
    with reports.run_lock(tmp_path):
        pass  # released after the block


def test_profiles_are_valid_and_complete():
    for name in ("smoke", "report", "daily", "full"):
        p = reports.load_profile(name)
        assert p["notebooks"] == ["10_explore", "20_train", "30_backtest", "50_audit"]
        params = reports.notebook_parameters(p, "30_backtest", "/tmp/x")
        assert params["cost_bps"] > 0 and params["run_dir"] == "/tmp/x"
    report = reports.load_profile("report")["shared"]
    assert report["n_symbols"] >= 50
    with pytest.raises(reports.ProfileError, match="not found"):
        reports.load_profile("no-such-profile")


@pytest.mark.slow
def test_bad_profile_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("notebooks: [99_missing]\n")
    with pytest.raises(reports.ProfileError, match="99_missing"):
        reports.load_profile(bad)
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
    """A real papermill run of one notebook into a temporary reports folder."""
    run = reports.run_profile("smoke", reports_dir=tmp_path, renderer="nbconvert", notebooks=["10_explore"])
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "ok" and info["data_sha256"] and info["git_commit"]
    assert (run / "10_explore.html").exists() and (run / "params.yaml").exists()
    assert reports.load_metrics(run)["explore"]["n_symbols"] == 6
    assert run.name in (tmp_path / "index.html").read_text()
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
        reports.check_profile(reports.load_profile(path))
    out = subprocess.run([sys.executable, "-m", "kit", "run", "--profile", str(path), "--reports-dir", str(tmp_path / "reports")],
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
