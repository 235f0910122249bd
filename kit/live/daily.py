"""The daily paper-trading step, as named stages.

The step decides at the close of a trading day and trades at the next open (the execution model of
:mod:`kit.portfolio.execution`). :func:`run_day` runs, in order:

1. ``claim``: take the account's lock in the database (:func:`kit.store.engine.db_lock`); a day
   already ``done`` returns ``already_done`` and trades nothing; a day before the last done day is
   refused, and so is an account whose journal has open orders at another broker. Then the whole
   ledger chain is verified (:func:`kit.store.ledger.verify`); a finding stops the day.
2. ``load bars``: adjusted bars up to the day.
3. ``open``: the broker's start of day (:meth:`kit.live.brokers.Broker.start_day`: the simulated
   broker fills earlier orders at today's open and marks today's close; a real broker does
   nothing), then the loop's order journal is reconciled with the broker by client order id (a
   crash between sending and recording leaves nothing lost).
4. ``features``: the streaming DMN feature state (rebuilt from history when missing or stale),
   checked against the batch features at the day. A model trained on other features (its
   ``walk_forward_config["features"]``, e.g. ``dmn+cpd21+bocpd``) gets its window from
   :func:`kit.features.feature_array` on the history instead: the changepoint features come from the
   on-disk cache (:mod:`kit.features.cache`), which computes only the days it does not hold.
5. ``predict``: the scope's active model from the registry, today's positions.
6. ``ledger``: snapshot the predictions (a snapshot already taken for the day is kept), fill back
   every outcome whose date has passed.
7. ``targets``: volatility-targeted weights and the pre-trade check; targets and every violation
   are recorded.
8. ``orders``: orders from current holdings to the accepted targets at today's close, each with a
   deterministic client order id, journaled then submitted (the broker refuses duplicates, so a
   rerun after a crash sends only what is missing).
9. ``finish``: the day is marked ``done`` with equity and cash. An error in stages 4-9 marks it
   ``failed`` with the error (never left ``started``); the next run of the day starts it again.

Crash points for the tests (:mod:`kit.base.faults`): ``paper.after_fills``, ``paper.after_journal``,
``paper.after_first_submit``, ``paper.after_submit``, ``paper.before_done``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import sqlalchemy as sa

from ..base.config import strict_dataclass
from ..base.faults import fault_point
from ..base.locks import LockHeldError
from ..data import adjust_prices, load_universe, read_prices, wide_fields
from ..data.sources import ParquetBarSource
from ..features import daily_returns, ex_ante_vol, feature_array, feature_set
from ..models import ForecasterBundle
from ..paths import state_dir
from ..portfolio import Limits, order_quantities, pre_trade_check, vol_scaled_weights
from ..store import ledger, registry
from ..store import schema as S
from ..store.engine import DatabaseLockedError, db_lock, get_engine, read_tx, utc_now, write_tx
from . import brokers
from .sim import SimBroker, _day
from .state import FeatureWindow

__all__ = ["PaperError", "PaperLockedError", "PaperConfig", "DayResult", "load_history", "run_day"]


class PaperError(RuntimeError):
    """The paper loop cannot run this day (the message says why and what to do)."""


class PaperLockedError(PaperError, LockHeldError):
    """Another paper step for the same account is running (the lock is held)."""


@dataclass
class PaperConfig:
    """Settings of the paper loop (the ``paper`` section of a params file).

    Attributes
    ----------
    account : account name in the database (several accounts can share one).
    scope : registry scope whose ``active`` model is traded.
    require_active : when False and the scope has no active model, the newest candidate is
        traded and every record says so (for replays and demonstrations only).
    data_path : bar store ('' = the committed store or ``$KIT_DATA``).
    symbols : list of symbols, or ``"all"``; n_symbols / universe_as_of: the n most liquid as of
        that date instead (0 = use ``symbols``).
    history_start : first date loaded (the streaming state warms up from it, as training did).
    target_vol : annualised volatility target per asset; max_gross : gross cap (fraction of equity).
    cost_bps, slippage_bps, initial_cash : simulated broker's commission, slippage and start cash
        (used when the account is created).
    limits : :class:`kit.portfolio.Limits` fields for the pre-trade check.
    state_dir : where the streaming state lives ('' = ``data/state``); the step's lock lives in the
        database (:func:`kit.store.engine.db_lock`), so it holds whatever the ``state_dir``.

    Raises
    ------
    ValueError
        (at construction) an account or scope name that is not a plain name (letters, digits, ``.``,
        ``_``, ``-``; it is used in file names and lock names), or a value of the wrong type or range.
    """

    account: str = "paper"
    scope: str = "universe"
    require_active: bool = True
    data_path: str = ""
    symbols: list | str = "all"
    n_symbols: int = 0
    universe_as_of: str = "2004-12-31"
    history_start: str = "1999-01-01"
    target_vol: float = 0.15
    max_gross: float = 0.95
    cost_bps: float = 5.0
    slippage_bps: float = 0.0
    initial_cash: float = 100_000.0
    limits: dict = None
    state_dir: str = ""

    def __post_init__(self):
        import re

        for key in ("account", "scope"):
            v = getattr(self, key)
            if not isinstance(v, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", v):
                raise ValueError(f"paper {key} must be letters, digits, '.', '_' or '-' (at most 64, no path), got {v!r}")
        for key in ("target_vol", "max_gross", "initial_cash"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v <= 0:
                raise ValueError(f"paper {key} must be a positive number, got {v!r}")
        for key in ("cost_bps", "slippage_bps"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not np.isfinite(v) or v < 0:
                raise ValueError(f"paper {key} must be a number >= 0, got {v!r}")
        if isinstance(self.n_symbols, bool) or not isinstance(self.n_symbols, int) or self.n_symbols < 0:
            raise ValueError(f"paper n_symbols must be an integer >= 0, got {self.n_symbols!r}")
        if not isinstance(self.require_active, bool):
            raise ValueError(f"paper require_active must be true or false, got {self.require_active!r}")
        for key in ("universe_as_of", "history_start"):
            try:
                pd.Timestamp(getattr(self, key))
            except (ValueError, TypeError):
                raise ValueError(f"paper {key} must be a date (YYYY-MM-DD), got {getattr(self, key)!r}") from None
        if not (self.symbols == "all" or (isinstance(self.symbols, list) and all(isinstance(x, str) for x in self.symbols))):
            raise ValueError(f"paper symbols must be a list of tickers or 'all', got {self.symbols!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> PaperConfig:
        """From a mapping; an unknown key raises :class:`kit.base.ConfigError` naming it and the
        nearest valid key."""
        return strict_dataclass(cls, d, "paper")

    def state_path(self):
        """The folder of the streaming state (``state_dir`` or ``data/state``)."""
        from pathlib import Path

        return Path(self.state_dir) if self.state_dir else state_dir()


@dataclass
class DayResult:
    """What one daily step did.

    Attributes
    ----------
    as_of : the trading day (decisions at its close).
    status : ``done`` (ran now) or ``already_done`` (a second run of the day: nothing traded).
    model : the traded model's registry label (``None`` for ``already_done``).
    equity, cash : USD at the close, after the day's fills at the open.
    orders : DataFrame of the orders sent (symbol, side, qty, client_order_id, status, reason).
    fills : orders from earlier days filled or rejected at today's open.
    checks : pre-trade violations (symbol, check, value, limit, action).
    targets : DataFrame by symbol: position, ex_ante_vol, target_weight, accepted_weight, current_weight, close.
    info : dict (streaming check, ledger rows, fillback count, model status).
    """

    as_of: pd.Timestamp
    status: str
    model: str | None = None
    equity: float | None = None
    cash: float | None = None
    orders: pd.DataFrame = None
    fills: list = None
    checks: pd.DataFrame = None
    targets: pd.DataFrame = None
    info: dict = None


def load_history(config: PaperConfig, end, source=None) -> pd.DataFrame:
    """Adjusted daily bars (tidy: symbol, date, open, high, low, close, ...) of the configured
    universe from ``config.history_start`` to ``end``, from ``source`` (a
    :class:`kit.data.sources.BarSource`; default the Parquet store at ``config.data_path``).

    Raises
    ------
    PaperError
        No bars for the universe up to ``end``.
    """
    if source is None:
        source = ParquetBarSource(config.data_path or None)
    if config.n_symbols and config.n_symbols > 0:
        _, _, universe = load_universe(config.data_path or None, None, config.n_symbols, config.universe_as_of, config.history_start, end)
        symbols = list(universe)
    elif config.symbols == "all":
        symbols = None
    else:
        symbols = list(config.symbols)
    bars = source.bars(symbols if symbols is not None else read_prices(config.data_path or None)["symbol"].unique(), config.history_start, end)
    if bars.empty:
        raise PaperError(f"no bars for the universe between {config.history_start} and {end}")
    return adjust_prices(bars)


def _pick_model(config: PaperConfig, db) -> tuple[dict, str]:
    row = registry.active_model(config.scope, db=db)
    if row is not None:
        return row, "active"
    if config.require_active:
        raise PaperError(
            f"no active model in scope {config.scope!r}: train one (20_train registers candidates and applies the gate), "
            "or set require_active: false to trade the newest candidate for a demonstration"
        )
    cands = registry.list_models(scope=config.scope, status="candidate", db=db)
    if cands.empty:
        raise PaperError(f"no model at all in scope {config.scope!r}")
    newest = cands.sort_values("id").iloc[-1]
    return registry.get_model(int(newest["id"]), db=db), "candidate (not promoted by the gate)"



def _position_model(model_row: dict, db):
    """(model, lookback, feature_names, features) of a registered position model or ensemble;
    ``features`` is its feature specification (``"dmn"`` for a model trained before they existed).

    Raises
    ------
    PaperError
        The model is a forecaster (the per-ticker LDTM bundle, or a foundation model), or a tree,
        ranker or stack model: the loop trades torch position models.
    """
    import torch

    if model_row.get("forecaster"):  # refused before its weights are read (a foundation model's are hundreds of MB)
        raise PaperError(f"the paper loop trades position models (dmn_lstm, momentum_transformer, linear, mlp, ensemble), not the "
                         f"forecaster {model_row.get('label')!r}")
    model, payload = registry.load_model(model_row["id"], db=db)
    if isinstance(model, ForecasterBundle):
        raise PaperError("the paper loop trades position models (dmn_lstm, momentum_transformer, linear, mlp, ensemble), not the ldtm forecaster")
    if not isinstance(model, torch.nn.Module):
        raise PaperError(
            f"the active model {model_row.get('label')} is a {payload.get('format')} checkpoint ({payload['config'].get('model')}); the paper "
            "loop trades torch position models (dmn_lstm, momentum_transformer, linear, mlp, ensemble), not tree, ranker or stack models"
        )
    wf = (model_row.get("extra") or {}).get("walk_forward_config") or {}
    lookback = int(wf.get("lookback", wf.get("lookback", 63)))
    names = payload["members"][0]["feature_names"] if "members" in payload else payload["feature_names"]
    return model.eval(), lookback, list(names), str(wf.get("features") or "dmn")


@dataclass
class _Day:
    """What the stages of one :func:`run_day` hand to each other."""

    as_of: pd.Timestamp
    config: PaperConfig
    engine: object
    broker: object
    close: pd.DataFrame = None
    open_: pd.DataFrame = None
    fills: list = field(default_factory=list)
    model_row: dict = None
    model_status: str = ""
    positions: pd.Series = None
    info: dict = field(default_factory=dict)

    @property
    def account(self) -> str:
        return self.config.account

    @property
    def broker_name(self) -> str:
        return _broker_name(self.broker) if self.broker is not None else "sim"

    @property
    def close_row(self) -> pd.Series:
        return self.close.loc[self.as_of]


def _broker_name(broker) -> str:
    return str(getattr(broker, "name", type(broker).__name__))


def _claim(day: _Day):
    """Stage 1: the day's run row; returns the finished :class:`DayResult` of a day already done.

    A day recorded ``failed`` (an error the kit caught) or left ``started`` (a killed process) is run
    again. Switching the account to another broker while the journal has open orders at the first
    is refused.
    """
    runs, journal = S.TABLES["paper_runs"], S.TABLES["paper_orders"]
    acct, as_of = day.account, day.as_of
    with read_tx(day.engine) as conn:
        row = conn.execute(runs.select().where((runs.c.account == acct) & (runs.c.as_of == as_of.date()))).mappings().first()
        last_done = conn.execute(sa.select(sa.func.max(runs.c.as_of)).where((runs.c.account == acct) & (runs.c.status == "done"))).scalar()
        elsewhere = conn.execute(
            sa.select(journal.c.broker, sa.func.count()).where(
                (journal.c.account == acct) & journal.c.status.in_(brokers.OPEN_ORDER_STATUSES + ("new",)) & (journal.c.broker != day.broker_name)
            ).group_by(journal.c.broker)
        ).all()
    if row is not None and row["status"] == "done":
        return DayResult(as_of, "already_done", row["model"], row["equity"], row["cash"], pd.DataFrame(), [], pd.DataFrame(), pd.DataFrame(), dict(row["info"] or {}))
    if last_done is not None and _day(last_done) > as_of.date():
        raise PaperError(f"as_of {as_of.date()} is before the last completed paper day {last_done} of account {acct!r}")
    if elsewhere:
        other, n = elsewhere[0]
        raise PaperError(
            f"account {acct!r} has {n} open order(s) at broker {other!r}; refusing to trade it with broker {day.broker_name!r} "
            f"(settle or cancel them with --broker {other}, or use another account name)"
        )
    day.info["run_row_exists"] = row is not None
    return None


def _load_bars(day: _Day, history, source) -> None:
    """Stage 2: adjusted bars up to the day."""
    bars = history if history is not None else load_history(day.config, day.as_of, source)
    bars = bars[bars["date"] <= day.as_of]
    frames = wide_fields(bars, ("open", "close"))
    day.close, day.open_ = frames["close"], frames["open"]
    if day.as_of not in day.close.index:
        raise PaperError(f"as_of {day.as_of.date()} is not a trading day in the data (last date {day.close.index[-1].date()})")


def _open(day: _Day) -> None:
    """Stage 3: the broker's start of day, the journal reconciled, the run row started."""
    runs, journal = S.TABLES["paper_runs"], S.TABLES["paper_orders"]
    acct, as_of, broker = day.account, day.as_of, day.broker
    day.fills = broker.start_day(as_of, day.open_.loc[as_of], day.close_row)
    fault_point("paper.after_fills")
    with read_tx(day.engine) as conn:
        open_journal = conn.execute(journal.select().where(
            (journal.c.account == acct) & (journal.c.broker == day.broker_name) & journal.c.status.in_(brokers.OPEN_ORDER_STATUSES + ("new",))
        )).mappings().all()
    if open_journal:
        with write_tx(day.engine, "paper") as conn:
            for j in open_journal:
                o = broker.get_order_by_client_id(j["client_order_id"])
                status = o.status if o is not None else ("cancelled" if _day(j["as_of"]) < as_of.date() else j["status"])
                conn.execute(journal.update().where((journal.c.account == acct) & (journal.c.client_order_id == j["client_order_id"])).values(
                    status=status, broker_order_id=o.id if o else None, filled_qty=o.filled_qty if o else None,
                    filled_avg_price=o.filled_avg_price if o else None, reject_reason=(o.reject_reason if o else "not found at the broker"), updated_at=utc_now()))
    with write_tx(day.engine, "paper") as conn:
        if not day.info.pop("run_row_exists"):
            conn.execute(runs.insert().values(account=acct, as_of=as_of.date(), status="started", broker=day.broker_name, started_at=utc_now()))
        else:  # a day that failed or was killed before: run it again
            conn.execute(runs.update().where((runs.c.account == acct) & (runs.c.as_of == as_of.date())).values(
                status="started", broker=day.broker_name, started_at=utc_now(), finished_at=None))


def _features_and_predict(day: _Day) -> None:
    """Stages 4 and 5: the streaming feature window (checked against the batch features, rebuilt when
    stale) and today's positions from the scope's model."""
    day.model_row, day.model_status = _pick_model(day.config, day.engine)
    model, lookback, feature_names, spec = _position_model(day.model_row, day.engine)
    close, as_of = day.close, day.as_of
    if spec != "dmn":  # changepoint features: the batch array over the history (cached), last lookback days
        fa = feature_array(spec, close, progress=False)
        if fa.names != feature_names:
            raise PaperError(f"model {day.model_row.get('label')} was trained on features {feature_names}, but its specification "
                             f"{spec!r} gives {fa.names}")
        win = np.transpose(fa.values[-lookback:], (1, 0, 2))  # (N, L, F)
        day.info.update(features=spec, streaming_rebuilt=None, streaming_max_abs_diff=None)
        _predict(day, model, win, [str(s) for s in close.columns])
        return
    stem = day.config.state_path() / f"paper-{day.account}-features"
    fw = FeatureWindow.load(stem, lookback)
    rebuilt = False
    prev = close.index[close.index < as_of]
    if fw is not None and fw.last_date is not None and len(prev) and fw.last_date == prev[-1]:
        fw.update(as_of, day.close_row)
    elif fw is not None and fw.last_date == as_of:
        pass  # a rerun of a day that crashed after the state was saved
    else:
        fw = FeatureWindow(lookback)
        fw.rebuild(close)
        rebuilt = True
    batch = feature_set("dmn", close)
    symbols = [str(s) for s in close.columns]
    order = [fw.sf.names.index(n) for n in feature_names]
    b_last = batch.values[-1][:, order]  # (N, F) at as_of
    win = fw.window(symbols)[:, :, order]  # (N, L, F)
    both = np.isfinite(b_last) & np.isfinite(win[:, -1])
    stream_diff = float(np.max(np.abs(b_last[both] - win[:, -1][both]), initial=0.0))
    if stream_diff > 1e-8 or (np.isfinite(b_last) != np.isfinite(win[:, -1])).any():
        fw = FeatureWindow(lookback)
        fw.rebuild(close)
        rebuilt = True
        win = fw.window(symbols)[:, :, order]
    fw.save(stem)
    day.info.update(streaming_max_abs_diff=stream_diff, streaming_rebuilt=rebuilt)
    _predict(day, model, win, symbols)


def _predict(day: _Day, model, win: np.ndarray, symbols: list) -> None:
    """Stage 5: today's positions from the model's last step on windows ``(N, L, F)``; NaN for a
    symbol whose features today are not all finite."""
    import torch

    ok = np.isfinite(win[:, -1]).all(axis=1)
    x = torch.from_numpy(np.nan_to_num(win, nan=0.0).astype(np.float32))
    with torch.no_grad():
        pos = model(x)[:, -1].numpy().astype("float64")
    day.positions = pd.Series(np.where(ok, np.clip(pos, -1.0, 1.0), np.nan), index=symbols)
    day.info.update(n_symbols=len(symbols))


def _record_ledger(day: _Day) -> None:
    """Stage 6: snapshot today's predictions, fill back past outcomes."""
    live = day.positions.dropna()
    preds = pd.DataFrame({"symbol": live.index, "run_date": day.as_of, "position": live.to_numpy()})
    try:
        written = len(ledger.snapshot(preds, day.close, day.model_row["id"], db=day.engine)) if len(preds) else 0
    except ledger.DuplicateSnapshotError:
        written = 0
    day.info.update(ledger_rows=written, filled_back=ledger.fillback(day.close, db=day.engine).n_filled)


def _targets(day: _Day):
    """Stage 7: volatility-targeted weights and the pre-trade check, recorded; returns
    ``(check, targets frame, account, current quantities)``."""
    targets_t, checks_t = S.TABLES["paper_targets"], S.TABLES["paper_checks"]
    acct, as_of, config, close_row = day.account, day.as_of, day.config, day.close_row
    vol = ex_ante_vol(daily_returns(day.close)).loc[[as_of]]
    w = vol_scaled_weights(day.positions.to_frame().T.set_axis([as_of]), vol, config.target_vol, config.max_gross).iloc[0]
    account = day.broker.account()
    held = day.broker.positions()
    current_qty = pd.Series({s: p.qty for s, p in held.items()}, dtype="float64")
    current_w = pd.Series({s: p.market_value / account.equity for s, p in held.items()}, dtype="float64")
    check = pre_trade_check(w, close_row.dropna(), Limits.from_dict(config.limits), current_w, account.equity)
    accepted = check.accepted
    tgt = pd.DataFrame({
        "position": day.positions.reindex(accepted.index), "ex_ante_vol": vol.iloc[0].reindex(accepted.index),
        "target_weight": w.reindex(accepted.index).fillna(0.0), "accepted_weight": accepted,
        "current_weight": check.current.reindex(accepted.index).fillna(0.0), "close": close_row.reindex(accepted.index),
    })
    with write_tx(day.engine, "paper") as conn:
        conn.execute(targets_t.delete().where((targets_t.c.account == acct) & (targets_t.c.as_of == as_of.date())))
        conn.execute(checks_t.delete().where((checks_t.c.account == acct) & (checks_t.c.as_of == as_of.date())))
        if len(tgt):
            conn.execute(targets_t.insert(), [
                {"account": acct, "as_of": as_of.date(), "symbol": s, **{k: (None if pd.isna(v) else float(v)) for k, v in r.items()}}
                for s, r in tgt.iterrows()
            ])
        if len(check.violations):
            conn.execute(checks_t.insert(), [
                {"account": acct, "as_of": as_of.date(), "symbol": str(v["symbol"]), "check": v["check"],
                 "value": None if pd.isna(v["value"]) else float(v["value"]), "limit": None if pd.isna(v["limit"]) else float(v["limit"]), "action": v["action"]}
                for _, v in check.violations.iterrows()
            ])
    day.info["within_limits"] = bool(check.within_limits)
    return check, tgt, account, current_qty


def _send_orders(day: _Day, accepted: pd.Series, current_qty: pd.Series, equity: float) -> list[dict]:
    """Stage 8: orders journaled (one transaction) and then submitted; returns what was sent."""
    journal = S.TABLES["paper_orders"]
    acct, as_of, close_row = day.account, day.as_of, day.close_row
    label = day.model_row["label"]
    # symbols without a close today cannot be sized: they keep their holdings (as next_open_reference)
    tradable = close_row[np.isfinite(close_row.to_numpy()) & (close_row.to_numpy() > 0)]
    oq = order_quantities(accepted.reindex(tradable.index.intersection(accepted.index)), current_qty.reindex(tradable.index.intersection(current_qty.index)), tradable, equity)
    reqs = [brokers.OrderRequest(sym, o["side"], float(o["qty"]), brokers.client_order_id(acct, as_of.date().isoformat(), sym, o["side"], label))
            for sym, o in oq.iterrows()]
    if reqs:  # journal first, so a crash after sending leaves a record to reconcile
        with write_tx(day.engine, "paper") as conn:
            known = {r[0] for r in conn.execute(sa.select(journal.c.client_order_id).where(
                (journal.c.account == acct) & journal.c.client_order_id.in_([q.client_order_id for q in reqs])))}
            fresh = [q for q in reqs if q.client_order_id not in known]
            if fresh:
                conn.execute(journal.insert(), [
                    {"account": acct, "client_order_id": q.client_order_id, "as_of": as_of.date(), "symbol": q.symbol, "side": q.side,
                     "qty": q.qty, "status": "new", "updated_at": utc_now(), "broker": day.broker_name} for q in fresh
                ])
    fault_point("paper.after_journal")
    placed = []
    for k, q in enumerate(reqs):
        placed.append(day.broker.submit(q))
        if k == 0:
            fault_point("paper.after_first_submit")
    fault_point("paper.after_submit")
    if placed:
        with write_tx(day.engine, "paper") as conn:
            for q, o in zip(reqs, placed, strict=True):
                conn.execute(journal.update().where((journal.c.account == acct) & (journal.c.client_order_id == q.client_order_id)).values(
                    status=o.status, broker_order_id=o.id, filled_qty=o.filled_qty, filled_avg_price=o.filled_avg_price,
                    reject_reason=o.reject_reason, updated_at=utc_now()))
    return [{"symbol": q.symbol, "side": q.side, "qty": q.qty, "client_order_id": q.client_order_id, "status": o.status, "reason": o.reject_reason}
            for q, o in zip(reqs, placed, strict=True)]


def _finish(day: _Day, account, n_orders: int) -> None:
    """Stage 9: the day marked ``done`` with equity, cash and the stages' record."""
    runs = S.TABLES["paper_runs"]
    fault_point("paper.before_done")
    day.info.update(model_id=int(day.model_row["id"]), model_status=day.model_status, finished=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"))
    with write_tx(day.engine, "paper") as conn:
        conn.execute(runs.update().where((runs.c.account == day.account) & (runs.c.as_of == day.as_of.date())).values(
            status="done", model=day.model_row["label"], equity=account.equity, cash=account.cash, n_orders=n_orders, finished_at=utc_now(), info=day.info))


def run_day(as_of, config: PaperConfig | dict | None = None, *, broker=None, source=None, history: pd.DataFrame | None = None, db=None) -> DayResult:
    """The daily paper-trading step for the trading day ``as_of`` (decisions at its close), the stages
    of the module docstring in order.

    Parameters
    ----------
    as_of : date-like trading day present in the data.
    config : :class:`PaperConfig` or dict.
    broker : a :class:`kit.live.brokers.Broker` (default a :class:`kit.live.sim.SimBroker` on ``db``).
    source : a :class:`kit.data.sources.BarSource` (default the Parquet store).
    history : preloaded adjusted bars (tidy), e.g. by :func:`kit.live.replay.replay`; rows after
        ``as_of`` are ignored.
    db : database URL or Engine (default :func:`kit.store.default_url`).

    Returns
    -------
    :class:`DayResult`.

    Raises
    ------
    PaperLockedError, PaperError
        Locked; ``as_of`` is not a trading day of the data, is before the last done day, or has no
        tradable model.
    """
    config = config if isinstance(config, PaperConfig) else PaperConfig.from_dict(config)
    engine = get_engine(db)
    day = _Day(pd.Timestamp(as_of).normalize(), config, engine, broker)
    try:
        lock = db_lock(engine, f"paper-{config.account}")
        lock.__enter__()  # entered here so that only the lock's own refusal becomes PaperLockedError
    except DatabaseLockedError as exc:
        raise PaperLockedError(f"another paper step for account {config.account!r} is running ({exc})") from None
    with contextlib.ExitStack() as stack:
        stack.push(lock)
        done = _claim(day)
        if done is not None:
            return done
        _verify_ledger(day)
        _load_bars(day, history, source)
        if day.broker is None:
            day.broker = SimBroker(engine, config.account, config.initial_cash, config.cost_bps, config.slippage_bps, Limits.from_dict(config.limits))
        _open(day)
        try:
            _features_and_predict(day)
            _record_ledger(day)
            check, tgt, account, current_qty = _targets(day)
            sent = _send_orders(day, check.accepted, current_qty, account.equity)
            _finish(day, account, len(sent))
        except Exception as exc:  # the day is recorded failed (never left 'started'), the error re-raised
            _fail(day, exc)
            raise
        return DayResult(day.as_of, "done", day.model_row["label"], account.equity, account.cash, pd.DataFrame(sent), day.fills, check.violations, tgt, day.info)


def _verify_ledger(day: _Day) -> None:
    """Before trading: the whole ledger chain and its anchors verify (:func:`kit.store.ledger.verify`).

    Raises
    ------
    kit.store.ledger.TamperedLedgerError
        A finding of the verification (the first one named; the day is not started).
    """
    report = ledger.verify(db=day.engine)
    day.info["ledger_verified_rows"] = int(report.n_rows)
    if not report.ok:
        first = report.problems.iloc[0]
        raise ledger.TamperedLedgerError(
            f"ledger verification failed before trading {day.as_of.date()}: {len(report.problems)} finding(s), first: "
            f"{first['kind']} at seq {first['seq']}: {first['detail']}; nothing traded"
        )


def _fail(day: _Day, exc: BaseException) -> None:
    """Record the day ``failed`` with the error (best effort: a database that cannot be written to
    leaves the row as it was, and the caller still sees the original error)."""
    runs = S.TABLES["paper_runs"]
    info = {**{k: v for k, v in day.info.items() if k != "run_row_exists"}, "error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    try:
        with write_tx(day.engine, "paper") as conn:
            conn.execute(runs.update().where((runs.c.account == day.account) & (runs.c.as_of == day.as_of.date())).values(
                status="failed", finished_at=utc_now(), info=info))
    except Exception:  # noqa: BLE001 - the original error matters more than this record
        pass
