"""Choosing the symbols an experiment trades, without look-ahead, and loading them with the cleaning
policy and (for ``universe: point_in_time``) the index membership of each day."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .clean import CleaningPolicy, CleaningReport, clean_prices
from .load import _resolve, adjust_prices, infer_frequency, read_prices, source_market_moves, trading_calendar
from .membership import UNIVERSE_MODES, align_membership, members_on, membership_mask, survivorship_coverage
from .validate import ValidationReport, validate_prices


def select_universe(prices: pd.DataFrame, n: int, as_of, lookback_days: int = 252, min_history_days: int = 252,
                    candidates=None) -> list[str]:
    """Pick the ``n`` most liquid symbols as known on ``as_of``, without look-ahead.

    Liquidity is the median daily dollar volume (raw close x volume) over the ``lookback_days``
    trading days up to and including ``as_of``; only symbols with at least ``min_history_days`` rows
    up to ``as_of`` qualify, and, when ``candidates`` is given (e.g. the index members on ``as_of``,
    :func:`kit.data.members_on`), only those. No data after ``as_of`` is read, so selecting at the
    start of the sample does not peek at which stocks later did well. (The store itself holds only
    the S&P 500 constituents of 2021, a survivorship bias that no selection rule can remove:
    :func:`kit.data.survivorship_coverage` measures it.)

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
    if candidates is not None:
        hist = hist[hist["symbol"].isin(set(candidates))]
    close = hist["close_raw"] if "close_raw" in hist.columns else hist["close"]
    hist = hist.assign(dollar_volume=close * hist["volume"])
    counts = hist.groupby("symbol").size()
    eligible = counts[counts >= min_history_days].index
    recent = hist[hist["symbol"].isin(eligible)].groupby("symbol").tail(lookback_days)
    liquidity = recent.groupby("symbol")["dollar_volume"].median().sort_values(ascending=False, kind="stable")
    if len(liquidity) < n:
        who = " index members" if candidates is not None else " symbols"
        raise ValueError(f"n={n}: only {len(liquidity)}{who} have {min_history_days} days of history by {as_of.date()}")
    return sorted(liquidity.index[:n].astype(str))


@dataclass
class UniverseData:
    """What :func:`load_universe` returns. Unpacks and indexes as the tuple ``(prices, report,
    symbols)`` (the form notebooks and the paper step used before these extras existed).

    Attributes
    ----------
    prices : adjusted tidy prices after the cleaning policy.
    report : :class:`ValidationReport` of the raw rows (before cleaning).
    symbols : sorted symbols.
    membership : ``(T, N)`` bool frame (dates of ``prices`` x ``symbols``) of index membership for
        ``universe="point_in_time"``; None for ``survivors``.
    cleaning : :class:`CleaningReport` (what the policy removed).
    universe : ``"point_in_time"`` or ``"survivors"``.
    bars_per_year : annualisation factor of the bars (252 for daily).
    """

    prices: pd.DataFrame
    report: ValidationReport
    symbols: list
    membership: pd.DataFrame | None
    cleaning: CleaningReport
    universe: str
    bars_per_year: float

    def __iter__(self):
        return iter((self.prices, self.report, self.symbols))

    def __getitem__(self, i):
        return (self.prices, self.report, self.symbols)[i]

    def __len__(self) -> int:
        return 3

    def mask_for(self, frame: pd.DataFrame) -> pd.DataFrame | None:
        """The membership mask aligned to ``frame`` (same dates and symbols; False where unknown),
        or None for ``survivors``."""
        if self.membership is None:
            return None
        return align_membership(self.membership, frame)


def load_universe(
    source=None, symbols=None, n_symbols: int = 0, universe_as_of=None, start=None, end=None, strict: bool = False,
    *, universe: str = "survivors", cleaning=None,
) -> UniverseData:
    """Load the experiment's universe: the given ``symbols`` (a list, or ``"all"`` for every symbol in
    the source), or else the ``n_symbols`` most liquid as known on ``universe_as_of``
    (:func:`select_universe`), between ``start`` and ``end``; validated, cleaned by ``cleaning`` and
    adjusted.

    Parameters
    ----------
    universe : ``"survivors"`` (the store's symbols as they are) or ``"point_in_time"``: the
        liquidity selection considers only the index members on ``universe_as_of``, and
        ``membership`` marks, for every date, which symbols were members (walk-forward and backtest
        restrict each decision date to them).
    cleaning : the cleaning policy (:meth:`kit.data.CleaningPolicy.from_param`: ``"default"``,
        ``"none"``/None, or a mapping).

    Returns
    -------
    :class:`UniverseData` (unpacks as ``prices, report, symbols``).

    Raises
    ------
    ValueError
        Neither ``symbols`` nor a positive ``n_symbols`` with ``universe_as_of``; an unknown
        ``universe`` or cleaning policy.
    DataFormatError, DataValidationError
        From reading and (strict) validation.
    """
    if universe not in UNIVERSE_MODES:
        raise ValueError(f"universe must be one of {list(UNIVERSE_MODES)}, got {universe!r}")
    policy = CleaningPolicy.from_param(cleaning)
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
        candidates = members_on(universe_as_of) if universe == "point_in_time" else None
        chosen = select_universe(raw, int(n_symbols), universe_as_of, candidates=candidates)
    raw = read_prices(source, chosen, start, end)
    path = _resolve(source)
    freq = infer_frequency(raw, str(path))
    calendar = trading_calendar(path) if path.suffix.lower() in (".parquet", ".pq") and not freq.intraday else None
    if calendar is not None:
        calendar = calendar[(calendar >= (pd.Timestamp(start) if start is not None else calendar[0]))
                            & (calendar <= (pd.Timestamp(end) if end is not None else calendar[-1]))]
    market = source_market_moves(path) if not freq.intraday else None
    report = validate_prices(raw, calendar=calendar, strict=strict, market=market, frequency=freq.name,
                             bars_per_year=freq.bars_per_year)
    cleaned, cleaning_report = clean_prices(raw, report, policy)
    prices = adjust_prices(cleaned)
    mask = None
    if universe == "point_in_time":
        dates = pd.DatetimeIndex(sorted(prices["date"].unique()))
        mask = membership_mask(dates, chosen)
    return UniverseData(prices, report, chosen, mask, cleaning_report, universe, freq.bars_per_year)


def store_coverage(dates, source=None) -> pd.DataFrame:
    """:func:`kit.data.survivorship_coverage` of a price source on each of ``dates``: how many of the
    index's members that day have prices in the source by then.

    Returns
    -------
    DataFrame indexed by date with ``members``, ``in_store``, ``coverage`` and the lists
    ``missing``, ``missing_long_standing`` and ``aliased`` (see :func:`kit.data.survivorship_coverage`).
    """
    path = _resolve(source)
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow.parquet as pq

        from .schema import canonical_columns

        mapping = canonical_columns(pq.read_schema(path).names, str(path))
        inv = {v: k for k, v in mapping.items()}
        frame = pd.read_parquet(path, columns=[inv["symbol"], inv["date"]]).rename(columns=mapping)
        frame["date"] = pd.to_datetime(frame["date"])
    else:
        frame = read_prices(path)[["symbol", "date"]]
    first = frame.groupby("symbol")["date"].min()
    rows = [survivorship_coverage(d, first.index, first) for d in pd.DatetimeIndex(dates)]
    return pd.DataFrame(rows).set_index("date")


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
