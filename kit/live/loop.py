"""The daily loop, ``python -m kit daily``: the paper step and everything that watches it, in order.

:func:`run_daily` runs, for one account and trading day:

1. ``ingest``: the universe's adjusted bars up to the day from the bar source; the day must be in
   them. The last ``validation_days`` trading days are checked by :func:`kit.data.validate_prices`
   (findings of the day counted by severity).
2. ``paper``: the paper step :func:`kit.live.daily.run_day` (its own lock and idempotency: a day it
   already did is not traded again). A model trained on data after the day is refused (look-ahead).
3. ``fillback``: the ledger's outcomes whose dates have passed are filled in
   (:func:`kit.store.ledger.fillback`, idempotent).
4. ``drift``: feature drift of the recent window against the training window of the model traded
   (from its checkpoint's ``train_period``), one cross-section every ``sample_stride`` days, each
   date's cross-sectional mean removed by default (:func:`kit.analytics.drift.window_samples`,
   :func:`~kit.analytics.drift.feature_drift`), and
   performance drift of its ledger outcomes against the gate's thresholds
   (:func:`~kit.analytics.drift.performance_drift`); every check stored with the date
   (:func:`kit.store.monitoring.record_checks`).
5. ``retrain``: :func:`kit.live.retrain.should_retrain` (schedule and drift triggers of the
   profile); when due, :func:`kit.live.retrain.retrain_model` trains, registers and gates a new
   model (the gate decides whether it goes live; it trades from the next day).
6. ``publish``: the day's metrics to the Pushgateway (or a textfile folder) with
   :func:`kit.live.monitoring.publish` (job ``kit_daily``, grouping ``profile`` and ``account``).
7. ``alert``: when something needs a person, a JSON POST to the webhook
   (:func:`kit.live.monitoring.send_webhook`).

What needs a person (the alerts; the command then exits with status 3): validation findings of
severity ``error`` in the day's bars (with a validator that gives no severities: any finding in
them), a ``drift`` verdict of the feature-drift summary or of the traded model's direction accuracy
or MAPE, a drawdown of the account's equity beyond ``drawdown_limit``, a retraining the gate refused,
a retraining that raised an error.

Idempotent per day: the day's row in ``monitor_runs`` is claimed first (:func:`kit.store.monitoring.
start_run`); a day already ``done`` returns ``already_done`` and does nothing (no trade, no
retraining, no push, no webhook). A day that failed or was killed runs again; a retraining recorded
for that day is not made twice (the registry would also find the same version registered). A crash
between the push or the webhook and the day's final record repeats them on the rerun (at least
once). An error in a stage marks the day ``failed`` with the error, publishes ``kit_run_success 0``
(with the last data date when known) and sends the webhook, then re-raises.

Crash points for tests (:mod:`kit.base.faults`): ``daily.after_paper``, ``daily.after_retrain``,
``daily.before_done``.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..analytics import drift as D
from ..base.config import strict_dataclass
from ..base.faults import fault_point
from ..base.locks import LockHeldError
from ..data import data_sha256, validate_prices, wide_fields
from ..data.schema import OPTIONAL_COLUMNS
from ..features import feature_set
from ..models import read_payload
from ..portfolio import Limits
from ..store import ledger, registry
from ..store import monitoring as M
from ..store.engine import DatabaseLockedError, db_lock, get_engine
from . import monitoring as mon
from .daily import DayResult, PaperConfig, PaperError, _pick_model, load_history, run_day
from .replay import paper_history
from .retrain import RetrainPolicy, retrain_model, should_retrain
from .sim import SimBroker

__all__ = ["DriftSettings", "MonitorConfig", "DailyResult", "DailyLockedError", "run_daily", "replay_daily", "daily_history", "ALERT_KINDS"]

ALERT_KINDS = ("data", "feature_drift", "direction_accuracy", "mape", "drawdown", "retrain_rejected", "retrain_error")
"""The kinds of alert of the daily loop (module docstring)."""


class DailyLockedError(PaperError, LockHeldError):
    """Another daily loop for the same account is running (the lock is held)."""


@dataclass
class DriftSettings:
    """Settings of the daily drift checks (the ``drift`` keys of a profile's ``monitor`` section).

    Attributes
    ----------
    recent_days : trading days in the recent window of the feature check (21).
    sample_stride : trading days between the cross-sections sampled in both windows (21; with
        ``recent_days`` 21 the recent sample is the day's cross-section, the only sample of slow
        features, such as a 252-day return, whose rows do not overlap).
    demean : remove each date's cross-sectional mean of every feature before comparing (True): the
        check then sees changes in how the stocks' features spread, not a move of the whole market,
        which every stock shares and which makes the test reject far too often on undrifted data
        (``docs/monitoring.md``: 76% of simulated one-factor panels without it).
    psi_threshold : PSI above which a feature's distribution has shifted a lot (0.25).
    ks_alpha : family-wise level of the per-feature KS tests, Holm-adjusted (0.05).
    require_psi : a feature drifts only when its KS test rejects *and* its PSI exceeds the threshold
        (True: with hundreds of rows the KS test finds shifts too small to matter).
    bins : PSI bins (10). min_obs : fewest values per sample for a feature to be tested (20).
    performance_window : trading days of ledger outcomes in the performance check (30).
    performance_alpha : level of each one-sided performance test (0.05).

    Raises
    ------
    ValueError
        A value of the wrong type or range (named).
    """

    recent_days: int = 21
    sample_stride: int = 21
    demean: bool = True
    psi_threshold: float = 0.25
    ks_alpha: float = 0.05
    require_psi: bool = True
    bins: int = 10
    min_obs: int = 20
    performance_window: int = 30
    performance_alpha: float = 0.05

    def __post_init__(self):
        for key, lo in (("recent_days", 1), ("sample_stride", 1), ("bins", 2), ("min_obs", 2), ("performance_window", 1)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"monitor.drift {key} must be an integer >= {lo}, got {v!r}")
        for key in ("ks_alpha", "performance_alpha"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < 1:
                raise ValueError(f"monitor.drift {key} must be a number in (0, 1), got {v!r}")
        v = self.psi_threshold
        if isinstance(v, bool) or not isinstance(v, int | float) or not (np.isfinite(v) and v > 0):
            raise ValueError(f"monitor.drift psi_threshold must be a number > 0, got {v!r}")
        for key in ("require_psi", "demean"):
            if not isinstance(getattr(self, key), bool):
                raise ValueError(f"monitor.drift {key} must be true or false, got {getattr(self, key)!r}")


@dataclass
class MonitorConfig:
    """Settings of the daily loop (the ``monitor`` section of a profile).

    Attributes
    ----------
    drift : :class:`DriftSettings` (or its mapping).
    retrain : :class:`kit.live.retrain.RetrainPolicy` (or its mapping).
    gate : :class:`kit.store.registry.GateThresholds` (or its mapping): the promotion gate of a
        retrained model and the thresholds of the performance checks.
    drawdown_limit : fraction of the equity's running peak (0.20): a deeper drawdown is an alert.
    validation_days : trading days of bars validated each day (10; the day's findings are counted).
    pushgateway_url : the Pushgateway (``""``: ``$KIT_PUSHGATEWAY_URL``; neither: no push).
    textfile_dir : a node-exporter textfile folder instead of or beside it (``""``: ``$KIT_TEXTFILE_DIR``).
    webhook_url : where the alert goes (``""``: ``$KIT_ALERT_WEBHOOK_URL``; neither: no webhook).

    Raises
    ------
    kit.base.ConfigError
        An unknown key here or in ``drift``, ``retrain`` or ``gate`` (named, with the nearest valid one).
    ValueError
        A value of the wrong type or range.
    """

    drift: DriftSettings = field(default_factory=DriftSettings)
    retrain: RetrainPolicy = field(default_factory=RetrainPolicy)
    gate: registry.GateThresholds = field(default_factory=registry.GateThresholds)
    drawdown_limit: float = 0.20
    validation_days: int = 10
    pushgateway_url: str = ""
    textfile_dir: str = ""
    webhook_url: str = ""

    def __post_init__(self):
        if self.drift is None or isinstance(self.drift, Mapping):
            self.drift = strict_dataclass(DriftSettings, self.drift, "monitor.drift")
        if self.retrain is None or isinstance(self.retrain, Mapping):
            self.retrain = RetrainPolicy.from_dict(self.retrain)
        if self.gate is None or isinstance(self.gate, Mapping):
            self.gate = strict_dataclass(registry.GateThresholds, self.gate, "monitor.gate")
        for key, typ in (("drift", DriftSettings), ("retrain", RetrainPolicy), ("gate", registry.GateThresholds)):
            if not isinstance(getattr(self, key), typ):
                raise ValueError(f"monitor {key} must be a mapping, got {getattr(self, key)!r}")
        v = self.drawdown_limit
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1:
            raise ValueError(f"monitor drawdown_limit must be a fraction in (0, 1], got {v!r}")
        if isinstance(self.validation_days, bool) or not isinstance(self.validation_days, int) or self.validation_days < 2:
            raise ValueError(f"monitor validation_days must be an integer >= 2, got {self.validation_days!r}")
        for key in ("pushgateway_url", "textfile_dir", "webhook_url"):
            v = getattr(self, key)
            if v is None:
                setattr(self, key, "")
            elif not isinstance(v, str):
                raise ValueError(f"monitor {key} must be a string, got {v!r}")
        for key in ("pushgateway_url", "webhook_url"):
            v = getattr(self, key)
            if v and not v.startswith(("http://", "https://")):
                raise ValueError(f"monitor {key} must be an http:// or https:// URL, got {v!r}")

    @classmethod
    def from_dict(cls, d: dict | None) -> MonitorConfig:
        """From a profile's ``monitor`` mapping; unknown keys raise :class:`kit.base.ConfigError`."""
        return strict_dataclass(cls, d, "monitor")


@dataclass
class DailyResult:
    """What one run of the daily loop did.

    Attributes
    ----------
    as_of : the trading day. account, scope : the paper account and its registry scope.
    status : ``done`` (ran now) or ``already_done`` (a second run of the day: nothing done).
    needs_person : True when there are alerts (the command exits with status 3).
    alerts : list of ``{kind, message}``.
    model : label of the model traded. paper : the paper step's :class:`kit.live.daily.DayResult`
        (None for ``already_done``).
    checks : DataFrame of the day's drift checks (columns of :class:`kit.analytics.drift.DriftCheck`).
    retrain : dict: ``decided`` and ``reason``; when a retraining ran, its outcome
        (:func:`kit.live.retrain.retrain_model`'s keys, ``promoted``).
    metrics : the metrics published (:func:`kit.live.monitoring.build_registry`'s keys).
    published : True/False (push or textfile write succeeded / failed), None when not configured.
    webhook_sent : True/False, None when not needed or not configured.
    stages : seconds per stage.
    """

    as_of: pd.Timestamp
    account: str
    scope: str
    status: str
    needs_person: bool = False
    alerts: list = field(default_factory=list)
    model: str | None = None
    paper: DayResult | None = None
    checks: pd.DataFrame = None
    retrain: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    published: bool | None = None
    webhook_sent: bool | None = None
    stages: dict = field(default_factory=dict)

    def summary(self) -> str:
        """One line for the terminal and the log."""
        if self.status == "already_done":
            return (f"{self.as_of.date()}: already done (first run: {len(self.alerts)} alert(s)"
                    + (f": {', '.join(a['kind'] for a in self.alerts)}" if self.alerts else "") + "); nothing done again")

        def first(check):
            if self.checks is None or self.checks.empty:
                return None
            rows = self.checks[self.checks["check"] == check]
            return rows.iloc[0] if len(rows) else None

        feat, acc = first("feature_drift"), first("direction_accuracy")
        r = self.retrain
        if r.get("attempted"):
            retrain = f"retrained: {r.get('label')} {r.get('outcome')}" if r.get("model_id") else f"retraining failed: {r.get('error')}"
        else:
            retrain = "no retraining"
        parts = [
            f"{self.as_of.date()}: {self.status}; model {self.model}; equity {self.metrics.get('equity_dollars', float('nan')):,.2f}",
            "feature drift " + ("not checked" if feat is None else str(feat["verdict"])),
            "accuracy " + ("not checked" if acc is None else str(acc["verdict"]) + ("" if pd.isna(acc["value"]) else
                                                                                   f" ({acc['value']:.3f}, n={int(acc['n'])})")),
            retrain,
            f"alerts {len(self.alerts)}" + (f" ({', '.join(a['kind'] for a in self.alerts)})" if self.alerts else ""),
        ]
        return "; ".join(parts)


@dataclass
class _Ctx:
    """What the stages of one :func:`run_daily` hand to each other."""

    day: pd.Timestamp
    paper: PaperConfig
    monitor: MonitorConfig
    engine: object
    profile: str
    broker: object = None
    source: object = None
    history: pd.DataFrame = None
    close: pd.DataFrame = None
    rows_ingested: int = 0
    last_data_date: pd.Timestamp | None = None
    findings: dict = field(default_factory=dict)
    data_alert: str = ""
    day_result: DayResult | None = None
    model_row: dict | None = None
    filled_back: int = 0
    checks: list = field(default_factory=list)
    retrain: dict = field(default_factory=dict)
    stages: dict = field(default_factory=dict)
    stage_status: dict = field(default_factory=dict)

    @property
    def account(self) -> str:
        return self.paper.account


@contextlib.contextmanager
def _stage(ctx: _Ctx, name: str):
    t0 = time.perf_counter()
    ctx.stage_status[name] = "failed"
    try:
        yield
        ctx.stage_status[name] = "ok"
    finally:
        ctx.stages[name] = round(time.perf_counter() - t0, 3)


def _ingest(ctx: _Ctx, history: pd.DataFrame | None) -> None:
    """Stage 1: the adjusted bars up to the day; the last ``validation_days`` trading days validated.

    Validation runs on the adjusted bars (a bar source gives no split or dividend events, so the raw
    prices' event checks would only flag every split and dividend; on adjusted prices a jump is a
    jump). Event columns a source lacks get their neutral values (:data:`kit.data.schema.
    OPTIONAL_COLUMNS`)."""
    day = ctx.day
    bars = load_history(ctx.paper, day, ctx.source) if history is None else history
    bars = bars[bars["date"] <= day]
    ctx.last_data_date = pd.Timestamp(bars["date"].max())
    ctx.rows_ingested = int((bars["date"] == day).sum())
    if ctx.rows_ingested == 0:
        raise PaperError(f"no bars dated {day.date()} in the data (its last date is {ctx.last_data_date.date()}): the feed may have stopped")
    dates = pd.DatetimeIndex(np.sort(bars["date"].unique()))
    recent = bars[bars["date"] >= dates[max(0, len(dates) - ctx.monitor.validation_days)]]
    recent = recent.assign(**{k: v for k, v in OPTIONAL_COLUMNS.items() if k not in recent.columns})
    issues = validate_prices(recent.sort_values(["symbol", "date"], kind="stable")).issues
    today = issues[pd.to_datetime(issues["date"]) == day] if len(issues) else issues
    if "severity" in today.columns:
        ctx.findings = {str(k): int(v) for k, v in today["severity"].value_counts().items()}
        serious = today[today["severity"] == "error"]
    else:
        ctx.findings = {"unclassified": int(len(today))} if len(today) else {}
        serious = today
    if len(serious):
        checks = ", ".join(f"{k} {v}" for k, v in serious["check"].value_counts().items())
        ctx.data_alert = f"{len(serious)} validation finding(s) in the bars of {day.date()}: {checks}"
    ctx.history = bars
    ctx.close = wide_fields(bars, ("close",))["close"]


def _paper(ctx: _Ctx) -> None:
    """Stage 2: the paper step (its own lock and idempotency)."""
    if ctx.broker is None:
        p = ctx.paper
        ctx.broker = SimBroker(ctx.engine, p.account, p.initial_cash, p.cost_bps, p.slippage_bps, Limits.from_dict(p.limits))
    planned, _ = _pick_model(ctx.paper, ctx.engine)
    if pd.Timestamp(planned["trained_on"]) > ctx.day:
        raise PaperError(f"the model {planned['label']} was trained on data up to {planned['trained_on']}, after {ctx.day.date()}: "
                         "running this day with it would be look-ahead (days run in order; replay history in a fresh database)")
    ctx.day_result = run_day(ctx.day, ctx.paper, broker=ctx.broker, history=ctx.history, db=ctx.engine)
    model_id = (ctx.day_result.info or {}).get("model_id")
    if model_id is None:
        raise PaperError(f"the paper step of {ctx.day.date()} recorded no model id")
    ctx.model_row = registry.get_model(int(model_id), db=ctx.engine)
    M.update_run(ctx.account, ctx.day, db=ctx.engine, stage="paper", model_id=int(model_id), model=ctx.model_row["label"])


def _train_period(model_row: dict, first_date) -> tuple:
    """(first, last) date of the model's training data: its checkpoint's ``train_period`` (an
    ensemble's first member's), else the data's first date and the registry's ``trained_on``."""
    try:
        payload = read_payload(model_row["checkpoint_path"])
    except Exception:  # noqa: BLE001 - the registry's trained_on is the fallback
        payload = {}
    period = payload.get("train_period") or ((payload.get("members") or [{}])[0]).get("train_period") or [None, None]
    start = period[0] or first_date
    end = period[1] or model_row["trained_on"]
    end = min(pd.Timestamp(end), pd.Timestamp(model_row["trained_on"]))
    names = payload.get("feature_names") or ((payload.get("members") or [{}])[0]).get("feature_names")
    return pd.Timestamp(start), end, names


def _drift(ctx: _Ctx) -> None:
    """Stage 4: feature drift against the traded model's training window, performance drift of its
    ledger record; stored."""
    s, row = ctx.monitor.drift, ctx.model_row
    start, end, names = _train_period(row, ctx.close.index[0])
    features = feature_set("dmn", ctx.close)
    train, recent = D.window_samples(features, (start, min(end, ctx.day)), ctx.day, recent_days=s.recent_days, stride=s.sample_stride,
                                     names=names, demean=s.demean)
    result = D.feature_drift(train, recent, psi_threshold=s.psi_threshold, ks_alpha=s.ks_alpha, bins=s.bins, min_obs=s.min_obs,
                             require_psi=s.require_psi)
    checks = D.feature_drift_checks(result, ctx.day)
    o = ledger.outcomes(horizon=1, db=ctx.engine)
    o = o[o["model_id"] == int(row["id"])]
    if len(o):
        g = ctx.monitor.gate
        perf = D.performance_drift(o, min_direction_accuracy=g.min_direction_accuracy, max_mape=g.max_mape, alpha=s.performance_alpha,
                                   window=s.performance_window, as_of=ctx.day)
        checks += D.checks_from_frame(perf)
    M.record_checks(checks, account=ctx.account, scope=ctx.paper.scope, model_id=int(row["id"]), db=ctx.engine)
    ctx.checks = checks


def _retrain(ctx: _Ctx, row_before: dict | None) -> None:
    """Stage 5: the policy's decision, and the retraining when due (once per day)."""
    earlier = (row_before or {}).get("retrain") or {}
    if earlier.get("attempted") and "outcome" in earlier:
        ctx.retrain = dict(earlier, note="made by an earlier run of this day; not repeated")
        return
    policy, row, day = ctx.monitor.retrain, ctx.model_row, ctx.day
    last_attempt = M.last_retrain(ctx.paper.scope, day, db=ctx.engine)
    verdicts = M.load_checks(account=ctx.account, scope=ctx.paper.scope, end=day, db=ctx.engine)
    verdicts = verdicts[verdicts["model_id"] == int(row["id"])]
    due, why = should_retrain(policy, row["trained_on"], day, ctx.close.index, verdicts, last_attempt=last_attempt)
    ctx.retrain = {"decided": bool(due), "reason": why}
    if not due:
        return
    ctx.retrain["attempted"] = True
    M.update_run(ctx.account, day, db=ctx.engine, stage="retrain", retrain=ctx.retrain)
    try:
        out = retrain_model(row, ctx.close, day, policy, gate=ctx.monitor.gate, data_sha256=data_sha256(ctx.paper.data_path or None),
                            extra={"retrained_by": "python -m kit daily", "as_of": day.date(), "account": ctx.account, "reason": why,
                                   "replaces": row["label"]}, db=ctx.engine)
        ctx.retrain.update(out, outcome="promoted" if out["status"] == "active" else "refused by the gate", promoted=out["status"] == "active")
    except Exception as exc:  # noqa: BLE001 - a failed retraining is an alert, the day goes on with the current model
        ctx.retrain.update(outcome="error", error=f"{type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}", promoted=False)
    M.update_run(ctx.account, day, db=ctx.engine, stage="retrain", retrain=ctx.retrain)
    fault_point("daily.after_retrain")


def _equity_path(ctx: _Ctx) -> tuple[float, float, float]:
    """(equity, daily P&L, drawdown below the running peak) of the account up to the day, from the
    paper step's records (the initial cash counts as the first point)."""
    runs = paper_history(ctx.account, db=ctx.engine)["runs"]
    runs = runs[(runs["status"] == "done") & (pd.to_datetime(runs["as_of"]) <= ctx.day)].sort_values("as_of")
    eq = np.concatenate([[float(ctx.broker.initial_cash) if hasattr(ctx.broker, "initial_cash") else float(ctx.paper.initial_cash)],
                         runs["equity"].to_numpy(dtype="float64")])
    equity = float(eq[-1])
    pnl = float(eq[-1] - eq[-2]) if len(eq) > 1 else 0.0
    peak = float(np.max(eq))
    return equity, pnl, max(0.0, 1.0 - equity / peak) if peak > 0 else 0.0


def _alerts(ctx: _Ctx, drawdown: float) -> list[dict]:
    out = []
    if ctx.data_alert:
        out.append({"kind": "data", "message": ctx.data_alert})
    for c in ctx.checks:
        if c.verdict != "drift":
            continue
        if c.check == "feature_drift":
            out.append({"kind": "feature_drift", "message": f"{int(c.value)} feature(s) drifted from the training window of {ctx.model_row['label']}"
                        f" (smallest Holm-adjusted KS p-value {c.p_value:.2g})"})
        elif c.check in ("direction_accuracy", "mape"):
            op = "below" if c.check == "direction_accuracy" else "above"
            out.append({"kind": c.check, "message": f"{c.subject}: rolling {c.check} {c.value:.4f} significantly {op} the gate's {c.threshold:g} "
                        f"(p = {c.p_value:.2g}, n = {c.n})"})
    if drawdown > ctx.monitor.drawdown_limit:
        out.append({"kind": "drawdown", "message": f"account {ctx.account}: drawdown {drawdown:.2%} beyond the limit {ctx.monitor.drawdown_limit:.2%}"})
    r = ctx.retrain
    if r.get("attempted") and r.get("outcome") == "refused by the gate":
        out.append({"kind": "retrain_rejected", "message": f"retrained {r.get('label')} failed the gate ({r.get('reasons') or r.get('gate')}); "
                    f"{ctx.model_row['label']} stays in use"})
    elif r.get("attempted") and r.get("outcome") == "error":
        out.append({"kind": "retrain_error", "message": f"retraining failed: {r.get('error')}"})
    return out


def _metrics(ctx: _Ctx, status: str, started: float, alerts: list | None = None, drawdown=None, equity=None, pnl=None) -> dict:
    """The metrics of :mod:`kit.live.monitoring` for the day (as much as is known)."""
    m = {"status": status, "finished_at": _dt.datetime.now(_dt.UTC), "duration_seconds": round(time.perf_counter() - started, 3),
         "as_of": ctx.day.date(),
         "stages": {k: {"seconds": v, "status": ctx.stage_status.get(k, "ok")} for k, v in ctx.stages.items()}}
    if ctx.last_data_date is not None:
        m.update(last_data_date=ctx.last_data_date.date(), rows_ingested=ctx.rows_ingested,
                 validation_findings=ctx.findings or {"error": 0})
    if status != "success":
        return m
    held = ctx.broker.positions()
    values = np.array([p.market_value for p in held.values()], dtype="float64")
    journal = paper_history(ctx.account, db=ctx.engine)["orders"]
    journal["as_of"] = pd.to_datetime(journal["as_of"])
    prev = ctx.close.index[ctx.close.index < ctx.day]
    resolved = journal[journal["as_of"] == prev[-1]] if len(prev) else journal.iloc[:0]
    g = ctx.monitor.gate
    board = ledger.leaderboard(ctx.monitor.drift.performance_window, by="model", as_of=ctx.day, db=ctx.engine)
    board = board[board["model_id"] == int(ctx.model_row["id"])]
    m.update(
        positions=int((np.abs([p.qty for p in held.values()]) > 0).sum()) if held else 0,
        gross_exposure_dollars=float(np.abs(values).sum()), net_exposure_dollars=float(values.sum()),
        equity_dollars=equity, daily_pnl_dollars=pnl, drawdown_ratio=drawdown, drawdown_limit_ratio=ctx.monitor.drawdown_limit,
        orders={"sent": int((journal["as_of"] == ctx.day).sum()), "filled": int((resolved["status"] == "filled").sum()),
                "rejected": int((resolved["status"] == "rejected").sum())},
        models=[{"model": ctx.model_row["name"], "scope": ctx.model_row["scope"], "version": ctx.model_row["version"]}],
        ledger=[{"model": r["label"], "window_days": ctx.monitor.drift.performance_window, "n": int(r["n_calls"]),
                 "direction_accuracy": r["direction_accuracy"], "mape": r["mape"]} for r in board.to_dict("records")],
        gate={"min_direction_accuracy": g.min_direction_accuracy, "max_mape": g.max_mape},
        drift=ctx.checks, needs_person=bool(alerts),
        alerts={k: sum(a["kind"] == k for a in alerts or []) for k in ALERT_KINDS},
    )
    if ctx.retrain.get("attempted"):
        m["retrain"] = {"as_of": ctx.day.date(), "promoted": bool(ctx.retrain.get("promoted"))}
    return m


def _publish(ctx: _Ctx, metrics: dict) -> bool | None:
    mc = ctx.monitor
    import os

    if not (mc.pushgateway_url or mc.textfile_dir or os.environ.get(mon.PUSHGATEWAY_ENV) or os.environ.get(mon.TEXTFILE_ENV)):
        return None
    return mon.publish(metrics, job="kit_daily", grouping={"profile": ctx.profile, "account": ctx.account},
                       pushgateway_url=mc.pushgateway_url or None, textfile_dir=mc.textfile_dir or None)


def _webhook(ctx: _Ctx, alerts: list, retrain: dict, error: str | None = None) -> bool | None:
    import os

    url = ctx.monitor.webhook_url or os.environ.get(mon.WEBHOOK_ENV) or ""
    if not url:
        return None
    head = f"kit daily {ctx.profile}/{ctx.account} {ctx.day.date()}: " + (f"FAILED: {error}" if error else
                                                                         f"{len(alerts)} alert(s): " + "; ".join(a["message"] for a in alerts))
    payload = {"text": head, "profile": ctx.profile, "account": ctx.account, "scope": ctx.paper.scope, "as_of": ctx.day.date(),
               "status": "failed" if error else "done", "error": error, "alerts": alerts, "retrain": retrain,
               "model": (ctx.model_row or {}).get("label")}
    return mon.send_webhook(url, payload)


def run_daily(as_of, paper: PaperConfig | dict | None = None, monitor: MonitorConfig | dict | None = None, *, profile: str = "paper", db=None,
              source=None, broker=None, history: pd.DataFrame | None = None) -> DailyResult:
    """The daily loop for the trading day ``as_of``: the stages of the module docstring, in order.

    Parameters
    ----------
    as_of : date-like trading day present in the data.
    paper : :class:`kit.live.daily.PaperConfig` or its mapping (a profile's ``paper`` section).
    monitor : :class:`MonitorConfig` or its mapping (a profile's ``monitor`` section).
    profile : the profile's name (the ``profile`` label of the published metrics).
    db : database URL or Engine (default :func:`kit.store.default_url`).
    source : a :class:`kit.data.sources.BarSource` (default the Parquet store).
    broker : a :class:`kit.live.brokers.Broker` (default the simulated broker of the account).
    history : preloaded adjusted bars of the universe (tidy, as :func:`kit.live.daily.load_history`
        gives them; rows after ``as_of`` are ignored), e.g. by :func:`replay_daily`.

    Returns
    -------
    :class:`DailyResult`.

    Raises
    ------
    DailyLockedError
        Another daily loop of the account is running.
    PaperError, ValueError
        A refused day (not in the data, before the last done day) or settings; as
        :func:`kit.live.daily.run_day`. Any error of a stage is re-raised after the day is recorded
        ``failed``, its metrics published and the webhook sent.
    """
    paper = paper if isinstance(paper, PaperConfig) else PaperConfig.from_dict(paper)
    monitor = monitor if isinstance(monitor, MonitorConfig) else MonitorConfig.from_dict(monitor)
    engine = get_engine(db)
    day = pd.Timestamp(as_of).normalize()
    ctx = _Ctx(day, paper, monitor, engine, str(profile), broker=broker, source=source)
    try:
        lock = db_lock(engine, f"daily-{paper.account}")
        lock.__enter__()
    except DatabaseLockedError as exc:
        raise DailyLockedError(f"another daily loop for account {paper.account!r} is running ({exc})") from None
    with contextlib.ExitStack() as stack:
        stack.push(lock)
        row_before = M.get_run(paper.account, day, db=engine)
        done = M.start_run(paper.account, day, paper.scope, db=engine)
        if done is not None:
            checks = M.load_checks(account=paper.account, as_of=day, db=engine)
            return DailyResult(day, paper.account, paper.scope, "already_done", bool(done["needs_person"]), list(done["alerts"] or []),
                               done["model"], None, checks, dict(done["retrain"] or {}), dict(done["metrics"] or {}))
        started = time.perf_counter()
        try:
            with _stage(ctx, "ingest"):
                _ingest(ctx, history)
            with _stage(ctx, "paper"):
                _paper(ctx)
            fault_point("daily.after_paper")
            with _stage(ctx, "fillback"):
                ctx.filled_back = ledger.fillback(ctx.close, as_of=day, db=engine).n_filled
            with _stage(ctx, "drift"):
                _drift(ctx)
            with _stage(ctx, "retrain"):
                _retrain(ctx, row_before)
            equity, pnl, drawdown = _equity_path(ctx)
            alerts = _alerts(ctx, drawdown)
            metrics = _metrics(ctx, "success", started, alerts, drawdown, equity, pnl)
        except Exception as exc:
            _failed(ctx, exc, started)
            raise
        M.update_run(paper.account, day, db=engine, stage="publish", alerts=alerts, needs_person=bool(alerts), metrics=metrics)
        t0 = time.perf_counter()
        published = _publish(ctx, metrics)
        ctx.stages["publish"] = round(time.perf_counter() - t0, 3)
        sent = _webhook(ctx, alerts, ctx.retrain) if alerts else None
        fault_point("daily.before_done")
        info = {"stages": ctx.stages, "filled_back": ctx.filled_back, "rows_ingested": ctx.rows_ingested, "findings": ctx.findings,
                "published": published, "webhook_sent": sent, "paper_status": ctx.day_result.status}
        M.finish_run(paper.account, day, "done", db=engine, stage="done", retrain=ctx.retrain, info=info)
        checks = pd.DataFrame([c.to_dict() for c in ctx.checks], columns=D.CHECK_COLUMNS)
        return DailyResult(day, paper.account, paper.scope, "done", bool(alerts), alerts, ctx.model_row["label"], ctx.day_result, checks,
                           ctx.retrain, metrics, published, sent, ctx.stages)


def _failed(ctx: _Ctx, exc: BaseException, started: float) -> None:
    """Record the day failed, publish the failure, send the webhook (each best effort)."""
    error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:500] if str(exc) else ''}"
    try:
        M.finish_run(ctx.account, ctx.day, "failed", db=ctx.engine, stage=next((k for k, v in ctx.stage_status.items() if v == "failed"), None),
                     retrain=ctx.retrain or None, info={"error": error, "stages": ctx.stages})
    except Exception:  # noqa: BLE001 - the original error matters more than this record
        pass
    try:
        _publish(ctx, _metrics(ctx, "failed", started))
    except Exception:  # noqa: BLE001
        pass
    try:
        _webhook(ctx, [], ctx.retrain, error=error)
    except Exception:  # noqa: BLE001
        pass


def replay_daily(start, end, paper: PaperConfig | dict | None = None, monitor: MonitorConfig | dict | None = None, *, profile: str = "paper",
                 db=None, source=None, progress: bool = False, on_day=None) -> list[DailyResult]:
    """:func:`run_daily` for every trading day of the data in ``[start, end]``, in one process (bars
    loaded once; each day sees only the rows up to it). Days already done are skipped
    by the loop itself, so an interrupted replay resumes. ``on_day(result)`` is called after each day
    (e.g. to print its summary).

    Raises
    ------
    PaperError
        No trading day in the window; as :func:`run_daily` (the first failing day stops the replay).
    """
    paper = paper if isinstance(paper, PaperConfig) else PaperConfig.from_dict(paper)
    monitor = monitor if isinstance(monitor, MonitorConfig) else MonitorConfig.from_dict(monitor)
    start, end = pd.Timestamp(start).normalize(), pd.Timestamp(end).normalize()
    bars = load_history(paper, end, source)
    days = pd.DatetimeIndex(np.sort(bars["date"].unique()))
    days = days[(days >= start) & (days <= end)]
    if len(days) == 0:
        raise PaperError(f"no trading day between {start.date()} and {end.date()} in the data")
    engine = get_engine(db)
    broker = SimBroker(engine, paper.account, paper.initial_cash, paper.cost_bps, paper.slippage_bps, Limits.from_dict(paper.limits))
    iterator = days
    if progress:
        from tqdm.auto import tqdm

        iterator = tqdm(days, desc="daily replay")
    out = []
    for d in iterator:
        r = run_daily(d, paper, monitor, profile=profile, db=engine, source=source, broker=broker, history=bars)
        out.append(r)
        if on_day is not None:
            on_day(r)
    return out


def daily_history(account: str, *, window: int = 30, db=None) -> dict:
    """The daily loop's records of ``account`` as frames, for the monitoring page (``60_monitor``).

    Returns
    -------
    dict of DataFrames:
    ``runs``: one row per day of the loop (``as_of`` index): ``status, needs_person, model, equity,
    daily_pnl, drawdown, drawdown_limit, positions, gross_exposure, net_exposure`` (USD; from the
    metrics the day published), ``alerts`` (count);
    ``equity``: the paper step's equity by day (``as_of`` index; every day it did, also by ``kit
    paper``);
    ``accuracy``: rolling direction accuracy and MAPE per model over the last ``window`` trading days
    (:func:`kit.store.ledger.rolling_accuracy` by model), for the models of the account's scopes;
    ``checks``: every drift check stored for the account (:func:`kit.store.monitoring.load_checks`);
    ``retraining``: one row per retraining the loop made (``as_of, reason, label, outcome, gate,
    reasons, trained_on, seconds``);
    ``lifecycle``: the registry's history of the scopes' models (registered, promoted, retired);
    ``alerts``: one row per alert (``as_of, kind, message``).
    """
    engine = get_engine(db)
    runs = M.load_runs(account, db=engine)
    rows, alerts, retrains = [], [], []
    for r in runs.to_dict("records"):
        m = r["metrics"] or {}
        rows.append({"as_of": r["as_of"], "status": r["status"], "needs_person": bool(r["needs_person"]), "model": r["model"],
                     "equity": m.get("equity_dollars"), "daily_pnl": m.get("daily_pnl_dollars"), "drawdown": m.get("drawdown_ratio"),
                     "drawdown_limit": m.get("drawdown_limit_ratio"), "positions": m.get("positions"),
                     "gross_exposure": m.get("gross_exposure_dollars"), "net_exposure": m.get("net_exposure_dollars"),
                     "alerts": len(r["alerts"] or [])})
        alerts += [{"as_of": r["as_of"], **a} for a in (r["alerts"] or [])]
        if r["status"] == "failed":
            alerts.append({"as_of": r["as_of"], "kind": "failed", "message": str((r["info"] or {}).get("error", ""))})
        t = r["retrain"] or {}
        if t.get("attempted"):
            retrains.append({"as_of": r["as_of"], "reason": t.get("reason"), "label": t.get("label"), "outcome": t.get("outcome"),
                             "gate": t.get("gate"), "reasons": t.get("reasons") or t.get("error"), "trained_on": t.get("trained_on"),
                             "seconds": t.get("seconds")})
    cols = ["status", "needs_person", "model", "equity", "daily_pnl", "drawdown", "drawdown_limit", "positions", "gross_exposure",
            "net_exposure", "alerts"]
    days = pd.DataFrame(rows, columns=["as_of", *cols]).set_index("as_of")
    paper_runs = paper_history(account, db=engine)["runs"]
    paper_runs = paper_runs[paper_runs["status"] == "done"]
    equity = pd.Series(paper_runs["equity"].to_numpy(dtype="float64"), index=pd.to_datetime(paper_runs["as_of"]), name="equity").sort_index()
    scopes = sorted(set(runs["scope"])) if len(runs) else []
    models = pd.concat([registry.list_models(scope=s, db=engine) for s in scopes]) if scopes else pd.DataFrame(columns=["id"])
    acc = ledger.rolling_accuracy(window, by="model", db=engine)
    acc = acc[acc["model_id"].isin(models["id"])].copy()
    acc["run_date"] = pd.to_datetime(acc["run_date"])
    life = registry.history(db=engine)
    life = life[life["model_id"].isin(models["id"])]
    return {
        "runs": days, "equity": equity, "accuracy": acc.reset_index(drop=True), "checks": M.load_checks(account=account, db=engine),
        "retraining": pd.DataFrame(retrains, columns=["as_of", "reason", "label", "outcome", "gate", "reasons", "trained_on", "seconds"]),
        "lifecycle": life.reset_index(drop=True), "alerts": pd.DataFrame(alerts, columns=["as_of", "kind", "message"]),
    }
