# %% [markdown]
# # 30 · Backtest the out-of-sample positions
#
# **Question.** Net of trading costs, how did each model's out-of-sample positions do beside the
# long-only, time-series momentum (TSMOM), MACD and cross-sectional momentum benchmarks on the same
# symbols and dates, does any strategy beat its proper benchmark, and how sure can we be?
#
# **Method.** Every strategy's positions go through the same machinery: per-asset volatility
# targeting (`position · target_vol / ex_ante_vol`), equal-risk averaging over the symbols live that
# day (each weight divided by the number of live symbols, so a symbol entering or leaving changes the
# others' weights, not the book's risk), gross exposure capped at 95% of equity (no borrowing;
# vectorbt would otherwise clip purchases to the cash available), simulated in vectorbt with
# target-percent orders at each close and costs in basis points of traded notional. Benchmarks: long
# only, TSMOM of Moskowitz, Ooi & Pedersen (2012) (sign of the 12-month return), and the combined MACD
# signal of Baz et al. (2015). Statistics via empyrical-reloaded; each Sharpe ratio carries a 95%
# interval (Mertens, 2002, and a stationary bootstrap that allows for autocorrelation), the
# probabilistic Sharpe ratio, and the deflated Sharpe ratio of Bailey & López de Prado (2014) for the
# number of configurations tried before this test (every model and variant counts). A variant (a
# model on other features, e.g. with changepoint features) is also compared with its base model
# directly: the difference of their Sharpe ratios with a paired stationary-bootstrap interval.
#
# **Cross-sectional books.** The rankers' legs (top quantile +1, bottom -1) and the cross-sectional
# benchmarks are sized as books directly: equal weights within each leg, dollar-neutral at gross
# `ls_gross` (Jegadeesh & Titman, 1993), rebalanced at each `rebalance_freq` close. Benchmarks:
# cross-sectional momentum (12-month return skipping the last month, deciles; equal-weight and
# inverse-volatility legs), the cross-sectional MACD composite (Baz et al., 2015), and the top decile
# alone as a long-only tilt. A long-short book is compared with cross-sectional momentum, a long-only
# tilt with long only.
#
# **Book-level risk.** Every strategy and benchmark is then scaled to `portfolio_target_vol`
# annualised with its own ex-ante volatility (EWM of its past daily returns only), within the caps
# `max_gross` and `max_net` (longs are funded by cash and short sales; the kit never borrows cash). A
# constant scale would leave every Sharpe ratio unchanged; the estimated one changes it only through
# the estimate (tested). **Costs:** `cost_bps` per unit of traded notional, a borrow fee of
# `borrow_bps` a year on short notional, and square-root market impact
# `half_spread + impact_k · σ · √(trade / ADV)` for a book of `capital` dollars (the numpy reference
# simulates these; decision record 0009). **Every book starts flat (all cash) at the first
# out-of-sample close** and trades into its first portfolio there (a cross-sectional book at its first
# rebalance close), paying costs.

# %% tags=["parameters"]
# Data and universe (defaults: the small smoke case that CI runs)
data_path = ""                 # empty: the committed S&P 500 store (or $KIT_DATA)
symbols = ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"]
n_symbols = 0                  # > 0: the n most liquid symbols as known on universe_as_of, instead of `symbols`
universe_as_of = "2009-12-31"  # universe chosen from data up to this date only
start = "2008-01-01"           # first date loaded (features need about 15 months of warm-up)
end = "2021-04-21"             # last date loaded
universe = "point_in_time"     # point_in_time: each decision date trades that day's index members only; survivors: all loaded symbols
cleaning = "default"           # cleaning policy: default (errors masked, warnings kept), none, or a mapping

# Walk-forward and models
models = ["dmn_lstm", "ldtm", "lambdamart", "ranker_regression", "xgb_direction", "tree_lstm_stack", "dmn_lstm_bocpd"]  # the catalogue's names (kit.models.CATALOGUE) or variants
features = "dmn"               # inputs of the position models: dmn, or e.g. dmn+cpd21+bocpd (changepoint features, cached)
variants = {"dmn_lstm_bocpd": {"model": "dmn_lstm", "features": "dmn+bocpd"}}  # a model on other features, under its own name
members = ["dmn_lstm", "linear", "mlp"]  # members when model is ensemble
ensemble_method = "stacked"    # equal, inverse_loss or stacked (weights fitted on validation blocks only)
n_heads = 4                    # Momentum Transformer attention heads (its d_model is hidden_size)
test_start = "2016-01-01"      # first out-of-sample date
test_size = 504                # trading days per test block; the model is retrained before each block
val_fraction = 0.1             # last 10% of each training window is the validation set (early stopping)
lookback = 63                  # window of the position models, trading days
hidden_size = 10
num_layers = 1
dropout = 0.1
epochs = 3                     # maximum epochs per fold (early stopping may end sooner)
patience = 3
batch_size = 128
lr = 0.001
target_vol = 0.15              # annualised volatility target per asset
max_grad_norm = 1.0
search_trials = 0              # > 0: optuna search on dates before test_start first (trials are recorded)
seed = 0

# Per-ticker multi-horizon LSTM (ldtm, seed 003): one model per symbol and fold, 21-day embargo
ldtm_hidden_size = 16          # seed 003 uses 128, as the profiles do
ldtm_lookback = 30             # window in trading days
ldtm_sample_stride = 1         # keep every k-th overlapping training window (most recent first)

# Gradient-boosted trees and rankers (seed 004; Poh et al., 2021), as 20_train
n_quantiles = 3                # rankers' and cross-sectional benchmarks' quantiles (deciles: 10, 6 symbols: 3)
rebalance_freq = "M"           # cross-sectional books' rebalance calendar: W, M or Q
tree_horizon = 1               # daily trees' label horizon in trading days
tree_rounds = 200              # maximum boosting rounds
tree_early_stopping = 20       # rounds without improvement before stopping
tree_threads = 0               # LightGBM / XGBoost threads per fold task (0: the task threads, --threads)
stack_members = ["dmn_lstm", "xgb_direction"]  # tree_lstm_stack: an LSTM and a tree
stack_method = "nnls"          # the stack's meta-learner on validation blocks: nnls or sharpe

# Backtest
cost_bps = 5.0                 # cost per unit of traded notional, basis points
cost_sweep = [0.0, 1.0, 2.0, 5.0, 10.0, 20.0]
portfolio_target_vol = 0.10    # book-level volatility target of every strategy and benchmark, annualised (0: off)
max_gross = 2.0                # gross exposure cap, fraction of equity (a long-short book's shorts fund its longs)
max_net = 0.95                 # net exposure cap, fraction of equity (room for costs: the kit never borrows cash)
ls_gross = 1.0                 # gross exposure of the long-short books before the book-level target
borrow_bps = 25.0              # borrow fee on short notional, basis points per year (0: none)
impact_k = 1.0                 # square-root market impact coefficient (0: no impact model)
half_spread_bps = 1.0          # half the bid-ask spread, paid with the impact, basis points
capital = 1e8                  # book size at the start, dollars (trades are compared with dollar volume)
adv_window = 20                # days of the average daily dollar volume
bootstrap = True               # add stationary-bootstrap Sharpe intervals to the table
rolling_window = 126           # trading days of the rolling Sharpe ratio
var_confidence = 0.95
stop_atr = 2.0                 # ATR stop distance (seed 004), take-profit at take_profit_ratio times it
take_profit_ratio = 1.5
dd_threshold = 0.10            # drawdown control: cut exposure beyond a 10% drawdown
dd_floor = 0.25                # down to a quarter of the exposure at twice the threshold

# Execution of the walk-forward tasks when this notebook trains (run on its own; see 20_train)
backend = "serial"             # serial, process or ray
address = ""                   # ray: the cluster's address (empty: $RAY_ADDRESS, else a local Ray instance)
workers = 0                    # process: pool size (0: the cores available / threads)
threads = 0                    # threads per task (0: $KIT_TASK_THREADS or 1)

# Set by `python -m kit run`; empty when run by hand (then nothing is saved to a run folder)
run_dir = ""
profile = "notebook-defaults"


# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kit import analytics, data, portfolio, reports, training
from kit import features as kf  # the module; `features` is the parameter (feature specification)
from kit.conventions import TRADING_DAYS
from kit.models import model_kind

settings = training.WalkForwardSettings.from_params(globals())  # type- and range-checked
loaded = data.load_universe(data_path or None, symbols, n_symbols, universe_as_of, start, end, universe=universe, cleaning=cleaning)
prices, quality, universe_symbols = loaded
frames = data.wide_fields(prices)
close = frames["close"]
membership = loaded.mask_for(close)  # (T, N) index membership of each day; None for survivors
# the positions 20_train wrote into this run, or (run on its own) the same walk-forward trained here
outputs = reports.model_outputs(run_dir, models, frames, settings, backend=(backend, address, workers, threads), membership=membership)
# time-series positions go through per-asset volatility targeting; a ranker's legs become a long-short book
kinds = {name: model_kind(settings.variant(name).model) for name in outputs}
model_positions = {settings.label(name): pos if membership is None else pos.where(data.align_membership(membership, pos))
                   for name, (pos, _) in outputs.items() if kinds[name] != "ranker"}
oos = next(iter(outputs.values()))[0].index
rebalance = kf.rebalance_dates(oos, rebalance_freq)
long_short, tilts = {}, {}
for name, (legs, _) in outputs.items():
    if kinds[name] == "ranker":
        long_short[settings.label(name)] = portfolio.leg_weights(legs, rebalance, ls_gross)
        tilts[f"{settings.label(name)} top (long only)"] = portfolio.leg_weights(legs, rebalance, ls_gross, long_only=True)
cs_benchmarks = portfolio.cross_sectional_benchmarks(close, oos, rebalance_freq, n_quantiles, ls_gross, membership=membership)
ts_benchmarks = portfolio.benchmark_positions(close, oos)
# the foundation models 20_train ran in this run, when their weights were present (none when run by hand)
for name, label in reports.foundation_models_of_run(run_dir).items():
    pos = reports.load_positions(run_dir, name)
    model_positions[label] = pos if membership is None else pos.where(data.align_membership(membership, pos))
vol = kf.ex_ante_vol(kf.daily_returns(close))
n_symbols_oos = len(close.columns)
print(f"{n_symbols_oos} symbols, out of sample {oos[0].date()} to {oos[-1].date()} ({len(oos)} days), costs {cost_bps} bps, "
      f"borrow {borrow_bps} bps a year, impact k={impact_k} on ${capital:,.0f}")
high, low = data.to_wide(prices, "high"), data.to_wide(prices, "low")
train_metrics = reports.load_metrics(run_dir).get("train", {}) if run_dir else {}
# every row of the comparison is a configuration tried: the models (a searched model counts its trials),
# the rankers' long-only variants and every benchmark; the registry's choice of the active model is a
# selection among these rows on the same test period, so it is counted here too
n_trials = int(train_metrics.get("configurations_tried") or len(models)) + len(tilts) + len(ts_benchmarks) + len(cs_benchmarks)
print(f"configurations tried (for the deflated Sharpe ratio): {n_trials}")

# %%
positions = {**model_positions, **ts_benchmarks}
books = {**long_short, **tilts, **cs_benchmarks}
impact = portfolio.market_impact(close, frames["volume"], half_spread_bps, impact_k, capital, adv_window) if impact_k > 0 else None
results = portfolio.compare_strategies(close, positions, vol, cost_bps=cost_bps, target_vol=target_vol, max_gross=max_gross,
                                       portfolio_target_vol=portfolio_target_vol or None, weights=books, max_net=max_net,
                                       borrow_bps=borrow_bps, impact=impact, membership=membership)  # benchmarks trade the same members
returns = {k: r.returns for k, r in results.items()}
table = analytics.performance_table(returns, {k: portfolio.turnover(r.weights) for k, r in results.items()}, benchmark="Long only",
                                  n_trials=n_trials, bootstrap=bootstrap, level=var_confidence)
pct = ["annual_return", "annual_volatility", "max_drawdown", "pct_positive", "downside_deviation", "value_at_risk", "conditional_value_at_risk", "hit_rate"]
two = ["sharpe_ratio", "sharpe_ci_low", "sharpe_ci_high", "sharpe_boot_low", "sharpe_boot_high", "sortino_ratio", "calmar_ratio",
       "avg_profit_over_avg_loss", "information_ratio", "probabilistic_sharpe_ratio", "deflated_sharpe_ratio"]
table.style.format({c: "{:.2%}" for c in pct if c in table} | {c: "{:.2f}" for c in two if c in table}
                   | {"turnover": "{:.3f}", "min_track_record_length": "{:,.0f}"}, na_rep="n/a")

# %% [markdown]
# ## Against the proper benchmark
#
# **Against the proper benchmark.** Each long-short book (the rankers and the cross-sectional MACD and
# inverse-volatility momentum books) is compared with cross-sectional momentum; every long-only tilt and
# every time-series strategy with long only. The test is on the daily *active* return (strategy minus
# benchmark): its Sharpe ratio (the information ratio) with a 95% interval, and its deflated Sharpe ratio
# for all the configurations of this table. `beats_benchmark` is true only when that deflated Sharpe
# ratio exceeds 0.95. The registry's active model is the passing candidate with the best out-of-sample
# Sharpe ratio: that choice was made on this same test period, which is why it is one of the
# configurations counted here.

# %%
cs_name = portfolio.CS_BENCHMARK_NAMES[0]
proper = {name: cs_name if name in long_short or (name in cs_benchmarks and name != portfolio.CS_BENCHMARK_NAMES[3]) else "Long only"
          for name in returns if name not in ("Long only", cs_name)}
comparison = analytics.benchmark_comparison(returns, proper, n_trials)
winners = comparison.index[comparison["beats_benchmark"]].tolist()
print("beats its proper benchmark with a deflated Sharpe ratio above 0.95: " + (", ".join(winners) if winners else "none"))
comparison.style.format({c: "{:.2f}" for c in comparison.columns if c not in ("benchmark", "days", "beats_benchmark")} | {"days": "{:,.0f}"}, na_rep="n/a")

# %% [markdown]
# The extra costs are simulated by the numpy reference (vectorbt cannot charge a borrow fee or an impact
# that depends on the simulated trade). On the same weights with flat costs only, vectorbt and the numpy
# reference agree: the largest daily difference over every book of the table is shown (a long-short book
# above 100% gross is funded by its short sales in both).

# %%
check = {name: float((portfolio.simulate(close.loc[r.weights.index], r.weights, cost_bps, engine="vectorbt").returns
                      - portfolio.reference_returns(close.loc[r.weights.index], r.weights, cost_bps)).abs().max()) for name, r in results.items()}
print(f"engine of the table: {next(iter(results.values())).engine}; vectorbt vs numpy reference at {cost_bps} bps flat: "
      f"max |daily difference| {max(check.values()):.1e} over {len(check)} books; max gross {max(r.weights.abs().sum(axis=1).max() for r in results.values()):.2f}")
costs = pd.DataFrame({name: r.costs.sum() for name, r in results.items() if r.costs is not None}).T
costs.style.format("{:.2%}") if len(costs) else None

# %% [markdown]
# ## Variants: with and without changepoint features
#
# Each variant against its base model on the same days: the annualised Sharpe ratio of both with its
# Mertens interval and deflated Sharpe ratio (from the table above, where every model and variant
# counts as a configuration tried), and the difference of the two Sharpe ratios with a 95% interval
# from a paired stationary bootstrap (both strategies resampled on the same days, so the market moves
# they share cancel; Ledoit & Wolf, 2008). An interval that contains 0 means this sample cannot tell
# them apart.

# %%
pairs = [(m, settings.variant(m).model) for m in models if settings.variant(m).is_variant and settings.variant(m).model in models]
variant_rows = []
for var_name, base_name in pairs:
    va, ba = settings.label(var_name), settings.label(base_name)
    both = pd.concat([returns[va], returns[ba]], axis=1).dropna()
    d, lo, hi = analytics.sharpe_difference_bootstrap_ci(both.iloc[:, 0], both.iloc[:, 1])
    variant_rows.append({
        "variant": va, "base": ba, "variant_features": settings.variant(var_name).features, "base_features": settings.variant(base_name).features,
        "sharpe_variant": table.loc[va, "sharpe_ratio"], "sharpe_variant_ci": f"[{table.loc[va, 'sharpe_ci_low']:.2f}, {table.loc[va, 'sharpe_ci_high']:.2f}]",
        "dsr_variant": table.loc[va, "deflated_sharpe_ratio"],
        "sharpe_base": table.loc[ba, "sharpe_ratio"], "sharpe_base_ci": f"[{table.loc[ba, 'sharpe_ci_low']:.2f}, {table.loc[ba, 'sharpe_ci_high']:.2f}]",
        "dsr_base": table.loc[ba, "deflated_sharpe_ratio"], "sharpe_difference": d, "difference_ci": f"[{lo:.2f}, {hi:.2f}]",
    })
variant_table = pd.DataFrame(variant_rows, columns=["variant", "base", "variant_features", "base_features", "sharpe_variant", "sharpe_variant_ci",
                                                    "dsr_variant", "sharpe_base", "sharpe_base_ci", "dsr_base", "sharpe_difference", "difference_ci"])
if variant_table.empty:
    print("no variant with its base model in this run")
variant_table.style.format({c: "{:.2f}" for c in ("sharpe_variant", "dsr_variant", "sharpe_base", "dsr_base", "sharpe_difference")}, na_rep="n/a")

# %% [markdown]
# ## Equity and drawdown
#
# Equity (log scale) and drawdown, net of costs.

# %%
fig, axes = plt.subplots(2, 1, figsize=(11, 7), sharex=True)
for name, r in results.items():
    r.equity.plot(ax=axes[0], label=name, logy=True)
    analytics.drawdown(r.returns).plot(ax=axes[1], label=name)
axes[0].set_title(f"Equity, net of {cost_bps} bps")
axes[0].legend()
axes[1].set_title("Drawdown")
plt.tight_layout()

# %% [markdown]
# With `portfolio_target_vol` every book already runs near its target, ex ante. For a like-for-like look at the *shape* of the curves, each is also rescaled ex post to 10% annualised volatility, as in the DMN paper's comparisons. This uses the whole period's volatility, so it is a display aid only: the Sharpe ratio is unchanged by it and no figure in the table uses it.

# %%
fig, ax = plt.subplots(figsize=(11, 4))
for name, r in results.items():
    scaled = r.returns * 0.10 / (r.returns.std() * TRADING_DAYS ** 0.5)
    (1 + scaled).cumprod().plot(ax=ax, label=name, logy=True)
ax.set_title("Equity rescaled ex post to 10% annualised volatility (display only)")
ax.legend()
plt.tight_layout()

# %% [markdown]
# ## Cost sensitivity
#
# Cost sensitivity: the Sharpe ratio of each strategy at 0, 1, 2, 5, 10 and 20 basis points of traded
# notional, with flat costs alone and with the borrow fee and market impact added (the same weights;
# only the costs change).

# %%
sweep_rows = []
extra = {"flat": {}, "flat + borrow + impact": {"borrow_bps": borrow_bps, "impact": impact}} if (borrow_bps > 0 or impact is not None) else {"flat": {}}
for name, r in results.items():
    for model_name, kw in extra.items():
        rets = portfolio.cost_sweep(close.loc[r.weights.index], r.weights, costs=cost_sweep, **kw)
        t = analytics.performance_table({c: rets[c] for c in rets.columns})
        for c, row in t.iterrows():
            sweep_rows.append({"cost_model": model_name, "cost_bps": float(c), "strategy": name, "sharpe_ratio": row.sharpe_ratio,
                               "sharpe_ci_low": row.sharpe_ci_low, "sharpe_ci_high": row.sharpe_ci_high, "annual_return": row.annual_return,
                               "max_drawdown": row.max_drawdown})
sweep = pd.DataFrame(sweep_rows)
sweep.pivot_table(index=["cost_model", "cost_bps"], columns="strategy", values="sharpe_ratio").round(3)

# %% [markdown]
# ## Stability through time
#
# Rolling Sharpe ratio (annualised, over `rolling_window` trading days): how stable is each
# strategy's edge through time?

# %%
fig, ax = plt.subplots(figsize=(11, 3.8))
for name, r in results.items():
    rs = r.returns.rolling(rolling_window)
    (rs.mean() / rs.std() * TRADING_DAYS ** 0.5).plot(ax=ax, label=name, lw=1)
ax.axhline(0, color="black", lw=0.5)
ax.set_title(f"Rolling {rolling_window}-day Sharpe ratio, net of {cost_bps} bps")
ax.legend(ncol=3)
plt.tight_layout()

# %% [markdown]
# Monthly returns (net of costs) of the first model's strategy and of long only, by year and month.

# %%
heat_names = [next(iter(model_positions or results)), "Long only"]
fig, axes = plt.subplots(1, len(heat_names), figsize=(6.5 * len(heat_names), 0.45 * len(set(oos.year)) + 1.8), squeeze=False)
for ax, name in zip(axes[0], heat_names):
    m = (1 + results[name].returns).resample("ME").prod() - 1
    grid = pd.DataFrame({"year": m.index.year, "month": m.index.month, "r": m.to_numpy()}).pivot(index="year", columns="month", values="r")
    lim = float(np.nanmax(np.abs(grid.to_numpy())))
    im = ax.imshow(grid.to_numpy(), cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto")
    ax.set_xticks(range(grid.shape[1]), [str(c) for c in grid.columns])
    ax.set_yticks(range(grid.shape[0]), [str(i) for i in grid.index])
    for (i, j), v in np.ndenumerate(grid.to_numpy()):
        if np.isfinite(v):
            ax.text(j, i, f"{v:.1%}", ha="center", va="center", fontsize=7)
    ax.set_title(f"{name}: monthly returns")
plt.tight_layout()

# %% [markdown]
# ## Exposure and turnover
#
# Exposure and turnover: gross and net exposure of the target weights (fractions of equity), and
# the 21-day average of daily one-way turnover.

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 3.5))
for name, r in results.items():
    r.weights.abs().sum(axis=1).plot(ax=axes[0], label=name, lw=1)
    r.weights.sum(axis=1).plot(ax=axes[1], label=name, lw=1)
    portfolio.turnover(r.weights).rolling(21).mean().plot(ax=axes[2], label=name, lw=1)
axes[0].set_title("Gross exposure")
axes[1].set_title("Net exposure")
axes[2].set_title("Turnover (21-day mean)")
axes[2].legend(fontsize=7)
plt.tight_layout()

# %% [markdown]
# ## Value at risk and stress tests
#
# One-day value at risk and conditional value at risk (expected shortfall) of each strategy's
# returns, positive loss fractions at `var_confidence`, by historical simulation, the Gaussian
# formula and the Cornish-Fisher expansion (which corrects the Gaussian quantile for skewness and
# kurtosis, and is unreliable when the tails are very fat).

# %%
var = analytics.var_table(pd.DataFrame(returns), confidence=var_confidence)
var.style.format("{:.2%}")

# %% [markdown]
# Stress tests: today's (last out-of-sample day's) weights of each strategy replayed over the worst
# historical windows in the data: autumn 2008, the COVID crash of March 2020, and the three worst
# 21-day windows for those weights. A symbol without a return in a window (not yet listed) counts 0
# and is reported.

# %%
asset_returns = kf.daily_returns(close)
stress = []
for name, r in results.items():
    st = analytics.stress_test(r.weights.iloc[-1], asset_returns, worst_k=3)
    stress.append(st.assign(strategy=name).reset_index(names="scenario"))
stress = pd.concat(stress, ignore_index=True)
stress.pivot(index="scenario", columns="strategy", values="cumulative_return").style.format("{:.2%}", na_rep="no data")

# %% [markdown]
# ## Risk overlays
#
# Risk overlays on the first time-series model: ATR stop-loss and take-profit (stop at `stop_atr` x ATR,
# take-profit at `take_profit_ratio` times the stop distance, as in seed 004) and a drawdown control
# that cuts exposure beyond `dd_threshold` and restores it on recovery, each decided from data up to
# the decision day only; same costs. An overlay that looks better here was still chosen after seeing
# this period: treat the comparison as descriptive.

# %%
first = next(iter(model_positions or positions))
over = portfolio.overlay_strategies(close, high, low, positions[first], vol, cost_bps=cost_bps, target_vol=target_vol, max_gross=min(max_gross, max_net),
                               stop_atr=stop_atr, take_profit_ratio=take_profit_ratio, dd_threshold=dd_threshold, dd_floor=dd_floor)
mult = over.pop("exposure_multiplier")
overlay_table = analytics.performance_table({k: v.returns for k, v in over.items()}, {k: portfolio.turnover(v.weights) for k, v in over.items()})
fig, ax = plt.subplots(figsize=(11, 3.5))
for k, v in over.items():
    v.equity.plot(ax=ax, label=k, logy=True)
ax.set_title(f"{first}: with and without the overlays (drawdown control multiplier below 1 on {(mult < 1).mean():.0%} of days)")
ax.legend()
plt.tight_layout()
overlay_table[["annual_return", "annual_volatility", "sharpe_ratio", "sharpe_ci_low", "sharpe_ci_high", "max_drawdown", "turnover"]].style.format(
    {"annual_return": "{:.2%}", "annual_volatility": "{:.2%}", "max_drawdown": "{:.2%}", "turnover": "{:.2%}"}, precision=2)

# %%
if run_dir:
    reports.save_table(run_dir, "performance", table, index=True)
    reports.save_table(run_dir, "benchmark_comparison", comparison, index=True)
    reports.save_table(run_dir, "cost_sweep", sweep)
    reports.save_table(run_dir, "value_at_risk", var, index=True)
    reports.save_table(run_dir, "stress_tests", stress)
    reports.save_table(run_dir, "overlays", overlay_table, index=True)
    reports.save_table(run_dir, "variants", variant_table)
    reports.save_returns(run_dir, returns)
    reports.save_metrics(run_dir, "backtest", {
        "models": models, "cost_bps": cost_bps, "n_symbols": n_symbols_oos, "start": oos[0].date().isoformat(), "end": oos[-1].date().isoformat(),
        "n_trials": n_trials, "strategies": table.drop(columns=["start", "end"]).to_dict(orient="index"),
        "benchmark_comparison": comparison.to_dict(orient="index"), "beats_benchmark": winners,
        "portfolio_target_vol": portfolio_target_vol, "borrow_bps": borrow_bps, "impact_k": impact_k, "capital": capital,
        "engine": next(iter(results.values())).engine, "vectorbt_check_max_abs": max(check.values()),
        "cost_sweep": sweep.to_dict(orient="records"), "overlays": overlay_table.drop(columns=["start", "end"]).to_dict(orient="index"),
        "variants": variant_table.to_dict(orient="records"),
    })
for name, row in table.iterrows():
    vs = comparison.loc[name] if name in comparison.index else None
    print(f"{name:36s} Sharpe {row.sharpe_ratio:5.2f} [{row.sharpe_ci_low:5.2f}, {row.sharpe_ci_high:5.2f}]  "
          f"DSR {row.deflated_sharpe_ratio:4.2f}  return {row.annual_return:6.2%}  vol {row.annual_volatility:6.2%}  max DD {row.max_drawdown:7.2%}"
          + (f"  vs {vs.benchmark}: active Sharpe {vs.active_sharpe:5.2f} [{vs.active_ci_low:5.2f}, {vs.active_ci_high:5.2f}] DSR {vs.active_dsr:4.2f}"
             if vs is not None else ""))

# %% [markdown]
# ## Caveats
# * Survivorship: the universe is the 2021 index membership, which flatters long exposure.
# * The Mertens interval assumes independent days; the bootstrap interval allows for autocorrelation.
#   With a few years of data both are wide, and overlapping intervals mean the strategies are not
#   distinguishable on this evidence.
# * Several models (and benchmarks) are compared on the same test period: the deflated Sharpe ratio
#   corrects the best of them for the number of configurations tried (its no-skill variance of the
#   trials' Sharpe ratios is an assumption; the closing row of each run records `n_trials`).
# * Costs: a flat rate per unit of traded notional, a flat borrow fee (hard-to-borrow names cost far
#   more) and a square-root impact law whose coefficient is an assumption of order 1; the cost sweep
#   shows how quickly each result decays.
# * Selection: the registry's active model is the best passing candidate on this test period; the
#   deflated Sharpe ratio counts every row of the table as a configuration tried for that reason.
# * Every book starts flat at the first out-of-sample close; the cross-sectional books trade into their
#   first portfolio at the first rebalance close after it.
