"""Prediction audit ledger: snapshot predictions, fill back the outcomes, a rolling leaderboard, and a
hash chain that shows any edited, inserted or deleted row.

The snapshot/fillback design of seed 003 ("LDTM"): a prediction is written before its outcome is
known and is never changed afterwards; the outcome is filled in later from the prices, in one
batch, by :func:`fillback`.

Rows
----
``ledger_snapshots``: one row per ``(model, symbol, run_date)`` (the model is a registry id, so a
model version): the close at ``run_date``, the predicted ``direction`` (-1, 0 or 1), the
``position`` in [-1, 1], ``recorded_at``, and ``seq``/``prev_hash``/``hash`` of the chain.
``ledger_forecasts``: one row per snapshot and horizon (1, 5 and 21 trading days by default) with
the ``forecast`` simple return over the horizon (NULL for a position model without price forecasts;
never NaN; the median for a quantile forecaster), ``forecast_q10`` and ``forecast_q90`` (the 10 %
and 90 % quantiles of that return, from a quantile forecaster such as a foundation model; NULL
otherwise), and the fill columns ``target_date``, ``actual_close``, ``actual_return``,
``pct_error``, ``direction_correct``, ``filled_at``, ``fill_hash``.

Outcomes (filled by :func:`fillback`)
-------------------------------------
``target_date`` is the ``h``-th trading day after ``run_date`` on the calendar of the prices given
to :func:`fillback`. With ``c`` those prices, ``actual_return = c[target] / c[run_date] - 1`` and
``actual_close = close * (1 + actual_return)`` (on the snapshot's price basis: equal to
``c[target]`` when the same series is used, and unaffected if the series is later re-adjusted for a
dividend). With a forecast ``f``, the predicted price is ``close (1 + f)`` and
``pct_error = (predicted - actual_close) / actual_close``; the absolute value is the absolute
percentage error of seed 003. The direction called for a horizon is ``sign(f)`` when there is a
forecast, else the snapshot's ``direction``; ``direction_correct`` is NULL for a call of 0 and
otherwise ``call * actual_return > 0`` (a zero return is a miss). The strategy return on the
leaderboard is ``position * actual_return`` at horizon 1.

Tamper evidence
---------------
Rows are chained in insertion order by ``seq`` (1, 2, ... assigned under the writers' lock):
``hash = HMAC-SHA256(key, prev_hash + canonical_json(row))`` where the canonical JSON (sorted keys, no
spaces, floats in Python's shortest round-trip form) holds ``seq, model_id, symbol, run_date, close,
direction, position, recorded_at`` and one ``[horizon, forecast]`` pair per horizon, or
``[horizon, forecast, forecast_q10, forecast_q90]`` when the row has quantiles (so the quantiles are
bound into the chain, and rows without them, among them every row written before schema version 5,
hash exactly as before); the first row's
``prev_hash`` is 64 zeros. Each filled outcome carries ``fill_hash = HMAC-SHA256(key, snapshot hash +
canonical_json(fill columns))``, binding the outcome to its prediction. ``ledger_head`` holds the
last ``seq`` and hash (and the ``scheme``), updated in the same transaction. After every write the
kit appends the head (``seq``, ``hash``, the number of filled outcomes) to an append-only **anchor
file** outside the database.

The key (:func:`ledger_key`) comes from ``$KIT_LEDGER_KEY``, or the file ``$KIT_LEDGER_KEY_FILE``,
else a 32-byte key file created beside the database (``<db file>.ledger-key``, mode 0600) when the
ledger is created. The anchor file (:func:`anchor_path`) is ``$KIT_LEDGER_ANCHOR`` or
``<db file>.ledger-anchors``. :func:`verify` recomputes every hash with the key and checks the
anchors. What it detects, when the key and the anchor file are NOT in the attacker's hands:

* an edited row or forecast, also when re-chained with plain sha256 or with a guessed key (``edited``);
* a forged row inserted or appended (``edited``, ``broken_link``, ``head``);
* deleted rows in the middle (``missing``) or at the end, also when the head record is repointed to
  the new last row (``truncated``: the anchor file records a later head);
* a filled outcome edited (``edited_fill``) or removed (``fills_removed``: the anchor file records
  more fills);
* a rewritten history whose hashes no longer match the anchors (``anchor_mismatch``).

What it cannot detect: changes by someone who holds the key *and* can rewrite the anchor file (or
who runs the kit's own code against the database, which writes through the same key and anchors);
rows written after the last anchor line and then removed while the head is repointed (a crash
between commit and the anchor append leaves the anchor one write behind). Keep the key in a secret
store (``KIT_LEDGER_KEY``) and the anchor file on storage the database's users cannot rewrite, and
each run's report records the head too. Ledgers created before schema version 3 keep the unkeyed
``sha256`` scheme (``ledger_head.scheme``), which detects only changes made without recomputing.

Concurrency and crashes: every call that writes is one transaction opened by
:func:`kit.store.engine.write_tx` (serialised: SQLite ``BEGIN IMMEDIATE``, PostgreSQL advisory lock), and all
validation happens before anything is written, so a refused or killed call leaves nothing behind.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import math
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..base.faults import fault_point
from . import registry as kreg
from . import schema as S
from .engine import get_engine, read_tx, utc_now, write_tx

__all__ = [
    "HORIZONS",
    "GENESIS_HASH",
    "LedgerError",
    "DuplicateSnapshotError",
    "UnknownSymbolError",
    "FutureRunDateError",
    "NaNPredictionError",
    "InvalidPredictionError",
    "UnknownModelError",
    "TamperedLedgerError",
    "snapshot",
    "predictions_frame",
    "fillback",
    "FillbackResult",
    "outcomes",
    "snapshots",
    "rolling_accuracy",
    "leaderboard",
    "verify",
    "VerifyReport",
]

HORIZONS = (1, 5, 21)
GENESIS_HASH = "0" * 64




class LedgerError(Exception):
    """Base class of the ledger's errors. A call that raises one has written nothing."""


class DuplicateSnapshotError(LedgerError):
    """A ``(model, symbol, run_date)`` is in the ledger already (or twice in one call); snapshots are
    never overwritten."""


class UnknownSymbolError(LedgerError, ValueError):
    """A prediction's symbol is not a column of the prices."""


class FutureRunDateError(LedgerError, ValueError):
    """A run date after the last date of the prices: its close is not known."""


class NaNPredictionError(LedgerError, ValueError):
    """A position, direction or forecast is NaN or infinite."""


class InvalidPredictionError(LedgerError, ValueError):
    """A malformed prediction: unknown or missing column, value out of range, a run date that is not
    a trading day of the prices, no close price at the run date."""


class UnknownModelError(LedgerError, kreg.UnknownModelError):
    """The model id is not in the registry."""


class TamperedLedgerError(LedgerError):
    """The ledger's head does not match its rows; writing is refused until :func:`verify` is clean."""


# ------------------------------------------------------------------------------------------------
# hashing
# ------------------------------------------------------------------------------------------------


def _f(x):
    """A float for hashing and storage (-0.0 -> 0.0), or None."""
    return None if x is None else float(x) + 0.0


_ENCODE = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False).encode


def _iso_day(x) -> str:
    """A date as ``YYYY-MM-DD`` (a ``datetime.date`` directly; anything else through pandas)."""
    if type(x) is dt.date:
        return x.isoformat()
    return pd.Timestamp(x).date().isoformat()


def _canonical_forecast(item) -> list:
    """``[h, forecast]``, or ``[h, forecast, q10, q90]`` when either quantile is recorded."""
    h, v = item[0], item[1]
    q10, q90 = (item[2], item[3]) if len(item) > 2 else (None, None)
    if q10 is None and q90 is None:
        return [int(h), _f(v)]
    return [int(h), _f(v), _f(q10), _f(q90)]


def _canonical_snapshot(seq, model_id, symbol, run_date, close, direction, position, recorded_at, forecasts) -> str:
    """The hashed text of one snapshot; ``forecasts`` holds ``(horizon, forecast)`` or ``(horizon,
    forecast, q10, q90)`` tuples."""
    d = {
        "seq": int(seq), "model_id": int(model_id), "symbol": str(symbol), "run_date": _iso_day(run_date),
        "close": _f(close), "direction": int(direction), "position": _f(position), "recorded_at": str(recorded_at),
        "forecasts": [_canonical_forecast(x) for x in sorted(forecasts, key=lambda x: int(x[0]))],
    }
    return _ENCODE(d)


def _opt(v):
    """A value of a prediction column: None for None or NaN, else a float."""
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _canonical_fill(horizon, target_date, actual_close, actual_return, pct_error, direction_correct, filled_at) -> str:
    d = {
        "horizon": int(horizon), "target_date": _iso_day(target_date), "actual_close": _f(actual_close),
        "actual_return": _f(actual_return), "pct_error": _f(pct_error),
        "direction_correct": None if direction_correct is None else bool(direction_correct), "filled_at": str(filled_at),
    }
    return _ENCODE(d)


def _sha(prev: str, text: str, key: bytes | None = None) -> str:
    """The chain digest: ``HMAC-SHA256(key, prev + text)``, or plain ``sha256(prev + text)`` for the
    legacy unkeyed scheme (``key=None``)."""
    if key is None:
        return hashlib.sha256((prev + text).encode()).hexdigest()
    return hmac.digest(key, (prev + text).encode(), "sha256").hex()


SCHEME_KEYED, SCHEME_LEGACY = "hmac-sha256", "sha256"


def _beside_db(engine, suffix: str) -> Path:
    if engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:"):
        return Path(f"{engine.url.database}{suffix}")
    from ..paths import state_dir

    tag = hashlib.sha256(engine.url.render_as_string(hide_password=True).encode()).hexdigest()[:12]
    return state_dir() / f"ledger-{tag}{suffix}"


def key_path(engine) -> Path:
    """Where the ledger's key file is: ``$KIT_LEDGER_KEY_FILE`` or ``<db file>.ledger-key``."""
    env = os.environ.get("KIT_LEDGER_KEY_FILE", "").strip()
    return Path(env) if env else _beside_db(engine, ".ledger-key")


def anchor_path(engine) -> Path:
    """Where the anchor file is: ``$KIT_LEDGER_ANCHOR`` or ``<db file>.ledger-anchors``."""
    env = os.environ.get("KIT_LEDGER_ANCHOR", "").strip()
    return Path(env) if env else _beside_db(engine, ".ledger-anchors")


def ledger_key(engine, create: bool = False) -> bytes | None:
    """The ledger's HMAC key: ``$KIT_LEDGER_KEY`` (at least 16 characters), else the key file
    (:func:`key_path`), created with 32 random bytes (mode 0600) when ``create`` and absent.
    ``None`` when there is none.

    Raises
    ------
    ValueError
        ``$KIT_LEDGER_KEY`` shorter than 16 characters, or an empty key file.
    """
    env = os.environ.get("KIT_LEDGER_KEY")
    if env is not None and env != "":
        if len(env) < 16:
            raise ValueError("KIT_LEDGER_KEY must be at least 16 characters")
        return env.encode()
    path = key_path(engine)
    if not path.exists():
        if not create:
            return None
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            return ledger_key(engine)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    key = path.read_bytes().strip()
    if not key:
        raise ValueError(f"ledger key file {str(path)!r} is empty")
    return key


def _anchor(engine, conn) -> dict:
    """The head as it stands inside the open transaction, for the anchor file."""
    head = conn.execute(sa.select(S.ledger_head)).mappings().first()
    n_filled = conn.execute(sa.select(sa.func.count()).where(S.ledger_forecasts.c.filled_at.is_not(None))).scalar()
    return {"seq": int(head["last_seq"]) if head else 0, "hash": head["last_hash"] if head else GENESIS_HASH, "n_filled": int(n_filled or 0)}


def _append_anchor(engine, anchor: dict) -> None:
    """Append one head to the anchor file (after the commit; O_APPEND, fsync)."""
    path = anchor_path(engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps({**anchor, "at": utc_now()}, sort_keys=True) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line.encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def _scheme_key(engine, conn, create: bool = False) -> tuple[str, bytes | None]:
    """(scheme, key) of the ledger: a new ledger is keyed; a legacy one stays unkeyed.

    Raises
    ------
    TamperedLedgerError
        A keyed ledger whose key cannot be found (the message says where it was looked for).
    """
    head = conn.execute(sa.select(S.ledger_head)).mappings().first()
    scheme = head["scheme"] if head is not None else SCHEME_KEYED
    if scheme == SCHEME_LEGACY:
        return scheme, None
    key = ledger_key(engine, create=create and head is None)
    if key is None and head is not None:
        raise TamperedLedgerError(
            f"the ledger is keyed (HMAC) but no key was found: set KIT_LEDGER_KEY or KIT_LEDGER_KEY_FILE, or restore {str(key_path(engine))!r}"
        )
    return scheme, key


# ------------------------------------------------------------------------------------------------
# snapshot
# ------------------------------------------------------------------------------------------------


def _check_prices(close: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(close, pd.DataFrame) or close.empty:
        raise TypeError(f"close must be a non-empty (T, N) DataFrame of prices, got {type(close).__name__}")
    idx = pd.DatetimeIndex(close.index)
    if not idx.is_monotonic_increasing or idx.has_duplicates:
        raise ValueError("close.index must be strictly increasing trading dates")
    out = close.copy()
    out.index = idx.normalize()
    out.columns = [str(c) for c in out.columns]
    return out


def _prepare(predictions: pd.DataFrame, close: pd.DataFrame, horizons) -> pd.DataFrame:
    if not isinstance(predictions, pd.DataFrame):
        raise InvalidPredictionError(f"predictions must be a DataFrame, got {type(predictions).__name__}")
    if predictions.empty:
        raise InvalidPredictionError("predictions is empty")
    horizons = tuple(int(h) for h in horizons)
    if not horizons or any(h < 1 for h in horizons) or len(set(horizons)) != len(horizons):
        raise ValueError(f"horizons must be distinct positive integers, got {horizons}")
    fcols = [f"forecast_{h}" for h in horizons]
    qcols = [f"forecast_{q}_{h}" for h in horizons for q in ("q10", "q90")]
    allowed = {"symbol", "run_date", "position", "direction", *fcols, *qcols}
    unknown = [c for c in predictions.columns if c not in allowed]
    if unknown:
        raise InvalidPredictionError(f"unknown prediction column(s) {unknown}; allowed: {sorted(allowed)}")
    for col in ("symbol", "run_date"):
        if col not in predictions.columns:
            raise InvalidPredictionError(f"predictions needs a {col!r} column")
    if not {"position", "direction"} & set(predictions.columns) and not set(fcols) & set(predictions.columns):
        raise InvalidPredictionError("predictions needs a 'position', 'direction' or forecast column")
    p = predictions.reset_index(drop=True).copy()
    if p["symbol"].isna().any():
        raise InvalidPredictionError(f"symbol is missing in row {int(np.flatnonzero(p['symbol'].isna())[0])}")
    p["symbol"] = p["symbol"].astype(str)
    try:
        p["run_date"] = pd.to_datetime(p["run_date"], format="ISO8601").dt.normalize().astype("datetime64[ns]")
    except (ValueError, TypeError) as exc:
        raise InvalidPredictionError(f"run_date has a value that is not a date: {exc}") from exc
    if p["run_date"].isna().any():
        raise InvalidPredictionError(f"run_date is missing in row {int(np.flatnonzero(p['run_date'].isna())[0])}")
    dup = p.duplicated(["symbol", "run_date"], keep=False)
    if dup.any():
        r = p[dup].iloc[0]
        raise DuplicateSnapshotError(f"symbol={r['symbol']!r} run_date={r['run_date'].date()} appears {int(dup.sum())} times in one call")

    def numeric(col):
        try:
            return pd.to_numeric(p[col], errors="raise").astype("float64").to_numpy()
        except (ValueError, TypeError) as exc:
            raise InvalidPredictionError(f"{col} must be numeric: {exc}") from exc

    def where(i):
        return f"symbol={p['symbol'].iloc[i]!r} run_date={p['run_date'].iloc[i].date()}"

    present = [c for c in fcols if c in p.columns]
    qpresent = [c for c in qcols if c in p.columns]
    for h in horizons:
        have = [q for q in ("q10", "q90") if f"forecast_{q}_{h}" in p.columns]
        if have and len(have) != 2:
            raise InvalidPredictionError(f"forecast_{have[0]}_{h} given without forecast_{'q90' if have[0] == 'q10' else 'q10'}_{h}: give both quantiles")
        if have and f"forecast_{h}" not in p.columns:
            raise InvalidPredictionError(f"quantiles of horizon {h} given without forecast_{h} (the median)")
    for col in [c for c in ("position", "direction", *present, *qpresent) if c in p.columns]:
        v = numeric(col)
        bad = ~np.isfinite(v)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise NaNPredictionError(f"{col} is {float(v[i])} at {where(i)} ({int(bad.sum())} non-finite value(s)); nothing written")
        p[col] = v
    if "position" in p:
        bad = np.abs(p["position"].to_numpy()) > 1.0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidPredictionError(f"position must be in [-1, 1], got {float(p['position'].iloc[i])} at {where(i)}")
    if "direction" in p:
        bad = ~np.isin(p["direction"].to_numpy(), (-1.0, 0.0, 1.0))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidPredictionError(f"direction must be -1, 0 or 1, got {float(p['direction'].iloc[i]):g} at {where(i)}")
    for col in [*present, *qpresent]:
        bad = p[col].to_numpy() <= -1.0
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InvalidPredictionError(f"{col} must be a simple return > -1, got {float(p[col].iloc[i])} at {where(i)}")
    for h in horizons:
        if f"forecast_q10_{h}" in p.columns:
            lo, mid, hi = (p[c].to_numpy() for c in (f"forecast_q10_{h}", f"forecast_{h}", f"forecast_q90_{h}"))
            bad = (lo > mid) | (mid > hi)
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise InvalidPredictionError(
                    f"quantiles of horizon {h} must satisfy forecast_q10_{h} <= forecast_{h} <= forecast_q90_{h}, "
                    f"got {lo[i]}, {mid[i]}, {hi[i]} at {where(i)}"
                )
    # against the prices
    unknown_syms = sorted(set(p["symbol"]) - set(close.columns))
    if unknown_syms:
        raise UnknownSymbolError(f"symbol(s) {unknown_syms[:10]} not in the prices ({len(unknown_syms)} unknown); nothing written")
    last = close.index[-1]
    late = p["run_date"] > last
    if late.any():
        i = int(np.flatnonzero(late)[0])
        raise FutureRunDateError(f"run_date {p['run_date'].iloc[i].date()} is after the prices' last date {last.date()} ({where(i)}); nothing written")
    pos = close.index.get_indexer(p["run_date"])
    off = pos < 0
    if off.any():
        i = int(np.flatnonzero(off)[0])
        raise InvalidPredictionError(f"run_date {p['run_date'].iloc[i].date()} is not a trading day of the prices ({where(i)})")
    col = close.columns.get_indexer(p["symbol"])
    c = close.to_numpy(dtype="float64")[pos, col]
    bad = ~(np.isfinite(c) & (c > 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise InvalidPredictionError(f"no positive close at {where(i)} (got {float(c[i])}); nothing written")
    p["close"] = c
    if "direction" not in p:
        src = p["forecast_1"] if "forecast_1" in p else (p["position"] if "position" in p else p[present[0]])
        p["direction"] = np.sign(src.to_numpy())
    if "position" not in p:
        p["position"] = p["direction"].astype("float64")
    p["direction"] = p["direction"].astype(int)
    for col in [*fcols, *qcols]:
        if col not in p:
            p[col] = None
    return p


def predictions_frame(positions: pd.DataFrame | None = None, forecasts: dict | None = None, *, quantile_forecasts: dict | None = None,
                      last: int | None = None) -> pd.DataFrame:
    """Tidy predictions for :func:`snapshot` from wide ``(T, N)`` frames.

    Parameters
    ----------
    positions : (T, N) DataFrame of positions in [-1, 1] (index: run dates; columns: symbols).
    forecasts : mapping horizon -> (T, N) DataFrame of forecast simple returns (same labels); for a
        quantile forecaster, the median.
    quantile_forecasts : mapping quantile level -> {horizon -> (T, N) DataFrame} from a quantile
        forecaster (e.g. :attr:`kit.training.FoundationWalkForwardResult.quantile_forecasts`): levels
        0.1 and 0.9 become ``forecast_q10_{h}`` and ``forecast_q90_{h}``; level 0.5 is the median,
        used as ``forecasts`` when those are not given (and must equal them when they are).
    last : keep only the last ``last`` dates.

    Returns
    -------
    DataFrame ``symbol, run_date, [position,] [forecast_{h} ...] [forecast_q10_{h}, forecast_q90_{h}
    ...]``, one row per (date, symbol) where every given value is known: a date on which the model
    had no prediction for a symbol (NaN, e.g. before its features warm up) is not a prediction and is
    left out.

    Raises
    ------
    ValueError
        Nothing given, frames whose labels differ, quantile levels other than 0.1, 0.5 and 0.9,
        quantiles of a horizon without its median or with only one of 0.1 and 0.9, or a median that
        differs from ``forecasts``.
    """
    frames = {}
    if positions is not None:
        frames["position"] = positions
    qf = {float(q): {int(h): f for h, f in d.items()} for q, d in (quantile_forecasts or {}).items()}
    unknown = sorted(set(qf) - {0.1, 0.5, 0.9})
    if unknown:
        raise ValueError(f"quantile_forecasts levels must be among 0.1, 0.5 and 0.9, got {unknown}")
    if forecasts is None and 0.5 in qf:
        forecasts = qf[0.5]
    elif forecasts is not None and 0.5 in qf:
        for h, f in qf[0.5].items():
            if h not in forecasts or not f.equals(forecasts[h]):
                raise ValueError(f"quantile_forecasts[0.5][{h}] is not forecasts[{h}]: give the median once")
    forecasts = {int(h): f for h, f in (forecasts or {}).items()}
    for h, f in sorted(forecasts.items()):
        frames[f"forecast_{h}"] = f
    hq = sorted(set(qf.get(0.1, {})) | set(qf.get(0.9, {})))
    for h in hq:
        if h not in qf.get(0.1, {}) or h not in qf.get(0.9, {}):
            raise ValueError(f"quantile_forecasts of horizon {h}: give both 0.1 and 0.9")
        if h not in forecasts:
            raise ValueError(f"quantile_forecasts of horizon {h} without its median (forecasts[{h}] or quantile_forecasts[0.5][{h}])")
        frames[f"forecast_q10_{h}"] = qf[0.1][h]
        frames[f"forecast_q90_{h}"] = qf[0.9][h]
    if not frames:
        raise ValueError("give positions and/or forecasts")
    ref = next(iter(frames.values()))
    for name, f in frames.items():
        if not (f.index.equals(ref.index) and f.columns.equals(ref.columns)):
            raise ValueError(f"{name} has other dates or symbols than {next(iter(frames))}")
    if last is not None:
        frames = {k: v.iloc[-int(last):] for k, v in frames.items()}
    long = pd.concat({k: v.rename_axis(index="run_date", columns="symbol").stack() for k, v in frames.items()}, axis=1)
    long = long.dropna().reset_index()
    return long[["symbol", "run_date", *frames]].sort_values(["run_date", "symbol"]).reset_index(drop=True)


def _head(conn) -> tuple[int, str]:
    head = conn.execute(sa.select(S.ledger_head)).mappings().first()
    last = conn.execute(sa.select(sa.func.max(S.ledger_snapshots.c.seq))).scalar()
    if head is None:
        if last is not None:
            raise TamperedLedgerError(f"ledger has rows up to seq {last} but no head record; run kit.store.ledger.verify()")
        return 0, GENESIS_HASH
    last_hash = conn.execute(sa.select(S.ledger_snapshots.c.hash).where(S.ledger_snapshots.c.seq == head["last_seq"])).scalar()
    if (last or 0) != head["last_seq"] or last_hash != head["last_hash"]:
        raise TamperedLedgerError(f"ledger head (seq {head['last_seq']}) does not match its rows (last seq {last}); run kit.store.ledger.verify()")
    return int(head["last_seq"]), head["last_hash"]


def snapshot(predictions: pd.DataFrame, close: pd.DataFrame, model_id: int, *, horizons=HORIZONS, skip_existing: bool = False, db=None) -> pd.DataFrame:
    """Record predictions of one model version, before their outcomes are known.

    Parameters
    ----------
    predictions : tidy DataFrame, one row per (symbol, run_date): ``symbol`` (str), ``run_date``
        (date-like), and any of ``position`` (float in [-1, 1]), ``direction`` (-1, 0 or 1) and
        ``forecast_{h}`` for ``h`` in ``horizons`` (forecast simple return over h trading days,
        > -1), with, for a quantile forecaster, ``forecast_q10_{h}`` and ``forecast_q90_{h}`` (both,
        with ``forecast_{h}`` as the median, ``q10 <= median <= q90``). A forecast column that is
        absent is stored as NULL for every row; a NaN is refused.
        ``direction`` defaults to ``sign(forecast_1)``, else ``sign(position)``; ``position``
        defaults to ``direction``.
    close : (T, N) DataFrame of prices (index: the trading calendar; columns: symbols). The close at
        each ``run_date`` is taken from it.
    model_id : registry id of the model version (:func:`kit.store.registry.register`).
    horizons : forecast horizons in trading days (default 1, 5, 21); one forecast row each.
    skip_existing : if True, predictions whose key is already in the ledger are left out of the
        batch (the recorded ones stay as they are) instead of refusing the call; for re-running a
        job that records a rolling window of days.
    db : URL, Engine or None (default database).

    Returns
    -------
    DataFrame of the rows written: ``seq, symbol, run_date, close, direction, position, hash``
    (empty when ``skip_existing`` left nothing to write).

    Raises
    ------
    NaNPredictionError
        A NaN or infinite position, direction or forecast.
    UnknownSymbolError
        A symbol that is not a column of ``close``.
    FutureRunDateError
        A run date after ``close``'s last date.
    InvalidPredictionError
        Unknown or missing columns, a value out of range, a run date that is not a trading day of
        ``close``, no positive close at the run date.
    DuplicateSnapshotError
        A (model, symbol, run_date) already in the ledger or repeated in ``predictions``.
    UnknownModelError
        ``model_id`` is not registered.
    TamperedLedgerError
        The ledger's head does not match its rows.

    Nothing is written when any of these is raised.
    """
    close = _check_prices(close)
    p = _prepare(predictions, close, horizons)
    horizons = tuple(int(h) for h in horizons)
    engine = get_engine(db)
    s, f = S.ledger_snapshots, S.ledger_forecasts
    with write_tx(engine, "ledger") as conn:
        if conn.execute(sa.select(S.models.c.id).where(S.models.c.id == int(model_id))).scalar() is None:
            raise UnknownModelError(f"no model with id {model_id} in the registry; register it first (kit.store.registry.register)")
        lo, hi = p["run_date"].min().date(), p["run_date"].max().date()
        existing = conn.execute(sa.select(s.c.symbol, s.c.run_date).where(s.c.model_id == int(model_id), s.c.run_date >= lo, s.c.run_date <= hi)).all()
        if existing:
            have = {(sym, pd.Timestamp(d)) for sym, d in existing}
            is_clash = np.array([(sym, d) in have for sym, d in zip(p["symbol"], p["run_date"], strict=True)])
            clash = list(zip(p["symbol"][is_clash], p["run_date"][is_clash], strict=True))
            if clash and skip_existing:
                p = p[~is_clash].reset_index(drop=True)
            elif clash:
                raise DuplicateSnapshotError(
                    f"model {model_id}: {len(clash)} prediction(s) already in the ledger, first symbol={clash[0][0]!r} "
                    f"run_date={clash[0][1].date()}; snapshots are never overwritten; nothing written"
                )
        last_seq, prev = _head(conn)
        scheme, key = _scheme_key(engine, conn, create=True)
        if p.empty:
            return pd.DataFrame(columns=["seq", "symbol", "run_date", "close", "direction", "position", "hash"])
        now = utc_now()
        quantiles = any(p[f"forecast_{q}_{h}"].notna().any() for h in horizons for q in ("q10", "q90"))
        snap_rows, fc_rows = [], []
        for i, r in enumerate(p.itertuples(index=False)):
            seq = last_seq + 1 + i
            fcs = [tuple([h, *(_opt(getattr(r, f"forecast{q}_{h}")) for q in ("", "_q10", "_q90"))]) for h in horizons]
            text = _canonical_snapshot(seq, model_id, r.symbol, r.run_date, r.close, r.direction, r.position, now, fcs)
            h_ = _sha(prev, text, key)
            snap_rows.append({
                "seq": seq, "model_id": int(model_id), "symbol": r.symbol, "run_date": r.run_date.date(), "close": _f(r.close),
                "direction": int(r.direction), "position": _f(r.position), "recorded_at": now, "prev_hash": prev, "hash": h_,
            })
            if quantiles:
                fc_rows.extend({"snapshot_seq": seq, "horizon": h, "forecast": _f(v), "forecast_q10": _f(lo), "forecast_q90": _f(hi)}
                               for h, v, lo, hi in fcs)
            else:  # no quantile columns named: a point forecaster's rows are written as before version 5
                fc_rows.extend({"snapshot_seq": seq, "horizon": h, "forecast": _f(v)} for h, v, _, _ in fcs)
            prev = h_
        conn.execute(s.insert(), snap_rows)
        conn.execute(f.insert(), fc_rows)
        new_seq = last_seq + len(snap_rows)
        if last_seq == 0:
            conn.execute(S.ledger_head.insert().values(id=1, last_seq=new_seq, last_hash=prev, updated_at=now, scheme=scheme))
        else:
            conn.execute(S.ledger_head.update().where(S.ledger_head.c.id == 1).values(last_seq=new_seq, last_hash=prev, updated_at=now))
        anchor = _anchor(engine, conn)
        fault_point("ledger.snapshot_before_commit")
    _append_anchor(engine, anchor)
    out = pd.DataFrame(snap_rows)[["seq", "symbol", "run_date", "close", "direction", "position", "hash"]]
    return out


# ------------------------------------------------------------------------------------------------
# fillback
# ------------------------------------------------------------------------------------------------


@dataclass
class FillbackResult:
    """Outcome of :func:`fillback`.

    ``filled``: one row per forecast row filled (or, in a dry run, that would be filled): ``seq,
    model_id, symbol, run_date, horizon, target_date, close, forecast, actual_close,
    actual_return, pct_error, direction_correct``. ``skipped``: due rows that cannot be filled,
    with a ``reason`` (run date not on the calendar, symbol not in the prices, no price). Rows not
    yet due are in neither.
    """

    filled: pd.DataFrame
    skipped: pd.DataFrame
    dry_run: bool

    @property
    def n_filled(self) -> int:
        return len(self.filled)

    def __repr__(self) -> str:  # pragma: no cover - display only
        verb = "would fill" if self.dry_run else "filled"
        return f"FillbackResult({verb} {len(self.filled)} row(s), skipped {len(self.skipped)})"


_FILL_COLS = ["seq", "model_id", "symbol", "run_date", "horizon", "target_date", "close", "forecast", "actual_close", "actual_return", "pct_error", "direction_correct"]


def _pending(conn) -> pd.DataFrame:
    s, f = S.ledger_snapshots, S.ledger_forecasts
    stmt = (
        sa.select(f.c.id, s.c.seq, s.c.model_id, s.c.symbol, s.c.run_date, s.c.close, s.c.direction, s.c.position, s.c.hash, f.c.horizon, f.c.forecast)
        .join(s, s.c.seq == f.c.snapshot_seq).where(f.c.filled_at.is_(None)).order_by(s.c.seq, f.c.horizon)
    )
    return pd.DataFrame(conn.execute(stmt).mappings().all(), columns=["id", "seq", "model_id", "symbol", "run_date", "close", "direction", "position", "hash", "horizon", "forecast"])


def _compute_fills(pending: pd.DataFrame, close: pd.DataFrame, as_of) -> tuple[pd.DataFrame, pd.DataFrame]:
    cal = close.index
    if as_of is not None:
        cal = cal[cal <= pd.Timestamp(as_of).normalize()]
    empty = pd.DataFrame(columns=[*_FILL_COLS, "id", "hash"])
    if pending.empty or len(cal) == 0:
        return empty, pd.DataFrame(columns=["seq", "symbol", "run_date", "horizon", "reason"])
    p = pending.copy()
    p["run_date"] = pd.to_datetime(p["run_date"])
    pos = cal.get_indexer(p["run_date"])
    tpos = pos + p["horizon"].to_numpy()
    col = close.columns.get_indexer(p["symbol"])
    due = (pos >= 0) & (tpos < len(cal))
    reason = np.full(len(p), None, dtype=object)
    reason[(pos < 0) & (p["run_date"] <= cal[-1]).to_numpy()] = "run_date not on the calendar of the prices"
    reason[due & (col < 0)] = "symbol not in the prices"
    values = close.to_numpy(dtype="float64")
    ok = due & (col >= 0)
    c0 = np.full(len(p), np.nan)
    c1 = np.full(len(p), np.nan)
    c0[ok] = values[pos[ok], col[ok]]
    c1[ok] = values[tpos[ok], col[ok]]
    priced = ok & np.isfinite(c0) & np.isfinite(c1) & (c0 > 0) & (c1 > 0)
    reason[ok & ~priced] = "no positive price at the run date or the target date"
    skipped = p.loc[pd.notna(reason), ["seq", "symbol", "run_date", "horizon"]].assign(reason=reason[pd.notna(reason)])
    p = p[priced].copy()
    if p.empty:
        return empty, skipped.reset_index(drop=True)
    p["target_date"] = cal[tpos[priced]]
    ar = c1[priced] / c0[priced] - 1.0
    p["actual_return"] = ar
    p["actual_close"] = p["close"].to_numpy(float) * (1.0 + ar)
    fc = pd.to_numeric(p["forecast"], errors="coerce").to_numpy(float)
    has_fc = np.isfinite(fc)
    p["pct_error"] = np.where(has_fc, (1.0 + fc) / (1.0 + ar) - 1.0, np.nan)
    call = np.where(has_fc, np.sign(fc), p["direction"].to_numpy(float))
    correct = np.where(call == 0, np.nan, (call * ar > 0).astype(float))
    p["direction_correct"] = pd.array([None if np.isnan(v) else bool(v) for v in correct], dtype="boolean")
    p["pct_error"] = p["pct_error"].astype("float64")
    return p[[*_FILL_COLS, "id", "hash"]].reset_index(drop=True), skipped.reset_index(drop=True)


def fillback(close: pd.DataFrame, *, as_of=None, dry_run: bool = False, db=None) -> FillbackResult:
    """Fill the outcomes of every prediction whose target date has passed, in one transaction.

    Finds the forecast rows not yet filled, computes each ``target_date`` (the ``horizon``-th
    trading day after ``run_date`` on ``close``'s calendar, up to ``as_of``) and, for those that
    are due, the actual price, return, percentage error and direction correctness (formulas in
    the module docstring), and writes them all in one batch. Idempotent: a filled row is never
    written again, so a second call fills nothing new; a call killed before its commit leaves every
    row unfilled and the next call does the whole batch.

    Parameters
    ----------
    close : (T, N) DataFrame of prices, the same price series the snapshots used.
    as_of : date-like, optional; only target dates up to it count as passed (default: the last
        date of ``close``).
    dry_run : if True, compute and return what would be filled, write nothing.
    db : URL, Engine or None (default database).

    Returns
    -------
    :class:`FillbackResult`.
    """
    close = _check_prices(close)
    engine = get_engine(db)
    if dry_run:
        with read_tx(engine) as conn:
            fills, skipped = _compute_fills(_pending(conn), close, as_of)
        return FillbackResult(fills[_FILL_COLS], skipped, True)
    f = S.ledger_forecasts
    anchor = None
    with write_tx(engine, "ledger") as conn:
        fills, skipped = _compute_fills(_pending(conn), close, as_of)
        if len(fills):
            _, key = _scheme_key(engine, conn)
            now = utc_now()
            params = []
            for r in fills.itertuples(index=False):
                dc = None if pd.isna(r.direction_correct) else bool(r.direction_correct)
                pe = None if pd.isna(r.pct_error) else float(r.pct_error)
                text = _canonical_fill(r.horizon, r.target_date, r.actual_close, r.actual_return, pe, dc, now)
                params.append({
                    "b_id": int(r.id), "target_date": pd.Timestamp(r.target_date).date(), "actual_close": _f(r.actual_close),
                    "actual_return": _f(r.actual_return), "pct_error": _f(pe), "direction_correct": dc, "filled_at": now,
                    "fill_hash": _sha(r.hash, text, key),
                })
            stmt = (
                f.update().where(f.c.id == sa.bindparam("b_id"), f.c.filled_at.is_(None))
                .values(target_date=sa.bindparam("target_date"), actual_close=sa.bindparam("actual_close"),
                        actual_return=sa.bindparam("actual_return"), pct_error=sa.bindparam("pct_error"),
                        direction_correct=sa.bindparam("direction_correct"), filled_at=sa.bindparam("filled_at"),
                        fill_hash=sa.bindparam("fill_hash"))
            )
            conn.execute(stmt, params)
            anchor = _anchor(engine, conn)
        fault_point("ledger.fillback_before_commit")
    if anchor is not None:
        _append_anchor(engine, anchor)
    return FillbackResult(fills[_FILL_COLS], skipped, False)


# ------------------------------------------------------------------------------------------------
# reading
# ------------------------------------------------------------------------------------------------


def snapshots(*, model_id: int | None = None, db=None) -> pd.DataFrame:
    """The snapshot rows in chain order with the model's label and their forecasts in columns
    ``forecast_{h}`` (None where the model gave none), and, when any quantile forecast is recorded,
    ``forecast_q10_{h}`` and ``forecast_q90_{h}``."""
    s, m, f = S.ledger_snapshots, S.models, S.ledger_forecasts
    stmt = sa.select(s, m.c.label).join(m, m.c.id == s.c.model_id).order_by(s.c.seq)
    cols = ["snapshot_seq", "horizon", "forecast", "forecast_q10", "forecast_q90"]
    fst = sa.select(*(f.c[c] for c in cols))
    if model_id is not None:
        stmt = stmt.where(s.c.model_id == int(model_id))
    with read_tx(get_engine(db)) as conn:
        snaps = pd.DataFrame(conn.execute(stmt).mappings().all(), columns=[*s.columns.keys(), "label"])
        fcs = pd.DataFrame(conn.execute(fst).mappings().all(), columns=cols)
    if snaps.empty or fcs.empty:
        return snaps
    wide = fcs.pivot(index="snapshot_seq", columns="horizon", values="forecast")
    wide.columns = [f"forecast_{h}" for h in wide.columns]
    if fcs[["forecast_q10", "forecast_q90"]].notna().any().any():
        for q in ("q10", "q90"):
            wq = fcs.pivot(index="snapshot_seq", columns="horizon", values=f"forecast_{q}")
            wq.columns = [f"forecast_{q}_{h}" for h in wq.columns]
            wide = wide.join(wq)
    return snaps.join(wide, on="seq")


def outcomes(*, horizon: int = 1, db=None) -> pd.DataFrame:
    """Filled outcomes at one horizon, one row per (model, symbol, run_date): ``model_id, label,
    name, scope, status, symbol, run_date, target_date, close, position, direction, forecast,
    forecast_q10, forecast_q90, actual_close, actual_return, pct_error, direction_correct,
    strategy_return`` (``position * actual_return``), sorted by model, symbol and date. The
    coverage of a quantile forecaster's band is the share of rows with ``forecast_q10 <=
    actual_return <= forecast_q90``."""
    s, f, m = S.ledger_snapshots, S.ledger_forecasts, S.models
    stmt = (
        sa.select(s.c.model_id, m.c.label, m.c.name, m.c.scope, m.c.status, s.c.symbol, s.c.run_date, f.c.target_date, s.c.close,
                  s.c.position, s.c.direction, f.c.forecast, f.c.forecast_q10, f.c.forecast_q90, f.c.actual_close, f.c.actual_return,
                  f.c.pct_error, f.c.direction_correct)
        .join(s, s.c.seq == f.c.snapshot_seq).join(m, m.c.id == s.c.model_id)
        .where(f.c.horizon == int(horizon), f.c.filled_at.is_not(None))
        .order_by(s.c.model_id, s.c.symbol, s.c.run_date)
    )
    cols = ["model_id", "label", "name", "scope", "status", "symbol", "run_date", "target_date", "close", "position", "direction", "forecast",
            "forecast_q10", "forecast_q90", "actual_close", "actual_return", "pct_error", "direction_correct"]
    with read_tx(get_engine(db)) as conn:
        out = pd.DataFrame(conn.execute(stmt).mappings().all(), columns=cols)
    out["run_date"] = pd.to_datetime(out["run_date"])
    out["target_date"] = pd.to_datetime(out["target_date"])
    for c in ("close", "position", "forecast", "forecast_q10", "forecast_q90", "actual_close", "actual_return", "pct_error"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    out["direction_correct"] = out["direction_correct"].astype("boolean")
    out["strategy_return"] = out["position"] * out["actual_return"]
    return out


def _window_stats(o: pd.DataFrame) -> dict:
    called = o["direction_correct"].notna()
    ape = o["pct_error"].abs().dropna()
    return {
        "n": int(len(o)),
        "n_calls": int(called.sum()),
        "direction_accuracy": float(o.loc[called, "direction_correct"].astype(float).mean()) if called.any() else np.nan,
        "mape": float(ape.mean()) if len(ape) else np.nan,
    }


def _calendar(o: pd.DataFrame, calendar) -> pd.DatetimeIndex:
    if calendar is None:
        return pd.DatetimeIndex(sorted(o["run_date"].unique()))
    cal = pd.DatetimeIndex(calendar).normalize()
    if not cal.is_monotonic_increasing or cal.has_duplicates:
        raise ValueError("calendar must be strictly increasing dates")
    off = ~o["run_date"].isin(cal)
    if off.any():
        raise ValueError(f"run_date {o.loc[off, 'run_date'].iloc[0].date()} of the ledger is not on the calendar")
    return cal


def rolling_accuracy(window: int = 30, *, horizon: int = 1, by: str = "symbol", calendar=None, db=None) -> pd.DataFrame:
    """Rolling live accuracy per model and symbol (or per model), at each run date with a filled
    outcome.

    At run date t the window holds the filled predictions whose run date is one of the last
    ``window`` trading days up to t (on ``calendar``; default: the run dates in the ledger).
    Columns: ``run_date, model_id, label, [symbol,] n, direction_accuracy`` (correct calls / calls),
    ``mape`` (mean |pct_error|, NaN without forecasts), ``strategy_return`` (compounded over the
    window: ``prod(1 + position * actual_return) - 1`` per symbol; per model from the daily
    equal-weight average over its symbols, as :func:`leaderboard`).

    Raises
    ------
    ValueError
        ``window < 1``, unknown ``by``, or a run date not on ``calendar``.
    """
    if int(window) < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if by not in ("symbol", "model"):
        raise ValueError(f"by must be 'symbol' or 'model', got {by!r}")
    o = outcomes(horizon=horizon, db=db)
    keys = ["model_id", "symbol"] if by == "symbol" else ["model_id"]
    cols = ["run_date", "model_id", "label", *keys[1:], "n", "direction_accuracy", "mape", "strategy_return"]
    if o.empty:
        return pd.DataFrame(columns=cols)
    cal = _calendar(o, calendar)
    o["pos"] = cal.get_indexer(o["run_date"])
    called = o["direction_correct"].notna()
    parts = pd.DataFrame({
        "pos": o["pos"], "model_id": o["model_id"], "symbol": o["symbol"], "n": 1.0, "calls": called.astype(float),
        "correct": o["direction_correct"].fillna(False).astype(float), "ape": o["pct_error"].abs().fillna(0.0),
        "ape_n": o["pct_error"].notna().astype(float), "ret": o["strategy_return"].fillna(0.0),
    })
    # one row per (keys, date): counts add up; the day's return is the mean over the symbols
    daily = parts.groupby([*keys, "pos"]).agg(n=("n", "sum"), calls=("calls", "sum"), correct=("correct", "sum"), ape=("ape", "sum"),
                                             ape_n=("ape_n", "sum"), ret=("ret", "mean")).reset_index()
    daily["logret"] = np.log1p(daily["ret"])
    out = []
    full = pd.RangeIndex(len(cal))
    for key, g in daily.groupby(keys, sort=True):
        key = key if isinstance(key, tuple) else (key,)
        sums = g.set_index("pos")[["n", "calls", "correct", "ape", "ape_n", "logret"]].reindex(full, fill_value=0.0).rolling(int(window), min_periods=1).sum()
        at = sums.loc[g["pos"].to_numpy()]
        out.append(pd.DataFrame({
            "run_date": cal[g["pos"].to_numpy()], **dict(zip(keys, key, strict=True)), "n": at["n"].astype(int).to_numpy(),
            "direction_accuracy": (at["correct"] / at["calls"].where(at["calls"] > 0)).to_numpy(),
            "mape": (at["ape"] / at["ape_n"].where(at["ape_n"] > 0)).to_numpy(),
            "strategy_return": np.expm1(at["logret"]).to_numpy(),
        }))
    res = pd.concat(out, ignore_index=True)
    labels = o.drop_duplicates("model_id").set_index("model_id")["label"]
    res["label"] = res["model_id"].map(labels)
    return res[cols]


def leaderboard(window: int = 30, *, horizon: int = 1, by: str = "symbol", as_of=None, calendar=None, db=None) -> pd.DataFrame:
    """Live accuracy over the last ``window`` trading days up to ``as_of``, best first.

    Parameters
    ----------
    window : trading days (30, as seed 003's ``ldtm_accuracy_30d``).
    horizon : which forecast horizon's outcomes (1 = next day).
    by : ``"symbol"`` (one row per model and symbol) or ``"model"`` (pooled over symbols).
    as_of : date-like; the window ends at the last trading day <= as_of (default: the last run date
        with a filled outcome).
    calendar : trading days (default: the run dates in the ledger).

    Returns
    -------
    DataFrame: ``model_id, label, status, [symbol,] n, n_calls, direction_accuracy, mape,
    strategy_return, first_run_date, last_run_date``, sorted by direction accuracy (descending).
    ``strategy_return`` is compounded over the window: per symbol from ``position *
    actual_return``; per model from the daily equal-weight average over its symbols.

    Raises
    ------
    ValueError
        ``window < 1``, unknown ``by``, a run date not on ``calendar``.
    """
    if int(window) < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if by not in ("symbol", "model"):
        raise ValueError(f"by must be 'symbol' or 'model', got {by!r}")
    keys = ["model_id", "label", "status"] + (["symbol"] if by == "symbol" else [])
    cols = [*keys, "n", "n_calls", "direction_accuracy", "mape", "strategy_return", "first_run_date", "last_run_date"]
    o = outcomes(horizon=horizon, db=db)
    if o.empty:
        return pd.DataFrame(columns=cols)
    cal = _calendar(o, calendar)
    last = o["run_date"].max() if as_of is None else pd.Timestamp(as_of).normalize()
    end = int(cal.searchsorted(last, side="right")) - 1
    if end < 0:
        return pd.DataFrame(columns=cols)
    lo = cal[max(0, end - int(window) + 1)]
    w = o[(o["run_date"] >= lo) & (o["run_date"] <= cal[end])]
    rows = []
    for key, g in w.groupby(keys, sort=True):
        st = _window_stats(g)
        daily = g.groupby("run_date")["strategy_return"].mean()
        rows.append({**dict(zip(keys, key, strict=True)), **st, "strategy_return": float(np.prod(1.0 + daily.to_numpy()) - 1.0),
                     "first_run_date": g["run_date"].min().date(), "last_run_date": g["run_date"].max().date()})
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values(["direction_accuracy", "n"], ascending=[False, False], na_position="last").reset_index(drop=True)


# ------------------------------------------------------------------------------------------------
# verify
# ------------------------------------------------------------------------------------------------


@dataclass
class VerifyReport:
    """Result of :func:`verify`: ``ok`` is True when ``problems`` is empty; ``problems`` has one row
    per finding with ``kind`` (``edited``, ``broken_link``, ``missing``, ``edited_fill``,
    ``orphan_forecast``, ``head``), ``seq`` (the row concerned, or None) and ``detail``."""

    ok: bool
    n_rows: int
    n_filled: int
    problems: pd.DataFrame

    def __repr__(self) -> str:  # pragma: no cover - display only
        if self.ok:
            return f"VerifyReport(ok: {self.n_rows} rows chained, {self.n_filled} fills bound)"
        return f"VerifyReport(NOT ok: {len(self.problems)} problem(s) in {self.n_rows} rows)\n" + self.problems.to_string()


def _check_anchors(engine, hashes: dict, last_seq: int, n_filled: int, add) -> None:
    """Compare the chain with the anchor file: every anchored head must still be in the chain with
    its hash, and no anchored fill count may exceed today's."""
    path = anchor_path(engine)
    if not path.exists():
        if last_seq:
            add("anchor", None, f"no anchor file at {str(path)!r} for a ledger of {last_seq} row(s) (set KIT_LEDGER_ANCHOR to where it is kept)")
        return
    max_fills, anchored = 0, {}
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        try:
            a = json.loads(line)
            seq, h, nf = int(a["seq"]), str(a["hash"]), int(a["n_filled"])
        except (ValueError, KeyError, TypeError):
            add("anchor", None, f"anchor file line {i} is not a recorded head: {line[:80]!r}")
            continue
        max_fills = max(max_fills, nf)
        anchored.setdefault(seq, (h, i))
    if anchored and max(anchored) > last_seq:
        top = max(anchored)
        add("truncated", top, f"the anchor file records seq {top} (line {anchored[top][1]}) but the chain ends at seq {last_seq}: rows deleted")
    for seq, (h, i) in sorted(anchored.items()):
        if 0 < seq <= last_seq and hashes.get(seq) != h:
            add("anchor_mismatch", seq, f"seq {seq} has hash {str(hashes.get(seq))[:12]}, the anchor file recorded {h[:12]} (line {i}): history rewritten")
    if n_filled < max_fills:
        add("fills_removed", None, f"{n_filled} filled outcome(s), the anchor file recorded {max_fills}: fills removed")


def verify(*, db=None) -> VerifyReport:
    """Recompute the ledger's hash chain, fill hashes and head; report every inconsistency.

    Findings: ``edited`` (a row's stored hash differs from the hash of its contents: a field or
    forecast was changed, or a forged row), ``broken_link`` (``prev_hash`` is not the previous row's
    hash: a row before it was replaced, inserted or deleted), ``missing`` (a gap in ``seq``: rows
    deleted), ``edited_fill`` (a filled outcome differs from its fill hash, or fill columns set
    without a fill), ``orphan_forecast`` (a forecast row without its snapshot), ``head`` (the head
    record disagrees with the last row: rows deleted at the end or appended outside the kit), and
    against the anchor file: ``truncated`` (it records a later head: rows deleted at the end),
    ``anchor_mismatch`` (an anchored row's hash changed: history rewritten), ``fills_removed``,
    ``anchor`` (the file is missing or a line is unreadable); ``key`` (a keyed ledger without its
    key). What is and is not detected: the module docstring.
    """
    s, f, hd = S.ledger_snapshots, S.ledger_forecasts, S.ledger_head
    engine = get_engine(db)
    problems = []

    def add(kind, seq, detail):
        problems.append({"kind": kind, "seq": None if seq is None else int(seq), "detail": detail})

    with read_tx(engine) as conn:
        snaps = conn.execute(sa.select(s).order_by(s.c.seq)).all()
        fcs = conn.execute(sa.select(f).order_by(f.c.snapshot_seq, f.c.horizon)).all()
        head = conn.execute(sa.select(hd)).mappings().first()
        try:
            scheme, key = _scheme_key(engine, conn)
        except TamperedLedgerError as exc:
            add("key", None, str(exc))
            return VerifyReport(False, len(snaps), 0, pd.DataFrame(problems, columns=["kind", "seq", "detail"]))

    by_seq: dict[int, list] = {}
    for r in fcs:
        by_seq.setdefault(r.snapshot_seq, []).append(r)
    hashes = {}
    expected_seq, prev_hash = 1, GENESIS_HASH
    for r in snaps:
        seq = r.seq
        if seq > expected_seq:
            add("missing", expected_seq, f"seq {expected_seq}..{seq - 1} missing ({seq - expected_seq} row(s) deleted)")
        elif seq == expected_seq and r.prev_hash != prev_hash:
            add("broken_link", seq, f"prev_hash {r.prev_hash[:12]} is not the hash of seq {seq - 1} ({prev_hash[:12]})")
        text = _canonical_snapshot(seq, r.model_id, r.symbol, r.run_date, r.close, r.direction, r.position, r.recorded_at,
                                   [(x.horizon, x.forecast, x.forecast_q10, x.forecast_q90) for x in by_seq.get(seq, [])])
        if _sha(r.prev_hash, text, key) != r.hash:
            add("edited", seq, f"stored hash {r.hash[:12]} does not match the row's contents (symbol={r.symbol!r} run_date={r.run_date})")
        hashes[seq] = r.hash
        expected_seq, prev_hash = seq + 1, r.hash
    n_filled = 0
    for r in fcs:
        seq = r.snapshot_seq
        if seq not in hashes:
            add("orphan_forecast", seq, f"forecast row id {r.id} (horizon {r.horizon}) has no snapshot")
            continue
        fill_cols = ("target_date", "actual_close", "actual_return", "pct_error", "direction_correct", "fill_hash")
        if r.filled_at is None:
            if any(getattr(r, c) is not None for c in fill_cols):
                add("edited_fill", seq, f"horizon {r.horizon}: fill columns set without a fill")
            continue
        n_filled += 1
        text = _canonical_fill(r.horizon, r.target_date, r.actual_close, r.actual_return, r.pct_error, r.direction_correct, r.filled_at) if r.target_date is not None else ""
        if not text or _sha(hashes[seq], text, key) != r.fill_hash:
            add("edited_fill", seq, f"horizon {r.horizon}: filled outcome does not match its fill hash")
    last_seq = snaps[-1].seq if snaps else 0
    if head is None:
        if snaps:
            add("head", None, f"no head record but {len(snaps)} row(s)")
    elif head["last_seq"] != last_seq:
        what = "rows after the head (appended outside the kit)" if last_seq > head["last_seq"] else "rows deleted at the end"
        add("head", head["last_seq"], f"head records seq {head['last_seq']}, the last row is seq {last_seq}: {what}")
    elif head["last_hash"] != hashes.get(last_seq):
        add("head", last_seq, "head hash differs from the last row's hash")
    _check_anchors(engine, hashes, last_seq, n_filled, add)
    return VerifyReport(not problems, len(snaps), n_filled, pd.DataFrame(problems, columns=["kind", "seq", "detail"]))
