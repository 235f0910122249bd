"""Replays of the paper loop over history, its records, and the preparation of a model for a replay."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..data import data_sha256, to_wide, wide_fields
from ..portfolio import Limits, NextOpenResult, next_open_reference
from ..store import registry
from ..store import schema as S
from ..store.engine import get_engine, read_tx
from ..training import TrainConfig, walk_forward
from .daily import PaperConfig, PaperError, load_history, run_day
from .sim import SimBroker

__all__ = ["ReplayResult", "paper_history", "replay", "prepare_model"]


@dataclass
class ReplayResult:
    """A day-by-day replay of the paper loop over history and the reference backtest beside it.

    Attributes
    ----------
    days : DataFrame by day: status, equity, cash, n_orders.
    weights : (T, N) accepted target weights the loop recorded.
    reference : :class:`NextOpenResult` of :func:`next_open_reference` on those weights.
    max_rel_diff : largest ``|paper equity / reference equity - 1|`` over the days.
    model : label of the model traded; model_status : ``active`` or ``candidate (...)``.
    """

    days: pd.DataFrame
    weights: pd.DataFrame
    reference: NextOpenResult
    max_rel_diff: float
    model: str
    model_status: str


def paper_history(account: str = "paper", *, db=None) -> dict:
    """The loop's records for ``account``: ``runs``, ``targets``, ``checks``, ``orders`` (journal)
    as DataFrames (empty when none)."""
    engine = get_engine(db)
    t = S.TABLES
    out = {}
    with read_tx(engine) as conn:
        for key, name in (("runs", "paper_runs"), ("targets", "paper_targets"), ("checks", "paper_checks"), ("orders", "paper_orders")):
            tab = t[name]
            out[key] = pd.DataFrame(conn.execute(tab.select().where(tab.c.account == account)).mappings().all(), columns=[c.name for c in tab.columns])
    return out


def replay(start, end, config: PaperConfig | dict | None = None, *, db=None, source=None, progress: bool = False) -> ReplayResult:
    """Step the paper loop day by day over the trading days ``[start, end]`` of the data, as if
    live (a :class:`SimBroker` account, the registry's model, the ledger, the pre-trade check), then
    run :func:`next_open_reference` on the weights it recorded: the two equity curves must agree
    to float rounding (``max_rel_diff``; tested below 1e-9).

    The account must be new or have stopped before ``start`` (use a fresh ``account`` name or
    :meth:`SimBroker.reset`). Days already done are skipped, so an interrupted replay resumes.

    Raises
    ------
    PaperError
        No trading day in the window; as :func:`run_day`.
    """
    config = config if isinstance(config, PaperConfig) else PaperConfig.from_dict(config)
    start, end = pd.Timestamp(start), pd.Timestamp(end)
    history = load_history(config, end, source)
    frames = wide_fields(history, ("open", "close"))
    close, open_ = frames["close"], frames["open"]
    days = close.index[(close.index >= start) & (close.index <= end)]
    if len(days) == 0:
        raise PaperError(f"no trading day between {start.date()} and {end.date()} in the data")
    engine = get_engine(db)
    broker = SimBroker(engine, config.account, config.initial_cash, config.cost_bps, config.slippage_bps, Limits.from_dict(config.limits))
    iterator = days
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(days, desc="paper replay")
    last = None
    for d in iterator:
        last = run_day(d, config, broker=broker, history=history, db=engine)
    rec = paper_history(config.account, db=engine)
    runs = rec["runs"]
    runs = runs[(pd.to_datetime(runs["as_of"]) >= start) & (pd.to_datetime(runs["as_of"]) <= end)].copy()
    runs["as_of"] = pd.to_datetime(runs["as_of"])
    runs = runs.set_index("as_of").sort_index()
    tg = rec["targets"]
    tg["as_of"] = pd.to_datetime(tg["as_of"])
    weights = tg.pivot(index="as_of", columns="symbol", values="accepted_weight").reindex(index=days, columns=close.columns)
    ref = next_open_reference(close.loc[days], open_.loc[days], weights, broker.cost_bps, broker.slippage_bps, broker.initial_cash)
    paper_eq = runs["equity"].reindex(days)
    rel = (paper_eq / ref.equity - 1.0).abs()
    info = (last.info or {}) if last is not None else {}
    return ReplayResult(
        days=runs[["status", "equity", "cash", "n_orders"]], weights=weights, reference=ref, max_rel_diff=float(rel.max()),
        model=str(runs["model"].dropna().iloc[-1]) if runs["model"].notna().any() else "", model_status=str(info.get("model_status", "")),
    )


def prepare_model(config: PaperConfig | dict, train_until, *, db=None, source=None, model: str = "dmn_lstm", test_years: int = 2,
                  hidden_size: int = 10, epochs: int = 5, seed: int = 0, gate: dict | None = None, checkpoint_dir=None,
                  features: str = "dmn") -> dict:
    """Train ``model`` walk-forward on the configured universe with data up to ``train_until``
    only (``test_years`` yearly out-of-sample folds just before it), register it as a candidate in
    ``config.scope`` and apply the promotion gate. For replays: the model never sees the replayed
    window. Returns the registry row (its ``status`` says whether the gate promoted it) and the
    gate's failed criteria in ``row["gate_reasons"]``. ``features``: the model's feature
    specification (:func:`kit.features.feature_array`; the paper step computes the same).
    """
    config = config if isinstance(config, PaperConfig) else PaperConfig.from_dict(config)
    until = pd.Timestamp(train_until)
    hist = load_history(config, until, source)
    close = to_wide(hist, "close")
    close = close[close.index <= until]
    test_start = close.index[-1] - pd.DateOffset(years=test_years)
    tmp = Path(checkpoint_dir) if checkpoint_dir else Path(tempfile.mkdtemp(prefix="kit-paper-model-"))
    wf = walk_forward(
        close, model=model, test_start=test_start, test_size=252, hidden_size=hidden_size,
        train=TrainConfig(epochs=epochs, patience=max(2, epochs // 2), seed=seed), checkpoint_dir=tmp, progress=False,
        data_sha256=data_sha256(config.data_path or None), features=features,
    )
    mid = registry.register_walk_forward(wf, close, config.scope, db=db)
    decision = registry.apply_gate(mid, gate, db=db)
    row = registry.get_model(mid, db=db)
    row["gate_reasons"] = decision.reasons
    return row

