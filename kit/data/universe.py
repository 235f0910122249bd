"""Choosing the symbols an experiment trades, without look-ahead."""

from __future__ import annotations

import pandas as pd

from .load import load_prices, read_prices
from .validate import ValidationReport


def select_universe(prices: pd.DataFrame, n: int, as_of, lookback_days: int = 252, min_history_days: int = 252) -> list[str]:
    """Pick the ``n`` most liquid symbols as known on ``as_of``, without look-ahead.

    Liquidity is the median daily dollar volume (raw close x volume) over the ``lookback_days``
    trading days up to and including ``as_of``; only symbols with at least ``min_history_days`` rows
    up to ``as_of`` qualify. No data after ``as_of`` is read, so selecting at the start of the
    sample does not peek at which stocks later did well. (The store itself holds only the S&P 500
    constituents of 2021, a survivorship bias that no selection rule can remove.)

    Returns
    -------
    list of str, sorted alphabetically.

    Raises
    ------
    ValueError
        Fewer than ``n`` symbols qualify (field ``n``).
    """
    as_of = pd.Timestamp(as_of)
    hist = prices[prices["date"] <= as_of]
    close = hist["close_raw"] if "close_raw" in hist.columns else hist["close"]
    hist = hist.assign(dollar_volume=close * hist["volume"])
    counts = hist.groupby("symbol").size()
    eligible = counts[counts >= min_history_days].index
    recent = hist[hist["symbol"].isin(eligible)].groupby("symbol").tail(lookback_days)
    liquidity = recent.groupby("symbol")["dollar_volume"].median().sort_values(ascending=False, kind="stable")
    if len(liquidity) < n:
        raise ValueError(f"n={n}: only {len(liquidity)} symbols have {min_history_days} days of history by {as_of.date()}")
    return sorted(liquidity.index[:n].astype(str))



def load_universe(
    source=None, symbols=None, n_symbols: int = 0, universe_as_of=None, start=None, end=None, strict: bool = False
) -> tuple[pd.DataFrame, ValidationReport, list[str]]:
    """Load the experiment's universe: the given ``symbols`` (a list, or ``"all"`` for every symbol in
    the source), or else the ``n_symbols`` most liquid as known on ``universe_as_of``
    (:func:`select_universe`), between ``start`` and ``end``.

    Returns
    -------
    (prices, report, symbols): adjusted tidy prices, the validation report of those rows, and the
    sorted symbol list.

    Raises
    ------
    ValueError
        Neither ``symbols`` nor a positive ``n_symbols`` with ``universe_as_of`` is given.
    """
    if isinstance(symbols, str) and symbols.lower() == "all":
        chosen = sorted(read_prices(source, end=end)["symbol"].unique().astype(str))
    elif symbols:
        if isinstance(symbols, str):
            raise ValueError(f"symbols must be a list of tickers or 'all', got {symbols!r}")
        chosen = sorted(str(s) for s in symbols)
    else:
        if not n_symbols or n_symbols < 1 or universe_as_of is None:
            raise ValueError(f"give symbols, or n_symbols >= 1 with universe_as_of (got n_symbols={n_symbols!r}, universe_as_of={universe_as_of!r})")
        raw = read_prices(source, end=universe_as_of)
        chosen = select_universe(raw, int(n_symbols), universe_as_of)
    prices, report = load_prices(source, chosen, start, end, strict=strict)
    return prices, report, chosen



def universe_summary(prices: pd.DataFrame) -> pd.DataFrame:
    """One row per symbol: ``first_date``, ``last_date``, ``days`` (rows) and
    ``median_dollar_volume`` (raw close x shares, USD), sorted by symbol."""
    close = prices["close_raw"] if "close_raw" in prices.columns else prices["close"]
    frame = prices.assign(dollar_volume=close * prices["volume"])
    grouped = frame.groupby("symbol")
    return pd.DataFrame(
        {
            "first_date": grouped["date"].min().dt.date,
            "last_date": grouped["date"].max().dt.date,
            "days": grouped.size(),
            "median_dollar_volume": grouped["dollar_volume"].median().round(0),
        }
    )

