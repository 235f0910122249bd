"""Storage of the daily loop's monitoring: drift checks and the loop's own run records.

Two tables of schema version 4 (:mod:`kit.store.schema`):

``drift_checks``
    One row per ``(account, as_of, check, subject)``: the :class:`kit.analytics.drift.DriftCheck`
    fields, the registry scope and the model checked. :func:`record_checks` writes a day's checks in
    one transaction and replaces the rows of the same keys, so recording a day again leaves one row
    per key.
``monitor_runs``
    One row per account and trading day of ``python -m kit daily`` (:mod:`kit.live.loop`): status
    ``started`` then ``done`` (or ``failed`` with the error), the last stage reached, whether the day
    needs a person, the alerts, the retraining decision and its outcome, the metrics published.
    :func:`start_run` claims a day, :func:`update_run` records a stage, :func:`finish_run` closes it.

Every write is one transaction through :func:`kit.store.engine.write_tx` with the lock
``"monitoring"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import sqlalchemy as sa

from ..analytics.drift import DriftCheck, as_checks
from ..base.jsonable import jsonable
from . import schema as S
from .engine import get_engine, read_tx, utc_now, write_tx

__all__ = ["RUN_STATUSES", "record_checks", "load_checks", "get_run", "start_run", "update_run", "finish_run", "load_runs", "last_retrain"]

RUN_STATUSES = ("started", "done", "failed")


def _day(x, name: str):
    try:
        t = pd.Timestamp(x)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a date, got {x!r}") from exc
    if t is pd.NaT:
        raise ValueError(f"{name} must be a date, got {x!r}")
    return t.date()


def record_checks(checks: Iterable[DriftCheck] | pd.DataFrame, *, account: str, scope: str, model_id: int | None = None, db=None) -> int:
    """Write drift checks in one transaction; a row already stored for the same ``(account, as_of,
    check, subject)`` is replaced.

    Parameters
    ----------
    checks : iterable of :class:`kit.analytics.drift.DriftCheck`, or a frame with their columns.
    account : the paper account whose daily loop made the checks.
    scope : the registry scope of the model checked.
    model_id : the registry id of the model whose training window or ledger record was checked.
    db : URL, Engine or None (default database).

    Returns
    -------
    int: rows written.

    Raises
    ------
    TypeError
        An element that is not a DriftCheck.
    ValueError
        An empty account or scope, or the same key twice in one call (named).
    """
    for key, v in (("account", account), ("scope", scope)):
        if not isinstance(v, str) or not v:
            raise ValueError(f"{key} must be a non-empty string, got {v!r}")
    rows = as_checks(checks)
    if not rows:
        return 0
    keys = [(c.as_of, c.check, c.subject) for c in rows]
    seen = set()
    for k in keys:
        if k in seen:
            raise ValueError(f"check {k[1]!r} for subject {k[2]!r} on {k[0]} appears twice in one call")
        seen.add(k)
    t = S.drift_checks
    now = utc_now()
    values = [{**c.to_dict(), "account": account, "scope": scope, "model_id": None if model_id is None else int(model_id), "recorded_at": now}
              for c in rows]
    with write_tx(get_engine(db), "monitoring") as conn:
        for as_of, check, subject in keys:
            conn.execute(t.delete().where(t.c.account == account, t.c.as_of == as_of, t.c.check == check, t.c.subject == subject))
        conn.execute(t.insert(), values)
    return len(rows)


def load_checks(*, account: str | None = None, scope: str | None = None, as_of=None, start=None, end=None,
                check: str | Sequence[str] | None = None, db=None) -> pd.DataFrame:
    """Stored drift checks, sorted by ``as_of, check, subject``.

    Parameters
    ----------
    account, scope : keep only this account's or scope's checks.
    as_of : date-like, only this date; or ``start`` / ``end`` (inclusive) bounds.
    check : a check name or names to keep.
    db : URL, Engine or None.

    Returns
    -------
    DataFrame with columns ``account, as_of`` (datetime64), ``check, subject, scope, model_id, value,
    threshold, p_value, verdict, n, recorded_at``.
    """
    t = S.drift_checks
    stmt = sa.select(t)
    if account is not None:
        stmt = stmt.where(t.c.account == account)
    if scope is not None:
        stmt = stmt.where(t.c.scope == scope)
    if as_of is not None:
        stmt = stmt.where(t.c.as_of == _day(as_of, "as_of"))
    if start is not None:
        stmt = stmt.where(t.c.as_of >= _day(start, "start"))
    if end is not None:
        stmt = stmt.where(t.c.as_of <= _day(end, "end"))
    if check is not None:
        stmt = stmt.where(t.c.check.in_([check] if isinstance(check, str) else list(check)))
    stmt = stmt.order_by(t.c.as_of, t.c.check, t.c.subject)
    cols = [c.name for c in t.columns]
    with read_tx(get_engine(db)) as conn:
        out = pd.DataFrame(conn.execute(stmt).mappings().all(), columns=cols)
    out["as_of"] = pd.to_datetime(out["as_of"])
    for c in ("value", "threshold", "p_value"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    return out


def get_run(account: str, as_of, *, db=None) -> dict | None:
    """The ``monitor_runs`` row of ``account`` on ``as_of`` as a dict, or None."""
    t = S.monitor_runs
    with read_tx(get_engine(db)) as conn:
        row = conn.execute(t.select().where(t.c.account == account, t.c.as_of == _day(as_of, "as_of"))).mappings().first()
    return dict(row) if row else None


def start_run(account: str, as_of, scope: str, *, db=None) -> dict | None:
    """Claim the daily loop's day: returns the finished row when the day is already ``done`` (nothing
    to do), else marks it ``started`` (a new row, or a ``failed``/``started`` one run again, keeping its
    ``retrain`` record so that a retraining already made that day is not made twice) and returns None.

    Raises
    ------
    ValueError
        ``as_of`` is before the last ``done`` day of the account (days run in order).
    """
    t = S.monitor_runs
    day = _day(as_of, "as_of")
    with write_tx(get_engine(db), "monitoring") as conn:
        row = conn.execute(t.select().where(t.c.account == account, t.c.as_of == day)).mappings().first()
        if row is not None and row["status"] == "done":
            return dict(row)
        last = conn.execute(sa.select(sa.func.max(t.c.as_of)).where(t.c.account == account, t.c.status == "done")).scalar()
        if last is not None and _day(last, "last") > day:
            raise ValueError(f"as_of {day} is before the last completed daily run {last} of account {account!r}")
        if row is None:
            conn.execute(t.insert().values(account=account, as_of=day, scope=scope, status="started", stage="claim", needs_person=False,
                                           started_at=utc_now()))
        else:
            conn.execute(t.update().where(t.c.account == account, t.c.as_of == day).values(
                status="started", stage="claim", scope=scope, started_at=utc_now(), finished_at=None))
    return None


def update_run(account: str, as_of, *, db=None, **values) -> None:
    """Record a stage's result in the day's row (``stage``, ``model_id``, ``model``, ``retrain``,
    ``alerts``, ``metrics``, ``info``, ``needs_person``); JSON values are converted with
    :func:`kit.base.jsonable`.

    Raises
    ------
    ValueError
        An unknown column, or no row for the day (claim it with :func:`start_run` first).
    """
    t = S.monitor_runs
    allowed = {"stage", "model_id", "model", "retrain", "alerts", "metrics", "info", "needs_person"}
    bad = sorted(set(values) - allowed)
    if bad:
        raise ValueError(f"unknown monitor_runs column(s) {bad}; allowed: {sorted(allowed)}")
    vals = {k: (jsonable(v) if k in ("retrain", "alerts", "metrics", "info") else v) for k, v in values.items()}
    day = _day(as_of, "as_of")
    with write_tx(get_engine(db), "monitoring") as conn:
        n = conn.execute(t.update().where(t.c.account == account, t.c.as_of == day).values(**vals)).rowcount
    if n != 1:
        raise ValueError(f"no daily run of account {account!r} on {day} to update (start_run first)")


def finish_run(account: str, as_of, status: str, *, db=None, **values) -> None:
    """Close the day's row with ``status`` (``done`` or ``failed``) and the given columns (as
    :func:`update_run`).

    Raises
    ------
    ValueError
        A status other than ``done`` or ``failed``; as :func:`update_run`.
    """
    if status not in ("done", "failed"):
        raise ValueError(f"status must be 'done' or 'failed', got {status!r}")
    t = S.monitor_runs
    update_run(account, as_of, db=db, **values)
    with write_tx(get_engine(db), "monitoring") as conn:
        conn.execute(t.update().where(t.c.account == account, t.c.as_of == _day(as_of, "as_of")).values(status=status, finished_at=utc_now()))


def load_runs(account: str | None = None, *, scope: str | None = None, db=None) -> pd.DataFrame:
    """The daily loop's rows, oldest first (``as_of`` as datetime64; JSON columns as Python objects)."""
    t = S.monitor_runs
    stmt = sa.select(t).order_by(t.c.account, t.c.as_of)
    if account is not None:
        stmt = stmt.where(t.c.account == account)
    if scope is not None:
        stmt = stmt.where(t.c.scope == scope)
    with read_tx(get_engine(db)) as conn:
        out = pd.DataFrame(conn.execute(stmt).mappings().all(), columns=[c.name for c in t.columns])
    out["as_of"] = pd.to_datetime(out["as_of"])
    return out


def last_retrain(scope: str, before, *, db=None) -> pd.Timestamp | None:
    """The last trading day before ``before`` on which the daily loop retrained (or tried to retrain)
    a model of ``scope``, from any account; None when it never did."""
    t = S.monitor_runs
    with read_tx(get_engine(db)) as conn:
        rows = conn.execute(sa.select(t.c.as_of, t.c.retrain).where(t.c.scope == scope, t.c.as_of < _day(before, "before"))
                            .order_by(t.c.as_of.desc())).all()
    for as_of, retrain in rows:
        if isinstance(retrain, dict) and retrain.get("attempted"):
            return pd.Timestamp(as_of)
    return None
