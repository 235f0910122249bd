"""Changepoint features in the models: walk-forward with a feature specification (``"dmn"`` unchanged),
model variants and their settings, profile checks, the paired Sharpe difference of 30_backtest,
``python -m kit features build`` (a real process killed mid-build, then resumed) and the paper step
of a model trained with changepoint features."""

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kit import analytics, features, training
from kit.features import cache as fc

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable


def closes(T=700, N=3, seed=4):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2005-01-03", periods=T)
    return pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (T, N)), 0)), index=dates, columns=list("ABC")[:N])


# --------------------------------------------------------------------------------------------
# walk-forward with a feature specification
# --------------------------------------------------------------------------------------------


def test_walk_forward_default_features_are_the_dmn_set():
    close = closes()
    kw = {"model": "linear", "test_start": close.index[620], "test_size": 40, "lookback": 10, "train": training.TrainConfig(epochs=1), "progress": False}
    a = training.walk_forward(close, **kw)
    b = training.walk_forward(close, features="dmn", **kw)
    np.testing.assert_array_equal(a.features, features.feature_set("dmn", close).values.astype(np.float32))
    pd.testing.assert_frame_equal(a.positions, b.positions, check_exact=True)
    assert a.config["features"] == "dmn" and a.feature_names == list(features.FEATURE_SETS["dmn"].names)


@pytest.mark.slow  # GP fits of 2,000 windows and two small trainings (about 20 s)
def test_walk_forward_with_changepoint_features(tmp_path, monkeypatch):
    """A DMN LSTM and a Momentum Transformer on dmn+cpd10+bocpd: 13 inputs, named in the checkpoints,
    the GP features read from the cache (under $KIT_STATE_DIR) on the second run."""
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    close = closes()
    spec = "dmn+cpd10+bocpd"
    kw = {"test_start": close.index[620], "test_size": 40, "lookback": 10, "hidden_size": 4, "train": training.TrainConfig(epochs=1), "progress": False}
    res = training.walk_forward(close, model="dmn_lstm", features=spec, checkpoint_dir=tmp_path / "ckpt", **kw)
    names = features.feature_spec_names(spec)
    assert res.feature_names == names and res.features.shape == (700, 3, 13) and res.config["features"] == spec
    assert res.last_model.config.n_features == 13
    from kit.models import load_checkpoint

    _, payload = load_checkpoint(tmp_path / "ckpt" / "dmn_lstm_fold00.pt")
    assert payload["feature_names"] == names
    assert len(fc.cache_entries(tmp_path / "state" / "features")) == 2 * 3  # gp w10 and bocpd, 3 symbols
    seen = []
    monkeypatch.setattr(fc, "_compute_gp_chunk", lambda *a: seen.append(a) or {})
    tr = training.walk_forward(close, model="momentum_transformer", features=spec, **kw)
    assert not seen and tr.last_model.config.n_features == 13 and np.isfinite(tr.positions.to_numpy()).any()
    np.testing.assert_array_equal(tr.features, res.features)


# --------------------------------------------------------------------------------------------
# variants and settings
# --------------------------------------------------------------------------------------------


def test_variants_are_checked_and_resolved():
    variants = training.parse_variants({"mt_cpd": {"model": "momentum_transformer", "features": "dmn + cpd21+bocpd"}, "lin2": {"model": "linear"}})
    assert variants["mt_cpd"]["features"] == "dmn+cpd21+bocpd" and variants["lin2"]["features"] is None
    v = training.resolve_model("mt_cpd", variants)
    assert (v.model, v.features, v.label, v.is_variant) == ("momentum_transformer", "dmn+cpd21+bocpd", "Momentum Transformer (dmn+cpd21+bocpd)", True)
    assert training.resolve_model("lin2", variants, "dmn+bocpd").features == "dmn+bocpd"
    assert training.resolve_model("dmn_lstm", variants).label == "DMN (LSTM)"
    assert training.resolve_model("ldtm", variants, "dmn+bocpd").features == "ldtm"
    for bad, msg in (
        ({"Bad-Name": {"model": "linear"}}, "lower-case"),
        ({"dmn_lstm": {"model": "linear"}}, "catalogue"),
        ({"x": {"model": "ldtm"}}, "model must be one of"),
        ({"x": {"model": "linear", "feature": "dmn"}}, r"unknown key\(s\) \['feature'\]"),
        ({"x": {"model": "linear", "features": "dmn+cpd7"}}, "unknown token 'cpd7'"),
        ({"x": "linear"}, "must be a mapping"),
    ):
        with pytest.raises(ValueError, match=msg):
            training.parse_variants(bad)
    with pytest.raises(ValueError, match="is neither a model of the catalogue .* nor a variant"):
        training.resolve_model("mt_cpd2", variants)


def test_settings_carry_features_and_variants(monkeypatch, tmp_path):
    params = {"features": "dmn", "variants": {"lin_b": {"model": "linear", "features": "dmn+bocpd", "label": "Linear + BOCPD"}}, "epochs": 1}
    s = training.WalkForwardSettings.from_params(params)
    assert s.label("lin_b") == "Linear + BOCPD" and s.label("linear") == "Linear"
    with pytest.raises(ValueError, match="walk-forward settings: features 'dmn\\+xyz': unknown token"):
        training.WalkForwardSettings.from_params({"features": "dmn+xyz"})
    calls = []

    def fake(frames, models, *, per_model, **kw):  # what the batch of tasks would be asked to train
        out = {}
        for m in models:
            own = {**kw, **per_model[m]}
            calls.append((own.get("model", m), own["features"], own["checkpoint_dir"]))
            out[m] = training.WalkForwardResult(pd.DataFrame(), pd.DataFrame(), [], pd.DataFrame(), {"model": own.get("model", m)})
        return out

    monkeypatch.setattr(sys.modules["kit.training.walk_forward"], "walk_forward_models", fake)
    r = s.run({"close": closes()}, "lin_b", checkpoint_dir=tmp_path)
    s.run({"close": closes()}, "linear", checkpoint_dir=tmp_path)
    assert calls == [("linear", "dmn+bocpd", tmp_path / "lin_b"), ("linear", "dmn", tmp_path)]
    assert r.config["variant"] == "lin_b"


def test_profile_check_accepts_variants_and_names_bad_ones(tmp_path):
    import yaml

    from kit import reports

    base = yaml.safe_load((ROOT / "params" / "smoke.yaml").read_text())
    reports.check_values({**base, "name": "smoke"}, ["20_train", "30_backtest"])  # the smoke profile's variant passes
    bad = {**base, "name": "x", "20_train": {**base["20_train"], "models": ["dmn_lstm", "dmn_lstm_cpd"]}}
    with pytest.raises(reports.ProfileError, match="names 'dmn_lstm_cpd', not a model of the catalogue or a variant"):
        reports.check_values(bad, ["20_train"])
    bad = {**base, "name": "x", "20_train": {**base["20_train"], "variants": {"v": {"model": "linear", "features": "dmn+cpd5"}}}}
    with pytest.raises(reports.ProfileError, match=r"variants\.v\.features: .*unknown token 'cpd5'"):
        reports.check_values(bad, ["20_train"])
    daily = reports.load_profile("daily")
    reports.check_values(daily, ["20_train", "30_backtest"])
    params = reports.notebook_parameters(daily, "20_train", run_dir="")
    s = training.WalkForwardSettings.from_params(params)
    assert s.variant("momentum_transformer_cpd").features == "dmn+cpd21+bocpd"


# --------------------------------------------------------------------------------------------
# the paired Sharpe difference of the variants table
# --------------------------------------------------------------------------------------------


def test_sharpe_difference_is_paired():
    rng = np.random.default_rng(0)
    market = rng.normal(0.0004, 0.01, 1500)
    a = market + rng.normal(0, 0.001, 1500)
    d, lo, hi = analytics.sharpe_difference_bootstrap_ci(a, 2 * a, n_boot=300)
    assert d == pytest.approx(0, abs=1e-12) and lo == pytest.approx(0, abs=1e-9) and hi == pytest.approx(0, abs=1e-9)  # same Sharpe in every resample
    b = market + rng.normal(0, 0.001, 1500)
    d, lo, hi = analytics.sharpe_difference_bootstrap_ci(a, b, n_boot=500, mean_block=5.0)
    assert d == pytest.approx(analytics.sharpe_ratio(a) - analytics.sharpe_ratio(b))
    _, alo, ahi = analytics.sharpe_ratio_bootstrap_ci(a, n_boot=500, mean_block=5.0)
    assert lo < d < hi and (hi - lo) < 0.5 * (ahi - alo)  # the shared market cancels
    with pytest.raises(ValueError, match="same length"):
        analytics.sharpe_difference_bootstrap_ci(a, b[:-1])
    with pytest.raises(ValueError, match="NaN"):
        analytics.sharpe_difference_bootstrap_ci(np.r_[a[:-1], np.nan], b)


# --------------------------------------------------------------------------------------------
# python -m kit features build
# --------------------------------------------------------------------------------------------


def _cli(*args, env_extra=None, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env_extra or {})}
    return subprocess.run([PY, "-m", "kit", *args], capture_output=True, text=True, cwd=ROOT, env=env, timeout=600, **kw)


def test_features_cli_errors_are_one_line_with_exit_codes(tmp_path):
    out = _cli("features", "build", "--set", "cpd", "--method", "bocpd", "--windows", "0", "--symbols", "AAPL", "--cache-dir", str(tmp_path))
    assert out.returncode == 2 and out.stderr.strip().splitlines()[-1].startswith("kit features: ValueError: k must be a positive integer"), out.stderr
    out = _cli("features", "build", "--set", "cpd", "--profile", "smoke", "--cache-dir", str(tmp_path))
    assert out.returncode == 2 and "uses no GP changepoint features" in out.stderr, out.stderr
    out = _cli("features", "build", "--set", "cpd", "--profile", "no_such_profile")
    assert out.returncode == 2 and "not found" in out.stderr
    out = _cli("features", "list", "--cache-dir", str(tmp_path))
    assert out.returncode == 0 and "no cached changepoint features" in out.stdout


@pytest.mark.slow  # about a minute on a loaded machine: two CLI processes and two in-process builds
def test_features_build_killed_mid_build_resumes_without_recomputing(tmp_path):
    """A real ``kit features build`` process is killed (SIGKILL) once its first chunk is on disk; the
    second build computes only the rest, and the cache then equals a build without cache exactly."""
    cache = tmp_path / "cache"
    args = ["features", "build", "--set", "cpd", "--windows", "10", "--symbols", "AAPL", "JPM", "KO", "--start", "2020-10-01",
            "--cache-dir", str(cache), "--chunk-windows", "100", "--no-progress"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([PY, "-m", "kit", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not list(cache.rglob("*.parquet")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build finished before it could be killed"
    first = fc.cache_entries(cache)
    assert len(first) >= 1 and first["rows"].sum() > 0
    out = _cli(*args)
    assert out.returncode == 0, out.stderr
    m = re.search(r"(\d+) rows computed \((\d+) windows fitted\), (\d+) read from the cache", out.stdout)
    computed, reused = int(m.group(1)), int(m.group(3))
    assert reused == first["rows"].sum() and computed > 0
    from kit import data

    loaded = data.load_universe(None, ["AAPL", "JPM", "KO"], 0, None, "2020-10-01", None, cleaning="default")
    close = data.wide_fields(loaded.prices)["close"]
    assert computed + reused == int(close.notna().cummax().sum().sum())
    cached = fc.build_cpd_features(close, (10,), cache_dir=cache, progress=False)
    assert cached.rows_computed == 0
    fresh = fc.build_cpd_features(close, (10,), cache_dir=False, progress=False)
    for k in fresh.frames:
        pd.testing.assert_frame_equal(cached.frames[k], fresh.frames[k], check_exact=True)


# --------------------------------------------------------------------------------------------
# the paper step of a model with changepoint features
# --------------------------------------------------------------------------------------------


@pytest.mark.slow  # trains a small model (about 20 s)
def test_paper_step_trades_a_model_with_changepoint_features(tmp_path, monkeypatch):
    from kit import live
    from kit.store import registry

    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    url = f"sqlite:///{tmp_path / 'kit.db'}"
    cfg = {"account": "cpd", "scope": "tcpd", "require_active": False, "symbols": ["AAPL", "JPM", "KO"], "history_start": "2015-01-01",
           "state_dir": str(tmp_path / "acct"), "limits": {"max_position": 0.4}, "initial_cash": 100_000.0}
    row = live.prepare_model(cfg, "2020-12-31", db=url, epochs=1, hidden_size=3, features="dmn+bocpd")
    assert row["extra"]["walk_forward_config"]["features"] == "dmn+bocpd"
    day = live.run_day("2021-01-05", cfg, db=url)
    assert day.status == "done"
    # the positions are the model's on the batch features of the history (the bocpd set from the cache)
    from kit.data import wide_fields

    hist = live.load_history(live.PaperConfig.from_dict(cfg), pd.Timestamp("2021-01-05"))
    close = wide_fields(hist[hist["date"] <= "2021-01-05"], ("open", "close"))["close"]
    model, _ = registry.load_model(row["id"], db=url)
    fa = features.feature_array("dmn+bocpd", close)
    lookback = int(row["extra"]["walk_forward_config"]["lookback"])
    want = training.predict_positions(model, fa.values.astype(np.float32), len(close) - 1, len(close), lookback)[0]
    got = day.targets["position"].reindex([str(c) for c in close.columns]).to_numpy(dtype=float)
    np.testing.assert_allclose(got, np.clip(want, -1, 1), rtol=1e-5, atol=1e-6)
    assert day.info["features"] == "dmn+bocpd"
    assert live.run_day("2021-01-06", cfg, db=url).status == "done"  # the next day: the cache extended by a day
