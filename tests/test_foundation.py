"""Foundation models on tiny randomly initialised models: the adapters (kit.models.foundation), the
walk-forward and fine-tuning (kit.training.foundation), their checkpoints and registration. No
download, CPU. Skipped when the optional ``[foundation]`` extra is not installed."""

import os
import socket

import numpy as np
import pandas as pd
import pytest
import torch

pytest.importorskip("transformers", reason="the [foundation] extra is not installed: pip install -e '.[foundation]'")
pytest.importorskip("chronos", reason="the [foundation] extra is not installed: pip install -e '.[foundation]'")

from kit.models import foundation as F  # noqa: E402
from kit.models import pinball_loss  # noqa: E402
from kit.training import foundation as TF  # noqa: E402
from kit.training import ldtm_positions, position_scale, walk_forward_splits  # noqa: E402

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
    got = pinball_loss(pred, y, mask, (0.1, 0.9))
    assert got.item() == pytest.approx((0.05 + 0.5) / 2)
    mask2 = torch.tensor([[True], [False]])
    assert pinball_loss(pred, y, mask2, (0.1, 0.9)).item() == pytest.approx(0.05)


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
    assert again.source == str(folder.resolve())
    card = again.card()
    assert card["checkpoint"] == name and card["weights_sha256"] == F.weights_sha256(folder) and len(card["weights_sha256"]) == 64
    assert card["n_parameters"] == adapter.n_parameters and card["quantiles"] == [0.1, 0.5, 0.9] and card["model"] == adapter.name
    assert str(tmp_path) not in repr(card)  # no machine-specific path in the architecture
    # the catalogue name loads the default checkpoint folder too
    assert type(F.load_adapter(adapter.name)) is type(adapter)
    # an explicit model_dir (a profile's) wins over the environment
    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path / "elsewhere"))
    assert F.resolve_weights(name, tmp_path / "models") == folder
    assert type(F.load_adapter(adapter.name, tmp_path / "models")) is type(adapter)
    with pytest.raises(F.MissingWeightsError):
        F.resolve_weights(name)


@pytest.mark.parametrize("cls", ADAPTERS, ids=IDS)
def test_missing_weights_error_names_model_folder_and_command(cls, tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path))
    name = cls.default_checkpoint
    repo = F.CHECKPOINTS[name][1]
    with pytest.raises(F.MissingWeightsError) as e:
        cls.from_weights_dir()
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


def test_weights_dir_and_names(tmp_path, monkeypatch):
    from kit import paths

    monkeypatch.delenv("KIT_MODEL_DIR", raising=False)
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    assert paths.weights_dir() == tmp_path / "state" / "models"
    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path))
    assert paths.weights_dir() == tmp_path and paths.weights_dir("") == tmp_path
    assert paths.weights_dir(tmp_path / "p") == tmp_path / "p"
    with pytest.raises(ValueError, match="unknown foundation model 'lag-llama'"):
        F.load_adapter("lag-llama")
    with pytest.raises(ValueError, match="folder name"):
        F.resolve_weights("amazon/chronos-bolt-small")
    assert F.download_command("chronos-bolt-small", "/m/chronos-bolt-small") == "hf download amazon/chronos-bolt-small --local-dir /m/chronos-bolt-small"
    assert F.adapter_class("chronos-bolt-base") is F.ChronosBoltAdapter and F.adapter_class("timesfm") is F.TimesFMAdapter


# ------------------------------------------------------------------------------------------------
# windows, forecasts over a frame, no look-ahead
# ------------------------------------------------------------------------------------------------


def test_price_windows_against_a_loop():
    close = close_frame(120, 3).to_numpy().copy()
    close[50, 1] = np.nan
    L, P = 10, 5
    ctx, fut, where = TF.price_windows(close, 20, 90, L, P, stride=3)
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
    _, _, w2 = TF.price_windows(close, 20, 90, L, P, stride=3, max_windows=4)
    assert len(w2) == 4 and w2[:, 0].min() >= np.sort(where[:, 0])[-4]
    with pytest.raises(ValueError, match="stride"):
        TF.price_windows(close, 0, 10, L, P, stride=0)


def test_forecast_dates_matches_direct_calls_and_has_no_look_ahead(adapter):
    frame = close_frame(200, 3)
    close = frame.to_numpy()
    L = 40
    dates = np.array([20, 38, 39, 68, 69, 120, 199])
    fc = TF.forecast_dates(adapter, close, dates, L)
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
    fc2 = TF.forecast_dates(adapter, later, dates, L)
    np.testing.assert_array_equal(fc2[:6], fc[:6])
    assert not np.allclose(fc2[6], fc[6])


# ------------------------------------------------------------------------------------------------
# walk-forward
# ------------------------------------------------------------------------------------------------


def test_walk_forward_zero_shot(adapter):
    frame = close_frame(360, 3)
    res = TF.walk_forward_foundation(frame, adapter, test_start=frame.index[280], test_size=40, context_length=64, min_train=100)
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
    direct = TF.forecast_dates(adapter, c, np.arange(280, 360), 64)
    np.testing.assert_allclose(res.quantile_forecasts[0.9][5].to_numpy(), direct[:, :, 1, 2], rtol=0, atol=1e-12)
    assert res.folds["crossings_rearranged"].sum() == adapter.last_crossings
    # positions: tanh(s * q50_1d / daily vol), s from the validation block only
    daily_vol = res.ex_ante_vol.to_numpy() / np.sqrt(252)
    for k, s in enumerate(splits):
        fv = TF.forecast_dates(adapter, c, np.arange(*s.val), 64)[:, :, 0, 1]
        scale = position_scale(fv, daily_vol[s.val[0] : s.val[1]])
        assert res.folds["position_scale"].iloc[k] == pytest.approx(scale)
        t0, t1 = s.test
        want = ldtm_positions(direct[t0 - 280 : t1 - 280, :, 0, 1], daily_vol[t0:t1], scale)
        np.testing.assert_allclose(res.positions.iloc[t0 - 280 : t1 - 280].to_numpy(), want, rtol=0, atol=1e-12)
    assert np.nanmax(np.abs(res.positions.to_numpy())) <= 1.0
    # no look-ahead: prices after the first test block change nothing in it
    later = frame.copy()
    later.iloc[320:] *= 1.5
    res2 = TF.walk_forward_foundation(later, adapter, test_start=frame.index[280], test_size=40, context_length=64, min_train=100)
    pd.testing.assert_frame_equal(res2.positions.iloc[:40], res.positions.iloc[:40])
    pd.testing.assert_frame_equal(res2.quantile_forecasts[0.1][21].iloc[:40], res.quantile_forecasts[0.1][21].iloc[:40])


def test_walk_forward_refuses_bad_input(adapter):
    frame = close_frame(200, 3)
    with pytest.raises(ValueError, match="DatetimeIndex"):
        TF.walk_forward_foundation(frame.reset_index(drop=True), adapter, test_start=150)
    with pytest.raises(ValueError, match="context_length"):
        TF.walk_forward_foundation(frame, adapter, test_start=frame.index[150], context_length=1)


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
    cfg = TF.FineTuneConfig(epochs=3, patience=2, lr=3e-3, batch_size=32, seed=0)
    tr = TF.price_windows(c, 0, 300, 48, 21, stride=5)[:2]
    va = TF.price_windows(c, 321, 398, 48, 21, stride=5)[:2]
    a = cls.tiny(seed=0)
    before = a.forecast(va[0])
    res = TF.fine_tune(a, tr, va, config=cfg)
    assert res.best_val_loss < res.val_loss_zero_shot and a.fine_tuned and res.best_epoch >= 0
    assert res.epochs_run == len(res.history) <= 3
    # the validation loss reported is the restored weights' loss
    rel_ctx = torch.tensor(va[0] / va[0][:, -1:], dtype=torch.float32)
    y = torch.tensor(va[1] / va[0][:, -1:] - 1.0, dtype=torch.float32)
    with torch.no_grad():
        got = pinball_loss(a.quantile_path(rel_ctx)[:, :21] - 1.0, y, torch.ones_like(y, dtype=torch.bool), a.model_quantiles)
    assert got.item() == pytest.approx(res.best_val_loss, rel=1e-5)
    assert not np.allclose(a.forecast(va[0]), before)
    b = cls.tiny(seed=0)
    TF.fine_tune(b, tr, va, config=cfg)
    np.testing.assert_array_equal(b.forecast(va[0]), a.forecast(va[0]))


def test_fine_tune_keeps_the_start_weights_when_nothing_improves():
    c = trending().to_numpy()
    tr = TF.price_windows(c, 0, 300, 48, 21, stride=4)[:2]
    va = TF.price_windows(c, 321, 398, 48, 21, stride=4)[:2]
    a = F.ChronosBoltAdapter.tiny(seed=0)
    before = a.forecast(va[0])
    # a learning rate this large ruins the weights in one step: no epoch beats the start
    res = TF.fine_tune(a, tr, va, epochs=1, patience=1, config=TF.FineTuneConfig(lr=50.0, max_grad_norm=1e6))
    assert res.best_epoch == -1 and res.best_val_loss == res.val_loss_zero_shot and not a.fine_tuned
    np.testing.assert_array_equal(a.forecast(va[0]), before)


def test_fine_tune_refuses_bad_windows():
    a = F.ChronosBoltAdapter.tiny(seed=0)
    ctx = prices(4, 48)
    with pytest.raises(ValueError, match="prediction length"):
        TF.fine_tune(a, (ctx, ctx[:, :30]), (ctx, ctx[:, :30]))
    with pytest.raises(ValueError, match="needs training and validation windows"):
        TF.fine_tune(a, (ctx[:0], ctx[:0, :21]), (ctx, ctx[:, :21]))
    with pytest.raises(ValueError, match=">= 1"):
        TF.fine_tune(a, (ctx, ctx[:, :21]), (ctx, ctx[:, :21]), epochs=0)


@pytest.mark.slow
def test_walk_forward_fine_tuned_leaves_the_base_model_unchanged():
    frame = trending(400)
    a = F.TimesFMAdapter.tiny(seed=0)
    ctx = frame.to_numpy().T[:, -64:]
    before = a.forecast(ctx)
    cfg = TF.FineTuneConfig(epochs=2, patience=1, lr=3e-3, window_stride=4)
    res = TF.walk_forward_foundation(frame, a, test_start=frame.index[340], test_size=30, context_length=48, min_train=100, fine_tune_config=cfg)
    np.testing.assert_array_equal(a.forecast(ctx), before)
    assert len(res.folds) == 2 and (res.folds["leakage_rows"] == 0).all()
    assert (res.folds["train_windows"] > 0).all() and (res.folds["val_windows"] > 0).all()
    assert (res.folds["val_loss"] <= res.folds["val_loss_zero_shot"]).all()
    assert set(res.history.columns) >= {"fold", "epoch", "train_loss", "val_loss"}
    assert np.isfinite(res.positions.to_numpy()).all()


# ------------------------------------------------------------------------------------------------
# catalogue, checkpoints (weights_only) and the registry
# ------------------------------------------------------------------------------------------------


def test_catalogue_entries():
    from kit.models import CATALOGUE, FOUNDATION_MODELS, MODEL_LABELS, build_model, make_model

    assert FOUNDATION_MODELS == ("chronos_bolt", "timesfm")
    assert {CATALOGUE[n].kind for n in FOUNDATION_MODELS} == {"foundation"}
    assert MODEL_LABELS["chronos_bolt"] == "Chronos-Bolt" and MODEL_LABELS["timesfm"] == "TimesFM 2.5"
    with pytest.raises(ValueError, match="loaded from local weights"):
        make_model("timesfm", 8)
    for cls in ADAPTERS:
        a = cls.tiny(seed=3)
        m = build_model({"model": cls.name, **a.config_dict()})
        assert type(m) is type(a.model) and sum(p.numel() for p in m.parameters()) == a.n_parameters
    with pytest.raises(ValueError, match="does not hold a Chronos-Bolt checkpoint"):
        build_model({"model": "chronos_bolt", **F.TimesFMAdapter.tiny().config_dict()})


def test_zero_shot_checkpoint_points_at_the_weights_folder(adapter, tmp_path, monkeypatch, no_network):
    from kit.models import CheckpointError, load_checkpoint, read_payload, save_foundation

    folder = adapter.save(tmp_path / "w" / adapter.default_checkpoint)
    a = type(adapter).from_local_dir(folder)
    path = save_foundation(tmp_path / "zs.pt", a, data_sha256="abc", train_period=("2015-01-02", "2016-03-01"), extra={"fold": 1})
    payload = read_payload(path)  # torch.load(weights_only=True)
    assert "state_dict" not in payload and payload["format"] == "kit.foundation/1"
    assert payload["weights"] == {"checkpoint": adapter.default_checkpoint, "folder": str(folder.resolve()), "sha256": F.weights_sha256(folder)}
    assert payload["architecture"] == a.card() and payload["config"]["model"] == adapter.name
    assert path.stat().st_size < 20_000  # a reference, not a copy of the weights
    ctx = prices(3, 64, seed=9)
    model, _ = load_checkpoint(path)
    np.testing.assert_array_equal(F.adapter_for(model).forecast(ctx), adapter.forecast(ctx))
    # the folder moved: found again by its checkpoint name under the weights folder
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    folder.rename(moved / folder.name)
    monkeypatch.setenv("KIT_MODEL_DIR", str(moved))
    np.testing.assert_array_equal(F.adapter_for(load_checkpoint(path)[0]).forecast(ctx), adapter.forecast(ctx))
    # other weights under the same name are refused; no folder at all names the download command
    type(adapter).tiny(seed=5).save(moved / folder.name)
    with pytest.raises(CheckpointError, match="not those the checkpoint was made with"):
        load_checkpoint(path)
    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path / "empty"))
    import shutil

    shutil.rmtree(moved)
    with pytest.raises(F.MissingWeightsError, match="hf download"):
        load_checkpoint(path)


def test_fine_tuned_and_random_checkpoints_carry_their_state_dict(tmp_path):
    from kit.models import load_checkpoint, read_payload, save_foundation

    ctx = prices(3, 64, seed=10)
    for cls in ADAPTERS:
        a = cls.tiny(seed=2)
        with torch.no_grad():
            next(a.model.parameters()).add_(0.01)  # stands in for fine-tuned weights
        a.fine_tuned = True
        path = save_foundation(tmp_path / f"{cls.name}.pt", a)
        payload = read_payload(path)
        assert "state_dict" in payload and payload["architecture"]["fine_tuned"] is True
        model, _ = load_checkpoint(path)  # rebuilt through the catalogue, weights_only
        np.testing.assert_array_equal(F.adapter_for(model).forecast(ctx), a.forecast(ctx))
        r = cls.tiny(seed=4)  # random, zero-shot, no folder: the weights must travel too
        assert "state_dict" in read_payload(save_foundation(tmp_path / "r.pt", r))
        np.testing.assert_array_equal(F.adapter_for(load_checkpoint(tmp_path / "r.pt")[0]).forecast(ctx), r.forecast(ctx))
    with pytest.raises(TypeError, match="not a foundation model"):
        F.adapter_for(torch.nn.Linear(2, 2))


def test_a_walk_forward_result_is_registered_and_loaded_back(tmp_path, monkeypatch, no_network):
    from kit.store import registry

    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path / "weights"))
    folder = F.ChronosBoltAdapter.tiny(seed=0).save(tmp_path / "weights" / "chronos-bolt-small")
    a = F.load_adapter("chronos_bolt")
    frame = close_frame(360, 3)
    res = TF.walk_forward_foundation(frame, a, test_start=frame.index[280], test_size=40, context_length=64, min_train=100,
                                     checkpoint_dir=tmp_path / "ck", data_sha256="d" * 64)
    assert res.folds["checkpoint"].notna().tolist() == [False, True]  # the last fold's model
    db = f"sqlite:///{tmp_path / 'reg.db'}"
    try:
        out = registry.register_and_gate({"chronos_bolt": res}, frame, "universe3-test", db=db)
        m = registry.get_model(int(out["model_id"].iloc[0]), db=db)
        assert m["forecaster"] and m["name"] == "chronos_bolt"
        with registry.read_tx(registry.get_engine(db)) as conn:
            arch = conn.execute(registry.sa.select(registry.S.arch_versions.c.architecture)).scalar()
        assert arch["weights_sha256"] == F.weights_sha256(folder) and arch["checkpoint"] == "chronos-bolt-small"
        model, payload = registry.load_model(m["id"], db=db)
        ctx = prices(2, 64, seed=11)
        np.testing.assert_array_equal(F.adapter_for(model).forecast(ctx), a.forecast(ctx))
        assert payload["position_scale"] == pytest.approx(res.folds["position_scale"].iloc[-1])
    finally:
        from kit.store import engine as kdb

        kdb.dispose_engines()


# ------------------------------------------------------------------------------------------------
# the notebook's entry point
# ------------------------------------------------------------------------------------------------


def test_foundation_settings_are_checked():
    s = TF.FoundationSettings.from_params({"foundation_models": ["chronos_bolt", "chronos-bolt-base"], "other": 1})
    assert s.foundation_models == ("chronos_bolt", "chronos-bolt-base") and not s.foundation_fine_tune
    assert [s.result_name(m) for m in ("chronos_bolt", "chronos-bolt-small", "chronos-bolt-base", "timesfm")] == [
        "chronos_bolt", "chronos_bolt", "chronos_bolt_base", "timesfm"]
    for bad, match in [
        ({"foundation_models": "chronos_bolt"}, "must be a list"),
        ({"foundation_models": ["lag_llama"]}, "unknown foundation model 'lag_llama'"),
        ({"foundation_models": ["timesfm", "timesfm"]}, "twice"),
        ({"foundation_fine_tune": "yes"}, "true or false"),
        ({"foundation_epochs": 0}, "foundation_epochs must be an integer >= 1"),
        ({"foundation_context_length": 1.5}, "foundation_context_length"),
        ({"model_dir": 3}, "model_dir must be a string"),
    ]:
        with pytest.raises(ValueError, match=match):
            TF.FoundationSettings.from_params(bad, where="t")


def test_foundation_run_skips_missing_weights_and_runs_present_ones(tmp_path, monkeypatch, no_network):
    from kit.training import WalkForwardSettings

    monkeypatch.setenv("KIT_MODEL_DIR", str(tmp_path / "not-here"))
    frame = close_frame(360, 3)
    wf = WalkForwardSettings(test_start=str(frame.index[280].date()), test_size=40)
    F.ChronosBoltAdapter.tiny(seed=0).save(tmp_path / "w" / "chronos-bolt-small")
    s = TF.FoundationSettings(("chronos_bolt", "timesfm"), foundation_context_length=64, model_dir=str(tmp_path / "w"))
    run = s.run(frame, wf, progress=False)
    assert list(run.results) == ["chronos_bolt"] and run.labels == {"chronos_bolt": "Chronos-Bolt zero-shot"}
    assert run.skipped["model"].tolist() == ["timesfm"]
    reason = run.skipped["reason"].iloc[0]
    assert str(tmp_path / "w" / "timesfm-2.5-200m-transformers") in reason and "hf download google/timesfm-2.5-200m-transformers" in reason
    r = run.results["chronos_bolt"]
    assert (r.folds["leakage_rows"] == 0).all() and r.positions.index[0] == frame.index[280]
    empty = TF.FoundationSettings().run(frame, wf)
    assert empty.results == {} and empty.skipped.empty


# ------------------------------------------------------------------------------------------------
# the reports: 20_train -> 30_backtest -> 50_audit with a tiny model standing in for the download
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_profile_run_compares_registers_and_records_the_foundation_models(tmp_path, monkeypatch):
    """``kit run`` of the foundation profile, shrunk: a tiny random Chronos-Bolt saved where the
    download would go, no TimesFM weights. The run must skip TimesFM with the reason, train Chronos-Bolt
    zero-shot and fine-tuned beside a linear model, register both, backtest them and write their
    quantiles to the ledger."""
    import json

    import yaml

    from kit import reports
    from kit.store import ledger, registry

    weights = tmp_path / "weights"
    F.ChronosBoltAdapter.tiny(seed=0).save(weights / "chronos-bolt-small")
    monkeypatch.setenv("KIT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("KIT_DB_URL", f"sqlite:///{tmp_path / 'state' / 'kit.db'}")
    monkeypatch.delenv("KIT_MODEL_DIR", raising=False)
    prof = reports.load_profile("foundation")
    for k in ("name", "path", "10_explore"):
        prof.pop(k, None)
    prof["notebooks"] = ["20_train", "30_backtest", "50_audit"]
    small = {"models": ["linear"], "epochs": 1, "patience": 1, "lookback": 21, "hidden_size": 4}
    prof["_model"] = {**prof["_model"], **small}
    prof["20_train"] = {**prof["20_train"], **small, "foundation_fine_tune": True, "foundation_epochs": 1,
                        "foundation_context_length": 64, "model_dir": str(weights)}
    prof["30_backtest"] = {**prof["30_backtest"], **small}
    path = tmp_path / "foundation-small.yaml"
    path.write_text(yaml.safe_dump(prof))
    run = reports.run_profile(profile_file=path, reports_dir=tmp_path / "reports", renderer="nbconvert")
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "ok", info
    train = reports.load_metrics(run)["train"]
    assert train["foundation"]["labels"] == {"chronos_bolt": "Chronos-Bolt zero-shot", "chronos_bolt_ft": "Chronos-Bolt fine-tuned"}
    (skip,) = train["foundation"]["skipped"]
    assert skip["model"] == "timesfm" and "hf download google/timesfm-2.5-200m-transformers" in skip["reason"]
    assert train["configurations_tried"] == 3
    assert set(reports.foundation_models_of_run(run)) == {"chronos_bolt", "chronos_bolt_ft"}
    qf = reports.load_quantile_forecasts(run, "chronos_bolt")
    assert set(qf) == {0.1, 0.5, 0.9} and (qf[0.1][21] <= qf[0.9][21]).stack().all()
    html = (run / "20_train.html").read_text()
    assert "skipped timesfm" in html and "coverage_10_90" in html
    assert "Chronos-Bolt fine-tuned" in (run / "30_backtest.html").read_text()
    db = os.environ["KIT_DB_URL"]
    try:
        names = set(registry.list_models(db=db)["name"])
        assert {"linear", "chronos_bolt", "chronos_bolt_ft"} <= names
        snaps = ledger.snapshots(db=db)
        zs = snaps[snaps["label"].str.contains("_chronos_bolt_v")]
        assert len(zs) and zs["forecast_q10_5"].notna().all() and (zs["forecast_q10_5"] <= zs["forecast_5"]).all()
        assert snaps.loc[snaps["label"].str.contains("_linear_v"), "forecast_q10_5"].isna().all()
        assert ledger.verify(db=db).ok
    finally:
        from kit.store import engine as kdb

        kdb.dispose_engines()
