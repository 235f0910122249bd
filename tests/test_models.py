import numpy as np
import pytest
import torch

from kit import models, training
from kit.models import (
    BaselineConfig,
    LDTMConfig,
    LDTMForecaster,
    MomentumTransformer,
    PerStepBaseline,
    PositionEnsemble,
    TransformerConfig,
    build_model,
    ensemble_weights,
    window_minmax,
)


def test_momentum_transformer_shapes_weights_and_range():
    torch.manual_seed(0)
    m = MomentumTransformer(TransformerConfig(n_features=8, d_model=8, n_heads=2, dropout=0.0)).eval()
    x = torch.randn(3, 20, 8)
    pos, w = m(x, return_weights=True)
    assert pos.shape == (3, 20) and pos.abs().max() <= 1
    assert w["attention"].shape == (3, 2, 20, 20) and w["variable_weights"].shape == (3, 20, 8)
    torch.testing.assert_close(w["variable_weights"].sum(-1), torch.ones(3, 20))
    torch.testing.assert_close(w["attention"].sum(-1), torch.ones(3, 2, 20))
    assert (w["attention"].triu(1) == 0).all()  # causal


def test_sequence_models_are_causal():
    """Changing inputs after step t never changes the output at or before t."""
    torch.manual_seed(1)
    x = torch.randn(2, 30, 8)
    y = x.clone()
    y[:, 20:] += 5.0
    for name in models.POSITION_MODELS:
        m = models.make_model(name, 8, hidden_size=8, dropout=0.0, n_heads=2).eval()
        with torch.no_grad():
            torch.testing.assert_close(m(x)[:, :20], m(y)[:, :20], msg=name)


def test_ldtm_forecaster_and_window_minmax():
    torch.manual_seed(2)
    m = LDTMForecaster(LDTMConfig()).eval()
    x = torch.randn(4, 30, 11) * 100 + 50
    out = m(x)
    assert out.shape == (4, 3)
    # per-window min-max: scale and shift of a window do not change the forecast
    torch.testing.assert_close(m(x * 3 + 7), out, rtol=1e-4, atol=1e-5)
    z = window_minmax(torch.tensor([[[1.0, 5.0], [3.0, 5.0], [2.0, 5.0]]]))
    torch.testing.assert_close(z, torch.tensor([[[0.0, 0.5], [1.0, 0.5], [0.5, 0.5]]]))


def test_build_model_round_trips_every_config():
    cfgs = [
        models.DMNConfig(8, 5).to_dict(),
        TransformerConfig(8, 8, 2).to_dict(),
        BaselineConfig(8).to_dict(),
        BaselineConfig(8, 16).to_dict(),
        LDTMConfig().to_dict(),
    ]
    for cfg in cfgs:
        m = build_model(cfg)
        assert m.config.to_dict() == cfg
    with pytest.raises(ValueError, match="not a known model"):
        build_model({"model": "gpt"})
    with pytest.raises(ValueError, match="not a position model"):
        models.make_model("ldtm", 8, kind="position")


def test_ensemble_weights_methods():
    np.testing.assert_allclose(ensemble_weights([1, 2, 3], "equal"), [1 / 3] * 3)
    np.testing.assert_allclose(ensemble_weights([1.0, 2.0, 4.0], "inverse_loss"), np.array([4, 2, 1]) / 7)
    np.testing.assert_allclose(ensemble_weights([-1.0, -3.0, 0.5], "inverse_loss"), [0.25, 0.75, 0.0])
    rng = np.random.default_rng(0)
    target = rng.normal(0, 0.01, (200, 3))
    good = np.sign(target) * 0.5  # a member that knows the next return
    noise = rng.uniform(-1, 1, (200, 3))
    w = ensemble_weights(None, "stacked", val_positions=np.stack([noise, good]), val_target=target)
    assert w[1] > 0.9 and abs(w.sum() - 1) < 1e-9
    with pytest.raises(ValueError, match="method"):
        ensemble_weights([1], "median")


def test_position_ensemble_is_weighted_average():
    torch.manual_seed(3)
    a = PerStepBaseline(BaselineConfig(4))
    b = PerStepBaseline(BaselineConfig(4, 8))
    e = PositionEnsemble([a, b], [0.25, 0.75])
    x = torch.randn(2, 5, 4)
    torch.testing.assert_close(e(x), 0.25 * a(x) + 0.75 * b(x))
    with pytest.raises(ValueError, match="summing to 1"):
        PositionEnsemble([a, b], [0.5, 0.6])


def test_trainer_device_and_amp_settings_on_cpu():
    dev = training.resolve_device("auto")
    assert dev.type in ("cpu", "cuda")
    assert training.amp_settings(torch.device("cpu")) == (False, torch.float32, False)
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="cuda"):
            training.resolve_device("cuda")


def test_walk_forward_ensemble_weights_come_from_validation_only():
    import pandas as pd

    rng = np.random.default_rng(4)
    dates = pd.bdate_range("2005-01-03", periods=800)
    close = pd.DataFrame(100 * np.exp(np.cumsum(rng.normal(0, 0.01, (800, 3)), 0)), index=dates, columns=list("ABC"))
    res = training.walk_forward(close, model="ensemble", members=("linear", "mlp"), test_start=dates[650], test_size=100,
                                lookback=21, hidden_size=4, train=training.TrainConfig(epochs=2), progress=False)
    ens = res.folds[res.folds["model"] == "ensemble"]
    assert len(ens) == 2 and all(abs(sum(w.values()) - 1) < 1e-3 for w in ens["weights"])
    assert res.positions.index[0] == dates[650] and np.nanmax(np.abs(res.positions.to_numpy())) <= 1
    assert set(res.history["model"]) == {"linear", "mlp"}
