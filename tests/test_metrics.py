import math

import empyrical as ep
import numpy as np
import pandas as pd
import pytest

from kit import metrics


def _returns(seed=0, n=1000, mu=0.0005, sd=0.01):
    rng = np.random.default_rng(seed)
    return pd.Series(rng.normal(mu, sd, n), index=pd.bdate_range("2015-01-01", periods=n))


def test_performance_table_matches_empyrical_and_hand_values():
    r = _returns()
    t = metrics.performance_table({"s": r})
    row = t.loc["s"]
    assert row.sharpe_ratio == pytest.approx(math.sqrt(252) * r.mean() / r.std(ddof=1), rel=1e-12)
    assert row.annual_volatility == pytest.approx(r.std(ddof=1) * math.sqrt(252), rel=1e-12)
    assert row.annual_return == pytest.approx((1 + r).prod() ** (252 / len(r)) - 1, rel=1e-10)
    assert row.max_drawdown == pytest.approx(ep.max_drawdown(r))
    assert row.max_drawdown == pytest.approx(metrics.drawdown(r).min(), rel=1e-12)
    assert row.pct_positive == pytest.approx((r > 0).mean())
    assert row.sharpe_ci_low < row.sharpe_ratio < row.sharpe_ci_high
    assert row.days == 1000


def test_sharpe_ci_normal_case_matches_lo_formula():
    r = _returns(n=2520)
    sr, lo, hi = metrics.sharpe_ratio_ci(r)
    d = r.mean() / r.std(ddof=1)
    se_lo = math.sqrt((1 + 0.5 * d**2) / len(r)) * math.sqrt(252)
    assert (hi - lo) / 2 == pytest.approx(1.959964 * se_lo, rel=0.05)  # normal data: Mertens ~ Lo


def test_sharpe_ci_covers_true_value_in_simulation():
    true_sr = 0.0005 / 0.01 * math.sqrt(252)
    hits = sum(metrics.sharpe_ratio_ci(_returns(seed=s, n=500))[1] <= true_sr <= metrics.sharpe_ratio_ci(_returns(seed=s, n=500))[2] for s in range(200))
    assert 0.90 <= hits / 200 <= 0.99


def test_nan_returns_are_refused():
    r = _returns()
    r.iloc[10] = np.nan
    with pytest.raises(ValueError, match="returns\\['s'\\].*NaN"):
        metrics.performance_table({"s": r})
