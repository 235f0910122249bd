"""Position and exposure limits, their application to weights, and the pre-trade check.

Weights are fractions of equity, ``(T, N)`` DataFrames or ``(N,)`` Series for one day; positive =
long. Gross exposure is ``sum_i |w_i|``, net exposure ``sum_i w_i``; since weights are fractions of
equity, leverage (gross exposure / equity) is the gross sum too. :class:`Limits` keeps ``max_gross``
(the desk's risk budget) and ``max_leverage`` (the broker's or regulator's cap, e.g. 2.0 under
Reg T) as two fields so that a report names whichever binds; the binding cap is the smaller of the
two."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields

import numpy as np
import pandas as pd

from ..base.config import strict_dataclass

__all__ = ["Limits", "apply_limits", "PreTradeResult", "pre_trade_check", "PORTFOLIO"]



PORTFOLIO = "PORTFOLIO"  # the symbol of portfolio-level rows in a violations table



_TOL = 1e-9



_NOISE = 1e-12  # relative excess over a limit that the pre-trade check treats as rounding, not a breach



def _as_weights(weights, name: str = "weights") -> pd.Series:
    if isinstance(weights, Mapping):
        weights = pd.Series(dict(weights), dtype="float64")
    if not isinstance(weights, pd.Series):
        raise TypeError(f"{name} must be a Series (or dict) indexed by symbol, got {type(weights).__name__}")
    w = weights.astype("float64")
    if not w.index.is_unique:
        raise ValueError(f"{name} has duplicate symbols: {list(w.index[w.index.duplicated()])}")
    return w



@dataclass(frozen=True)
class Limits:
    """Position and exposure limits, as fractions of equity.

    Attributes
    ----------
    max_position : largest ``|w_i|`` per name (default 0.02, 2 % of capital); > 0.
    max_gross : largest gross exposure ``sum |w_i|`` (default 1.0); > 0.
    max_net : largest ``|sum w_i|`` (default 1.0); >= 0 (0 = market neutral).
    max_leverage : largest gross exposure / equity from the broker or regulator (default 2.0, Reg T);
        > 0. Binding gross cap = ``min(max_gross, max_leverage)``.
    allow_short : whether negative weights are allowed (default True).
    min_price : names priced below it get weight 0 in :func:`pre_trade_check` (default 0, off); >= 0.
    max_turnover : largest one-way turnover ``sum |w_t - w_{t-1}|`` per rebalance, or None (off); >= 0.

    ``math.inf`` means no limit. Negative, NaN or zero (where > 0 is required) values raise
    ``ValueError`` naming the field.
    """

    max_position: float = 0.02
    max_gross: float = 1.0
    max_net: float = 1.0
    max_leverage: float = 2.0
    allow_short: bool = True
    min_price: float = 0.0
    max_turnover: float | None = None

    def __post_init__(self):
        positive = ("max_position", "max_gross", "max_leverage")
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "allow_short":
                if not isinstance(v, bool | np.bool_):
                    raise ValueError(f"Limits.allow_short must be a bool, got {v!r}")
                continue
            if v is None and f.name == "max_turnover":
                continue
            if isinstance(v, bool) or not isinstance(v, int | float | np.integer | np.floating):
                raise ValueError(f"Limits.{f.name} must be a number, got {v!r}")
            v = float(v)
            if math.isnan(v) or v < 0 or (f.name in positive and v == 0):
                need = "> 0" if f.name in positive else ">= 0"
                raise ValueError(f"Limits.{f.name} must be {need} and not NaN, got {v!r}")
            object.__setattr__(self, f.name, v)

    @property
    def gross_cap(self) -> float:
        """The binding gross exposure cap, ``min(max_gross, max_leverage)``."""
        return min(self.max_gross, self.max_leverage)

    @classmethod
    def from_dict(cls, d: Mapping | None) -> Limits:
        """Limits from a mapping (a params YAML section); missing keys take the defaults.

        Raises
        ------
        ValueError
            (:class:`kit.base.ConfigError`) an unknown key, named with the nearest valid one; or a
            bad value (see the class).
        """
        return strict_dataclass(cls, d, "limits")

    def to_dict(self) -> dict:
        """Plain dict of the fields (for run records)."""
        return asdict(self)



def _clip_names(w: np.ndarray, limits: Limits, free: np.ndarray) -> np.ndarray:
    out = w if limits.allow_short else np.where(free & (w < 0), 0.0, w)
    return np.where(free, np.clip(out, -limits.max_position, limits.max_position), out)



def _gross_factor(w: np.ndarray, cap: float, free: np.ndarray) -> np.ndarray:
    """Factor (one per row) for the free names so that the gross exposure is at most ``cap``."""
    a = np.abs(w)
    g_free = np.where(free, a, 0.0).sum(axis=-1, keepdims=True)
    g_fixed = np.where(free, 0.0, a).sum(axis=-1, keepdims=True)
    over = g_free + g_fixed > cap
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(over & (g_free > 0), np.clip((cap - g_fixed) / g_free, 0.0, 1.0), 1.0)
    return f



def _net_factors(w: np.ndarray, cap: float, free: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Factors for the free longs and free shorts (one each per row) so that ``|net| <= cap``:
    the side in excess is scaled down, the other side is left alone."""
    net = w.sum(axis=-1, keepdims=True)
    lf = np.where(free & (w > 0), w, 0.0).sum(axis=-1, keepdims=True)
    sf = np.where(free & (w < 0), -w, 0.0).sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        fl = np.where((net > cap) & (lf > 0), np.clip((lf - (net - cap)) / lf, 0.0, 1.0), 1.0)
        fs = np.where((net < -cap) & (sf > 0), np.clip((sf - (-net - cap)) / sf, 0.0, 1.0), 1.0)
    return fl, fs



def _limit_rows(w: np.ndarray, limits: Limits, free: np.ndarray | None = None) -> np.ndarray:
    """Per-name clip, gross scale, net side scale on rows of ``w`` (the last axis is symbols)."""
    if free is None:
        free = np.ones(w.shape, dtype=bool)
    w = _clip_names(w, limits, free)
    w = np.where(free, w * _gross_factor(w, limits.gross_cap, free), w)
    fl, fs = _net_factors(w, limits.max_net, free)
    return np.where(free & (w > 0), w * fl, np.where(free & (w < 0), w * fs, w))



def _within_limits(w: np.ndarray, limits: Limits, tol: float = _TOL) -> bool:
    return bool(
        (np.abs(w) <= limits.max_position * (1 + tol) + tol).all()
        and (limits.allow_short or (w >= -tol).all())
        and np.abs(w).sum() <= limits.gross_cap * (1 + tol) + tol
        and abs(w.sum()) <= limits.max_net * (1 + tol) + tol
    )



def _blend_turnover(w: np.ndarray, prev: np.ndarray, cap: float) -> tuple[np.ndarray, float]:
    d = float(np.abs(w - prev).sum())
    if d <= cap:
        return w, 1.0
    lam = cap / d
    return prev + lam * (w - prev), lam



def apply_limits(weights: pd.Series | pd.DataFrame, limits: Limits, previous: pd.Series | None = None):
    """Clip and scale weights so that every row satisfies ``limits``; deterministic.

    Order, per row:

    1. NaN -> 0 (not held); with ``allow_short=False`` negative weights -> 0;
    2. per-name clip to ``[-max_position, max_position]``;
    3. gross: when ``sum |w| > min(max_gross, max_leverage)``, all weights are scaled by the same
       factor so the gross equals the cap;
    4. net: when ``sum w > max_net`` the longs are scaled down by the factor that brings the net to
       ``max_net`` (the shorts when ``sum w < -max_net``); this only lowers sizes, so 2 and 3 still hold;
    5. turnover (when ``max_turnover`` is set): the row moves from the previous accepted row (the
       ``previous`` Series for the first row, default all 0) toward its limited target by the fraction
       ``max_turnover / sum |w - w_prev|``. A convex combination of two rows within limits is within
       limits; if ``previous`` itself breaks them, steps 2-4 are applied again and the risk limits win
       over the turnover cap.

    Parameters
    ----------
    weights : (N,) Series or (T, N) DataFrame of target weights (fractions of equity).
    limits : :class:`Limits`.
    previous : optional (N,) Series, the weights held before the first row (for the turnover step).

    Returns
    -------
    Same type and labels as ``weights``, float64, no NaN.

    Raises
    ------
    ValueError
        An infinite weight (the message names the symbol and date).
    """
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
    single = isinstance(weights, pd.Series)
    frame = weights.to_frame().T if single else weights
    if not isinstance(frame, pd.DataFrame):
        raise TypeError(f"weights must be a Series or DataFrame, got {type(weights).__name__}")
    w = frame.to_numpy(dtype="float64", copy=True)
    bad = np.isinf(w)
    if bad.any():
        t, j = np.argwhere(bad)[0]
        raise ValueError(f"weights contain {int(bad.sum())} infinite values, first at ({frame.index[t]!r}, {frame.columns[j]!r})")
    w = _limit_rows(np.nan_to_num(w, nan=0.0), limits)
    if limits.max_turnover is not None:
        prev = np.zeros(w.shape[1])
        if previous is not None:
            prev = _as_weights(previous, "previous").reindex(frame.columns).fillna(0.0).to_numpy()
        for t in range(w.shape[0]):
            row, lam = _blend_turnover(w[t], prev, limits.max_turnover)
            if lam < 1.0 and not _within_limits(row, limits):
                row = _limit_rows(row, limits)
            w[t] = row
            prev = row
    if single:
        return pd.Series(w[0], index=weights.index, name=weights.name)
    return pd.DataFrame(w, index=frame.index, columns=frame.columns)



@dataclass
class PreTradeResult:
    """Outcome of :func:`pre_trade_check`.

    Attributes
    ----------
    accepted : (N,) float64 Series of accepted target weights (the union of target and current symbols).
    violations : DataFrame with columns ``symbol`` (``PORTFOLIO`` for book-level checks), ``check``,
        ``value`` (offending value), ``limit``, ``action``; one row per change made or breach left.
    current : (N,) Series of current weights (0 where none).
    within_limits : whether ``accepted`` satisfies every limit (False only when names that cannot be
        traded, for want of a valid price, keep the book outside a limit; see ``check == "unresolved"``).
    notional : accepted weight x equity (currency), when ``equity`` was given.
    shares : notional / price (NaN where the price is invalid), when ``equity`` was given.
    """

    accepted: pd.Series
    violations: pd.DataFrame
    current: pd.Series
    within_limits: bool
    notional: pd.Series | None = None
    shares: pd.Series | None = None
    frozen: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing had to change (no violation rows)."""
        return self.violations.empty

    @property
    def trades(self) -> pd.Series:
        """Weight changes to execute, ``accepted - current``."""
        return (self.accepted - self.current).rename("trade")



def pre_trade_check(
    target_weights: pd.Series | Mapping[str, float],
    prices: pd.Series | Mapping[str, float],
    limits: Limits,
    current_weights: pd.Series | Mapping[str, float] | None = None,
    equity: float | None = None,
) -> PreTradeResult:
    """Check target weights against prices and limits; return accepted weights and every violation.

    Steps, in order (each change is recorded as a violation row with its action; nothing is dropped
    silently):

    1. ``missing_target``: a held symbol absent from the targets gets target 0 (closed).
    2. ``non_finite_target``: a NaN/inf target is replaced by the current weight (no trade).
    3. ``unknown_price`` / ``bad_price`` (not in ``prices``, or NaN, inf, <= 0): the name cannot be
       traded, so it is *frozen* at its current weight; later steps never change frozen names.
    4. ``min_price``: a name priced below ``limits.min_price`` gets weight 0.
    5. ``short_not_allowed`` (``allow_short=False``): a negative target gets weight 0.
    6. ``max_position``: clipped to ``+-max_position``.
       (Steps 6-8 ignore excesses below 1e-12 of the limit, float rounding such as
       ``6 * 0.01 = 0.060000000000000005``.)
    7. ``max_gross`` and ``max_leverage`` (each reported when exceeded): the tradable names are scaled
       by one factor so the gross equals ``min(max_gross, max_leverage)``.
    8. ``max_net``: the tradable names on the side in excess are scaled down so ``|net| = max_net``.
    9. ``max_turnover``: the book moves from current toward the limited target by the fraction
       ``max_turnover / sum |target - current|``; if the current book breaks a limit, steps 6-8 run
       again (recorded with "after max_turnover"): the risk limits win over the turnover cap.
    10. ``unresolved``: any limit still broken (only possible through frozen names) is reported and
        ``within_limits`` is False.

    Parameters
    ----------
    target_weights : (N,) Series or dict of target weights (fractions of equity) by symbol.
    prices : Series or dict of last prices by symbol (currency per share).
    limits : :class:`Limits`.
    current_weights : Series or dict of current weights (default none held); must be finite.
    equity : account equity (currency), > 0; when given the result carries ``notional`` and ``shares``.

    Returns
    -------
    :class:`PreTradeResult`.

    Raises
    ------
    ValueError
        ``current_weights`` not finite, ``equity`` not finite and positive, duplicate symbols.
    TypeError
        ``limits`` is not a :class:`Limits` or an input is not a Series/dict.
    """
    if not isinstance(limits, Limits):
        raise TypeError(f"limits must be a Limits, got {type(limits).__name__}")
    tgt_in = _as_weights(target_weights, "target_weights")
    cur_in = _as_weights(current_weights if current_weights is not None else pd.Series(dtype="float64"), "current_weights")
    if not np.isfinite(cur_in.to_numpy()).all():
        raise ValueError(f"current_weights must be finite; bad symbols: {list(cur_in.index[~np.isfinite(cur_in.to_numpy())])}")
    if isinstance(prices, Mapping):
        prices = pd.Series(dict(prices), dtype="float64")
    if not isinstance(prices, pd.Series):
        raise TypeError(f"prices must be a Series or dict, got {type(prices).__name__}")
    if not prices.index.is_unique:
        raise ValueError(f"prices has duplicate symbols: {list(prices.index[prices.index.duplicated()])}")
    if equity is not None and not (math.isfinite(equity) and equity > 0):
        raise ValueError(f"equity must be finite and > 0, got {equity!r}")

    symbols = list(tgt_in.index) + [s for s in cur_in.index if s not in tgt_in.index]
    cur = cur_in.reindex(symbols).fillna(0.0).to_numpy()
    tgt = tgt_in.reindex(symbols).to_numpy(copy=True)
    px = pd.to_numeric(prices.reindex(symbols), errors="coerce").astype("float64").to_numpy()
    known = np.array([s in prices.index for s in symbols], dtype=bool)
    rows: list[dict] = []

    def rec(symbol, check, value, limit, action):
        rows.append({"symbol": symbol, "check": check, "value": float(value), "limit": float(limit), "action": action})

    in_target = np.array([s in tgt_in.index for s in symbols], dtype=bool)
    for i, s in enumerate(symbols):
        if not in_target[i]:
            tgt[i] = 0.0
            rec(s, "missing_target", cur[i], np.nan, "no target given: target 0 (close)")
        elif not np.isfinite(tgt[i]):
            rec(s, "non_finite_target", tgt[i], np.nan, f"kept current weight {cur[i]:.6g}")
            tgt[i] = cur[i]
    frozen = np.zeros(len(symbols), dtype=bool)
    for i, s in enumerate(symbols):
        if known[i] and np.isfinite(px[i]) and px[i] > 0:
            continue
        frozen[i] = True
        if tgt[i] != cur[i]:
            check = "unknown_price" if not known[i] else "bad_price"
            rec(s, check, px[i], np.nan, f"frozen at current weight {cur[i]:.6g} (no valid price to trade at)")
            tgt[i] = cur[i]
    free = ~frozen
    if limits.min_price > 0:
        for i in np.flatnonzero(free & (px < limits.min_price) & (tgt != 0)):
            rec(symbols[i], "min_price", px[i], limits.min_price, f"zeroed (target was {tgt[i]:.6g})")
            tgt[i] = 0.0

    def limit_pass(w: np.ndarray, stage: str) -> np.ndarray:
        w = w.copy()
        if not limits.allow_short:
            for i in np.flatnonzero(free & (w < 0)):
                rec(symbols[i], "short_not_allowed", w[i], 0.0, "zeroed" + stage)
                w[i] = 0.0
        for i in np.flatnonzero(free & (np.abs(w) > limits.max_position * (1 + _NOISE))):
            rec(symbols[i], "max_position", w[i], limits.max_position, f"clipped to {np.sign(w[i]) * limits.max_position:+.6g}" + stage)
            w[i] = np.sign(w[i]) * limits.max_position
        g = float(np.abs(w).sum())
        if g > limits.gross_cap * (1 + _NOISE):
            f = float(_gross_factor(w, limits.gross_cap, free)[0])
            action = f"scaled tradable weights by {f:.6g}" + stage
            if g > limits.max_gross:
                rec(PORTFOLIO, "max_gross", g, limits.max_gross, action)
            if g > limits.max_leverage:
                rec(PORTFOLIO, "max_leverage", g, limits.max_leverage, action)
            w = np.where(free, w * f, w)
        net = float(w.sum())
        if abs(net) > limits.max_net * (1 + _NOISE):
            fl, fs = _net_factors(w, limits.max_net, free)
            side, f = ("longs", float(fl[0])) if net > 0 else ("shorts", float(fs[0]))
            rec(PORTFOLIO, "max_net", net, limits.max_net, f"scaled tradable {side} by {f:.6g}" + stage)
            w = np.where(free & (w > 0), w * fl[0], np.where(free & (w < 0), w * fs[0], w))
        return w

    w = limit_pass(tgt, "")
    if limits.max_turnover is not None:
        d = float(np.abs(w - cur).sum())
        w_new, lam = _blend_turnover(w, cur, limits.max_turnover)
        if lam < 1.0:
            rec(PORTFOLIO, "max_turnover", d, limits.max_turnover, f"moved {lam:.6g} of the way from current to target")
            w = w_new
            if not _within_limits(w, limits):
                w = limit_pass(w, " (after max_turnover)")
    within = _within_limits(w, limits)
    if not within:
        fz = [symbols[i] for i in np.flatnonzero(frozen & (w != 0))]
        note = f"unresolved: frozen names without a valid price {fz}"
        for i in np.flatnonzero(np.abs(w) > limits.max_position * (1 + _TOL) + _TOL):
            rec(symbols[i], "unresolved", w[i], limits.max_position, note + " (max_position)")
        if not limits.allow_short:
            for i in np.flatnonzero(w < -_TOL):
                rec(symbols[i], "unresolved", w[i], 0.0, note + " (short_not_allowed)")
        g = float(np.abs(w).sum())
        if g > limits.gross_cap * (1 + _TOL) + _TOL:
            rec(PORTFOLIO, "unresolved", g, limits.gross_cap, note + " (gross)")
        if abs(w.sum()) > limits.max_net * (1 + _TOL) + _TOL:
            rec(PORTFOLIO, "unresolved", w.sum(), limits.max_net, note + " (net)")
    accepted = pd.Series(w, index=symbols, name="accepted", dtype="float64")
    violations = pd.DataFrame(rows, columns=["symbol", "check", "value", "limit", "action"])
    notional = shares = None
    if equity is not None:
        notional = (accepted * float(equity)).rename("notional")
        valid_px = pd.Series(np.where(free, px, np.nan), index=symbols)
        shares = (notional / valid_px).rename("shares")
    return PreTradeResult(
        accepted=accepted,
        violations=violations,
        current=pd.Series(cur, index=symbols, name="current"),
        within_limits=within,
        notional=notional,
        shares=shares,
        frozen=[symbols[i] for i in np.flatnonzero(frozen)],
    )

