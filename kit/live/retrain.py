"""Retraining for the daily loop: the policy ("retrain or not, and why", from the training dates, the
trading calendar and the drift verdicts) and the retraining itself, through the kit's normal
training path (walk-forward training, registration as a candidate, the registry's promotion gate).

The policy (:class:`RetrainPolicy`, the ``retrain`` keys of a profile's ``monitor`` section)
---------------------------------------------------------------------------------------------
Two triggers, either or both:

* scheduled: every ``every_n_days`` trading days. The count is the number of trading days ``d`` on the
  calendar with ``reference < d <= as_of``, where ``reference`` is the later of the model's last
  training date (its registry ``trained_on``) and the last day the loop retrained (or tried to:
  a candidate the gate refused still counts, so a failing retraining is not repeated every day).
* triggered (``on_drift``): a drift check whose name is in ``triggers`` (by default the summary checks
  ``feature_drift``, ``direction_accuracy`` and ``mape`` of :mod:`kit.analytics.drift`) has the verdict
  ``drift``, dated after ``reference`` and not after ``as_of``. A verdict dated on or before it
  concerned the previous model (or was already acted on); one dated after ``as_of`` would be
  look-ahead. For ``cooldown_days`` trading days after a retraining, drift verdicts do not trigger
  another one (a drift that the new model's training window does not cover yet would otherwise
  retrain every day); the schedule still applies.

:func:`should_retrain` is a pure function: no clock, no database, no randomness.

The retraining (:func:`retrain_model`)
--------------------------------------
The model in use is trained again with its own recorded settings (the registry row's
``walk_forward_config``: architecture, lookback, target volatility, optimiser; ``epochs`` may be
overridden) by :func:`kit.training.walk_forward` on the universe's adjusted closes up to the day:
``folds`` test blocks of ``test_size`` trading days just before the day, each predicted by a model
trained on the data before it (the gate's out-of-sample evidence), then a last fold whose test block
is the day itself (its outcome is not known yet, so it adds no evidence): that fold's model, trained
on everything up to two trading days before the day (the walk-forward embargo), is the new model. It
is registered as a candidate in the scope and goes through :func:`kit.store.registry.register_and_gate`:
the gate decides whether it becomes the active model (it trades from the next day).
"""

from __future__ import annotations

import dataclasses
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..base.config import ConfigError, strict_dataclass
from ..store import registry

__all__ = ["DEFAULT_TRIGGERS", "RetrainPolicy", "should_retrain", "retrain_model"]

DEFAULT_TRIGGERS = ("feature_drift", "direction_accuracy", "mape")


@dataclass(frozen=True)
class RetrainPolicy:
    """When to retrain, and how much evidence the retrained model brings to the gate.

    Attributes
    ----------
    every_n_days : int or None
        Retrain when at least this many trading days have passed since the reference day (module
        docstring; >= 1); None: no schedule.
    on_drift : bool
        Retrain when a drift check in ``triggers`` says ``drift``.
    triggers : tuple of str
        The drift check names that can trigger a retraining (default :data:`DEFAULT_TRIGGERS`: the
        summary checks, whose false-positive rate is controlled; the per-feature ``psi`` and ``ks``
        checks are left out on purpose).
    cooldown_days : int >= 0
        Trading days after a retraining during which drift verdicts do not trigger another.
    test_size : int >= 1
        Trading days per walk-forward test block of the retraining.
    folds : int >= 1
        Test blocks of ``test_size`` days before the day (the gate's ``min_folds`` counts these and the
        day's own one-day fold).
    epochs : int >= 0
        Maximum training epochs of the retraining; 0: the model's own recorded setting.

    Raises
    ------
    ValueError
        A value of the wrong type or range (named), or empty ``triggers`` with ``on_drift``.
    """

    every_n_days: int | None = None
    on_drift: bool = True
    triggers: tuple[str, ...] = DEFAULT_TRIGGERS
    cooldown_days: int = 21
    test_size: int = 63
    folds: int = 2
    epochs: int = 0

    def __post_init__(self):
        n = self.every_n_days
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"retrain every_n_days must be a positive integer or null, got {n!r}")
        if not isinstance(self.on_drift, bool):
            raise ValueError(f"retrain on_drift must be true or false, got {self.on_drift!r}")
        if isinstance(self.triggers, str) or not isinstance(self.triggers, Iterable):
            raise ValueError(f"retrain triggers must be a list of check names, got {self.triggers!r}")
        object.__setattr__(self, "triggers", tuple(str(t) for t in self.triggers))
        if self.on_drift and not self.triggers:
            raise ValueError("retrain triggers must name at least one drift check when on_drift is true")
        for key, lo in (("cooldown_days", 0), ("test_size", 1), ("folds", 1), ("epochs", 0)):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                raise ValueError(f"retrain {key} must be an integer >= {lo}, got {v!r}")

    @classmethod
    def from_dict(cls, d: Mapping | None) -> RetrainPolicy:
        """A policy from a profile's mapping (the fields above; missing keys take the defaults).

        Raises
        ------
        kit.base.ConfigError
            An unknown key, named with the nearest valid one.
        ValueError
            A bad value.
        """
        if d is not None and not isinstance(d, Mapping):
            raise ConfigError(f"retrain: expected a mapping, got {type(d).__name__} {d!r}")
        return strict_dataclass(cls, d, "retrain")

    def to_dict(self) -> dict:
        return {**dataclasses.asdict(self), "triggers": list(self.triggers)}


def _date(x, name: str) -> pd.Timestamp:
    try:
        t = pd.Timestamp(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a date, got {x!r}") from exc
    if t is pd.NaT:
        raise ValueError(f"{name} must be a date, got {x!r}")
    return t.normalize().tz_localize(None) if t.tzinfo is not None else t.normalize()


def _verdict_rows(drift_verdicts) -> list[tuple[str, str, str, pd.Timestamp | None]]:
    """(check, subject, verdict, as_of or None) from DriftCheck-like records, a frame, or a mapping."""
    if drift_verdicts is None:
        return []
    if isinstance(drift_verdicts, pd.DataFrame):
        missing = [c for c in ("check", "verdict") if c not in drift_verdicts.columns]
        if missing:
            raise ValueError(f"drift_verdicts lacks column(s) {missing}")
        recs = drift_verdicts.to_dict("records")
        return [(str(r["check"]), str(r.get("subject", "*")), str(r["verdict"]),
                 None if r.get("as_of") is None or pd.isna(r.get("as_of")) else _date(r["as_of"], "drift verdict as_of")) for r in recs]
    if isinstance(drift_verdicts, Mapping):
        out = []
        for k, v in drift_verdicts.items():
            verdict = ("drift" if v else "ok") if isinstance(v, bool) else str(v)
            out.append((str(k), "*", verdict, None))
        return out
    if isinstance(drift_verdicts, Iterable):
        out = []
        for c in drift_verdicts:
            try:
                out.append((str(c.check), str(c.subject), str(c.verdict), None if c.as_of is None else _date(c.as_of, "drift verdict as_of")))
            except AttributeError as exc:
                raise TypeError(f"drift_verdicts must hold DriftCheck-like records (check, subject, verdict, as_of), got {type(c).__name__}") from exc
        return out
    raise TypeError(f"drift_verdicts must be DriftCheck records, a DataFrame or a mapping, got {type(drift_verdicts).__name__}")


def should_retrain(policy: RetrainPolicy, last_trained_on, as_of, calendar, drift_verdicts=None, *, last_attempt=None) -> tuple[bool, str]:
    """Whether to retrain on ``as_of``, and why.

    Parameters
    ----------
    policy : RetrainPolicy
    last_trained_on : date-like or None
        The last day of the current model's training data (its registry ``trained_on``); None when
        no model has been trained (then: retrain).
    as_of : date-like
        The trading day deciding (must be on ``calendar``).
    calendar : sequence of dates, strictly increasing
        Trading days covering the reference day to ``as_of`` (e.g. the price index).
    drift_verdicts : iterable of :class:`kit.analytics.drift.DriftCheck`, DataFrame, mapping or None
        Drift check results: records or rows with ``check``, ``subject``, ``verdict`` and ``as_of``
        (as :func:`kit.store.monitoring.load_checks` returns), or a mapping ``check -> verdict``
        (``"drift"`` or a bool) taken as current.
    last_attempt : date-like or None
        The last day the loop retrained this scope's model (or tried to); the reference day is the
        later of it and ``last_trained_on`` (module docstring).

    Returns
    -------
    (bool, str)
        The decision and the reason, e.g. ``(True, "scheduled: 21 trading days since training on
        2024-01-02 (policy: every 21)")``.

    Raises
    ------
    TypeError
        ``policy`` is not a RetrainPolicy, or unreadable drift verdicts.
    ValueError
        A date that is not a date, ``calendar`` not strictly increasing or not covering the
        reference day .. ``as_of``, ``as_of`` not a trading day of it, or ``as_of`` before the
        reference day.
    """
    if not isinstance(policy, RetrainPolicy):
        raise TypeError(f"policy must be a RetrainPolicy, got {type(policy).__name__}")
    as_of = _date(as_of, "as_of")
    cal = pd.DatetimeIndex(pd.to_datetime(list(calendar))).normalize()
    if cal.empty:
        raise ValueError("calendar is empty")
    if not cal.is_monotonic_increasing or cal.has_duplicates:
        raise ValueError("calendar must be strictly increasing trading days")
    if as_of not in cal:
        raise ValueError(f"as_of {as_of.date()} is not a trading day of the calendar ({cal[0].date()} .. {cal[-1].date()})")
    if last_trained_on is None:
        return True, "no trained model yet"
    last = _date(last_trained_on, "last_trained_on")
    attempt = None if last_attempt is None else _date(last_attempt, "last_attempt")
    ref = max(last, attempt) if attempt is not None else last
    what = "training on" if attempt is None or last >= attempt else "the last retraining on"
    if as_of < ref:
        raise ValueError(f"as_of {as_of.date()} is before last_trained_on {ref.date()}" if ref == last else
                         f"as_of {as_of.date()} is before the last retraining {ref.date()}")
    if ref < cal[0]:
        raise ValueError(f"calendar starts {cal[0].date()}, after last_trained_on {ref.date()}: it must cover the days since training")
    days = int(((cal > ref) & (cal <= as_of)).sum())
    reasons = []
    if policy.every_n_days is not None and days >= policy.every_n_days:
        reasons.append(f"scheduled: {days} trading days since {what} {ref.date()} (policy: every {policy.every_n_days})")
    cooling = ""
    if policy.on_drift:
        hits = []
        for check, subject, verdict, when in _verdict_rows(drift_verdicts):
            if check not in policy.triggers or verdict != "drift":
                continue
            if when is not None and not (ref < when <= as_of):
                continue
            hits.append(f"{check}" + ("" if subject in ("*", "") else f" ({subject})") + ("" if when is None else f" on {when.date()}"))
        if hits:
            since_attempt = None if attempt is None else int(((cal > attempt) & (cal <= as_of)).sum())
            if since_attempt is not None and since_attempt < policy.cooldown_days:
                cooling = (f"drift ({', '.join(sorted(set(hits)))}) within the cooldown of {policy.cooldown_days} trading days "
                           f"after the retraining on {attempt.date()}")
            else:
                reasons.append("drift: " + ", ".join(sorted(set(hits))))
    if reasons:
        return True, "; ".join(reasons)
    due = f"{days} of {policy.every_n_days} trading days since {what} {ref.date()}" if policy.every_n_days else \
        f"{days} trading days since {what} {ref.date()}, no schedule"
    return False, f"not due: {due}; " + (cooling or ("no drift verdict" if policy.on_drift else "drift not a trigger"))


def retrain_model(model_row: dict, close: pd.DataFrame, as_of, policy: RetrainPolicy, *, gate=None, data_sha256: str = "",
                  extra: dict | None = None, db=None, progress: bool = False) -> dict:
    """Train the model of ``model_row`` again on ``close`` up to ``as_of``, register it and apply the
    gate (module docstring).

    Parameters
    ----------
    model_row : the registry row of the model in use (:func:`kit.store.registry.get_model`); its
        ``name``, ``scope`` and ``extra["walk_forward_config"]`` are used.
    close : (T, N) adjusted closes of the universe; rows after ``as_of`` are ignored.
    as_of : date-like, the day of the retraining (the last date the new model may see).
    policy : the :class:`RetrainPolicy` (``test_size``, ``folds``, ``epochs``).
    gate : :class:`kit.store.registry.GateThresholds` or a mapping (default thresholds when None).
    data_sha256 : checksum of the data source, recorded in the checkpoints.
    extra : JSON-able mapping stored with the new registry row (e.g. the reason).
    db : URL, Engine or None.

    Returns
    -------
    dict with ``model_id, label, status`` (``active`` when the gate promoted it), ``gate`` (``passed``,
    ``failed`` or ``registered before``), ``reasons`` (failed criteria), ``oos_sharpe``, ``trained_on``,
    ``test_start``, ``seconds``.

    Raises
    ------
    ValueError
        The model has no recorded walk-forward settings (it was not trained by the kit's walk-forward
        path), or too little data before the first test block (named by the walk-forward split).
    """
    import time

    from ..training import TrainConfig, walk_forward

    wf = (model_row.get("extra") or {}).get("walk_forward_config")
    if not isinstance(wf, dict) or "model" not in wf:
        raise ValueError(f"model {model_row.get('label')!r} has no walk_forward_config in its registry row; it cannot be retrained by the loop")
    day = pd.Timestamp(as_of).normalize()
    c = close[close.index <= day]
    need = policy.folds * policy.test_size + 1
    if len(c) <= need:
        raise ValueError(f"retraining needs more than {need} trading days of data up to {day.date()}, got {len(c)}")
    test_start = c.index[len(c) - need]  # ``folds`` blocks of ``test_size`` days, then the day itself
    train_kw = dict(wf.get("train") or {})
    if policy.epochs:
        train_kw["epochs"] = policy.epochs
    train_kw = {k: v for k, v in train_kw.items() if k in {f.name for f in dataclasses.fields(TrainConfig)}}
    name = str(model_row["name"])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="kit-retrain-") as tmp:
        result = walk_forward(
            c, model=wf["model"], test_start=test_start, test_size=policy.test_size, val_fraction=float(wf.get("val_fraction", 0.1)),
            lookback=int(wf.get("lookback", 63)), target_vol=float(wf.get("target_vol", 0.15)), hidden_size=int(wf.get("hidden_size", 20)),
            num_layers=int(wf.get("num_layers", 1)), dropout=float(wf.get("dropout", 0.1)), n_heads=int(wf.get("n_heads", 4)),
            members=tuple(wf.get("members") or ("dmn_lstm", "momentum_transformer", "mlp")),
            ensemble_method=wf.get("ensemble_method") or "stacked", train=TrainConfig(**train_kw), checkpoint_dir=Path(tmp),
            data_sha256=data_sha256, progress=progress,
        )
        table = registry.register_and_gate({name: result}, c, str(model_row["scope"]), gate, extra=extra, db=db)
    row = table.iloc[0].to_dict()
    new = registry.get_model(int(row["model_id"]), db=db)
    return {"model_id": int(row["model_id"]), "label": row["label"], "status": row["status"], "gate": row["gate"], "reasons": row["reasons"],
            "oos_sharpe": row["oos_sharpe"], "trained_on": str(new["trained_on"]), "test_start": str(test_start.date()),
            "seconds": round(time.perf_counter() - t0, 1)}
