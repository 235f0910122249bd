import numpy as np
import pandas as pd
import pytest
import torch

from kit import features, models, training
from kit.models import DeepMomentumLSTM, DMNConfig, build_model

DATES = pd.bdate_range("2010-01-01", periods=2000)


def test_walk_forward_splits_have_zero_leakage_and_cover_the_test_period():
    splits = training.walk_forward_splits(DATES, DATES[1200], test_size=252, val_fraction=0.1)
    assert len(splits) == 4  # 800 test days: 252 + 252 + 252 + 44
    assert splits[0].test[0] == 1200 and splits[-1].test[1] == len(DATES)
    for a, b in zip(splits, splits[1:], strict=False):
        assert a.test[1] == b.test[0]  # contiguous, non-overlapping
    valid = np.ones((len(DATES), 3), bool)
    for s in splits:
        assert training.count_leakage(s) == 0
        assert training.count_leakage(s, valid) == 0
        assert s.train[0] == 0  # expanding
        assert s.train[1] < s.val[0] and s.val[1] < s.test[0]  # embargo of one day before each block
        n_window = s.val[1] - s.train[0]
        assert abs((s.val[1] - s.val[0]) - 0.1 * n_window) <= 1


def test_count_leakage_detects_a_leaky_split():
    leaky = training.Split(0, train=(0, 100), val=(100, 120), test=(120, 150), horizon=1)
    # train row 99 has target at 100 (in val), val row 119 has target at 120 (in test)
    assert training.count_leakage(leaky) == 2
    assert training.count_leakage(leaky, np.ones((150, 4), bool)) == 8
    worse = training.Split(0, train=(0, 130), val=(100, 125), test=(120, 150), horizon=5)
    assert training.count_leakage(worse) > 10


def test_split_parameter_errors():
    with pytest.raises(ValueError, match="val_fraction"):
        training.walk_forward_splits(DATES, DATES[1200], val_fraction=0.9)
    with pytest.raises(ValueError, match="test_size"):
        training.walk_forward_splits(DATES, DATES[1200], test_size=0)
    with pytest.raises(ValueError, match="training dates"):
        training.walk_forward_splits(DATES, DATES[100])


def test_make_sequences_end_aligned_with_mask():
    T, N, F = 200, 2, 3
    X = np.arange(T * N * F, dtype=float).reshape(T, N, F)
    y = np.ones((T, N))
    X[:10, 1] = np.nan
    Xs, ys, ms = features.make_sequences(X, y, 0, 130, lookback=63)
    assert Xs.shape == (4, 63, 3) and ys.shape == ms.shape == (4, 63)
    # first window ends at 130 (most recent), second at 67; leading 4 dates dropped
    np.testing.assert_array_equal(Xs[0, -1], X[129, 0])
    np.testing.assert_array_equal(Xs[2, 0], X[4, 0])
    assert ms[3, :6].sum() == 0 and ms[3, 6:].all()  # symbol 1 NaN for dates 4..9
    assert not np.isnan(Xs).any()


def test_rolling_windows_end_at_each_decision_date():
    T, N, F = 50, 2, 1
    X = np.arange(T * N * F, dtype=float).reshape(T, N, F)
    W, valid = features.rolling_windows(X, 40, 45, lookback=5)
    assert W.shape == (5 * 2, 5, 1) and valid.shape == (5, 2)
    np.testing.assert_array_equal(W[0, :, 0], X[36:41, 0, 0])  # date 40, symbol 0
    np.testing.assert_array_equal(W[3, :, 0], X[37:42, 1, 0])  # date 41, symbol 1
    W0, _ = features.rolling_windows(X, 2, 3, lookback=5)  # zero-padded before the first date
    np.testing.assert_array_equal(W0[0, :, 0], [0, 0, X[0, 0, 0], X[1, 0, 0], X[2, 0, 0]])


def _toy_data(seed=0):
    rng = np.random.default_rng(seed)
    T, N = 600, 4
    X = rng.normal(size=(T, N, 2)).astype(np.float32)
    # the next return follows the sign of feature 0: a learnable signal
    y = (0.01 * np.sign(X[:, :, 0]) + rng.normal(0, 0.01, (T, N))).astype(np.float64)
    return X, y


def test_trainer_learns_signal_and_restores_best_weights():
    X, y = _toy_data()
    tr = features.make_sequences(X, y, 0, 400, 20)
    va = features.make_sequences(X, y, 400, 500, 20)
    torch.manual_seed(0)
    model = DeepMomentumLSTM(DMNConfig(n_features=2, hidden_size=8, dropout=0.0))
    res = training.Trainer(training.TrainConfig(epochs=30, patience=5, lr=0.01, batch_size=16)).fit(model, tr, va)
    assert -res.best_val_loss > 5  # strong signal: validation Sharpe well above zero
    Xv, yv, mv = (torch.as_tensor(a) for a in va)
    assert training.Trainer(training.TrainConfig()).evaluate(model, Xv, yv, mv) == pytest.approx(res.best_val_loss, rel=1e-5)
    assert res.epochs_run >= res.best_epoch + 1


def test_predict_positions_nan_where_features_missing():
    X, _ = _toy_data()
    X[510, 2, 1] = np.nan
    model = DeepMomentumLSTM(DMNConfig(n_features=2, hidden_size=4))
    pos = training.predict_positions(model, X, 500, 520, 20)
    assert pos.shape == (20, 4)
    assert np.isnan(pos[10, 2]) and np.isfinite(np.delete(pos.ravel(), 10 * 4 + 2)).all()
    assert np.nanmax(np.abs(pos)) <= 1


def test_checkpoint_round_trip(tmp_path):
    model = DeepMomentumLSTM(DMNConfig(n_features=8, hidden_size=5))
    path = models.save_checkpoint(tmp_path / "m.pt", model, feature_names=list("abcdefgh"), data_sha256="abc", train_period=("2010-01-01", "2015-12-31"))
    loaded, payload = models.load_checkpoint(path)
    assert payload["feature_names"] == list("abcdefgh") and payload["data_sha256"] == "abc"
    assert payload["train_period"] == ["2010-01-01", "2015-12-31"]
    x = torch.randn(2, 10, 8)
    model.eval()
    torch.testing.assert_close(model(x), loaded(x))
    with pytest.raises(ValueError, match="not a known model"):
        build_model({"model": "nope"})


def test_walk_forward_dmn_is_deterministic_and_out_of_sample_only():
    rng = np.random.default_rng(3)
    dates = pd.bdate_range("2005-01-03", periods=900)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (900, 3)), 0)), index=dates, columns=["A", "B", "C"])
    kw = dict(test_start=dates[700], test_size=100, lookback=21, hidden_size=4, train=training.TrainConfig(epochs=2, seed=7), progress=False)
    a = training.walk_forward_dmn(close, **kw)
    b = training.walk_forward_dmn(close, **kw)
    pd.testing.assert_frame_equal(a.positions, b.positions)
    assert a.positions.index[0] == dates[700] and a.positions.index[-1] == dates[-1]
    assert (a.folds["leakage_rows"] == 0).all() and len(a.folds) == 2


def _ldtm_frames(days=700, symbols=("A", "B", "C"), seed=5):
    from kit import data
    from tests.conftest import make_ohlcv

    prices = data.adjust_prices(make_ohlcv(symbols, days=days, seed=seed))
    return data.wide_fields(prices)


@pytest.mark.slow
def test_walk_forward_ldtm_out_of_sample_no_leakage_and_no_look_ahead(tmp_path):
    frames = _ldtm_frames()
    dates = frames["close"].index
    kw = dict(test_start=dates[500], test_size=100, hidden_size=8, lookback=10, min_train_samples=50,
              train=training.TrainConfig(epochs=2, batch_size=64, seed=1), progress=False)
    full = training.walk_forward_ldtm(frames, checkpoint_dir=tmp_path, **kw)
    assert full.positions.index[0] == dates[500] and full.positions.index[-1] == dates[-1]
    assert (full.folds["leakage_rows"] == 0).all() and len(full.folds) == 2
    assert full.folds["symbols_trained"].tolist() == [3, 3]
    assert np.nanmax(np.abs(full.positions.to_numpy())) <= 1.0
    assert set(full.forecasts) == {1, 5, 21} and full.forecasts[21].shape == full.positions.shape
    # the 21-day embargo: the last training target ends before the validation block, whose last
    # target ends before the test block
    for s in training.walk_forward_splits(dates, dates[500], 100, None, 0.1, horizon=21):
        assert s.train[1] + 21 <= s.val[0] and s.val[1] + 21 <= s.test[0]
    ckpt = torch.load(full.folds["checkpoint"].iloc[0], weights_only=False)
    assert ckpt["symbols"] == ["A", "B", "C"] and ckpt["config"]["model"] == "ldtm" and len(ckpt["state_dicts"]) == 3
    # the position scale is training.position_scale of the fold's validation forecasts
    from kit.models import load_checkpoint

    bundle, _ = load_checkpoint(full.folds["checkpoint"].iloc[0])
    split = training.walk_forward_splits(dates, dates[500], 100, None, 0.1, horizon=21)[0]
    daily_vol = full.ex_ante_vol.to_numpy() / np.sqrt(252)
    fv = np.stack([training.predict_forecasts(bundle[s], full.features[:, j], *split.val, 10)[:, 0] for j, s in enumerate("ABC")], axis=1)
    assert full.folds["position_scale"].iloc[0] == pytest.approx(training.position_scale(fv, daily_vol[split.val[0]:split.val[1]]), rel=1e-12)
    # No look-ahead: prices after a date change nothing before it (same seeds, same models).
    cut = dates[650]
    shocked = {f: v.copy() for f, v in frames.items()}
    for f in ("open", "high", "low", "close"):
        shocked[f].loc[shocked[f].index > cut] *= 1.5
    other = training.walk_forward_ldtm(shocked, **kw)
    pd.testing.assert_frame_equal(full.positions.loc[:cut], other.positions.loc[:cut])
    assert not np.allclose(full.positions.loc[cut:].iloc[1:].fillna(0), other.positions.loc[cut:].iloc[1:].fillna(0))


def test_position_scale_by_hand():
    f = np.array([[0.01, -0.02], [np.nan, 0.03]])
    v = np.array([[0.01, 0.02], [0.01, 0.0]])
    z = np.array([1.0, -1.0])  # the finite z: 0.01/0.01, -0.02/0.02 (0.03/0 is inf, dropped)
    assert training.position_scale(f, v) == pytest.approx(1.0 / np.std(z))
    assert training.position_scale(np.array([0.01]), np.array([0.01])) == 1.0  # one z: no spread
    assert training.position_scale(np.full(3, 0.01), np.full(3, 0.01)) == 1.0  # no variation
    with pytest.raises(ValueError, match="same shape"):
        training.position_scale(f, v[0])


def test_ldtm_positions_scale_and_errors():
    pos = training.ldtm_positions(np.array([0.01, -0.02, np.nan, 0.01]), np.array([0.01, 0.01, 0.01, 0.0]), 1.0)
    np.testing.assert_allclose(pos[:2], np.tanh([1.0, -2.0]))
    assert np.isnan(pos[2]) and np.isnan(pos[3])
    with pytest.raises(ValueError, match="scale"):
        training.ldtm_positions(np.zeros(2), np.ones(2), 0.0)


@pytest.mark.slow
def test_walk_forward_ldtm_rejects_bad_stride():
    with pytest.raises(ValueError, match="sample_stride"):
        training.walk_forward_ldtm(_ldtm_frames(days=300), test_start="2020-06-01", sample_stride=0)
