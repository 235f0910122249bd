import math

import numpy as np
import pytest
import torch

from kit.models.losses import sharpe_loss


def test_sharpe_loss_hand_computed():
    pos = torch.tensor([[1.0, -1.0, 0.5, 1.0]])
    ret = torch.tensor([[0.01, -0.02, 0.02, -0.01]])
    # captured = [0.01, 0.02, 0.01, -0.01]; mean = 0.0075
    # population variance = ((0.0025)^2 + (0.0125)^2 + (0.0025)^2 + (0.0175)^2) / 4 = 0.00011875
    expected = -math.sqrt(252) * 0.0075 / math.sqrt(0.00011875)
    assert float(sharpe_loss(pos, ret, eps=0.0)) == pytest.approx(expected, rel=1e-6)
    assert expected == pytest.approx(-10.925, abs=1e-3)


def test_sharpe_loss_mask_excludes_elements():
    pos = torch.tensor([[1.0, -1.0, 0.5, 1.0, 1.0]])
    ret = torch.tensor([[0.01, -0.02, 0.02, -0.01, 5.0]])
    mask = torch.tensor([[True, True, True, True, False]])
    full = sharpe_loss(pos[:, :4], ret[:, :4])
    assert float(sharpe_loss(pos, ret, mask)) == pytest.approx(float(full), rel=1e-6)


def test_sharpe_loss_matches_numpy_population_std():
    rng = np.random.default_rng(0)
    p, r = rng.uniform(-1, 1, (8, 20)), rng.normal(0, 0.01, (8, 20))
    c = (p * r).ravel()
    expected = -math.sqrt(252) * c.mean() / c.std(ddof=0)
    got = sharpe_loss(torch.tensor(p), torch.tensor(r), eps=0.0)
    assert float(got) == pytest.approx(expected, rel=1e-10)


def test_sharpe_loss_gradcheck_float64():
    rng = np.random.default_rng(1)
    p = torch.tensor(rng.uniform(-1, 1, (3, 5)), requires_grad=True)
    r = torch.tensor(rng.normal(0, 0.01, (3, 5)))
    assert torch.autograd.gradcheck(lambda x: sharpe_loss(x, r), (p,))


def test_sharpe_loss_errors():
    with pytest.raises(ValueError, match="shape"):
        sharpe_loss(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="at least 2"):
        sharpe_loss(torch.ones(1, 3), torch.ones(1, 3), torch.tensor([[True, False, False]]))
    # constant batch: finite thanks to eps, no NaN
    assert torch.isfinite(sharpe_loss(torch.ones(2, 3), torch.ones(2, 3)))


def test_combined_loss_reduces_to_sharpe_and_adds_hand_penalties():
    from kit.models.losses import combined_loss

    pos = torch.tensor([[1.0, -1.0, 0.5, 1.0]], dtype=torch.float64)
    ret = torch.tensor([[0.01, -0.02, 0.02, -0.01]], dtype=torch.float64)
    base = sharpe_loss(pos, ret, eps=0.0)
    assert float(combined_loss(pos, ret, eps=0.0)) == pytest.approx(float(base))
    scale = torch.full_like(pos, 2.0)
    # w = [2, -2, 1, 2]; |dw| = [4, 3, 1], mean 8/3; penalty = 252 * 10e-4 * 8/3 = 0.672
    got = combined_loss(pos, ret, scale, cost_bps=10, eps=0.0)
    assert float(got - base) == pytest.approx(252 * 10 / 1e4 * 8 / 3)
    # captured = [0.01, 0.02, 0.01, -0.01]: variance 0.00011875, downside mean(0, 0, 0, 1e-4) = 2.5e-5
    var = combined_loss(pos, ret, risk_weight=2.0, eps=0.0)
    assert float(var - base) == pytest.approx(2.0 * 252 * 0.00011875)
    down = combined_loss(pos, ret, risk_weight=1.0, risk="downside", eps=0.0)
    assert float(down - base) == pytest.approx(math.sqrt(252 * 2.5e-5), rel=1e-6)


def test_combined_loss_and_mse_gradcheck_float64():
    from kit.models.losses import combined_loss, multi_horizon_mse

    rng = np.random.default_rng(2)
    p = torch.tensor(rng.uniform(-1, 1, (3, 6)), requires_grad=True)
    r = torch.tensor(rng.normal(0, 0.01, (3, 6)))
    s = torch.tensor(rng.uniform(0.5, 2, (3, 6)))
    assert torch.autograd.gradcheck(lambda x: combined_loss(x, r, s, cost_bps=5, risk_weight=0.5, risk="downside"), (p,))
    y = torch.tensor(rng.normal(size=(5, 3)))
    m = torch.tensor(rng.random((5, 3)) > 0.2)
    m[0] = True
    q = torch.tensor(rng.normal(size=(5, 3)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: multi_horizon_mse(x, y, m, [1.0, 2.0, 1.0]), (q,))


def test_multi_horizon_mse_hand_value_and_errors():
    from kit.models.losses import multi_horizon_mse

    pred = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    tgt = torch.tensor([[0.0, 2.0], [3.0, 0.0]])
    # per horizon: h0 mean(1, 0) = 0.5, h1 mean(0, 16) = 8; equal weights -> 4.25
    assert float(multi_horizon_mse(pred, tgt)) == pytest.approx(4.25)
    mask = torch.tensor([[True, True], [True, False]])
    assert float(multi_horizon_mse(pred, tgt, mask)) == pytest.approx((0.5 + 0.0) / 2)
    with pytest.raises(ValueError, match="no valid target"):
        multi_horizon_mse(pred, tgt, torch.tensor([[True, False], [True, False]]))
    with pytest.raises(ValueError, match="risk"):
        from kit.models.losses import combined_loss

        combined_loss(pred, tgt, risk="nope")
