import math

import numpy as np
import pytest
import torch

from kit.losses import sharpe_loss


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
