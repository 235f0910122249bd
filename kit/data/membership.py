"""Point-in-time index membership: which symbols were S&P 500 members on each day.

The membership file (``data/sp500_membership_intervals.csv``, MIT, see ``data/README.md``) has one row
per membership spell, ``ticker, start_date, end_date``; a ticker is a member on day d when
``start_date <= d < end_date`` (the day of a change belongs to the incoming ticker; an empty
``end_date`` means still a member). The file names a company by its ticker of the time in some
spells; the alias table ``data/sp500_ticker_aliases.csv`` (``ticker, symbol, start_date, end_date,
source``) credits the part of a spell of ``ticker`` that lies in ``[start_date, end_date]`` to the
store's ``symbol`` (a ticker change of the same company; each row names its source). Members whose
ticker matches no store symbol, even after the aliases, are reported as missing: they are the
companies the store lacks (mostly those that left the index before 2021: survivorship).

``universe: point_in_time`` restricts every decision date to the symbols that were members that day
(:func:`membership_mask`); ``universe: survivors`` keeps the store's symbols throughout (the store is
the 2021 index, so this trades companies chosen by their survival).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd

from ..paths import DATA_DIR
from .schema import DataFormatError

__all__ = ["membership_file", "alias_file", "load_membership", "members_on", "membership_mask", "align_membership",
           "survivorship_coverage", "UNIVERSE_MODES"]

UNIVERSE_MODES = ("point_in_time", "survivors")


def membership_file() -> Path:
    """The committed membership spells, ``data/sp500_membership_intervals.csv``."""
    return DATA_DIR / "sp500_membership_intervals.csv"


def alias_file() -> Path:
    """The committed alias table, ``data/sp500_ticker_aliases.csv``."""
    return DATA_DIR / "sp500_ticker_aliases.csv"


def _read(path: Path, columns: tuple) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise DataFormatError(f"{path}: cannot read ({exc})") from None
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataFormatError(f"{path}: missing column(s) {missing}; columns found: {', '.join(frame.columns)}")
    for col in ("start_date", "end_date"):
        parsed = pd.to_datetime(frame[col].replace("", None), format="ISO8601", errors="coerce")
        bad = parsed.isna() & (frame[col] != "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DataFormatError(f"{path}: column {col!r} row {i}: {frame[col].iloc[i]!r} is not a date (YYYY-MM-DD)")
        frame[col] = parsed.astype("datetime64[ns]")
    return frame


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, aliases: str | None) -> pd.DataFrame:
    spells = _read(Path(path), ("ticker", "start_date", "end_date"))
    spells["symbol"] = spells["ticker"]
    spells["alias_source"] = ""
    if aliases:
        table = _read(Path(aliases), ("ticker", "symbol", "start_date", "end_date", "source"))
        out = []
        for row in spells.itertuples(index=False):
            pieces = [(row.start_date, row.end_date, row.ticker, "")]
            for al in table[table["ticker"] == row.ticker].itertuples(index=False):
                lo = al.start_date if not pd.isna(al.start_date) else pd.Timestamp.min
                hi = al.end_date + pd.Timedelta(days=1) if not pd.isna(al.end_date) else pd.Timestamp.max  # exclusive
                nxt = []
                for s, e, sym, src in pieces:
                    e_ = e if not pd.isna(e) else pd.Timestamp.max
                    if sym != row.ticker or e_ <= lo or s >= hi:
                        nxt.append((s, e, sym, src))
                        continue
                    if s < lo:
                        nxt.append((s, lo, sym, src))
                    nxt.append((max(s, lo), min(e_, hi) if min(e_, hi) != pd.Timestamp.max else pd.NaT, al.symbol, al.source))
                    if e_ > hi:
                        nxt.append((hi, e, sym, src))
                pieces = nxt
            out += [{"ticker": row.ticker, "symbol": sym, "start_date": s, "end_date": e, "alias_source": src}
                    for s, e, sym, src in pieces]
        spells = pd.DataFrame(out)
    spells["start_date"] = pd.to_datetime(spells["start_date"]).astype("datetime64[ns]")
    spells["end_date"] = pd.to_datetime(spells["end_date"]).astype("datetime64[ns]")
    return spells.sort_values(["symbol", "start_date"], kind="stable").reset_index(drop=True)


def load_membership(path=None, aliases="default") -> pd.DataFrame:
    """Membership spells with the alias table applied.

    Parameters
    ----------
    path : path-like, optional
        Spells file (default :func:`membership_file`).
    aliases : path-like, ``"default"`` or None
        Alias table (default :func:`alias_file`; None applies none).

    Returns
    -------
    DataFrame with columns ``ticker`` (as in the file), ``symbol`` (the store symbol the spell is
    credited to), ``start_date``, ``end_date`` (``datetime64[ns]``, NaT = open; member when
    ``start_date <= d < end_date``) and ``alias_source`` (empty unless an alias applied).

    Raises
    ------
    DataFormatError
        A missing or unreadable file, a missing column or an unparseable date (named).
    """
    p = Path(path) if path is not None else membership_file()
    a = alias_file() if aliases == "default" else (Path(aliases) if aliases is not None else None)
    return _load_cached(str(p), str(a) if a is not None else None).copy()


def members_on(date, membership: pd.DataFrame | None = None) -> list[str]:
    """Sorted symbols (after aliases) that were members on ``date``."""
    m = load_membership() if membership is None else membership
    d = pd.Timestamp(date)
    on = (m["start_date"] <= d) & (m["end_date"].isna() | (d < m["end_date"]))
    return sorted(set(m.loc[on, "symbol"]))


def align_membership(membership, frame: pd.DataFrame) -> pd.DataFrame:
    """A ``(T, N)`` membership mask (bool, or anything ``DataFrame`` accepts) on ``frame``'s dates and
    symbols: bool, False wherever the mask does not cover (a date or symbol it lacks, a missing
    cell). The one alignment every layer that trades, trains or scores on members uses."""
    m = pd.DataFrame(membership).reindex(index=frame.index, columns=frame.columns, fill_value=False)
    return m.fillna(False).astype(bool)


def membership_mask(dates, symbols, membership: pd.DataFrame | None = None) -> pd.DataFrame:
    """``(T, N)`` bool frame: True where ``symbols[j]`` was an index member on ``dates[t]``.

    Parameters
    ----------
    dates : DatetimeIndex (T,) of decision dates; symbols : sequence of N store symbols.
    membership : spells from :func:`load_membership` (default: the committed file with its aliases).

    Returns
    -------
    DataFrame (T, N) of bool, index ``dates``, columns ``symbols``. A symbol with no spell is False
    throughout.
    """
    m = load_membership() if membership is None else membership
    idx = pd.DatetimeIndex(dates)
    cols = [str(s) for s in symbols]
    out = np.zeros((len(idx), len(cols)), dtype=bool)
    d = idx.to_numpy()
    pos = {s: j for j, s in enumerate(cols)}
    for row in m[m["symbol"].isin(pos)].itertuples(index=False):
        end = row.end_date.to_datetime64() if not pd.isna(row.end_date) else np.datetime64("2262-01-01")
        out[:, pos[row.symbol]] |= (d >= row.start_date.to_datetime64()) & (d < end)
    return pd.DataFrame(out, index=idx, columns=pd.Index(cols, name="symbol"))


def survivorship_coverage(date, store_symbols, store_first_dates: pd.Series | None = None,
                          membership: pd.DataFrame | None = None) -> dict:
    """How much of the index on ``date`` the store covers.

    Parameters
    ----------
    date : the first day of a backtest window.
    store_symbols : the store's symbols.
    store_first_dates : optional Series symbol -> first date with prices; a member whose prices
        start after ``date`` counts as missing on that day.

    Returns
    -------
    dict with ``date``, ``members`` (count), ``in_store`` (members with prices on ``date``),
    ``coverage`` (fraction), ``missing`` (sorted tickers of members without prices; the kit has no
    market capitalisations, so these are all the missing members, not only the largest),
    ``missing_long_standing`` (the missing members that had been in the index for at least 5 years
    by ``date``, a rough pointer to established large companies; the file starts in 1996) and ``aliased`` (members matched
    only through the alias table, ``ticker -> symbol``).
    """
    m = load_membership() if membership is None else membership
    d = pd.Timestamp(date)
    on = m[(m["start_date"] <= d) & (m["end_date"].isna() | (d < m["end_date"]))]
    store = {str(s) for s in store_symbols}
    if store_first_dates is not None:
        first = pd.Series(store_first_dates)
        store = {s for s in store if s in first.index and pd.Timestamp(first[s]) <= d}
    members = sorted(set(on["symbol"]))
    have = [s for s in members if s in store]
    missing = [s for s in members if s not in store]
    since = m[m["symbol"].isin(missing)].groupby("symbol")["start_date"].min()
    long_standing = sorted(s for s in missing if since.get(s, d) <= d - pd.DateOffset(years=5))
    aliased = {r.ticker: r.symbol for r in on.itertuples(index=False) if r.alias_source and r.symbol in store}
    return {
        "date": d.date().isoformat(), "members": len(members), "in_store": len(have),
        "coverage": len(have) / len(members) if members else float("nan"),
        "missing": missing, "missing_long_standing": long_standing, "aliased": aliased,
    }
