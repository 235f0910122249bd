"""kit.store.registry: versions, registration, the promotion gate, history, fold metrics, crash safety.

Runs on SQLite by default and on PostgreSQL when ``KIT_DB_URL`` names one (scripts/postgres_test.sh).
"""

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from kit import analytics
from kit.store import engine as kdb
from kit.store import registry
from kit.store import schema as S
from tests._ledger_worker import ARCH, add_model, fresh_db, kill, spawn, wait_for


@pytest.fixture
def url(tmp_path):
    with fresh_db(tmp_path) as u:
        yield u


def _count(url, table) -> int:
    with kdb.get_engine(url).connect() as conn:
        return conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()


# ------------------------------------------------------------------------------------------------
# versions
# ------------------------------------------------------------------------------------------------


def test_architecture_hash_ignores_training_only_keys_and_key_order():
    a = {"model": "dmn_lstm", "n_features": 8, "hidden_size": 5, "num_layers": 1, "dropout": 0.1}
    b = {"dropout": 0.5, "num_layers": 1, "hidden_size": 5, "n_features": 8, "model": "dmn_lstm"}
    assert registry.architecture_hash(a) == registry.architecture_hash(b)
    assert registry.architecture_hash(a) != registry.architecture_hash({**a, "hidden_size": 6})
    assert registry.architecture_of(a) == {"model": "dmn_lstm", "n_features": 8, "hidden_size": 5, "num_layers": 1}
    expected = hashlib.sha256(b'{"hidden_size":5,"model":"dmn_lstm","n_features":8,"num_layers":1}').hexdigest()
    assert registry.architecture_hash(a) == expected
    ens = {"model": "ensemble", "members": [a, {**a, "model": "linear", "hidden_size": 0}]}
    assert registry.architecture_hash(ens) == registry.architecture_hash({**ens, "members": [b, {**b, "model": "linear", "hidden_size": 0}]})
    ldtm = {"model": "ldtm", "horizons": (1, 5, 21), "n_features": 11}
    assert registry.architecture_hash(ldtm) == registry.architecture_hash({**ldtm, "horizons": [1, 5, 21]})
    with pytest.raises(ValueError, match="'model' key"):
        registry.architecture_hash({"hidden_size": 5})


def test_universe_scope_and_version_label():
    s = registry.universe_scope(["MSFT", "AAPL", "AAPL"])
    assert s == registry.universe_scope(["AAPL", "MSFT"])
    assert s == "universe2-" + hashlib.sha256(b"AAPL,MSFT").hexdigest()[:8]
    assert registry.universe_scope(["A"], label="smoke").startswith("smoke1-")
    with pytest.raises(ValueError, match="empty"):
        registry.universe_scope([])
    with pytest.raises(ValueError, match="label"):
        registry.universe_scope(["A"], label="my_label")
    assert registry.version_label("AAPL", "ldtm", 2, "2021-04-21") == "AAPL_ldtm_v2.2021-04-21"


def test_gate_thresholds_from_params():
    d = registry.GateThresholds()
    assert (d.min_direction_accuracy, d.max_mape, d.max_leakage_rows, d.min_folds, d.require_beat_benchmark) == (0.52, 0.05, 0, 2, False)
    t = registry.GateThresholds.from_dict({"min_direction_accuracy": 0.55, "require_beat_benchmark": True})
    assert t.min_direction_accuracy == 0.55 and t.require_beat_benchmark and t.min_folds == 2
    assert registry.GateThresholds.from_dict(None) == d
    with pytest.raises(ValueError, match=r"gate: unknown key 'min_accuracy'"):
        registry.GateThresholds.from_dict({"min_accuracy": 0.5})
    for bad in ({"min_direction_accuracy": 1.2}, {"max_mape": -0.1}, {"max_leakage_rows": -1}, {"min_folds": 0},
                {"max_leakage_rows": 0.5}, {"require_beat_benchmark": "yes"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            registry.GateThresholds.from_dict(bad)


# ------------------------------------------------------------------------------------------------
# registration
# ------------------------------------------------------------------------------------------------


def test_register_copies_the_checkpoint_to_a_versioned_name(url, tmp_path):
    src = tmp_path / "fold02.pt"
    src.write_bytes(b"weights v1")
    folds = pd.DataFrame({"fold": [0, 1], "n_obs": [10, 30], "direction_accuracy": [0.6, 0.5], "leakage_rows": [0, 0], "mape_5": [0.1, 0.2]})
    mid = registry.register("ldtm", "AAPL", src, "2021-04-21", folds, architecture={"model": "ldtm", "n_features": 11}, model_dir=tmp_path / "m", db=url)
    m = registry.get_model(mid, db=url)
    assert m["label"] == "AAPL_ldtm_v1.2021-04-21" and m["version"] == "v1.2021-04-21" and m["status"] == "candidate"
    assert m["forecaster"]  # an ldtm is a forecaster
    dst = Path(m["checkpoint_path"])
    assert dst == tmp_path / "m" / "AAPL_ldtm_v1.2021-04-21.pt" and dst.read_bytes() == b"weights v1"
    assert m["checkpoint_sha256"] == hashlib.sha256(b"weights v1").hexdigest()
    ft = registry.fold_table(mid, db=url)
    assert ft["fold"].tolist() == [0, 1] and ft["n_obs"].tolist() == [10, 30]
    assert ft["mape"].isna().all()
    ft_extra = ft["extra"].tolist()
    assert [e["mape_5"] for e in ft_extra] == [0.1, 0.2]
    row = registry.list_models(db=url).iloc[0]
    assert row["direction_accuracy"] == pytest.approx((10 * 0.6 + 30 * 0.5) / 40)
    assert row["gate"] is None
    h = registry.history(db=url)
    assert h[["event", "from_status", "to_status"]].fillna("-").values.tolist() == [["registered", "-", "candidate"]]


def test_version_major_follows_the_architecture(url, tmp_path):
    a, b = ARCH, {**ARCH, "hidden_size": 7}
    m1 = add_model(url, tmp_path, arch=a, trained_on="2020-01-31")
    m2 = add_model(url, tmp_path, arch={**a, "dropout": 0.4}, trained_on="2020-02-28")  # same architecture
    m3 = add_model(url, tmp_path, arch=b, trained_on="2020-03-31")
    m4 = add_model(url, tmp_path, arch=a, trained_on="2020-04-30")  # back to the first architecture
    m5 = add_model(url, tmp_path, arch=b, scope="other", trained_on="2020-03-31")  # majors are per scope
    labels = [registry.get_model(m, db=url)["label"] for m in (m1, m2, m3, m4, m5)]
    assert labels == [
        "universe4-test_dmn_lstm_v1.2020-01-31", "universe4-test_dmn_lstm_v1.2020-02-28", "universe4-test_dmn_lstm_v2.2020-03-31",
        "universe4-test_dmn_lstm_v1.2020-04-30", "other_dmn_lstm_v1.2020-03-31",
    ]
    assert all(Path(registry.get_model(m, db=url)["checkpoint_path"]).exists() for m in (m1, m2, m3, m4, m5))


def test_a_registered_version_is_never_registered_twice(url, tmp_path):
    mid = add_model(url, tmp_path, trained_on="2020-01-31")
    n_models, n_hist = _count(url, S.models), _count(url, S.model_history)
    with pytest.raises(registry.DuplicateModelError, match="universe4-test_dmn_lstm_v1.2020-01-31 is already registered"):
        add_model(url, tmp_path, trained_on="2020-01-31")
    assert add_model(url, tmp_path, trained_on="2020-01-31", if_exists="skip") == mid
    assert (_count(url, S.models), _count(url, S.model_history)) == (n_models, n_hist)


GOOD_FOLDS = pd.DataFrame({"fold": [0, 1], "n_obs": [10, 10], "direction_accuracy": [0.6, 0.6], "leakage_rows": [0, 0]})


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"name": "DMN"}, ValueError, "name must be"),
        ({"scope": "my_universe"}, ValueError, "scope must be"),
        ({"scope": ""}, ValueError, "scope must be"),
        ({"trained_on": "not a date"}, ValueError, "trained_on must be a date"),
        ({"if_exists": "overwrite"}, ValueError, "if_exists"),
        ({"checkpoint_path": "/nonexistent/ck.pt"}, FileNotFoundError, "checkpoint_path not found"),
        ({"folds": GOOD_FOLDS.drop(columns="n_obs")}, ValueError, r"missing column\(s\) \['n_obs'\]"),
        ({"folds": GOOD_FOLDS.assign(direction_accuracy=[0.6, np.nan])}, ValueError, "fold 1: direction_accuracy is NaN with n_obs=10"),
        ({"folds": GOOD_FOLDS.assign(direction_accuracy=[0.6, 1.5])}, ValueError, r"fold 1: direction_accuracy must be in \[0, 1\], got 1.5"),
        ({"folds": GOOD_FOLDS.assign(leakage_rows=[0, -2])}, ValueError, "fold 1: leakage_rows must be an integer >= 0, got -2"),
        ({"folds": GOOD_FOLDS.assign(n_obs=[10, 2.5])}, ValueError, "fold 1: n_obs must be an integer"),
        ({"folds": GOOD_FOLDS.assign(fold=[0, 0])}, ValueError, "duplicate fold"),
        ({"folds": GOOD_FOLDS.assign(mape=[0.01, np.inf])}, ValueError, "fold 1: mape must be a finite number"),
        ({"folds": "not a frame"}, TypeError, "folds must be a DataFrame"),
        ({"oos_sharpe": float("nan")}, ValueError, "oos_sharpe must be finite"),
        ({"architecture": {"hidden_size": 3}}, ValueError, "'model' key"),
    ],
)
def test_register_refuses_bad_input_and_writes_nothing(url, tmp_path, kwargs, exc, match):
    ck = tmp_path / "ck.pt"
    ck.write_bytes(b"x")
    args = {"name": "dmn_lstm", "scope": "AAPL", "checkpoint_path": ck, "trained_on": "2020-01-31", "folds": GOOD_FOLDS, "architecture": ARCH,
            "model_dir": tmp_path / "m", "db": url}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        registry.register(args.pop("name"), args.pop("scope"), args.pop("checkpoint_path"), args.pop("trained_on"), args.pop("folds"), **args)
    assert registry.list_models(db=url).empty
    assert not (tmp_path / "m").exists() or not any((tmp_path / "m").iterdir())


# ------------------------------------------------------------------------------------------------
# gate
# ------------------------------------------------------------------------------------------------


def test_gate_pass_promotes_and_retires_the_previous_active_in_one_go(url, tmp_path):
    first = add_model(url, tmp_path, trained_on="2020-01-31", accuracies=(0.55, 0.53))
    d1 = registry.apply_gate(first, db=url)
    assert d1.passed and d1.status == "active" and d1.retired_id is None
    second = add_model(url, tmp_path, trained_on="2020-02-28", accuracies=(0.54, 0.56))
    other_scope = add_model(url, tmp_path, scope="MSFT", trained_on="2020-02-28")
    registry.apply_gate(other_scope, db=url)
    d2 = registry.apply_gate(second, db=url)
    assert d2.passed and d2.retired_id == first
    status = registry.list_models(db=url).set_index("id")["status"]
    assert status.to_dict() == {first: "retired", second: "active", other_scope: "active"}  # other scopes untouched
    assert registry.active_model("universe4-test", db=url)["id"] == second
    h = registry.history(db=url)
    assert h[h["model_id"] == first][["event", "from_status", "to_status"]].fillna("-").values.tolist() == [
        ["registered", "-", "candidate"], ["promoted", "candidate", "active"], ["retired", "active", "retired"]]
    assert "replaced by universe4-test_dmn_lstm_v1.2020-02-28" in h[(h["model_id"] == first) & (h["event"] == "retired")]["reason"].iloc[0]
    g = registry.gate_results(second, db=url)
    assert set(g["criterion"]) == {"folds", "leakage_rows", "direction_accuracy"} and g["passed"].all()
    assert g.set_index("criterion").loc["direction_accuracy", "value"] == pytest.approx(0.55)


def test_gate_fail_keeps_the_candidate_and_records_each_failure_with_its_value(url, tmp_path):
    active = add_model(url, tmp_path, trained_on="2020-01-31")
    registry.apply_gate(active, db=url)
    weak = add_model(url, tmp_path, trained_on="2020-02-28", accuracies=(0.50, 0.52), n_obs=(100, 100))
    d = registry.apply_gate(weak, registry.GateThresholds(min_folds=3), db=url)
    assert not d.passed and d.status == "candidate"
    checks = d.checks.set_index("criterion")
    assert checks.loc["direction_accuracy", "value"] == pytest.approx(0.51) and not checks.loc["direction_accuracy", "passed"]
    assert checks.loc["folds", "value"] == 2 and checks.loc["folds", "threshold"] == 3 and not checks.loc["folds", "passed"]
    assert checks.loc["leakage_rows", "passed"]
    assert d.reasons == ["folds = 2.0000 (needs >= 3)", "direction_accuracy = 0.5100 (needs >= 0.52)"]
    status = registry.list_models(db=url).set_index("id")
    assert status.loc[weak, "status"] == "candidate" and status.loc[active, "status"] == "active"
    assert status.loc[weak, "gate"] == "failed" and status.loc[weak, "gate_failures"] == "direction_accuracy, folds"
    stored = registry.gate_results(weak, db=url).set_index("criterion")
    assert stored.loc["direction_accuracy", "value"] == pytest.approx(0.51) and not stored["gate_passed"].any()
    h = registry.history(weak, db=url)
    assert h["event"].tolist() == ["registered", "gate_failed"]
    assert "direction_accuracy = 0.5100" in h["reason"].iloc[-1]
    # a failed candidate may be gated again (e.g. with other thresholds); both evaluations are kept
    d2 = registry.apply_gate(weak, {"min_direction_accuracy": 0.5}, db=url)
    assert d2.passed and registry.get_model(active, db=url)["status"] == "retired"
    assert registry.gate_results(weak, db=url)["evaluation_id"].nunique() == 2


def test_gate_criteria_for_forecasters_leakage_and_benchmark(url, tmp_path):
    ck = tmp_path / "ck.pt"
    ck.write_bytes(b"x")
    folds = pd.DataFrame({"fold": [0, 1], "n_obs": [50, 150], "direction_accuracy": [0.6, 0.6], "leakage_rows": [0, 3], "mape": [0.02, 0.08]})
    mid = registry.register("ldtm", "AAPL", ck, "2021-01-29", folds, architecture={"model": "ldtm"}, oos_sharpe=0.5, benchmark_sharpe=0.8,
                            model_dir=tmp_path / "m", db=url)
    d = registry.apply_gate(mid, {"require_beat_benchmark": True}, db=url)
    c = d.checks.set_index("criterion")
    assert c.loc["mape", "value"] == pytest.approx((50 * 0.02 + 150 * 0.08) / 200) and not c.loc["mape", "passed"]
    assert c.loc["leakage_rows", "value"] == 3 and not c.loc["leakage_rows", "passed"]
    assert c.loc["sharpe_minus_benchmark", "value"] == pytest.approx(-0.3) and not c.loc["sharpe_minus_benchmark", "passed"]
    assert c.loc["direction_accuracy", "passed"] and not d.passed
    # a position model has no MAPE criterion; missing benchmark figures fail that criterion
    pos = add_model(url, tmp_path, trained_on="2020-01-31")
    d = registry.apply_gate(pos, {"require_beat_benchmark": True}, db=url)
    c = d.checks.set_index("criterion")
    assert "mape" not in c.index and not c.loc["sharpe_minus_benchmark", "passed"]
    assert "no out-of-sample Sharpe" in c.loc["sharpe_minus_benchmark", "detail"]
    # a forecaster without any MAPE fails that criterion
    fc = add_model(url, tmp_path, name="ldtm", trained_on="2020-01-31", arch={"model": "ldtm"})
    c = registry.apply_gate(fc, db=url).checks.set_index("criterion")
    assert not c.loc["mape", "passed"] and c.loc["mape", "detail"] == "forecaster without a recorded MAPE"


def test_lifecycle_refuses_invalid_transitions(url, tmp_path):
    mid = add_model(url, tmp_path, trained_on="2020-01-31")
    registry.apply_gate(mid, db=url)
    with pytest.raises(registry.InvalidTransitionError, match="is active; only a candidate"):
        registry.apply_gate(mid, db=url)
    with pytest.raises(registry.UnknownModelError, match="no model with id 999"):
        registry.apply_gate(999, db=url)
    registry.retire(mid, "market regime changed", db=url)
    with pytest.raises(registry.InvalidTransitionError, match="retired already"):
        registry.retire(mid, db=url)
    with pytest.raises(registry.InvalidTransitionError, match="is retired"):
        registry.apply_gate(mid, db=url)
    assert registry.history(mid, db=url)["event"].tolist() == ["registered", "promoted", "retired"]
    assert registry.active_model("universe4-test", db=url) is None


def test_the_database_itself_allows_one_active_model_per_scope(url, tmp_path):
    a = add_model(url, tmp_path, trained_on="2020-01-31")
    b = add_model(url, tmp_path, trained_on="2020-02-28")
    registry.apply_gate(a, db=url)
    with pytest.raises(sa.exc.IntegrityError):
        with kdb.get_engine(url).begin() as conn:
            conn.execute(S.models.update().where(S.models.c.id == b).values(status="active"))
    with pytest.raises(sa.exc.IntegrityError):
        with kdb.get_engine(url).begin() as conn:
            conn.execute(S.models.update().where(S.models.c.id == b).values(status="promoted"))


# ------------------------------------------------------------------------------------------------
# fold metrics
# ------------------------------------------------------------------------------------------------

D = pd.bdate_range("2021-01-04", periods=6)
CLOSE = pd.DataFrame({"A": [100, 101, 100, 102, 102, 101], "B": [50, 49, 49.5, 49.5, 50, 51]}, index=D, dtype=float)
FOLDS = pd.DataFrame({"fold": [0, 1], "test_start": [D[0].date().isoformat(), D[3].date().isoformat()],
                      "test_end": [D[2].date().isoformat(), D[4].date().isoformat()], "leakage_rows": [0, 0]})


def test_fold_metrics_direction_accuracy_hand_computed():
    # next-day returns A: + - + 0 -, B: - + 0 + +
    pos = pd.DataFrame({"A": [1, 1, -1, 1, 0.5], "B": [-0.2, 0, np.nan, 1, -1]}, index=D[:5], dtype=float)
    res = SimpleNamespace(positions=pos, folds=FOLDS)
    fm = analytics.fold_metrics(res, CLOSE)
    # fold 0: A right, wrong, wrong; B right, no call (0), no call (NaN) -> 2 / 4
    # fold 1: A wrong (zero return), wrong; B right, wrong -> 1 / 4
    assert fm["n_obs"].tolist() == [4, 4]
    assert fm["direction_accuracy"].tolist() == [0.5, 0.25]
    assert fm["mape"].isna().all() and fm["leakage_rows"].tolist() == [0, 0]
    assert fm["test_start"].tolist() == [D[0].date(), D[3].date()]


def test_fold_metrics_mape_on_the_predicted_price_hand_computed():
    f1 = pd.DataFrame(0.01, index=D[:5], columns=["A", "B"])
    res = SimpleNamespace(positions=None, folds=FOLDS)
    fm = analytics.fold_metrics(res, CLOSE, forecasts={1: f1, 5: f1 * 5})
    # fold 0 predicted price 1.01 close_t vs close_{t+1}
    ape0 = [0 / 101, 2.01 / 100, 1 / 102, 1.5 / 49, 0.01 / 49.5, 0.495 / 49.5]
    assert fm.loc[0, "mape"] == pytest.approx(np.mean(ape0), rel=1e-12)
    assert fm.loc[0, "mape_1"] == fm.loc[0, "mape"]
    # 5 days ahead only the first date has a known price: 1.05 x 100 vs 101 and 1.05 x 50 vs 51
    assert fm.loc[0, "mape_5"] == pytest.approx((4 / 101 + 1.5 / 51) / 2, rel=1e-12)
    assert np.isnan(fm.loc[1, "mape_5"])
    # calls are sign(forecast) = +1: fold 0 A + - +, B - + 0 -> 3 of 6
    assert fm.loc[0, "direction_accuracy"] == 0.5 and fm.loc[0, "n_obs"] == 6
    with pytest.raises(ValueError, match="horizon"):
        analytics.fold_metrics(res, CLOSE, forecasts={5: f1})
    with pytest.raises(ValueError, match="not in close"):
        analytics.fold_metrics(SimpleNamespace(positions=f1.rename(columns={"A": "Z"}), folds=FOLDS), CLOSE)


def test_fold_sharpe_matches_the_long_only_benchmark_for_long_positions():
    rng = np.random.default_rng(1)
    idx = pd.bdate_range("2020-01-01", periods=200)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0.0005, 0.01, (200, 3)), 0)), index=idx, columns=list("ABC"))
    folds = pd.DataFrame({"fold": [0, 1], "test_start": [idx[100], idx[150]], "test_end": [idx[149], idx[199]], "leakage_rows": [0, 0]})
    ones = pd.DataFrame(1.0, index=idx[100:], columns=close.columns)
    long_ = analytics.fold_metrics(SimpleNamespace(positions=ones, folds=folds), close)
    assert np.allclose(long_["sharpe_ratio"], long_["benchmark_sharpe"]) and long_["sharpe_ratio"].notna().all()
    short = analytics.fold_metrics(SimpleNamespace(positions=-0.5 * ones, folds=folds), close)
    assert np.allclose(short["sharpe_ratio"], -long_["benchmark_sharpe"])  # scale-free, sign flips
    oos = analytics.oos_metrics(SimpleNamespace(positions=ones, folds=folds), close)
    assert oos["sharpe_ratio"] == pytest.approx(oos["benchmark_sharpe"]) and oos["n_days"] == 99
    # net of costs long only is still its own benchmark (the same costs, entry included), below gross
    net = analytics.fold_metrics(SimpleNamespace(positions=ones, folds=folds), close, cost_bps=20.0)
    assert np.allclose(net["sharpe_ratio"], net["benchmark_sharpe"]) and (net["sharpe_ratio"] < net["gross_sharpe_ratio"]).all()


def _net_daily_reference(positions, close, cost_bps) -> pd.Series:
    """Plain-loop reference of the net captured returns by day (Lim et al., 2019, transaction costs):
    costs run over the whole stitched frame, so a fold's first day pays for the change from the
    previous fold's last position."""
    from kit.features import daily_returns, ex_ante_vol

    vol = ex_ante_vol(daily_returns(close)).reindex(positions.index).to_numpy(float)
    nxt = (close.shift(-1) / close - 1.0).reindex(positions.index).to_numpy(float)
    x = positions.to_numpy(float)
    c = cost_bps * 1e-4
    T, N = x.shape
    daily, days = [], []
    prev = np.zeros(N)
    for t in range(T):
        vals = []
        held = np.zeros(N)
        for j in range(N):
            v = vol[t, j]
            held[j] = (0.0 if not np.isfinite(x[t, j]) else x[t, j]) / v if np.isfinite(v) and v > 0 else 0.0
            if np.isfinite(x[t, j]) and np.isfinite(nxt[t, j]) and np.isfinite(v) and v > 0:
                vals.append(x[t, j] * nxt[t, j] / v - c * abs(held[j] - prev[j]))
        prev = held
        if vals:
            daily.append(np.mean(vals))
            days.append(positions.index[t])
    return pd.Series(daily, index=days)


def _sharpe_of(daily: pd.Series) -> float:
    return daily.mean() / daily.std(ddof=1) * np.sqrt(252)


def test_oos_sharpe_net_of_costs_matches_a_plain_loop():
    rng = np.random.default_rng(7)
    idx = pd.bdate_range("2020-01-01", periods=160)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0.0003, 0.01, (160, 3)), 0)), index=idx, columns=list("ABC"))
    pos = pd.DataFrame(rng.uniform(-1, 1, (80, 3)), index=idx[80:], columns=close.columns)
    pos.iloc[5:9, 1] = np.nan  # a symbol out of the book for a few days: flat, re-entry charged
    folds = pd.DataFrame({"fold": [0, 1], "test_start": [idx[80], idx[120]], "test_end": [idx[119], idx[-1]], "leakage_rows": [0, 0]})
    res = SimpleNamespace(positions=pos, folds=folds)
    gross = analytics.oos_metrics(res, close)
    for bps in (0.0, 5.0, 50.0):
        oos = analytics.oos_metrics(res, close, cost_bps=bps)
        assert oos["sharpe_ratio"] == pytest.approx(_sharpe_of(_net_daily_reference(pos, close, bps)), rel=1e-9)
        assert oos["gross_sharpe_ratio"] == pytest.approx(gross["sharpe_ratio"]) and oos["cost_bps"] == bps
    assert analytics.oos_metrics(res, close, cost_bps=50.0)["sharpe_ratio"] < gross["sharpe_ratio"] - 0.5  # turnover of random books is costly
    # per fold: the slices of the stitched reference, so fold 1's first day pays for the change from
    # fold 0's last position (charged from flat instead, fold 1 gives -13.3052, not -13.2997)
    ref = _net_daily_reference(pos, close, 50.0)
    fm = analytics.fold_metrics(res, close, cost_bps=50.0)
    for f, (a, b) in enumerate(((idx[80], idx[119]), (idx[120], idx[-1]))):
        assert fm.loc[f, "sharpe_ratio"] == pytest.approx(_sharpe_of(ref.loc[a:b]), rel=1e-9)
    assert (fm["sharpe_ratio"] < fm["gross_sharpe_ratio"]).all()
    for bad in (-1.0, float("nan"), float("inf"), "5", True):
        with pytest.raises(ValueError, match="cost_bps"):
            analytics.oos_metrics(res, close, cost_bps=bad)
    with pytest.raises(ValueError, match="cost_bps"):
        registry.GateThresholds(cost_bps=-2)


def test_register_and_gate_activates_the_best_net_of_costs_not_the_best_gross(url, tmp_path):
    rng = np.random.default_rng(5)
    idx = pd.bdate_range("2020-01-01", periods=200)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0.002, 0.01, (200, 3)), 0)), index=idx, columns=list("ABC"))
    nxt = np.sign(close.shift(-1) / close - 1).iloc[100:].fillna(1.0)
    results = {
        "mlp": _fake_result(close, "mlp", nxt, tmp_path),  # foresight that flips about a third of the days: huge gross, huge turnover
        "linear": _fake_result(close, "linear", nxt * 0 + 1.0, tmp_path),  # long only: a modest edge, almost no turnover
    }
    scope = registry.universe_scope(close.columns)
    th = {"min_direction_accuracy": 0.5, "cost_bps": 100.0}
    table = registry.register_and_gate(results, close, scope, th, model_dir=tmp_path / "m", db=url).set_index("name")
    assert (table["gate"] == "passed").all()
    models = registry.list_models(db=url).set_index("name")
    assert models.loc["mlp", "oos_sharpe_gross"] > models.loc["linear", "oos_sharpe_gross"]  # the gross ranking would pick mlp
    assert models.loc["mlp", "oos_sharpe"] < models.loc["linear", "oos_sharpe"] and (models["cost_bps"] == 100.0).all()
    assert registry.active_model(scope, db=url)["name"] == "linear"
    assert table.loc["mlp", "status"] == "retired"


def test_register_walk_forward_end_to_end(url, tmp_path):
    from kit import training

    rng = np.random.default_rng(4)
    dates = pd.bdate_range("2005-01-03", periods=800)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (800, 3)), 0)), index=dates, columns=list("ABC"))
    res = training.walk_forward(close, model="linear", test_start=dates[650], test_size=75, lookback=21,
                                train=training.TrainConfig(epochs=1), checkpoint_dir=tmp_path / "ck", progress=False)
    scope = registry.universe_scope(close.columns)
    mid = registry.register_walk_forward(res, close, scope, model_dir=tmp_path / "m", extra={"run_id": "test"}, db=url)
    m = registry.get_model(mid, db=url)
    last_val_end = res.folds["val_end"].iloc[-1]
    assert m["label"] == f"{scope}_linear_v1.{last_val_end}" and m["extra"]["run_id"] == "test"
    ft = registry.fold_table(mid, db=url)
    assert len(ft) == 2 and ft["n_obs"].sum() > 0 and (ft["leakage_rows"] == 0).all()
    expected = analytics.fold_metrics(res, close)
    np.testing.assert_allclose(ft["direction_accuracy"], expected["direction_accuracy"])
    model, payload = registry.load_model(mid, db=url)
    assert payload["config"]["model"] == "linear"
    d = registry.apply_gate(mid, {"min_direction_accuracy": 0.0}, db=url)
    assert d.passed
    Path(m["checkpoint_path"]).write_bytes(b"tampered")
    with pytest.raises(registry.CheckpointMismatchError, match="changed since registration"):
        registry.load_model(mid, db=url)


# ------------------------------------------------------------------------------------------------
# crashes (real processes, SIGKILL inside the transaction)
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_process_killed_inside_the_gate_transaction_changes_nothing(url, tmp_path):
    old = add_model(url, tmp_path, trained_on="2020-01-31")
    registry.apply_gate(old, db=url)
    new = add_model(url, tmp_path, trained_on="2020-02-28")
    before = (_count(url, S.gate_evaluations), _count(url, S.gate_checks), _count(url, S.model_history))
    ready = tmp_path / "ready"
    proc = spawn("gate_pause", url=url, model_id=new, ready_file=str(ready))
    wait_for(ready, proc)  # the promotion and the retirement are executed, not committed
    kill(proc)
    kdb.dispose_engines()
    status = registry.list_models(db=url).set_index("id")["status"].to_dict()
    assert status == {old: "active", new: "candidate"}
    assert (_count(url, S.gate_evaluations), _count(url, S.gate_checks), _count(url, S.model_history)) == before
    d = registry.apply_gate(new, db=url)  # the next run completes the work
    assert d.passed and d.retired_id == old


@pytest.mark.slow
def test_a_process_killed_inside_registration_leaves_no_model(url, tmp_path):
    ready = tmp_path / "ready"
    proc = spawn("register_pause", url=url, tmp=str(tmp_path), trained_on="2020-05-29", ready_file=str(ready))
    wait_for(ready, proc)
    kill(proc)
    kdb.dispose_engines()
    assert registry.list_models(db=url).empty
    assert _count(url, S.model_history) == 0 and _count(url, S.arch_versions) == 0
    mid = add_model(url, tmp_path, trained_on="2020-05-29")  # the same version registers cleanly afterwards
    m = registry.get_model(mid, db=url)
    assert m["label"] == "universe4-test_dmn_lstm_v1.2020-05-29"
    assert hashlib.sha256(Path(m["checkpoint_path"]).read_bytes()).hexdigest() == m["checkpoint_sha256"]


def _fake_result(close, name, positions, tmp_path):
    import torch

    from kit.models import BaselineConfig, PerStepBaseline, save_checkpoint

    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path / f"{name}.pt", PerStepBaseline(BaselineConfig(8, 4 if name != "linear" else 0)), feature_names=list("abcdefgh"),
                         data_sha256="", train_period=("2020-01-01", "2020-05-01"))
    idx = positions.index
    folds = pd.DataFrame({"fold": [0, 1], "model": name, "test_start": [idx[0].date().isoformat(), idx[50].date().isoformat()],
                          "test_end": [idx[49].date().isoformat(), idx[-1].date().isoformat()], "val_end": ["2020-05-01", "2020-07-01"],
                          "leakage_rows": [0, 0], "checkpoint": [str(ck), str(ck)]})
    return SimpleNamespace(positions=positions, folds=folds, config={"model": name}, feature_names=list("abcdefgh"))


def test_register_and_gate_a_training_run(url, tmp_path):
    rng = np.random.default_rng(2)
    idx = pd.bdate_range("2020-01-01", periods=200)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (200, 3)), 0)), index=idx, columns=list("ABC"))
    nxt = np.sign(close.shift(-1) / close - 1).iloc[100:]
    flip = np.where(rng.random(nxt.shape) < 0.2, -1.0, 1.0)
    results = {
        "mlp": _fake_result(close, "mlp", nxt * flip, tmp_path),  # right about 80% of the time
        "linear": _fake_result(close, "linear", -nxt, tmp_path),  # always wrong
        "dmn_lstm": _fake_result(close, "dmn_lstm", nxt * 0.5, tmp_path),  # always right
    }
    scope = registry.universe_scope(close.columns)
    table = registry.register_and_gate(results, close, scope, {"min_direction_accuracy": 0.55}, model_dir=tmp_path / "m", db=url).set_index("name")
    assert table.loc["linear", "gate"] == "failed" and table.loc["linear", "status"] == "candidate"
    assert table.loc["linear", "reasons"].startswith("direction_accuracy = 0.0000 (needs >= 0.55)")
    passed = table[table["gate"] == "passed"]
    assert set(passed.index) == {"mlp", "dmn_lstm"}
    best = passed["oos_sharpe"].idxmax()
    assert passed.loc[best, "status"] == "active" and (passed.drop(index=best)["status"] == "retired").all()
    assert registry.active_model(scope, db=url)["name"] == best
    again = registry.register_and_gate(results, close, scope, db=url).set_index("name")  # a re-run on the same data
    assert (again["gate"] == "registered before").all() and again["status"].to_dict() == table["status"].to_dict()
    assert len(registry.list_models(db=url)) == 3


@pytest.mark.slow
def test_register_an_ldtm_walk_forward_as_a_forecaster(url, tmp_path):
    from kit import data, training
    from tests.conftest import make_ohlcv

    frames = data.wide_fields(data.adjust_prices(make_ohlcv(("A", "B"), days=600, seed=5)))
    close = frames["close"]
    res = training.walk_forward_ldtm(frames, test_start=close.index[450], test_size=75, hidden_size=4, num_layers=1, lookback=10,
                                     min_train_samples=50, train=training.TrainConfig(epochs=1, batch_size=64), checkpoint_dir=tmp_path / "ck",
                                     progress=False)
    fm = analytics.fold_metrics(res, close)  # forecasts come from the result
    assert fm["mape"].notna().all() and {"mape_1", "mape_5", "mape_21"} <= set(fm.columns)
    mid = registry.register_walk_forward(res, close, registry.universe_scope(close.columns), model_dir=tmp_path / "m", db=url)
    m = registry.get_model(mid, db=url)
    assert m["forecaster"] and m["name"] == "ldtm"
    ft = registry.fold_table(mid, db=url)
    np.testing.assert_allclose(ft["mape"], fm["mape"])
    assert "mape" in set(registry.apply_gate(mid, db=url).checks["criterion"])


def test_register_an_ensemble_bundles_the_members_checkpoints(url, tmp_path):
    from kit import training

    rng = np.random.default_rng(4)
    dates = pd.bdate_range("2005-01-03", periods=700)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (700, 2)), 0)), index=dates, columns=list("AB"))
    res = training.walk_forward(close, model="ensemble", members=("linear", "mlp"), ensemble_method="equal", test_start=dates[550],
                                test_size=75, lookback=10, hidden_size=3, train=training.TrainConfig(epochs=1), checkpoint_dir=tmp_path / "ck",
                                progress=False)
    mid = registry.register_walk_forward(res, close, "pair", model_dir=tmp_path / "m", db=url)
    m = registry.get_model(mid, db=url)
    assert m["name"] == "ensemble" and m["label"].startswith("pair_ensemble_v1.")
    assert registry.fold_table(mid, db=url)["fold"].tolist() == [0, 1]
    model, payload = registry.load_model(mid, db=url)
    from kit.models import PositionEnsemble

    # one loader for every format: the bundle comes back as the ensemble it describes
    assert isinstance(model, PositionEnsemble) and [m.config.to_dict()["model"] for m in model.members] == ["linear", "mlp"]
    assert [p["config"]["model"] for p in payload["members"]] == ["linear", "mlp"]
    assert payload["weights"] == {"linear": 0.5, "mlp": 0.5} and payload["config"]["ensemble_method"] == "equal"
    assert model.weights.tolist() == [0.5, 0.5]
