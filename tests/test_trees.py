import numpy as np
import pandas as pd
import pytest

from kit import features as cs
from kit.features import FeatureArray
from kit.models import trees as mt
from kit.portfolio import leg_weights
from kit.training import FoldPredictions, Split, trees, walk_forward_splits

pytest.importorskip("lightgbm")
pytest.importorskip("xgboost")


def _close(T=700, N=12, seed=0):
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2012-01-02", periods=T)
    r = rng.normal(0.0003, 0.015, (T, N))
    return pd.DataFrame(100 * np.exp(np.cumsum(r, 0)), index=idx, columns=[f"S{i:02d}" for i in range(N)])


# ------------------------------------------------------------------------------------------------
# labels, groups, look-ahead
# ------------------------------------------------------------------------------------------------


def test_ranker_labels_are_deciles_of_the_next_period_return_and_groups_sum_to_rows():
    close = _close(T=140, N=20)
    reb = cs.month_end_dates(close.index)
    target, label_end = cs.period_returns(close, cs.rebalance_positions(close.index, reb))
    feats = np.zeros((*close.shape, 1))  # every row valid
    ds = trees.tabular_dataset(feats, target, label_end, close.index, close.columns, dates=cs.rebalance_positions(close.index, reb), n_quantiles=10)
    assert ds.groups().sum() == len(ds)
    assert (ds.groups() == 20).all() and len(ds.groups()) == len(reb)
    assert (np.diff(ds.date) >= 0).all()
    monthly = close.loc[reb]
    nxt = (monthly.shift(-1) / monthly - 1).iloc[:-1]  # the NEXT period's return, by hand
    for k, d in enumerate(nxt.index):
        rows = ds.date == close.index.get_loc(d)
        want = pd.qcut(nxt.loc[d].to_numpy(), 10, labels=False)
        np.testing.assert_array_equal(ds.label[rows], want)
        np.testing.assert_allclose(ds.y[rows], nxt.loc[d].to_numpy(), rtol=1e-12)
        assert (ds.label_end[rows] == close.index.get_loc(reb[k + 1])).all()
    last = ds.date == close.index.get_loc(reb[-1])
    assert np.isnan(ds.y[last]).all() and (ds.label[last] == -1).all()  # no next period yet


def test_ranker_rows_have_no_look_ahead():
    close = _close(T=760, N=12)
    reb = cs.month_end_dates(close.index)
    pos = cs.rebalance_positions(close.index, reb)

    def build(c):
        target, le = cs.period_returns(c, pos)
        return trees.tabular_dataset(cs.ltr_features(c), target, le, c.index, c.columns, dates=pos, n_quantiles=10)

    ds = build(close)
    assert len(ds) > 0 and ds.X.shape[1] == 24
    cut = int(pos[-4])  # shock every price after this rebalance date
    shocked = close.copy()
    shocked.iloc[cut + 1 :] *= np.random.default_rng(5).uniform(0.5, 2.0, (len(close) - cut - 1, close.shape[1]))
    ds2 = build(shocked)
    on_or_before = ds.date <= cut
    assert on_or_before.sum() > 0
    np.testing.assert_array_equal(ds.date, ds2.date)
    np.testing.assert_array_equal(ds.X[on_or_before], ds2.X[on_or_before])  # features use data up to t
    known = ds.label_end <= cut
    np.testing.assert_array_equal(ds.label[known], ds2.label[known])
    np.testing.assert_array_equal(ds.y[known], ds2.y[known])
    # the label of the last rebalance on or before the cut looks forward: it changes
    looking = on_or_before & ~known
    assert looking.any() and not np.array_equal(ds.y[looking], ds2.y[looking])


def test_fold_rows_embargo_equals_the_label_horizon_and_leakage_is_counted():
    close = _close(T=400, N=3)
    y, le = cs.horizon_target(close, 5)
    ds = trees.tabular_dataset(np.zeros((*close.shape, 1)), y, le, close.index, close.columns)
    for split in walk_forward_splits(close.index, close.index[300], test_size=50, horizon=1):
        tr, va, te = trees.fold_rows(ds, split)
        assert (ds.label_end[tr] < split.val[0]).all() and (ds.label_end[va] < split.test[0]).all()
        assert ds.date[tr].max() == split.val[0] - 6  # t + 5 < val start
        assert ds.date[va].max() == split.test[0] - 6
        assert trees.fold_leakage(ds, split, tr, va) == 0
        assert set(ds.date[te]) == set(range(*split.test))
    leaky = Split(0, (0, 200), (200, 250), (250, 300))
    tr = np.flatnonzero(ds.date < 200)  # no embargo: the last 5 dates' labels reach the validation block
    assert trees.fold_leakage(ds, leaky, tr, np.empty(0, np.int64)) == 5 * 3
    with pytest.raises(ValueError, match="label_end"):
        trees.tabular_dataset(np.zeros((*close.shape, 1)), y, np.arange(len(close)), close.index, close.columns)


# ------------------------------------------------------------------------------------------------
# the dollar-profit objective
# ------------------------------------------------------------------------------------------------


def test_dollar_profit_gradient_and_hessian_against_finite_differences():
    rng = np.random.default_rng(0)
    s = rng.normal(0, 1.5, 400)
    r = rng.normal(0, 1.0, 400)
    floor = 0.05

    def loss(x):
        return -np.tanh(x) * r

    eps = 1e-5
    g, h = mt.dollar_profit_grad_hess(s, r, floor)
    g_fd = (loss(s + eps) - loss(s - eps)) / (2 * eps)
    h_fd = (loss(s + eps) - 2 * loss(s) + loss(s - eps)) / eps**2
    np.testing.assert_allclose(g, g_fd, rtol=1e-6, atol=1e-9)
    curved = h_fd > floor + 1e-3
    assert curved.sum() > 50 and (~curved).sum() > 50  # both regimes are exercised
    np.testing.assert_allclose(h[curved], h_fd[curved], rtol=1e-4, atol=1e-4)
    assert (h[~curved] <= floor + 1e-3).all() and (h >= floor).all()  # the positive floor
    with pytest.raises(ValueError, match="hessian_floor"):
        mt.dollar_profit_grad_hess(s, r, 0.0)
    # the library callables return the same arrays
    import lightgbm as lgb
    import xgboost as xgb

    d = lgb.Dataset(np.zeros((400, 1)), r, params={"verbose": -1}).construct()
    np.testing.assert_allclose(mt.lgb_dollar_profit_objective(floor)(s, d)[1], h, rtol=1e-6)  # float32 labels
    dm = xgb.DMatrix(np.zeros((400, 1)), label=r)
    np.testing.assert_allclose(mt.xgb_dollar_profit_objective(floor)(s, dm)[0], g, rtol=1e-6)  # float32 labels


# ------------------------------------------------------------------------------------------------
# daily direction / return models
# ------------------------------------------------------------------------------------------------


def _planted_daily(T=700, N=10, seed=1):
    """A feature x_t known at t that predicts r_{t+1}: close built from r_{t+1} = 0.01 x_t + noise."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2015-01-01", periods=T)
    x = rng.normal(0, 1, (T, N))
    r = np.zeros((T, N))
    r[1:] = 0.01 * x[:-1] + rng.normal(0, 0.01, (T - 1, N))
    close = pd.DataFrame(100 * np.cumprod(1 + r, 0), index=idx, columns=[f"S{i}" for i in range(N)])
    feats = np.stack([x, rng.normal(0, 1, (T, N)), rng.normal(0, 1, (T, N))], axis=2)
    return FeatureArray(feats, ["signal", "noise1", "noise2"], idx, close.columns), close, r


DAILY_MODELS = [n for n, (_, _, task) in mt.TREE_MODELS.items() if task in mt.TASKS]


@pytest.mark.parametrize("model", DAILY_MODELS)
def test_walk_forward_trees_learn_a_planted_signal_out_of_sample(model):
    fa, close, r = _planted_daily()
    res = trees.walk_forward_trees(
        fa, close, model=model, test_start=close.index[500], test_size=100, n_estimators=150, early_stopping_rounds=20, threads=1,
    )
    pos = res.positions.to_numpy()
    assert res.positions.index.equals(close.index[500:]) and res.scores.index.equals(close.index[500:])  # stitched test blocks
    p, nxt = pos[:-1].ravel(), r[501:].ravel()
    assert np.isfinite(p).all() and (np.abs(p) <= 1).all()
    assert np.corrcoef(p, nxt)[0, 1] > 0.2  # out-of-sample positions follow the planted signal
    assert (res.folds["leakage_rows"] == 0).all() and len(res.folds) == 2
    assert len(res.fold_predictions) == 2 and len(res.history) > 0
    if mt.TREE_MODELS[model][2] == "classification":
        assert ((res.scores.to_numpy() >= 0) & (res.scores.to_numpy() <= 1)).all()


@pytest.mark.parametrize("model", ["lgbm_dollar_profit", "xgb_dollar_profit"])
def test_same_seed_twice_gives_identical_scores(model):
    fa, close, _ = _planted_daily(T=500, N=6)
    kw = dict(model=model, test_start=close.index[400], test_size=100, n_estimators=60, early_stopping_rounds=10, threads=2)
    a = trees.walk_forward_trees(fa, close, seed=7, **kw)
    b = trees.walk_forward_trees(fa, close, seed=7, **kw)
    np.testing.assert_array_equal(a.scores.to_numpy(), b.scores.to_numpy())
    np.testing.assert_array_equal(a.positions.to_numpy(), b.positions.to_numpy())


def test_position_rules_and_devices():
    np.testing.assert_allclose(mt.positions_from_probability([0.0, 0.25, 1.0]), [-1.0, -0.5, 1.0])
    with pytest.raises(ValueError, match="probabilities"):
        mt.positions_from_probability([1.2])
    np.testing.assert_allclose(mt.positions_from_prediction([0.0, 2.0], 2.0), [0.0, np.tanh(1.0)])
    with pytest.raises(ValueError, match="scale"):
        mt.positions_from_prediction([1.0], 0.0)
    dev = mt.xgb_device("auto")
    assert dev["tree_method"] == "hist"
    assert dev["device"] == ("cuda" if mt.cuda_available() else "cpu")
    if not mt.cuda_available():
        with pytest.raises(ValueError, match="cuda"):
            mt.xgb_device("cuda")
    with pytest.raises(ValueError, match="device"):
        mt.xgb_device("tpu")


# ------------------------------------------------------------------------------------------------
# learning to rank
# ------------------------------------------------------------------------------------------------


def _planted_monthly(T=800, N=30, seed=2):
    """x at each month end predicts the next month's return: R_k = 0.05 x_k + noise, spread evenly
    over the days of the month."""
    rng = np.random.default_rng(seed)
    idx = pd.bdate_range("2010-01-01", periods=T)
    reb = cs.rebalance_positions(idx, cs.month_end_dates(idx))
    x = rng.normal(0, 1, (T, N))
    daily = rng.normal(0, 0.002, (T, N))
    for a, b in zip(reb[:-1], reb[1:], strict=True):
        R = 0.05 * x[a] + rng.normal(0, 0.02, N)
        daily[a + 1 : b + 1] += (1 + R) ** (1 / (b - a)) - 1
    close = pd.DataFrame(100 * np.cumprod(1 + daily, 0), index=idx, columns=[f"S{i:02d}" for i in range(N)])
    feats = FeatureArray(np.stack([x, rng.normal(0, 1, (T, N))], axis=2), ["signal", "noise"], idx, close.columns)
    return feats, close, x


@pytest.mark.parametrize("model", ["lambdamart", "ranker_regression"])
def test_ranker_learns_a_planted_cross_sectional_signal_and_is_deterministic(model):
    feats, close, x = _planted_monthly()
    kw = dict(
        model=model, features=feats, test_start=close.index[500], test_size=150, val_fraction=0.3,
        n_estimators=80, early_stopping_rounds=30, threads=1, seed=3, params={"min_data_in_leaf": 20},
    )
    res = trees.walk_forward_ranker(close, **kw)
    s = res.scores.to_numpy()
    scored = np.isfinite(s).any(axis=1)
    reb_test = [d for d in cs.month_end_dates(close.index) if d >= close.index[500]]
    assert set(res.scores.index[scored]) == set(reb_test)  # scores on test rebalance dates only
    xt = x[500:]
    ics = [np.corrcoef(s[t], xt[t])[0, 1] for t in np.flatnonzero(scored)]
    assert np.mean(ics) > 0.5
    legs = res.positions
    assert legs.loc[: reb_test[0] - pd.Timedelta(days=1)].isna().all().all()  # flat until the first test rebalance
    assert set(np.unique(legs.loc[reb_test[0] :].to_numpy())) <= {-1.0, 0.0, 1.0}
    w = leg_weights(legs, cs.rebalance_dates(legs.index, "M"))
    assert w.sum(axis=1).abs().max() < 1e-12
    for d in reb_test:
        row = res.scores.loc[d].to_numpy()
        top = set(close.columns[row >= np.sort(row)[-3]])  # deciles of 30 names: the 3 best (with ties)
        bottom = set(close.columns[row <= np.sort(row)[2]])
        assert set(w.columns[w.loc[d] > 0]) == top and set(w.columns[w.loc[d] < 0]) == bottom
        assert abs(w.loc[d].abs().sum() - 1) < 1e-12
    assert (w.loc[: reb_test[0] - pd.Timedelta(days=1)].to_numpy() == 0).all()
    again = trees.walk_forward_ranker(close, **kw)
    np.testing.assert_array_equal(s, again.scores.to_numpy())
    assert (res.folds["leakage_rows"] == 0).all()


def test_ranker_respects_the_membership_mask():
    feats, close, _ = _planted_monthly(T=700, N=20)
    mask = pd.DataFrame(True, index=close.index, columns=close.columns)
    mask.iloc[450:, :5] = False
    res = trees.walk_forward_ranker(close, features=feats, membership=mask, test_start=close.index[450], test_size=250, n_estimators=30,
                                    early_stopping_rounds=5, threads=1)
    assert np.isnan(res.scores.to_numpy()[:, :5]).all() and res.positions.iloc[:, :5].isna().all().all()
    w = leg_weights(res.positions, cs.rebalance_dates(res.positions.index, "M"))
    assert (w.iloc[:, :5] == 0).all().all()
    assert w.iloc[:, 5:].abs().sum().sum() > 0
    vol = pd.DataFrame(np.random.default_rng(0).uniform(0.01, 0.03, res.positions.shape), index=res.positions.index, columns=close.columns)
    wv = leg_weights(res.positions, cs.rebalance_dates(res.positions.index, "M"), daily_vol=vol)
    wv = wv[wv.abs().sum(axis=1) > 0]
    assert len(wv) > 0 and np.allclose(wv.clip(lower=0).sum(axis=1), 0.5) and np.allclose(wv.clip(upper=0).sum(axis=1), -0.5)


def test_walk_forward_trees_respect_the_membership_mask():
    fa, close, _ = _planted_daily(T=500, N=6)
    mask = np.ones(close.shape, bool)
    mask[:, 0] = False
    res = trees.walk_forward_trees(fa, close, membership=mask, test_start=close.index[400], test_size=100, n_estimators=20,
                                   early_stopping_rounds=5, threads=1)
    assert np.isnan(res.positions.to_numpy()[:, 0]).all() and np.isfinite(res.positions.to_numpy()[:, 1:]).all()
    assert res.folds["train_rows"].iloc[0] < 5 * 400  # symbol 0 never trained on


# ------------------------------------------------------------------------------------------------
# stacking
# ------------------------------------------------------------------------------------------------


def test_stacker_is_fitted_on_validation_blocks_only_and_prefers_the_informative_member():
    rng = np.random.default_rng(4)
    T, N = 400, 5
    idx = pd.bdate_range("2020-01-01", periods=T)
    ret = pd.DataFrame(rng.normal(0, 0.01, (T, N)), index=idx, columns=list("ABCDE"))
    good = np.tanh(ret.to_numpy() * 100 + rng.normal(0, 0.3, (T, N)))
    bad = rng.uniform(-1, 1, (T, N))
    splits = walk_forward_splits(idx, idx[300], test_size=50, val_fraction=0.2)

    def fold_preds(pos):
        out = []
        for sp in splits:
            v = np.full((T, N), np.nan)
            v[sp.val[0] : sp.val[1]] = pos[sp.val[0] : sp.val[1]]
            t = np.full((T, N), np.nan)
            t[sp.test[0] : sp.test[1]] = pos[sp.test[0] : sp.test[1]]
            out.append(FoldPredictions.from_arrays(sp.fold, v, t))
        return out

    members = {"tree": fold_preds(good), "lstm": fold_preds(bad)}
    for method in ("nnls", "sharpe"):
        pos, w = trees.walk_forward_stack(members, ret, method)
        assert (w["tree"] > 0.8).all(), w
        assert np.allclose(w[["tree", "lstm"]].sum(axis=1), 1.0)
        assert np.isnan(pos.to_numpy()[:300]).all() and np.isfinite(pos.to_numpy()[300:]).all()
        assert (pos.abs().max() <= 1).all()
        # returns from fold k's test block on are never read for fold k (or earlier folds)
        for k, sp in enumerate(splits):
            ret2 = ret.copy()
            ret2.iloc[sp.test[0] :] = rng.normal(0, 0.05, (T - sp.test[0], N))
            _, w2 = trees.walk_forward_stack(members, ret2, method)
            pd.testing.assert_frame_equal(w.iloc[: k + 1], w2.iloc[: k + 1])
    with pytest.raises(ValueError, match="at least 2"):
        trees.walk_forward_stack({"tree": members["tree"]}, ret)


# ------------------------------------------------------------------------------------------------
# checkpoints, catalogue, registry and ledger
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("model", ["lgbm_direction", "xgb_dollar_profit", "lambdamart"])
def test_tree_checkpoints_hold_the_booster_as_text_and_load_with_weights_only(model, tmp_path):
    import torch

    from kit.models import CheckpointError, TreeModel, load_checkpoint

    if model == "lambdamart":
        feats, close, _ = _planted_monthly(T=700, N=20)
        res = trees.walk_forward_ranker(close, model=model, features=feats, test_start=close.index[500], test_size=200, n_estimators=20,
                                        early_stopping_rounds=5, threads=1, checkpoint_dir=tmp_path)
    else:
        feats, close, _ = _planted_daily(T=500, N=5)
        res = trees.walk_forward_trees(feats, close, model=model, test_start=close.index[400], test_size=100, n_estimators=30,
                                       early_stopping_rounds=5, threads=1, checkpoint_dir=tmp_path)
    path = res.folds["checkpoint"].iloc[-1]
    raw = torch.load(path, weights_only=True)  # plain strings and numbers: nothing is unpickled
    assert raw["format"] == "kit.tree/1" and isinstance(raw["booster"], str) and raw["config"]["model"] == model
    loaded, payload = load_checkpoint(path)
    assert isinstance(loaded, TreeModel) and loaded.best_iteration == res.last_model.best_iteration
    X = feats.values[-30:].reshape(-1, feats.values.shape[2])
    X = X[np.isfinite(X).all(axis=1)]
    np.testing.assert_allclose(loaded.predict(X), res.last_model.predict(X), rtol=1e-6, atol=1e-9)  # float32 text round trip
    assert payload["feature_names"] == list(feats.names)
    bad = dict(raw, booster="not a model")
    torch.save(bad, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError, match="not a .* model text"):
        load_checkpoint(tmp_path / "bad.pt")


def test_catalogue_lists_the_tree_models_with_their_kinds():
    from kit.models import CATALOGUE, MODEL_LABELS, make_model, model_kind

    assert model_kind("lambdamart") == "ranker" and model_kind("ranker_regression") == "ranker"
    assert model_kind("xgb_direction") == "tree" and model_kind("tree_lstm_stack") == "stack"
    assert set(mt.TREE_MODELS) <= set(CATALOGUE) and MODEL_LABELS["lambdamart"].startswith("LambdaMART")
    with pytest.raises(ValueError, match="kit.training.trees"):
        make_model("xgb_direction", 8)


def test_settings_take_the_tree_keys_and_refuse_bad_ones():
    from kit.training import WalkForwardSettings

    s = WalkForwardSettings.from_params({"n_quantiles": 5, "rebalance_freq": "W", "tree_rounds": 20, "stack_members": ["dmn_lstm", "lgbm_direction"]})
    assert s.tree_settings()["n_quantiles"] == 5 and s.tree_settings()["rebalance_freq"] == "W" and s.stack_members == ("dmn_lstm", "lgbm_direction")
    for bad, match in (({"n_quantiles": 1}, "n_quantiles"), ({"rebalance_freq": "D"}, "rebalance_freq"), ({"stack_method": "mean"}, "stack_method"),
                       ({"stack_members": ["dmn_lstm", "lambdamart"]}, "stack_members"), ({"tree_threads": -1}, "tree_threads")):
        with pytest.raises(ValueError, match=match):
            WalkForwardSettings.from_params(bad)


def test_a_ranker_goes_through_the_registry_and_its_legs_into_the_ledger(tmp_path):
    from kit.store import ledger, registry
    from tests._ledger_worker import fresh_db

    feats, close, _ = _planted_monthly(T=760, N=20)
    res = trees.walk_forward_ranker(close, features=feats, test_start=close.index[500], test_size=130, n_estimators=20,
                                    early_stopping_rounds=5, threads=1, checkpoint_dir=tmp_path / "ck")
    with fresh_db(tmp_path) as url:
        table = registry.register_and_gate({"lambdamart": res}, close, "planted20", model_dir=tmp_path / "m", db=url)
        row = table.iloc[0]
        assert row["name"] == "lambdamart" and row["gate"] in ("passed", "failed")
        model, payload = registry.load_model(int(row["model_id"]), db=url)
        assert payload["format"] == "kit.tree/1" and model.config.task == "rank"
        assert registry.fold_table(int(row["model_id"]), db=url)["fold"].tolist() == [0, 1]
        # the ledger records the book's leg as the position: +1 long, -1 short, 0 held neither
        preds = ledger.predictions_frame(res.positions, last=5)
        assert set(preds["position"]) <= {-1.0, 0.0, 1.0} and (preds["position"] != 0).any()
        written = ledger.snapshot(preds, close, int(row["model_id"]), db=url)
        assert len(written) == len(preds)


# ------------------------------------------------------------------------------------------------
# seed 004's stack on real members: an LSTM and a tree
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_tree_lstm_stack_on_trained_members_uses_validation_blocks_only(tmp_path):
    from kit import data
    from kit.models import PositionStack, load_checkpoint
    from kit.training import WalkForwardSettings
    from tests.conftest import make_ohlcv

    frames = data.wide_fields(data.adjust_prices(make_ohlcv(("A", "B", "C"), days=900, seed=7)))
    close = frames["close"]
    s = WalkForwardSettings.from_params({"test_start": str(close.index[700].date()), "test_size": 100, "epochs": 1, "hidden_size": 4,
                                         "lookback": 10, "tree_rounds": 20, "tree_early_stopping": 5})
    results = {}
    for name in ("dmn_lstm", "xgb_direction", "tree_lstm_stack"):
        results[name] = s.run(frames, name, checkpoint_dir=tmp_path, progress=False, previous=results)
    stack = results["tree_lstm_stack"]
    assert stack.positions.index.equals(results["dmn_lstm"].positions.index)
    folds = stack.folds
    assert len(folds) == 2 and (folds["leakage_rows"] == 0).all()
    for k, row in folds.iterrows():
        w = row["weights"]
        assert set(w) == {"dmn_lstm", "xgb_direction"} and abs(sum(w.values()) - 1) < 1e-3 and min(w.values()) >= 0
        # the stack's test positions are the convex combination of the members' test positions
        fp = [r.fold_predictions[k] for r in (results["dmn_lstm"], results["xgb_direction"])]
        grids = [f.grid("test", close.shape) for f in fp]
        both = np.isfinite(grids[0]) & np.isfinite(grids[1])
        want = w["dmn_lstm"] * grids[0] + w["xgb_direction"] * grids[1]
        got = np.full(close.shape, np.nan)
        got[stack.fold_predictions[k].test_date, stack.fold_predictions[k].test_symbol] = stack.fold_predictions[k].test_positions
        np.testing.assert_allclose(got[both], want[both], atol=1e-3)  # the weights in folds are rounded to 4 digits
    loaded, payload = load_checkpoint(folds["checkpoint"].iloc[-1])
    assert payload["format"] == "kit.stack/1" and isinstance(loaded, PositionStack) and set(loaded.members) == {"dmn_lstm", "xgb_direction"}


def test_a_batch_keeps_fold_predictions_for_the_stack_members_only_and_the_stack_reuses_them(tmp_path, monkeypatch):
    from kit import data
    from kit.training import WalkForwardSettings
    from kit.training import trees as trees_mod
    from tests.conftest import make_ohlcv

    frames = data.wide_fields(data.adjust_prices(make_ohlcv(("A", "B", "C"), days=900, seed=7)))
    close = frames["close"]
    s = WalkForwardSettings.from_params({"test_start": str(close.index[700].date()), "test_size": 100, "epochs": 1, "hidden_size": 4,
                                         "lookback": 10, "tree_rounds": 20, "tree_early_stopping": 5})
    trained_by_stack = []
    real = trees_mod.walk_forward_trees

    def spy(*args, **kw):  # a tree trained again for the stack would come through here with horizon=1 from the stack branch
        trained_by_stack.append(kw.get("model"))
        return real(*args, **kw)

    monkeypatch.setattr(trees_mod, "walk_forward_trees", spy)
    res = s.run_models(frames, ["linear", "dmn_lstm", "xgb_direction", "tree_lstm_stack"], checkpoint_dir=tmp_path, progress=False)
    assert res["linear"].fold_predictions is None  # not a stack member: no inference pass over the validation blocks
    assert len(res["dmn_lstm"].fold_predictions) == 2 and len(res["xgb_direction"].fold_predictions) == 2
    assert trained_by_stack == ["xgb_direction"]  # the tree once, for itself; the stack reused it and the LSTM
    w = res["tree_lstm_stack"].folds["weights"].iloc[0]
    assert set(w) == {"dmn_lstm", "xgb_direction"}
