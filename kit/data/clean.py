"""The cleaning policy: what a validation finding does to the price panel that training and
backtests use.

Per finding, by its check or else its severity, one action:

``keep``     nothing (the finding stays in the report);
``drop``     remove the row itself (for ``duplicate_row``: the second row, the first is kept);
``mask``     remove the symbol's rows from ``mask_days`` trading days (of that symbol) before the
             finding's date to ``mask_days`` after it, so no daily return, forward return up to
             ``mask_days`` days (the kit's longest target horizon is 21) or feature window of that
             length uses a price next to the bad one; longer windows (e.g. 252-day momentum) that
             span the gap use the prices on both sides of it, and rolling statistics that need full
             windows (the MACD's 63- and 252-day standard deviations) stay undefined until the
             window is past the gap;
``exclude``  remove the symbol's rows from the finding's date on.

A removed row is a missing row: the wide ``(T, N)`` frames hold NaN there (nothing is filled) and the
feature kernels and targets treat it as a gap. The default policy (:meth:`CleaningPolicy.default`):
errors masked, warnings and infos kept, duplicate rows dropped. A profile sets it with the
``cleaning`` parameter: ``default``, ``none`` (keep everything: the behaviour before the policy
existed), or a mapping such as ``{error: mask, warning: keep, mask_days: 21, checks: {stale_quote: drop}}``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from ..base.config import nearest
from .schema import SEVERITIES
from .validate import CHECKS, ValidationReport

__all__ = ["ACTIONS", "CleaningPolicy", "CleaningReport", "clean_prices"]

ACTIONS = ("keep", "drop", "mask", "exclude")


@dataclass(frozen=True)
class CleaningPolicy:
    """What each finding does to the panel: ``error``, ``warning``, ``info`` (the action per severity),
    ``checks`` (per-check actions that override the severity's) and ``mask_days`` (trading days each
    side of a masked finding)."""

    error: str = "mask"
    warning: str = "keep"
    info: str = "keep"
    checks: dict = field(default_factory=lambda: {"duplicate_row": "drop"})
    mask_days: int = 21

    def __post_init__(self):
        for sev in SEVERITIES:
            self._check_action(getattr(self, sev), sev)
        for check, action in self.checks.items():
            if check not in CHECKS:
                raise ValueError(f"cleaning: unknown check {check!r} in 'checks' (did you mean {nearest(check, CHECKS)!r}?)")
            self._check_action(action, f"checks.{check}")
        if not isinstance(self.mask_days, int) or isinstance(self.mask_days, bool) or self.mask_days < 0:
            raise ValueError(f"cleaning: mask_days must be an integer >= 0, got {self.mask_days!r}")

    @staticmethod
    def _check_action(action, where):
        if action not in ACTIONS:
            raise ValueError(f"cleaning: {where} must be one of {list(ACTIONS)}, got {action!r}")

    @classmethod
    def default(cls) -> CleaningPolicy:
        """Errors masked (21 days each side), warnings and infos kept, duplicate rows dropped."""
        return cls()

    @classmethod
    def none(cls) -> CleaningPolicy:
        """Keep everything (the panel as read; duplicates are still dropped when prices are adjusted)."""
        return cls(error="keep", warning="keep", info="keep", checks={})

    @classmethod
    def from_param(cls, value) -> CleaningPolicy:
        """A policy from a profile's ``cleaning`` parameter: ``"default"``, ``"none"`` (or None/empty),
        a mapping of this class's fields, or a :class:`CleaningPolicy`.

        Raises
        ------
        ValueError
            An unknown name, key, check or action (named, with the nearest valid key).
        """
        if isinstance(value, cls):
            return value
        if value is None or value == "" or value == "none" or value == {}:
            return cls.none()
        if value == "default":
            return cls.default()
        if isinstance(value, str):
            raise ValueError(f"cleaning must be 'default', 'none' or a mapping, got {value!r}")
        if not isinstance(value, dict):
            raise ValueError(f"cleaning must be 'default', 'none' or a mapping, got {type(value).__name__}")
        fields = ("error", "warning", "info", "checks", "mask_days")
        for key in value:
            if key not in fields:
                raise ValueError(f"cleaning: unknown key {key!r} (did you mean {nearest(key, fields)!r}?)")
        kw = dict(value)
        if "checks" in kw:
            kw["checks"] = dict(kw["checks"] or {})
        return cls(**kw)

    def action(self, check: str, severity: str) -> str:
        """The action for a finding of ``check`` with ``severity``."""
        return self.checks.get(check, getattr(self, severity))

    def to_dict(self) -> dict:
        """The policy as plain data (for ``metrics.json``)."""
        return asdict(self)


@dataclass
class CleaningReport:
    """What :func:`clean_prices` did.

    Attributes
    ----------
    actions : DataFrame
        One row per finding acted on: ``check, severity, symbol, date, action, first_date,
        last_date`` (the symbol's rows removed for it span these dates; NaT when none) and
        ``rows_removed``.
    rows_before, rows_after : int
        Rows of the panel before and after.
    policy : dict
        :meth:`CleaningPolicy.to_dict`.
    """

    actions: pd.DataFrame
    rows_before: int
    rows_after: int
    policy: dict

    def summary(self) -> pd.DataFrame:
        """Per (check, severity, action): ``findings``, ``symbols`` and ``rows_removed``."""
        if self.actions.empty:
            return pd.DataFrame(columns=["check", "severity", "action", "findings", "symbols", "rows_removed"])
        g = self.actions.groupby(["check", "severity", "action"], sort=True)
        return pd.DataFrame({"findings": g.size(), "symbols": g["symbol"].nunique(), "rows_removed": g["rows_removed"].sum()}).reset_index()

    def to_dict(self) -> dict:
        """Plain data for ``metrics.json``: the policy, row counts, the summary and every action."""
        acts = self.actions.assign(
            date=self.actions["date"].dt.date.astype(str),
            first_date=self.actions["first_date"].dt.date.astype(str),
            last_date=self.actions["last_date"].dt.date.astype(str),
        ) if len(self.actions) else self.actions
        return {
            "policy": self.policy, "rows_before": self.rows_before, "rows_after": self.rows_after,
            "rows_removed": self.rows_before - self.rows_after,
            "summary": self.summary().to_dict(orient="records"),
            "actions": acts.to_dict(orient="records"),
        }


def clean_prices(prices: pd.DataFrame, report: ValidationReport, policy=None) -> tuple[pd.DataFrame, CleaningReport]:
    """Apply a cleaning policy to a raw tidy panel.

    Parameters
    ----------
    prices : raw tidy frame (:func:`kit.data.read_prices`) that ``report`` validated.
    report : :class:`ValidationReport` of ``prices``.
    policy : :class:`CleaningPolicy` or anything :meth:`CleaningPolicy.from_param` reads
        (default: :meth:`CleaningPolicy.default`).

    Returns
    -------
    (cleaned, CleaningReport): ``cleaned`` has the same columns, sorted by symbol then date, the
    removed rows gone (duplicates of a (symbol, date) are dropped only by a ``drop`` of
    ``duplicate_row``; :func:`kit.data.adjust_prices` drops any left).
    """
    policy = CleaningPolicy.default() if policy is None else CleaningPolicy.from_param(policy)
    frame = prices.reset_index(drop=True)
    order = frame.sort_values(["symbol", "date"], kind="stable").index.to_numpy()
    frame = frame.loc[order].reset_index(drop=True)
    remove = np.zeros(len(frame), dtype=bool)
    dup = frame.duplicated(["symbol", "date"], keep="first").to_numpy()
    by_symbol = {s: np.flatnonzero(ix) for s, ix in ((s, (frame["symbol"] == s).to_numpy()) for s in frame["symbol"].unique())}
    rows = []
    for f in report.issues.itertuples(index=False):
        action = policy.action(f.check, f.severity)
        if action == "keep":
            continue
        pos = by_symbol.get(f.symbol)
        first = last = pd.NaT
        hit = np.array([], dtype=int)
        if pos is not None and len(pos):
            dates = frame["date"].to_numpy()[pos]
            d = np.datetime64(pd.Timestamp(f.date))
            if f.check == "duplicate_row":
                hit = pos[(dates == d) & dup[pos]] if action != "keep" else hit
            elif action == "drop":
                hit = pos[dates == d]
            elif action == "mask":
                i = int(np.searchsorted(dates, d, side="left"))
                exact = i < len(dates) and dates[i] == d
                lo = max(i - policy.mask_days, 0)
                hi = min(i + policy.mask_days + (1 if exact else 0), len(pos))
                hit = pos[lo:hi]
            elif action == "exclude":
                hit = pos[dates >= d]
        if len(hit):
            first, last = frame["date"].iloc[hit[0]], frame["date"].iloc[hit[-1]]
        remove[hit] = True
        rows.append({"check": f.check, "severity": f.severity, "symbol": f.symbol, "date": pd.Timestamp(f.date),
                     "action": action, "first_date": first, "last_date": last, "rows_removed": len(hit)})
    actions = pd.DataFrame(rows, columns=["check", "severity", "symbol", "date", "action", "first_date", "last_date", "rows_removed"])
    for c in ("date", "first_date", "last_date"):
        actions[c] = pd.to_datetime(actions[c]).astype("datetime64[ns]")
    cleaned = frame[~remove].reset_index(drop=True)
    return cleaned, CleaningReport(actions, len(frame), len(cleaned), policy.to_dict())
