"""Retraining policy: decide "retrain or not, and why" from the last training date, the trading calendar
and the drift verdicts.

Two triggers, either or both:

* scheduled: every ``every_n_days`` trading days. The count is the number of trading days ``d`` on the
  calendar with ``last_trained_on < d <= as_of`` (the training day itself not counted), so with
  ``every_n_days = 21`` a model trained on day 0 is due on the 21st trading day after it.
* triggered (``on_drift``): a drift check whose name is in ``triggers`` (by default the summary checks
  ``feature_drift``, ``direction_accuracy`` and ``mape`` of :mod:`kit.drift`) has the verdict
  ``drift``, dated after the last training day and not after ``as_of``. A verdict dated on or before
  the training day concerned the previous model (or was already acted on by that retraining) and is
  ignored; one dated after ``as_of`` would be look-ahead and is ignored too.

:func:`should_retrain` is a pure function: no clock, no database, no randomness.

Imports from the kit: none (drift verdicts are read by attribute or column name).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import pandas as pd

__all__ = ["DEFAULT_TRIGGERS", "RetrainPolicy", "should_retrain"]

DEFAULT_TRIGGERS = ("feature_drift", "direction_accuracy", "mape")


@dataclass(frozen=True)
class RetrainPolicy:
    """When to retrain.

    Attributes
    ----------
    every_n_days : int or None
        Retrain when at least this many trading days have passed since the last training (>= 1);
        None: no schedule.
    on_drift : bool
        Retrain when a drift check in ``triggers`` says ``drift``.
    triggers : tuple of str
        The drift check names that can trigger a retraining (default :data:`DEFAULT_TRIGGERS`: the
        summary checks, whose false-positive rate is controlled; the per-feature ``psi`` rule of
        thumb is left out on purpose).

    Raises
    ------
    ValueError
        ``every_n_days`` not a positive integer or None, ``on_drift`` not a bool, or empty
        ``triggers`` with ``on_drift``.
    """

    every_n_days: int | None = None
    on_drift: bool = True
    triggers: tuple[str, ...] = DEFAULT_TRIGGERS

    def __post_init__(self):
        n = self.every_n_days
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"every_n_days must be a positive integer or None, got {n!r}")
        if not isinstance(self.on_drift, bool):
            raise ValueError(f"on_drift must be True or False, got {self.on_drift!r}")
        object.__setattr__(self, "triggers", tuple(str(t) for t in self.triggers))
        if self.on_drift and not self.triggers:
            raise ValueError("triggers must name at least one drift check when on_drift is True")

    @classmethod
    def from_dict(cls, d: Mapping | None) -> RetrainPolicy:
        """A policy from a profile's mapping (keys ``every_n_days``, ``on_drift``, ``triggers``).

        Raises
        ------
        ValueError
            An unknown key (named) or a bad value.
        """
        d = dict(d or {})
        unknown = sorted(set(d) - {"every_n_days", "on_drift", "triggers"})
        if unknown:
            raise ValueError(f"unknown retrain policy key(s) {unknown}; allowed: every_n_days, on_drift, triggers")
        if "triggers" in d:
            d["triggers"] = tuple(d["triggers"])
        return cls(**d)


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


def should_retrain(policy: RetrainPolicy, last_trained_on, as_of, calendar, drift_verdicts=None) -> tuple[bool, str]:
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
        Trading days covering ``last_trained_on`` to ``as_of`` (e.g. the price index).
    drift_verdicts : iterable of :class:`kit.drift.DriftCheck`, DataFrame, mapping or None
        Drift check results: records or rows with ``check``, ``subject``, ``verdict`` and ``as_of``
        (as :func:`kit.drift.load_checks` returns), or a mapping ``check -> verdict`` (``"drift"`` or
        a bool) taken as current.

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
        A date that is not a date, ``calendar`` not strictly increasing or not covering
        ``last_trained_on`` .. ``as_of``, ``as_of`` not a trading day of it, or ``as_of`` before
        ``last_trained_on``.
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
    if as_of < last:
        raise ValueError(f"as_of {as_of.date()} is before last_trained_on {last.date()}")
    if last < cal[0]:
        raise ValueError(f"calendar starts {cal[0].date()}, after last_trained_on {last.date()}: it must cover the days since training")
    days = int(((cal > last) & (cal <= as_of)).sum())
    reasons = []
    if policy.every_n_days is not None and days >= policy.every_n_days:
        reasons.append(f"scheduled: {days} trading days since training on {last.date()} (policy: every {policy.every_n_days})")
    if policy.on_drift:
        hits = []
        for check, subject, verdict, when in _verdict_rows(drift_verdicts):
            if check not in policy.triggers or verdict != "drift":
                continue
            if when is not None and not (last < when <= as_of):
                continue
            hits.append(f"{check}" + ("" if subject in ("*", "") else f" ({subject})") + ("" if when is None else f" on {when.date()}"))
        if hits:
            reasons.append("drift: " + ", ".join(sorted(set(hits))))
    if reasons:
        return True, "; ".join(reasons)
    due = f"{days} of {policy.every_n_days} trading days since training on {last.date()}" if policy.every_n_days else \
        f"{days} trading days since training on {last.date()}, no schedule"
    return False, f"not due: {due}; " + ("no drift verdict" if policy.on_drift else "drift not a trigger")
