"""kit.training.batched: K stacked LSTMs / LDTM forecasters and universe training.

Tolerances. Forward passes are compared at 1e-10 in float64 and 1e-5 in float32: the stacked and
the per-model computations add the same products in a different order (batched matrix products
against oneDNN's fused LSTM), so they differ by rounding only. Trained weights of the batched and
the loop paths are compared at ``TRAIN_ATOL`` (absolute, float32): every training step repeats that
rounding difference in the gradients, and AdamW carries it forward; over the few dozen steps here the
largest measured difference is 9.5e-7 (forward passes: 1e-7 in float32, 2e-16 in float64), so 2e-5
leaves a margin of 20x while a real error (a wrong dropout mask, minibatch or gradient) moves
weights by about lr = 1e-3 per step.
"""

import functools
import random

import numpy as np
import pytest
import torch
from torch import nn

from kit.models import LDTMConfig, LDTMForecaster
from kit.models.losses import multi_horizon_mse
from kit.training import TrainConfig, Trainer, batched, set_seed
from kit.training.batched import (
    BatchedLDTM,
    BatchedLSTM,
    draw_ldtm_dropout_masks,
    train_universe,
)

K, B, L, F, HID = 3, 6, 10, 5, 16
CFG = LDTMConfig(n_features=F, hidden_size=HID, num_layers=2, dropout=0.2)
TRAIN_ATOL = 2e-5


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is fastest and immune to other processes competing for the cores."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _seeded_lstms(seeds, dtype, **kw):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(nn.LSTM(F, HID, batch_first=True, **kw).to(dtype))
    return out


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
@pytest.mark.parametrize("bptt,one_model_slices", [("manual", False), ("manual", True), ("autograd", False)])
def test_batched_lstm_equals_separate_lstms_forward_and_gradients(
    dtype, tol, bptt, one_model_slices, monkeypatch
):
    if one_model_slices:  # the manual path's element-wise work in slices of one model
        monkeypatch.setattr(batched, "_EW_CHUNK_ELEMS", 1)
    seeds = [11, 12, 13]
    net = BatchedLSTM(K, F, HID, num_layers=2, seeds=seeds, bptt=bptt).to(dtype)
    ref = _seeded_lstms(seeds, dtype, num_layers=2)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(K, B, L, F, dtype=dtype, generator=gen, requires_grad=True)
    h0 = torch.randn(K, 2, B, HID, dtype=dtype, generator=gen)
    c0 = torch.randn(K, 2, B, HID, dtype=dtype, generator=gen)
    out, (hn, cn) = net(x, (h0, c0))
    assert out.shape == (K, B, L, HID) and hn.shape == cn.shape == (K, 2, B, HID)
    w = [torch.randn(t.shape, dtype=dtype, generator=gen) for t in (out, hn, cn)]
    ((out * w[0]).sum() + (hn * w[1]).sum() + (cn * w[2]).sum()).backward()
    for k, m in enumerate(ref):
        xk = x[k].detach().clone().requires_grad_(True)
        o, (h, c) = m(xk, (h0[k], c0[k]))  # nn.LSTM's states are (layers, B, H)
        torch.testing.assert_close(out[k], o, atol=tol, rtol=0)
        torch.testing.assert_close(hn[k], h, atol=tol, rtol=0)
        torch.testing.assert_close(cn[k], c, atol=tol, rtol=0)
        ((o * w[0][k]).sum() + (h * w[1][k]).sum() + (c * w[2][k]).sum()).backward()
        torch.testing.assert_close(x.grad[k], xk.grad, atol=tol, rtol=0)
        for name, p in m.named_parameters():
            torch.testing.assert_close(getattr(net, name).grad[k], p.grad, atol=tol, rtol=0, msg=name)


def test_batched_lstm_initialisation_and_state_dicts():
    seeds = [3, 4, 5]
    net = BatchedLSTM(K, F, HID, num_layers=2, dropout=0.1, seeds=seeds)
    ref = _seeded_lstms(seeds, torch.float32, num_layers=2, dropout=0.1)
    for k, m in enumerate(ref):
        for name, p in m.named_parameters():
            assert getattr(net, name).shape == (K, *p.shape)
            assert torch.equal(getattr(net, name)[k], p), name
    # without seeds: K constructions in a row on the global generator
    torch.manual_seed(7)
    a = BatchedLSTM(K, F, HID)
    torch.manual_seed(7)
    b = [nn.LSTM(F, HID, batch_first=True) for _ in range(K)]
    assert all(torch.equal(a.weight_hh_l0[k], b[k].weight_hh_l0) for k in range(K))
    # the seeded constructor leaves the global generator alone
    torch.manual_seed(1)
    BatchedLSTM(K, F, HID, seeds=seeds)
    after = torch.rand(1)
    torch.manual_seed(1)
    assert torch.equal(after, torch.rand(1))
    # round trips through nn.LSTM objects and state dicts
    back = BatchedLSTM.from_lstms(net.to_lstms())
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), back.parameters(), strict=True))
    other = BatchedLSTM(K, F, HID, num_layers=2)
    other.load_lstm_state_dicts([m.state_dict() for m in ref])
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), other.parameters(), strict=True))
    with pytest.raises(ValueError, match="state_dicts"):
        other.load_lstm_state_dicts([m.state_dict() for m in ref[:2]])
    with pytest.raises(ValueError, match="hidden_size"):
        BatchedLSTM.from_lstms([nn.LSTM(F, HID), nn.LSTM(F, HID + 1)])


def _ldtms(seeds, config=CFG):
    out = []
    for s in seeds:
        torch.manual_seed(s)
        out.append(LDTMForecaster(config))
    return out


@pytest.mark.parametrize("dtype,tol", [(torch.float64, 1e-10), (torch.float32, 1e-5)])
def test_batched_ldtm_round_trip_and_forward(dtype, tol):
    models = [m.to(dtype).eval() for m in _ldtms([1, 2, 3])]
    net = BatchedLDTM.from_models(models)
    assert not net.training and net.head_w1.shape == (K, 3, 64, HID) and net.head_w2.shape == (K, 3, 64)
    back = net.to_models()
    for m, b in zip(models, back, strict=True):
        assert b.config == m.config and not b.training
        for (n, p), (_, q) in zip(m.state_dict().items(), b.state_dict().items(), strict=True):
            assert torch.equal(p, q), n
    assert all(
        torch.equal(p, q)
        for p, q in zip(net.parameters(), BatchedLDTM.from_models(back).parameters(), strict=True)
    )
    x = torch.randn(K, B, L, F, dtype=dtype, generator=torch.Generator().manual_seed(0)) * 50 + 100
    x[1, :, :, 2] = 3.0  # a constant feature: min-max gives 0.5
    out = net(x)
    assert out.shape == (K, B, 3)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m(x[k]), atol=tol, rtol=0)
    # seeded constructor = LDTMForecaster under torch.manual_seed
    seeded = BatchedLDTM(CFG, K, seeds=[1, 2, 3])
    fresh = BatchedLDTM.from_models(_ldtms([1, 2, 3]))
    assert all(torch.equal(p, q) for p, q in zip(seeded.parameters(), fresh.parameters(), strict=True))


def test_dropout_masks_reproduce_ldtm_forecaster_training_mode():
    models = [m.train() for m in _ldtms([4, 5, 6])]
    net = BatchedLDTM.from_models(models)
    x = torch.randn(K, B, L, F, generator=torch.Generator().manual_seed(1))
    gens = [torch.Generator().manual_seed(100 + k) for k in range(K)]
    masks = draw_ldtm_dropout_masks(gens, [B] * K, L, CFG)
    assert masks.lstm[0].shape == (K, L, B, HID) and masks.heads.shape == (K, B, 3 * 64)
    out = net(x, masks)
    for k, m in enumerate(models):
        torch.manual_seed(100 + k)  # the global generator in the state of generator k
        torch.testing.assert_close(out[k], m(x[k]), atol=1e-5, rtol=0)
    assert (
        draw_ldtm_dropout_masks(gens, [B] * K, L, LDTMConfig(n_features=F, hidden_size=HID, dropout=0.0))
        is None
    )


def test_stacked_multi_horizon_mse_equals_per_model_losses():
    g = torch.Generator().manual_seed(0)
    pred, y = torch.randn(8, 3, generator=g), torch.randn(8, 3, generator=g)
    mask = torch.rand(8, 3, generator=g) > 0.3
    mask[0] = True
    stacked = multi_horizon_mse(torch.stack([pred, y]), torch.stack([y, pred]), torch.stack([mask, mask]))
    assert stacked.shape == (2,)
    torch.testing.assert_close(stacked[0], multi_horizon_mse(pred, y, mask), atol=1e-7, rtol=0)
    torch.testing.assert_close(stacked[1], multi_horizon_mse(y, pred, mask), atol=1e-7, rtol=0)
    mask[:, 2] = False  # a horizon without targets raises, or counts 0 with allow_empty
    with pytest.raises(ValueError, match="no valid target"):
        multi_horizon_mse(pred, y, mask)
    assert torch.isfinite(multi_horizon_mse(pred, y, mask, allow_empty=True))


def _datasets(sizes=((70, 20), (45, 15), (100, 30)), seed=0):
    rng = np.random.default_rng(seed)
    out = []
    for s, v in sizes:
        X = rng.normal(size=(s + v, L, F)).astype(np.float32)
        y = (0.1 * X[:, -1, :3] + rng.normal(scale=0.05, size=(s + v, 3))).astype(np.float32)
        y[:s:9, 2] = np.nan  # missing long-horizon targets
        out.append((X[:s], y[:s], X[s:], y[s:]))
    return out


def _max_diff(models_a, models_b) -> float:
    return max(
        float((p.detach() - q.detach()).abs().max())
        for a, b in zip(models_a, models_b, strict=True)
        for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def test_train_universe_batched_equals_loop_and_separate_trainings():
    data = _datasets()  # unequal sample counts (70, 45, 100; last batches partial) and NaN targets
    tc = TrainConfig(epochs=3, batch_size=16, patience=5, seed=3, device="cpu")
    fb = train_universe(data, CFG, tc, path="batched")
    fl = train_universe(data, CFG, tc, path="loop")
    assert fb.path == "batched" and fl.path == "loop" and fb.seeds == [3, 4, 5]
    # K separate trainings with the same seeds and data (the repository's walk_forward convention)
    separate = []
    for k, (X, y, Xv, yv) in enumerate(data):
        set_seed(3 + k)
        m = LDTMForecaster(CFG)
        cfg = TrainConfig(epochs=3, batch_size=16, patience=5, seed=3 + k, device="cpu")
        Trainer(cfg, loss_fn=functools.partial(multi_horizon_mse, allow_empty=True)).fit(
            m, (X, np.nan_to_num(y), np.isfinite(y)), (Xv, np.nan_to_num(yv), np.isfinite(yv))
        )
        separate.append(m)
    assert _max_diff(fl.models, separate) == 0.0  # the loop is those trainings
    diff = _max_diff(fb.models, fl.models)
    assert diff < TRAIN_ATOL, diff
    for rb, rl in zip(fb.results, fl.results, strict=True):
        assert (rb.best_epoch, rb.epochs_run) == (rl.best_epoch, rl.epochs_run)
        assert rb.best_val_loss == pytest.approx(rl.best_val_loss, rel=1e-5)
        for hb, hl in zip(rb.history, rl.history, strict=True):
            assert hb["train_loss"] == pytest.approx(hl["train_loss"], rel=1e-5)
    x = torch.as_tensor(data[0][2])
    with torch.no_grad():
        torch.testing.assert_close(fb.models[0](x), fl.models[0](x), atol=TRAIN_ATOL, rtol=0)


def test_models_per_pass_and_memory_budget_do_not_change_the_result(monkeypatch):
    data = _datasets(((40, 12), (40, 12), (40, 15)))
    tc = TrainConfig(epochs=2, batch_size=16, seed=0, device="cpu")
    a = train_universe(data, CFG, tc, path="batched")
    b = train_universe(data, CFG, tc, path="batched", models_per_pass=2)
    assert _max_diff(a.models, b.models) < TRAIN_ATOL
    # a tiny activation budget: one model per pass, validation one window at a time
    monkeypatch.setattr(batched, "_ACTIVATION_BUDGET", 1)
    c = train_universe(data, CFG, tc, path="batched")
    assert _max_diff(a.models, c.models) < TRAIN_ATOL
    for ra, rc in zip(a.results, c.results, strict=True):
        assert ra.best_val_loss == pytest.approx(rc.best_val_loss, rel=1e-5)


def test_early_stopping_of_one_model_leaves_the_others_unchanged():
    data = _datasets(((48, 12), (48, 12), (48, 12)), seed=1)
    X, y, Xv, yv = data[1]
    # model 1 learns targets of -3 but is validated on +3: its validation loss rises every epoch
    data[1] = (X, np.full_like(y, -3.0), Xv, np.full_like(yv, 3.0))
    tc = TrainConfig(epochs=4, batch_size=16, patience=1, seed=0, device="cpu")
    fit = train_universe(data, CFG, tc, path="batched", seeds=[0, 1, 2])
    r = fit.results
    assert r[1].best_epoch == 0 and r[1].epochs_run == 2  # stopped after one epoch without improvement
    assert len(r[1].history) == 2  # and left the stack: no further steps or validations
    assert r[0].epochs_run > 2 or r[2].epochs_run > 2
    # each other model equals its training alone: the stopped model does not influence them
    for k in (0, 2):
        alone = train_universe([data[k]], CFG, tc, path="batched", seeds=[k])
        assert _max_diff([fit.models[k]], alone.models) < TRAIN_ATOL
        assert (alone.results[0].best_epoch, alone.results[0].epochs_run) == (
            r[k].best_epoch,
            r[k].epochs_run,
        )
    # the stopped model keeps its best (epoch 0) weights: those of one epoch of training alone
    one = train_universe(
        [data[1]], CFG, TrainConfig(epochs=1, batch_size=16, seed=0, device="cpu"), path="loop", seeds=[1]
    )
    assert _max_diff([fit.models[1]], one.models) < TRAIN_ATOL
    assert one.results[0].best_val_loss == pytest.approx(r[1].best_val_loss, rel=1e-5)


def test_train_universe_keeps_global_generators():
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    train_universe(
        _datasets(((20, 8),)), CFG, TrainConfig(epochs=1, batch_size=16, device="cpu"), path="loop"
    )
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    random.seed(5)
    np.random.seed(5)
    torch.manual_seed(5)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item())


def test_auto_path_is_documented_choice():
    assert batched.choose_path("cuda") == "batched"
    assert batched.choose_path("cpu") == batched.AUTO_CPU_PATH in ("batched", "loop")
    fit = train_universe(_datasets(((20, 8),)), CFG, TrainConfig(epochs=1, batch_size=16, device="cpu"))
    assert fit.path == batched.AUTO_CPU_PATH and len(fit.models) == 1 and not fit.models[0].training


def test_manual_backward_runs_once():
    net = BatchedLSTM(K, F, HID)
    out, _ = net(torch.randn(K, B, L, F))
    loss = out.sum()
    loss.backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="only once"):
        loss.backward()


def test_bad_inputs_raise_value_errors_naming_the_field():
    good = _datasets(((20, 8), (20, 8)))
    tc = TrainConfig(epochs=1, batch_size=16, device="cpu")

    def bad(k, i, value):
        d = [list(t) for t in good]
        d[k][i] = value
        return [tuple(t) for t in d]

    X, y, Xv, yv = good[1]
    cases = [
        ([], r"datasets: .*K=0"),
        ([(X, y, Xv)], r"datasets\[0\]: expected a tuple"),
        (bad(1, 0, X[:, :, :4]), r"datasets\[1\]\.X_train: expected shape"),
        (bad(1, 1, y[:-1]), r"datasets\[1\]\.y_train: expected shape"),
        (bad(1, 3, yv[:, :2]), r"datasets\[1\]\.y_val: expected shape"),
        (bad(1, 2, Xv[:, 1:]), r"datasets\[1\]\.X_val: lookback"),
        (bad(0, 0, np.where(X > 2, np.nan, X)), r"datasets\[0\]\.X_train: contains non-finite"),
        (bad(1, 1, np.full_like(y, np.nan)), r"datasets\[1\]\.y_train: fewer than 2"),
        (bad(0, 0, X.astype(str)), r"datasets\[0\]\.X_train: expected a real numeric"),
    ]
    for data, msg in cases:
        with pytest.raises(ValueError, match=msg):
            train_universe(data, CFG, tc, path="batched")
    with pytest.raises(ValueError, match="seeds"):
        train_universe(good, CFG, tc, seeds=[1])
    with pytest.raises(ValueError, match="path"):
        train_universe(good, CFG, tc, path="gpu")
    with pytest.raises(ValueError, match="train.epochs"):
        train_universe(good, CFG, TrainConfig(epochs=0), path="batched")
    with pytest.raises(ValueError, match="config.dropout"):
        train_universe(good, LDTMConfig(n_features=F, dropout=1.0), tc, path="batched")
    with pytest.raises(ValueError, match="n_models"):
        BatchedLDTM(CFG, 0)
    with pytest.raises(ValueError, match=r"models: need at least one"):
        BatchedLDTM.from_models([])
    with pytest.raises(ValueError, match=r"models\[1\]\.config\.hidden_size"):
        BatchedLDTM.from_models(
            [LDTMForecaster(CFG), LDTMForecaster(LDTMConfig(n_features=F, hidden_size=8))]
        )
    with pytest.raises(ValueError, match=r"x must have shape \(K=3"):
        BatchedLDTM(CFG, K)(torch.zeros(2, B, L, F))
