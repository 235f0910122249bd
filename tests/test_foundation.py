"""Foundation-model adapters (kit.foundation) on tiny randomly initialised models: no download, no
weights folder, CPU. Skipped when the optional ``[foundation]`` extra is not installed."""

import socket

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers", reason="the [foundation] extra is not installed: pip install -e '.[foundation]'")
pytest.importorskip("chronos", reason="the [foundation] extra is not installed: pip install -e '.[foundation]'")

from kit import foundation as F  # noqa: E402
from kit.training import ldtm_positions, walk_forward_splits  # noqa: E402

ADAPTERS = [F.ChronosBoltAdapter, F.TimesFMAdapter]
IDS = ["chronos_bolt", "timesfm"]


def prices(n_series=4, length=80, seed=0, drift=0.0, vol=0.01):
    rng = np.random.default_rng(seed)
    return 50.0 * np.exp(np.cumsum(rng.normal(drift, vol, (n_series, length)), axis=1))


def close_frame(T=360, N=3, seed=1):
    rng = np.random.default_rng(seed)
    c = 40.0 * np.exp(np.cumsum(rng.normal(0.0003, 0.012, (T, N)), axis=0))
    c[:30, 2] = np.nan  # a late listing
    return pd.DataFrame(c, index=pd.bdate_range("2015-01-02", periods=T), columns=["AAA", "BBB", "CCC"])


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models gain nothing from threads; one thread keeps them fast on a shared machine."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(params=ADAPTERS, ids=IDS)
def adapter(request):
    return request.param.tiny(seed=0)


# ------------------------------------------------------------------------------------------------
# forecasts
# ------------------------------------------------------------------------------------------------


def test_shapes_horizons_and_ordering(adapter):
    ctx = prices(5, 64)
    q = adapter.forecast(ctx)
    assert q.shape == (5, 3, 3) and q.dtype == np.float64
    assert np.isfinite(q).all()
    assert (np.diff(q, axis=-1) >= 0).all()  # q10 <= q50 <= q90
    q2 = adapter.forecast(ctx, horizons=(2, 21))
    assert q2.shape == (5, 2, 3)
    np.testing.assert_array_equal(q2[:, 1], q[:, 2])  # horizon 21 is the same forecast whatever else is asked
    with pytest.raises(ValueError, match="prediction length"):
        adapter.forecast(ctx, horizons=(1, adapter.max_horizon + 1))
    for bad in [(), (0, 5), (5, 5), (1.5,)]:
        with pytest.raises(ValueError, match="horizons"):
            adapter.forecast(ctx, horizons=bad)


def test_forecast_is_the_models_level_quantile_minus_one(adapter):
    """By hand: the h-day return quantile is the model's quantile of the level at step h (context
    divided by its last close) minus 1, for levels 0.1, 0.5, 0.9, then sorted."""
    ctx = prices(3, 64, seed=3)
    rel = torch.tensor(ctx / ctx[:, -1:], dtype=torch.float32)
    with torch.no_grad():
        path = adapter.quantile_path(rel).numpy().astype("float64")  # (3, P, 9)
    levels = list(adapter.model_quantiles)
    idx = [levels.index(0.1), levels.index(0.5), levels.index(0.9)]
    raw = path[:, [0, 4, 20]][:, :, idx] - 1.0
    np.testing.assert_allclose(adapter.forecast(ctx), np.sort(raw, axis=-1), rtol=0, atol=1e-12)
    crossed = (np.diff(raw, axis=-1) < 0).any(axis=-1)  # (3 series, 3 horizons)
    assert adapter.last_crossings == crossed.sum()
    np.testing.assert_array_equal(adapter.last_crossings_per_series, crossed.sum(axis=1))


def test_price_level_does_not_matter(adapter):
    """Feeding relative prices (context / last close) is what feeding raw prices gives: both models
    normalise each series by its own location and scale."""
    ctx = prices(3, 64, seed=4)
    rel = torch.tensor(ctx / ctx[:, -1:], dtype=torch.float32)
    raw = torch.tensor(ctx, dtype=torch.float32)
    with torch.no_grad():
        a = adapter.quantile_path(rel).numpy()
        b = adapter.quantile_path(raw).numpy() / ctx[:, -1][:, None, None]
    np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-5)


def test_batching_over_symbols_and_determinism(adapter):
    ctx = prices(7, 64, seed=5)
    q = adapter.forecast(ctx)
    one_by_one = np.concatenate([adapter.forecast(ctx[i : i + 1]) for i in range(len(ctx))])
    np.testing.assert_allclose(q, one_by_one, rtol=0, atol=1e-6)
    adapter.batch_size = 2
    np.testing.assert_allclose(adapter.forecast(ctx), q, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(adapter.forecast(ctx), adapter.forecast(ctx))  # same call, same bits
    same = type(adapter).tiny(seed=0)
    np.testing.assert_array_equal(same.forecast(ctx), type(adapter).tiny(seed=0).forecast(ctx))
    assert not np.allclose(type(adapter).tiny(seed=1).forecast(ctx), same.forecast(ctx))


def test_tiny_leaves_global_random_state_alone():
    torch.manual_seed(123)
    want = torch.rand(3)
    torch.manual_seed(123)
    F.ChronosBoltAdapter.tiny(seed=7)
    assert torch.equal(torch.rand(3), want)


def test_bad_context_is_refused(adapter):
    ctx = prices(2, 64)
    with pytest.raises(ValueError, match="2-D"):
        adapter.forecast(ctx[0])
    bad = ctx.copy()
    bad[1, 10] = np.nan
    with pytest.raises(ValueError, match=r"positive finite prices; got nan at series 1, step 10"):
        adapter.forecast(bad)
    bad[1, 10] = -3.0
    with pytest.raises(ValueError, match="got -3.0"):
        adapter.forecast(bad)
    with pytest.raises(ValueError, match="shorter"):
        adapter.forecast(ctx[:, :1])


def test_timesfm_reads_a_whole_number_of_patches():
    a = F.TimesFMAdapter.tiny(seed=0)  # patch 8
    ctx = prices(2, 61, seed=6)
    np.testing.assert_array_equal(a.forecast(ctx), a.forecast(ctx[:, -56:]))
    with pytest.raises(ValueError, match="minimum 8"):
        a.forecast(ctx[:, -7:])


def test_only_the_last_max_context_closes_are_read(adapter):
    ctx = prices(2, 200, seed=7)
    assert adapter.max_context == 64
    np.testing.assert_array_equal(adapter.forecast(ctx), adapter.forecast(ctx[:, -64:]))


def test_rearrange_quantiles_by_hand():
    q = np.array([[0.1, 0.3, 0.2], [-0.2, 0.0, 0.5], [0.4, 0.1, -0.1]])
    out, n = F.rearrange_quantiles(q)
    np.testing.assert_array_equal(out, [[0.1, 0.2, 0.3], [-0.2, 0.0, 0.5], [-0.1, 0.1, 0.4]])
    assert n == 2


def test_pinball_loss_by_hand():
    pred = torch.tensor([[[0.0, 1.0]], [[2.0, 2.0]]])  # (B=2, P=1, Q=2)
    y = torch.tensor([[0.5], [1.0]])
    mask = torch.tensor([[True], [True]])
    # sample 1: u = 0.5, -0.5 -> 0.1*0.5, (0.9-1)*(-0.5)=0.05... tau=(0.1, 0.9)
    # rho_0.1(0.5) = 0.05, rho_0.9(-0.5) = 0.05 -> mean 0.05
    # sample 2: u = -1, -1 -> rho_0.1(-1) = 0.9, rho_0.9(-1) = 0.1 -> mean 0.5
    got = F.pinball_loss(pred, y, mask, (0.1, 0.9))
    assert got.item() == pytest.approx((0.05 + 0.5) / 2)
    mask2 = torch.tensor([[True], [False]])
    assert F.pinball_loss(pred, y, mask2, (0.1, 0.9)).item() == pytest.approx(0.05)


# ------------------------------------------------------------------------------------------------
# local weights, offline
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def test_save_and_load_through_a_local_folder(adapter, tmp_path, monkeypatch, no_network):
    ctx = prices(3, 64, seed=8)
    name = adapter.default_checkpoint
    folder = adapter.save(tmp_path / "models" / name)
    assert (folder / "config.json").is_file() and list(folder.glob("*.safetensors"))
    back = type(adapter).from_local_dir(folder)
    np.testing.assert_array_equal(back.forecast(ctx), adapter.forecast(ctx))
    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path / "models"))
    again = F.load_adapter(name)
    assert type(again) is type(adapter)
    np.testing.assert_array_equal(again.forecast(ctx), adapter.forecast(ctx))
    card = again.card()
    assert card["source"] == str(folder.resolve()) and len(card["weights_sha256"]) == 64
    assert card["n_parameters"] == adapter.n_parameters and card["quantiles"] == [0.1, 0.5, 0.9]
    # an explicit model_dir (a profile's) wins over the environment
    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert F.resolve_weights(name, tmp_path / "models") == folder
    with pytest.raises(F.MissingWeightsError):
        F.resolve_weights(name)


@pytest.mark.parametrize("cls", ADAPTERS, ids=IDS)
def test_missing_weights_error_names_model_folder_and_command(cls, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path))
    name = cls.default_checkpoint
    repo = F.CHECKPOINTS[name][1]
    with pytest.raises(F.MissingWeightsError) as e:
        cls.from_model_dir()
    msg = str(e.value)
    assert cls.model_name in msg and str(tmp_path / name) in msg and "does not exist" in msg
    assert f"hf download {repo} --local-dir {tmp_path / name}" in msg
    (tmp_path / name).mkdir()
    with pytest.raises(F.MissingWeightsError, match="has no config.json"):
        cls.from_local_dir(tmp_path / name)
    (tmp_path / name / "config.json").write_text("{}")
    with pytest.raises(F.MissingWeightsError, match="has no weights"):
        F.load_adapter(name)
    assert isinstance(e.value, FileNotFoundError)


def test_wrong_checkpoint_kind_is_refused(tmp_path, no_network):
    folder = F.ChronosBoltAdapter.tiny().save(tmp_path / "bolt")
    with pytest.raises(ValueError, match="does not hold a TimesFM 2.5 checkpoint"):
        F.TimesFMAdapter.from_local_dir(folder)
    folder = F.TimesFMAdapter.tiny().save(tmp_path / "tfm")
    with pytest.raises(ValueError, match="does not hold a Chronos-Bolt checkpoint"):
        F.ChronosBoltAdapter.from_local_dir(folder)


def test_default_model_dir_and_names(tmp_path, monkeypatch):
    monkeypatch.delenv("KIT_MODEL_DIR", raising=False)
    assert F.default_model_dir() == F._REPO_ROOT / "data" / "state" / "models"
    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path))
    assert F.default_model_dir() == tmp_path
    assert F.default_model_dir(tmp_path / "p") == tmp_path / "p"
    with pytest.raises(ValueError, match="unknown checkpoint"):
        F.load_adapter("lag-llama")
    with pytest.raises(ValueError, match="folder name"):
        F.resolve_weights("amazon/chronos-bolt-small")
    assert F.download_command("chronos-bolt-small", "/m/chronos-bolt-small") == "hf download amazon/chronos-bolt-small --local-dir /m/chronos-bolt-small"


# ------------------------------------------------------------------------------------------------
# windows, forecasts over a frame, no look-ahead
# ------------------------------------------------------------------------------------------------


def test_price_windows_against_a_loop():
    close = close_frame(120, 3).to_numpy().copy()
    close[50, 1] = np.nan
    L, P = 10, 5
    ctx, fut, where = F.price_windows(close, 20, 90, L, P, stride=3)
    want = []
    for t in range(89, 19, -3):
        for j in range(3):
            w = close[t - L + 1 : t + P + 1, j]
            if t - L + 1 >= 0 and t + P < len(close) and np.isfinite(w).all():
                want.append((t, j))
    assert sorted(map(tuple, where.tolist())) == sorted(want)
    for (t, j), c, f in zip(where, ctx, fut, strict=True):
        np.testing.assert_array_equal(c, close[t - L + 1 : t + 1, j])
        np.testing.assert_array_equal(f, close[t + 1 : t + P + 1, j])
    # max_windows keeps the most recent decision dates
    _, _, w2 = F.price_windows(close, 20, 90, L, P, stride=3, max_windows=4)
    assert len(w2) == 4 and w2[:, 0].min() >= np.sort(where[:, 0])[-4]
    with pytest.raises(ValueError, match="stride"):
        F.price_windows(close, 0, 10, L, P, stride=0)


def test_forecast_dates_matches_direct_calls_and_has_no_look_ahead(adapter):
    frame = close_frame(200, 3)
    close = frame.to_numpy()
    L = 40
    dates = np.array([20, 38, 39, 68, 69, 120, 199])
    fc = F.forecast_dates(adapter, close, dates, L)
    assert fc.shape == (7, 3, 3, 3)
    # incomplete contexts: t < L - 1 for all, and symbol 2 before listing (NaN for t < 30 + L - 1)
    assert np.isnan(fc[0]).all() and np.isnan(fc[1]).all()
    assert np.isnan(fc[2, 2]).all() and np.isnan(fc[3, 2]).all() and np.isfinite(fc[4, 2]).all()
    for k, t in enumerate(dates):
        for j in range(3):
            if np.isfinite(fc[k, j]).all():
                np.testing.assert_allclose(fc[k, j], adapter.forecast(close[t - L + 1 : t + 1, j][None])[0], rtol=0, atol=1e-6)
    # changing every close after t = 120 leaves the forecasts up to 120 unchanged
    later = close.copy()
    later[121:] *= np.linspace(0.5, 2.0, len(later) - 121)[:, None]
    fc2 = F.forecast_dates(adapter, later, dates, L)
    np.testing.assert_array_equal(fc2[:6], fc[:6])
    assert not np.allclose(fc2[6], fc[6])


def test_position_scale_is_the_ldtm_rule():
    f = np.array([[0.01, -0.02], [np.nan, 0.03]])
    v = np.array([[0.01, 0.02], [0.01, 0.0]])
    z = np.array([1.0, -1.0])  # the finite z: 0.01/0.01, -0.02/0.02 (0.03/0 is inf, dropped)
    assert F.position_scale(f, v) == pytest.approx(1.0 / np.std(z))
    assert F.position_scale(np.array([0.01]), np.array([0.01])) == 1.0


# ------------------------------------------------------------------------------------------------
# walk-forward
# ------------------------------------------------------------------------------------------------


def test_walk_forward_zero_shot(adapter):
    frame = close_frame(360, 3)
    res = F.walk_forward_foundation(frame, adapter, test_start=frame.index[280], test_size=40, context_length=64, min_train=100)
    splits = walk_forward_splits(frame.index, frame.index[280], 40, horizon=21, min_train=100)
    test_idx = frame.index[280:]
    assert len(res.folds) == len(splits) == 2
    assert (res.folds["leakage_rows"] == 0).all()
    assert res.positions.index.equals(test_idx) and list(res.positions.columns) == ["AAA", "BBB", "CCC"]
    assert set(res.quantile_forecasts) == {0.1, 0.5, 0.9}
    for q in (0.1, 0.5, 0.9):
        assert set(res.quantile_forecasts[q]) == {1, 5, 21}
        assert res.quantile_forecasts[q][5].shape == (80, 3)
    assert res.forecasts is res.quantile_forecasts[0.5]
    lo, mid, hi = (res.quantile_forecasts[q][21].to_numpy() for q in (0.1, 0.5, 0.9))
    assert (lo <= mid).all() and (mid <= hi).all()
    # the forecasts are forecast_dates' on the test dates
    c = frame.to_numpy()
    direct = F.forecast_dates(adapter, c, np.arange(280, 360), 64)
    np.testing.assert_allclose(res.quantile_forecasts[0.9][5].to_numpy(), direct[:, :, 1, 2], rtol=0, atol=1e-12)
    assert res.folds["crossings_rearranged"].sum() == adapter.last_crossings
    # positions: tanh(s * q50_1d / daily vol), s from the validation block only
    daily_vol = res.ex_ante_vol.to_numpy() / np.sqrt(252)
    for k, s in enumerate(splits):
        fv = F.forecast_dates(adapter, c, np.arange(*s.val), 64)[:, :, 0, 1]
        scale = F.position_scale(fv, daily_vol[s.val[0] : s.val[1]])
        assert res.folds["position_scale"].iloc[k] == pytest.approx(scale)
        t0, t1 = s.test
        want = ldtm_positions(direct[t0 - 280 : t1 - 280, :, 0, 1], daily_vol[t0:t1], scale)
        np.testing.assert_allclose(res.positions.iloc[t0 - 280 : t1 - 280].to_numpy(), want, rtol=0, atol=1e-12)
    assert np.nanmax(np.abs(res.positions.to_numpy())) <= 1.0
    # no look-ahead: prices after the first test block change nothing in it
    later = frame.copy()
    later.iloc[320:] *= 1.5
    res2 = F.walk_forward_foundation(later, adapter, test_start=frame.index[280], test_size=40, context_length=64, min_train=100)
    pd.testing.assert_frame_equal(res2.positions.iloc[:40], res.positions.iloc[:40])
    pd.testing.assert_frame_equal(res2.quantile_forecasts[0.1][21].iloc[:40], res.quantile_forecasts[0.1][21].iloc[:40])


def test_walk_forward_refuses_bad_input(adapter):
    frame = close_frame(200, 3)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        F.walk_forward_foundation(frame.reset_index(drop=True), adapter, test_start=150)
    with pytest.raises(ValueError, match="context_length"):
        F.walk_forward_foundation(frame, adapter, test_start=frame.index[150], context_length=1)


# ------------------------------------------------------------------------------------------------
# fine-tuning
# ------------------------------------------------------------------------------------------------


def trending(T=420, N=2, seed=0):
    """Prices rising 0.4 % a day with little noise: a pattern a tiny model learns in a few epochs."""
    rng = np.random.default_rng(seed)
    r = 0.004 + rng.normal(0, 0.001, (T, N))
    return pd.DataFrame(30 * np.exp(np.cumsum(r, axis=0)), index=pd.bdate_range("2016-01-04", periods=T), columns=["X", "Y"])


@pytest.mark.slow
@pytest.mark.parametrize("cls", ADAPTERS, ids=IDS)
def test_fine_tune_lowers_validation_loss_and_is_reproducible(cls):
    c = trending().to_numpy()
    cfg = F.FineTuneConfig(epochs=3, patience=2, lr=3e-3, batch_size=32, seed=0)
    tr = F.price_windows(c, 0, 300, 48, 21, stride=5)[:2]
    va = F.price_windows(c, 321, 398, 48, 21, stride=5)[:2]
    a = cls.tiny(seed=0)
    before = a.forecast(va[0])
    res = F.fine_tune(a, tr, va, config=cfg)
    assert res.best_val_loss < res.val_loss_zero_shot and a.fine_tuned and res.best_epoch >= 0
    assert res.epochs_run == len(res.history) <= 3
    # the validation loss reported is the restored weights' loss
    rel_ctx = torch.tensor(va[0] / va[0][:, -1:], dtype=torch.float32)
    y = torch.tensor(va[1] / va[0][:, -1:] - 1.0, dtype=torch.float32)
    with torch.no_grad():
        got = F.pinball_loss(a.quantile_path(rel_ctx)[:, :21] - 1.0, y, torch.ones_like(y, dtype=torch.bool), a.model_quantiles)
    assert got.item() == pytest.approx(res.best_val_loss, rel=1e-5)
    assert not np.allclose(a.forecast(va[0]), before)
    b = cls.tiny(seed=0)
    F.fine_tune(b, tr, va, config=cfg)
    np.testing.assert_array_equal(b.forecast(va[0]), a.forecast(va[0]))


def test_fine_tune_keeps_the_start_weights_when_nothing_improves():
    c = trending().to_numpy()
    tr = F.price_windows(c, 0, 300, 48, 21, stride=4)[:2]
    va = F.price_windows(c, 321, 398, 48, 21, stride=4)[:2]
    a = F.ChronosBoltAdapter.tiny(seed=0)
    before = a.forecast(va[0])
    # a learning rate this large ruins the weights in one step: no epoch beats the start
    res = F.fine_tune(a, tr, va, epochs=1, patience=1, config=F.FineTuneConfig(lr=50.0, max_grad_norm=1e6))
    assert res.best_epoch == -1 and res.best_val_loss == res.val_loss_zero_shot and not a.fine_tuned
    np.testing.assert_array_equal(a.forecast(va[0]), before)


def test_fine_tune_refuses_bad_windows():
    a = F.ChronosBoltAdapter.tiny(seed=0)
    ctx = prices(4, 48)
    with pytest.raises(ValueError, match="prediction length"):
        F.fine_tune(a, (ctx, ctx[:, :30]), (ctx, ctx[:, :30]))
    with pytest.raises(ValueError, match="needs training and validation windows"):
        F.fine_tune(a, (ctx[:0], ctx[:0, :21]), (ctx, ctx[:, :21]))
    with pytest.raises(ValueError, match=">= 1"):
        F.fine_tune(a, (ctx, ctx[:, :21]), (ctx, ctx[:, :21]), epochs=0)


def test_walk_forward_fine_tuned_leaves_the_base_model_unchanged():
    frame = trending(400)
    a = F.TimesFMAdapter.tiny(seed=0)
    ctx = frame.to_numpy().T[:, -64:]
    before = a.forecast(ctx)
    cfg = F.FineTuneConfig(epochs=2, patience=1, lr=3e-3, window_stride=4)
    res = F.walk_forward_foundation(frame, a, test_start=frame.index[340], test_size=30, context_length=48, min_train=100, fine_tune_config=cfg)
    np.testing.assert_array_equal(a.forecast(ctx), before)
    assert len(res.folds) == 2 and (res.folds["leakage_rows"] == 0).all()
    assert (res.folds["train_windows"] > 0).all() and (res.folds["val_windows"] > 0).all()
    assert (res.folds["val_loss"] <= res.folds["val_loss_zero_shot"]).all()
    assert set(res.history.columns) >= {"fold", "epoch", "train_loss", "val_loss"}
    assert np.isfinite(res.positions.to_numpy()).all()
