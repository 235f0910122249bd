"""Wilder's RSI and ATR as published (first average = simple mean of the first n values, then
``avg_t = (avg_{t-1} (n - 1) + x_t) / n``), checked against StockCharts' worked example.

Source of the table: StockCharts ChartSchool, "Relative Strength Index (RSI)", worked example
spreadsheet (cs-rsi.xls; the same series Wilder's book works through): 14-day RSI of these closes.
The page's RSI column (entered below) is computed from averages that its spreadsheet rounds, so it
differs from the exact recursion by up to 0.07; the test checks the kit against the exact recursion
on the page's inputs to 1e-9 (rational arithmetic, written out here) and against the page's
published column to its rounding (0.1).
"""

from fractions import Fraction

import numpy as np
import pandas as pd
import pytest

from kit.features import kernels as K
from kit.features import sets

# StockCharts' example closes (rows 1-21 of the table) and its published 14-day RSI (rows 15-21)
CLOSES = [44.34, 44.09, 44.15, 43.61, 44.33, 44.83, 45.10, 45.42, 45.84, 46.08, 45.89, 46.03, 45.61, 46.28,
          46.28, 46.00, 46.03, 46.41, 46.22, 45.64, 46.21]
PUBLISHED_RSI = [70.53, 66.32, 66.55, 69.41, 66.36, 57.97, 62.93]


def exact_rsi(closes, n):
    """Wilder's RSI in rational arithmetic (the definition, written out)."""
    x = [Fraction(str(c)) for c in closes]
    d = [b - a for a, b in zip(x, x[1:], strict=False)]
    gains = [max(v, 0) for v in d]
    losses = [max(-v, 0) for v in d]
    ag, al = sum(gains[:n]) / n, sum(losses[:n]) / n
    out = [None] * n
    for i in range(n, len(x)):
        if i > n:
            ag = (ag * (n - 1) + gains[i - 1]) / n
            al = (al * (n - 1) + losses[i - 1]) / n
        out.append(100 - 100 / (1 + ag / al))
    return out


def test_rsi_matches_the_stockcharts_table():
    got = K.rsi_wilder(np.array(CLOSES), 14)
    assert np.isnan(got[:14]).all()
    want = exact_rsi(CLOSES, 14)
    np.testing.assert_allclose(got[14:], [float(w) for w in want[14:]], rtol=0, atol=1e-9)
    assert float(want[14]) == pytest.approx(100 - 100 / (1 + 3.34 / 1.40), abs=1e-12)  # first RS = 3.34 / 1.40
    np.testing.assert_allclose(got[14:], PUBLISHED_RSI, atol=0.1)  # the page's rounded column
    # the first-value-seeded variant (ldtm's) differs at the start
    assert abs(K.rsi_ewm(np.array(CLOSES), 14)[14] - got[14]) > 1.0


def exact_atr(h, lo, c, n):
    H, L, C = ([Fraction(str(v)) for v in a] for a in (h, lo, c))
    tr = [H[0] - L[0]] + [max(H[i] - L[i], abs(H[i] - C[i - 1]), abs(L[i] - C[i - 1])) for i in range(1, len(C))]
    out = [None] * (n - 1)
    a = sum(tr[:n]) / n
    out.append(a)
    for i in range(n, len(tr)):
        a = (a * (n - 1) + tr[i]) / n
        out.append(a)
    return out


def test_atr_first_value_is_the_mean_then_wilder_recursion():
    rng = np.random.default_rng(1)
    c = np.round(50 + np.cumsum(rng.normal(0, 1, 40)), 2)
    h = np.round(c + rng.uniform(0.1, 1.5, 40), 2)
    lo = np.round(c - rng.uniform(0.1, 1.5, 40), 2)
    got = K.atr_wilder(h, lo, c, 14)
    want = exact_atr(h, lo, c, 14)
    assert np.isnan(got[:13]).all()
    np.testing.assert_allclose(got[13:], [float(w) for w in want[13:]], rtol=0, atol=1e-9)
    # a small case by hand: TR = 2, 3, 2, 4; ATR_2 = 7/3, ATR_3 = (7/3 * 2 + 4) / 3 = 26/9
    small = K.atr_wilder(np.array([10.0, 12, 13, 14]), np.array([8.0, 9, 11, 10]), np.array([9.0, 11, 12, 13]), 3)
    np.testing.assert_allclose(small[2:], [7 / 3, 26 / 9], atol=1e-12)


def test_gaps_leave_the_averages_unchanged_and_columns_are_independent():
    x = np.array(CLOSES + [np.nan] + CLOSES[:5])
    got = K.rsi_wilder(np.stack([x, x[::-1]], axis=1), 14)
    assert np.isnan(got[21, 0]) and np.isnan(got[22, 0]) and np.isfinite(got[23, 0])  # the NaN price and the change across it
    one = K.rsi_wilder(x, 14)
    np.testing.assert_array_equal(got[:, 0], one)
    # after the gap the recursion continues from the averages before it
    want = exact_rsi(CLOSES, 14)[-1]
    ag_al = float(want)  # RSI on row 20, before the gap
    assert one[20] == pytest.approx(ag_al, abs=1e-9)


def test_feature_sets_say_which_rsi_they_use():
    assert "rsi_ewm" in sets.__doc__ and "rsi_wilder" in sets.__doc__
    close = pd.DataFrame({"A": CLOSES * 3})
    frames = {f: close for f in ("open", "high", "low", "close", "volume")}
    ldtm = sets.feature_set("ldtm", frames).to_dict()["rsi_14"] if "rsi_14" in sets.FEATURE_SETS["ldtm"].names else None
    col = ldtm if ldtm is not None else pd.DataFrame(sets.feature_set("ldtm", frames).values[:, :, 7])
    np.testing.assert_allclose(col.to_numpy()[:, 0], K.rsi_ewm(close.to_numpy(), 14)[:, 0], equal_nan=True)
