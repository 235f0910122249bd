"""The backtest: weights to a vectorbt portfolio with costs and slippage, and its numpy reference.

Timing convention: a position decided at the close of day t (from data up to t) is held from the
close of t to the close of t+1 and earns ``r_{t+1}``. vectorbt fills an order placed at row t at
row t's close, which is exactly that.

Costs and slippage: ``cost_bps`` is charged on the traded notional valued at the fill price;
``slippage_bps`` moves the fill price against the trade (buys at ``close * (1 + s)``, sells at
``close * (1 - s)``), as vectorbt's ``fees`` and ``slippage`` arguments do.

Leverage: the kit does not borrow cash. vectorbt (with ``lock_cash=False``, its default) lets short
sales fund purchases but limits every purchase to the cash available, so a book whose net
exposure (sum of signed weights) plus costs exceeds 100% of equity is silently clipped and no
longer holds its target. :func:`vol_scaled_weights` caps gross exposure at ``max_gross`` (0.95 by
default, which bounds net exposure and leaves room for costs) and :func:`simulate` refuses
weights whose net exposure exceeds 1. :func:`reference_returns` has no such limit (negative cash
is borrowing at zero interest), so above the cap the two differ (tested). A long-short book over
100% gross (e.g. 100% long and 100% short) with net exposure at most 1 is funded by its short
sales and simulated exactly by vectorbt (equal to the numpy reference to 1e-12, tested; decision
record 0009); ``max_net`` of the sizing functions bounds its net exposure.

Costs beyond the flat rate (decision record 0009):

- ``borrow_bps``: a borrow fee on short notional, basis points per year, charged at every close on
  the short positions held since the previous close, valued at today's close:
  ``borrow_bps / 1e4 / 252 * sum_i max(-shares_i, 0) p_{i,t}``;
- ``impact``: square-root market impact (:class:`MarketImpact`): each order pays, per unit of traded
  notional, ``half_spread + k sigma_{i,t} sqrt(|trade_i| / ADV_{i,t})`` on top of ``cost_bps``,
  with ``sigma`` the asset's daily ex-ante volatility, ``ADV`` its average daily dollar volume over
  the previous ``adv_window`` days and ``|trade|`` in dollars for a book of ``capital`` dollars at
  the start (Almgren, Thum, Hauptmann & Li, 2005; Toth et al., 2011; Bouchaud, Bonart, Donier &
  Gould, "Trades, Quotes and Prices", 2018, ch. 12: impact ~ ``Y sigma sqrt(Q / V)`` with ``Y`` of
  order 1).

vectorbt's ``from_orders`` has neither (its fees are fixed per order before the simulation, while
both costs depend on the simulated holdings), so :func:`simulate` runs the numpy reference for a
book with a borrow fee or market impact (``engine="reference"``); the reference's bookkeeping of
per-order fees is cross-checked against vectorbt by feeding vectorbt the reference's own per-order
fee fractions (tested), and the borrow fee against a hand-computed case.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..conventions import COST_SWEEP_BPS, TARGET_VOL, TRADING_DAYS
from ..data import align_membership
from ..features import daily_returns, ex_ante_vol
from .sizing import _cap_exposure, _check_labels, portfolio_vol_scaled_weights, vol_scaled_weights

__all__ = [
    "BacktestResult",
    "MarketImpact",
    "market_impact",
    "simulate",
    "compare_strategies",
    "cost_sweep",
    "reference_returns",
    "INIT_CASH",
    "ENGINES",
]



INIT_CASH = 1e6

ENGINES = ("auto", "vectorbt", "reference")
"""Simulators of :func:`simulate`: ``auto`` is vectorbt unless a borrow fee or market impact is asked
for, then the numpy reference."""



@dataclass
class BacktestResult:
    """A simulated strategy: the vectorbt portfolio (None for the numpy reference engine), its daily
    net returns ``(T,)``, the target weights ``(T, N)`` it was asked to hold, the engine, and (numpy
    reference engine) ``costs``, a ``(T, 3)`` frame of the day's ``commission`` (``cost_bps`` and
    slippage-free flat fees), ``impact`` and ``borrow`` costs as fractions of the previous day's
    equity."""

    name: str
    portfolio: object
    returns: pd.Series
    weights: pd.DataFrame
    cost_bps: float
    slippage_bps: float = 0.0
    borrow_bps: float = 0.0
    engine: str = "vectorbt"
    costs: pd.DataFrame | None = None

    @property
    def equity(self) -> pd.Series:
        """Equity curve starting at 1.0."""
        return (1.0 + self.returns).cumprod()



@dataclass(frozen=True)
class MarketImpact:
    """Square-root market impact inputs for :func:`simulate` and :func:`reference_returns`.

    The cost per unit of traded notional of an order of ``|trade|`` dollars in asset i at close t is
    ``half_spread_bps / 1e4 + k * daily_vol_{t,i} * sqrt(|trade| / adv_{t,i})``, paid on top of
    ``cost_bps`` (see the module notes for the sources). Build it with :func:`market_impact` on
    the full price history, so the volume and volatility windows are filled at the first simulated
    date; :func:`simulate` takes the rows of its own dates.

    Attributes
    ----------
    adv : (T, N) average daily dollar volume (close x volume) over the previous ``adv_window``
        days, dollars, known before the close of t.
    daily_vol : (T, N) daily ex-ante volatility (EWM std of daily returns up to t, not annualised).
    half_spread_bps : half the bid-ask spread, basis points (default 1).
    k : impact coefficient ``Y`` of the square-root law (default 1, the order of magnitude measured
        by Almgren et al., 2005, and Toth et al., 2011).
    capital : dollars of equity at the start of the simulation (default 1e8): the book's size, which
        turns weights into dollar trades.
    """

    adv: pd.DataFrame
    daily_vol: pd.DataFrame
    half_spread_bps: float = 1.0
    k: float = 1.0
    capital: float = 1e8

    def __post_init__(self):
        for name in ("half_spread_bps", "k"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {v!r}")
        if not (np.isfinite(self.capital) and self.capital > 0):
            raise ValueError(f"capital must be a positive number of dollars, got {self.capital!r}")

    def aligned(self, close: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """``(adv, daily_vol)`` as ``(T, N)`` float64 arrays on ``close``'s dates and symbols.

        Raises
        ------
        ValueError
            A date or symbol of ``close`` that the impact inputs do not cover.
        """
        missing = close.index.difference(self.adv.index)
        if len(missing):
            raise ValueError(f"impact: no volume data for {missing[0].date()} (build MarketImpact on the full history)")
        cols = [c for c in close.columns if c not in self.adv.columns]
        if cols:
            raise ValueError(f"impact: no volume data for symbol(s) {cols[:5]}")
        adv = self.adv.reindex(index=close.index, columns=close.columns).to_numpy(dtype="float64")
        vol = self.daily_vol.reindex(index=close.index, columns=close.columns).to_numpy(dtype="float64")
        return adv, vol



def market_impact(
    close: pd.DataFrame,
    volume: pd.DataFrame,
    half_spread_bps: float = 1.0,
    k: float = 1.0,
    capital: float = 1e8,
    adv_window: int = 20,
    vol_span: int = 60,
) -> MarketImpact:
    """:class:`MarketImpact` from prices and volumes: ``adv_t`` = mean of ``close * volume`` over
    dates ``t - adv_window .. t - 1`` (missing days skipped; past days only; when that window holds
    no traded day, e.g. right after rows masked by the cleaning policy or a suspension, the last
    ADV known before it), ``daily_vol_t`` = :func:`kit.features.ex_ante_vol` of daily returns up to
    t (span ``vol_span``, not annualised).

    Parameters
    ----------
    close, volume : (T, N) adjusted closes and share volumes, same labels (use the full history).

    Raises
    ------
    ValueError
        Labels differ, ``adv_window < 1``, or a parameter of :class:`MarketImpact` out of range.
    """
    if not (volume.index.equals(close.index) and list(volume.columns) == list(close.columns)):
        raise ValueError("volume and close must have the same dates and symbols")
    if int(adv_window) != adv_window or adv_window < 1:
        raise ValueError(f"adv_window must be a positive integer, got {adv_window!r}")
    dollars = (close * volume).where(volume > 0)
    adv = dollars.rolling(int(adv_window), min_periods=1).mean().shift(1).ffill()  # past data only, either way
    vol = ex_ante_vol(daily_returns(close), span=vol_span, annualise=False)
    return MarketImpact(adv, vol, half_spread_bps, k, capital)



def _check_costs(cost_bps: float, slippage_bps: float) -> None:
    if not cost_bps >= 0:
        raise ValueError(f"cost_bps must be >= 0, got {cost_bps}")
    if not slippage_bps >= 0:
        raise ValueError(f"slippage_bps must be >= 0, got {slippage_bps}")



def _check_weights(close: pd.DataFrame, weights: pd.DataFrame) -> np.ndarray:
    """Validated ``(T, N)`` float64 weights (see :func:`simulate` for the rules)."""
    w = weights.to_numpy(dtype="float64")
    if np.isinf(w).any():
        t, i = np.argwhere(np.isinf(w))[0]
        raise ValueError(f"weights: infinite weight {w[t, i]} for {close.columns[i]} on {close.index[t].date()}")
    nan = np.isnan(w)
    partial = nan.any(axis=1) & ~nan.all(axis=1)
    if partial.any():
        t = int(np.argmax(partial))
        i = int(np.argmax(nan[t]))
        raise ValueError(
            f"weights: NaN weight for {close.columns[i]} on {close.index[t].date()} in a row with finite weights; a day is "
            "either rebalanced (every weight finite, 0 for symbols not held) or not (the whole row NaN)"
        )
    no_price = close.isna().to_numpy() & ~nan & (w != 0)
    if no_price.any():
        t, i = np.argwhere(no_price)[0]
        raise ValueError(f"weights: non-zero weight {weights.iat[t, i]} for {close.columns[i]} on {close.index[t].date()} where close is NaN")
    net = np.where(nan, 0.0, w).sum(axis=1)
    if (net > 1.0 + 1e-12).any():
        t = int(np.argmax(net > 1.0 + 1e-12))
        raise ValueError(
            f"weights: net exposure {net[t]:.6f} > 1 on {close.index[t].date()}; the kit does not borrow and vectorbt would "
            "clip the purchases to the cash available (cap gross exposure with vol_scaled_weights(max_gross=...))"
        )
    return w



def simulate(
    close: pd.DataFrame,
    weights: pd.DataFrame,
    cost_bps: float = 0.0,
    name: str = "strategy",
    slippage_bps: float = 0.0,
    *,
    borrow_bps: float = 0.0,
    impact: MarketImpact | None = None,
    engine: str = "auto",
) -> BacktestResult:
    """Simulate target weights with vectorbt (``Portfolio.from_orders``, target-percent sizing,
    cash shared across assets, sells before buys each day, costs as a fraction of traded notional),
    or with the numpy reference when a borrow fee or market impact is asked for.

    Parameters
    ----------
    close : (T, N) DataFrame of adjusted closes (string column labels).
    weights : (T, N) DataFrame of target weights decided at each close (fractions of equity). A
        row of NaN means no rebalance that day: every position is held and its weight drifts
        with prices (e.g. weekly rebalancing); a row is either all finite or all NaN.
    cost_bps : cost per unit of traded notional in basis points (``fees = cost_bps / 1e4``).
    slippage_bps : adverse fill-price move in basis points (``slippage = slippage_bps / 1e4``):
        buys fill at ``close * (1 + s)``, sells at ``close * (1 - s)``; ``cost_bps`` applies to
        the notional at the fill price. Default 0.

    Gaps in ``close`` are forward-filled for valuation only (a held position keeps its last price
    through a missing day); before a symbol's first price the weight must be 0 and the price is
    back-filled so the simulator has a number (no position is held, so it has no effect).
    The net exposure ``sum_i w_{t,i}`` may not exceed 1 (the kit does not borrow cash; see the
    module notes and :func:`vol_scaled_weights`); gross exposure may (a long-short book's short
    sales fund its longs).
    borrow_bps : borrow fee on short notional, basis points per year (module notes). Default 0.
    impact : :class:`MarketImpact` (square-root impact on top of ``cost_bps``), or None.
    engine : one of :data:`ENGINES`. ``"vectorbt"`` refuses a borrow fee or impact (vectorbt cannot
        charge them); ``"auto"`` picks the numpy reference for them.

    Raises
    ------
    ValueError
        Negative ``cost_bps``, ``slippage_bps`` or ``borrow_bps``, mismatched labels, non-zero
        weight where no price exists, an infinite weight or a NaN in a row with finite weights, a
        net exposure above 1, an unknown engine, vectorbt asked for a borrow fee or impact, or an
        order in a symbol without volume or volatility data under ``impact``.
    """
    _check_costs(cost_bps, slippage_bps)
    if not (np.isfinite(borrow_bps) and borrow_bps >= 0):
        raise ValueError(f"borrow_bps must be a finite number >= 0, got {borrow_bps!r}")
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    extra = borrow_bps > 0 or impact is not None
    if engine == "vectorbt" and extra:
        raise ValueError("engine='vectorbt' cannot charge a borrow fee or market impact; use engine='reference' or 'auto'")
    _check_labels(close, weights)
    w = _check_weights(close, weights)
    if engine == "reference" or extra:
        path = _reference_path(close, weights, cost_bps / 1e4, slippage_bps / 1e4, borrow_bps / 1e4 / TRADING_DAYS, impact)
        rets = pd.Series(path["returns"], index=close.index, name=name)
        costs = pd.DataFrame({k: path[k] for k in ("commission", "impact", "borrow")}, index=close.index)
        return BacktestResult(name, None, rets, weights, cost_bps, slippage_bps, borrow_bps, "reference", costs)
    import vectorbt as vbt

    px = close.ffill().bfill()
    px.columns = [str(c) for c in px.columns]
    pf = vbt.Portfolio.from_orders(
        px,
        size=w,
        size_type="targetpercent",
        direction="both",
        group_by=True,
        cash_sharing=True,
        call_seq="auto",
        fees=cost_bps / 1e4,
        slippage=slippage_bps / 1e4,
        init_cash=INIT_CASH,
        freq="1D",
    )
    rets = pd.Series(_returns_from_fills(pf.order_records, px.to_numpy(dtype="float64"), INIT_CASH), index=close.index, name=name)
    return BacktestResult(name, pf, rets, weights, cost_bps, slippage_bps)



def _returns_from_fills(orders: np.ndarray, px: np.ndarray, init_cash: float) -> np.ndarray:
    """Daily returns of a cash-sharing vectorbt portfolio from its order records, the same
    bookkeeping as ``Portfolio.returns()`` (cash plus shares at the close, over the previous
    day's value; tested equal to 1e-12) without its per-column intermediate frames, which cost
    more than the simulation itself on the full universe. ``orders``: vectorbt ``order_dt``
    records (at most one per day and symbol, as ``from_orders`` makes); ``px`` ``(T, N)``."""
    T, N = px.shape
    buy = orders["side"] == 0
    notional = orders["size"] * orders["price"]
    cash_flow = np.where(buy, -notional, notional) - orders["fees"]
    cash = init_cash + np.cumsum(np.bincount(orders["idx"], weights=cash_flow, minlength=T))
    delta = np.zeros((T, N))
    delta[orders["idx"], orders["col"]] = np.where(buy, orders["size"], -orders["size"])
    shares = np.cumsum(delta, axis=0)
    value = cash + np.where(shares != 0, shares * px, 0.0).sum(axis=1)
    prev = np.concatenate(([init_cash], value[:-1]))
    return value / prev - 1.0



def _live(membership, frame: pd.DataFrame) -> pd.DataFrame:
    """``membership`` as a bool frame on ``frame``'s axes (cells it does not cover: not members)."""
    return align_membership(membership, frame)


def compare_strategies(
    close: pd.DataFrame,
    positions: dict[str, pd.DataFrame],
    ex_ante_vol: pd.DataFrame,
    cost_bps: float = 0.0,
    target_vol: float = TARGET_VOL,
    max_gross: float = 0.95,
    slippage_bps: float = 0.0,
    portfolio_target_vol: float | None = None,
    *,
    membership: pd.DataFrame | None = None,
    weights: dict[str, pd.DataFrame] | None = None,
    max_net: float | None = None,
    borrow_bps: float = 0.0,
    impact: MarketImpact | None = None,
) -> dict[str, BacktestResult]:
    """Simulate several strategies on the same dates, symbols, volatility targeting and costs.

    Parameters
    ----------
    close : (T, N) adjusted closes covering every strategy's dates.
    positions : name -> (T_s, N) positions in [-1, 1]; each is simulated on its own dates after
        per-asset volatility targeting (:func:`vol_scaled_weights`).
    ex_ante_vol : (T, N) annualised ex-ante volatility (e.g. :func:`kit.features.indicators.ex_ante_vol`).
    cost_bps, slippage_bps, borrow_bps, impact : see :func:`simulate`.
    target_vol, max_gross, max_net : see :func:`vol_scaled_weights`.
    portfolio_target_vol : if given, every strategy's weights are also scaled to this annualised
        book volatility with :func:`portfolio_vol_scaled_weights` (past data only); default None.
    membership : optional (T, N) bool point-in-time index membership: every strategy's position
        (models and benchmarks alike) is NaN (not live, weight 0) where the symbol is not a member
        on the decision date (dates or symbols it does not cover count as not members); the
        weights of ``weights`` books are 0 there.
    weights : name -> (T_s, N) weights of strategies sized already (e.g. the cross-sectional books
        of :mod:`kit.portfolio.cross_sectional`): no per-asset volatility targeting, the same
        book-level target and costs. Their names must differ from those of ``positions``.

    Returns
    -------
    dict name -> :class:`BacktestResult`, positions first, then weights, each in input order.

    Raises
    ------
    ValueError
        A name in both ``positions`` and ``weights``; as :func:`simulate`.
    """
    weights = dict(weights or {})
    both = sorted(set(positions) & set(weights))
    if both:
        raise ValueError(f"strategy name(s) {both} given both as positions and as weights")
    out = {}
    books = {}
    for name, pos in positions.items():
        if membership is not None:
            pos = pos.where(_live(membership, pos))
        books[name] = vol_scaled_weights(pos, ex_ante_vol.reindex(index=pos.index, columns=pos.columns), target_vol, max_gross, max_net)
    for name, w in weights.items():
        if not np.isfinite(w.to_numpy(dtype="float64")).all():
            raise ValueError(f"weights of {name!r} must be finite on every date (hold='constant' books; 0 = not held)")
        if membership is not None:
            w = w.where(_live(membership, w), 0.0)
        books[name] = pd.DataFrame(_cap_exposure(w.to_numpy(dtype="float64"), max_gross, max_net), index=w.index, columns=w.columns)
    for name, w in books.items():
        px = close.reindex(index=w.index, columns=w.columns)
        if portfolio_target_vol is not None:
            w = portfolio_vol_scaled_weights(w, px, portfolio_target_vol, max_gross=max_gross, max_net=max_net)
        out[name] = simulate(px, w, cost_bps, name, slippage_bps=slippage_bps, borrow_bps=borrow_bps, impact=impact)
    return out



def cost_sweep(
    close: pd.DataFrame,
    weights: pd.DataFrame,
    costs=COST_SWEEP_BPS,
    slippage_bps: float = 0.0,
    *,
    borrow_bps: float = 0.0,
    impact: MarketImpact | None = None,
) -> pd.DataFrame:
    """Daily net returns of the same weights at several cost levels (:func:`simulate`: vectorbt for
    flat costs, the numpy reference with a borrow fee or market impact).

    Parameters
    ----------
    close, weights : (T, N), as for :func:`simulate`.
    costs : cost levels in basis points of traded notional (default 0, 1, 2, 5, 10, 20).
    slippage_bps, borrow_bps, impact : the same at every level (default none).

    Returns
    -------
    (T, len(costs)) DataFrame of daily returns, one column per cost level (column index named
    ``cost_bps``). ``kit.analytics.performance_table(sweep.to_dict("series"))`` gives the table.
    """
    costs = [float(c) for c in costs]
    if not costs:
        raise ValueError("costs must hold at least one level")
    out = {c: simulate(close, weights, c, f"{c:g} bps", slippage_bps=slippage_bps, borrow_bps=borrow_bps, impact=impact).returns for c in costs}
    frame = pd.DataFrame(out, index=close.index)
    frame.columns.name = "cost_bps"
    return frame



def reference_returns(
    close: pd.DataFrame,
    weights: pd.DataFrame,
    cost_bps: float = 0.0,
    slippage_bps: float = 0.0,
    *,
    borrow_bps: float = 0.0,
    impact: MarketImpact | None = None,
) -> pd.Series:
    """Plain-numpy daily net returns of target weights, for cross-checking :func:`simulate`.

    At each close t the book is valued at ``V_t = cash + sum_i shares_i * p_{i,t}``, every asset is
    traded to ``shares_i = w_{i,t} * V_t / p_{i,t}`` (so weights drift with prices between
    rebalances and are restored at each close), filled at ``q_{i,t} = p_{i,t} (1 + s sign(d_i))``
    for the traded shares ``d_i`` (``s = slippage_bps / 1e4``), and the cost
    ``cost_bps / 1e4 * sum_i |d_i| q_{i,t}`` is paid from cash. The return of day t is
    ``V_t^after / V_{t-1}^after - 1`` with ``V_{-1} = 1``. A row of NaN weights is a day without
    rebalance (shares held, the weights drift). Prices are forward-filled through gaps
    (then back-filled before a listing), as in :func:`simulate`. Cash may go negative (borrowing
    at zero interest), which vectorbt does not allow: above a net exposure of about
    ``1 - costs`` the two differ. With ``borrow_bps`` the short notional held into each close pays
    ``borrow_bps / 1e4 / 252`` of its value at that close; with ``impact`` each order also pays
    the square-root impact of :class:`MarketImpact` per unit of notional (module notes).

    Shapes: ``close`` and ``weights`` ``(T, N)``; returns ``(T,)``.

    Raises
    ------
    ValueError
        Negative costs, or (``impact``) an order in a symbol without a positive ADV or a finite
        volatility on that date (named).
    """
    _check_costs(cost_bps, slippage_bps)
    if not (np.isfinite(borrow_bps) and borrow_bps >= 0):
        raise ValueError(f"borrow_bps must be a finite number >= 0, got {borrow_bps!r}")
    path = _reference_path(close, weights, cost_bps / 1e4, slippage_bps / 1e4, borrow_bps / 1e4 / TRADING_DAYS, impact)
    return pd.Series(path["returns"], index=close.index, name="reference")



def _reference_path(
    close: pd.DataFrame, weights: pd.DataFrame, fee: float, slip: float, borrow_daily: float = 0.0, impact: MarketImpact | None = None
) -> dict:
    """The bookkeeping of :func:`reference_returns`. Returns a dict of ``(T,)`` arrays ``returns``,
    ``cash_fraction`` (cash over equity after each close's trades; negative = borrowing, which
    vectorbt would not do), ``commission``, ``impact``, ``borrow`` (each day's costs over the
    previous day's equity) and ``(T, N)`` ``fee_fraction``, the total fee per unit of notional of
    each order (``fee`` plus its impact; NaN where nothing traded)."""
    px = close.ffill().bfill().to_numpy(dtype="float64")
    px = np.where(np.isfinite(px), px, 1.0)  # a symbol without any price carries no weight
    w = weights.to_numpy(dtype="float64")
    hold = np.isnan(w).all(axis=1)
    T, N = px.shape
    adv = vol = None
    if impact is not None:
        adv, vol = impact.aligned(close)
        half_spread, k, capital = impact.half_spread_bps / 1e4, impact.k, impact.capital
    shares = np.zeros(N)
    cash, prev_value = 1.0, 1.0
    out = {name: np.zeros(T) for name in ("returns", "cash_fraction", "commission", "impact", "borrow")}
    fee_fraction = np.full((T, N), np.nan)
    for t in range(T):
        p = px[t]
        if borrow_daily > 0:
            b = borrow_daily * (np.maximum(-shares, 0.0) @ p)
            cash -= b
            out["borrow"][t] = b / prev_value
        if not hold[t]:  # else no rebalance: shares held, the weights drift
            value = cash + shares @ p
            target = w[t] * value / p
            d = target - shares
            q = p * (1.0 + slip * np.sign(d))
            notional = np.abs(d) * q
            frac = np.full(N, fee)
            if impact is not None:
                traded = notional > 0
                ok = np.isfinite(adv[t]) & (adv[t] > 0) & np.isfinite(vol[t])
                if (traded & ~ok).any():
                    i = int(np.argmax(traded & ~ok))
                    raise ValueError(
                        f"impact: an order in {close.columns[i]} on {close.index[t].date()} without a positive average dollar "
                        f"volume or a finite volatility (adv={adv[t, i]}, daily_vol={vol[t, i]})"
                    )
                part = np.where(traded, notional * capital / np.where(ok, adv[t], 1.0), 0.0)
                imp = np.where(traded, half_spread + k * np.where(ok, vol[t], 0.0) * np.sqrt(part), 0.0)
                frac = frac + imp
                out["impact"][t] = (imp @ notional) / prev_value
            out["commission"][t] = fee * notional.sum() / prev_value
            cash -= d @ q + frac @ notional
            fee_fraction[t] = np.where(notional > 0, frac, np.nan)
            shares = target
        after = cash + shares @ p
        out["returns"][t] = after / prev_value - 1.0
        out["cash_fraction"][t] = cash / after
        prev_value = after
    out["fee_fraction"] = fee_fraction
    return out
