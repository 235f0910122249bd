# %% [markdown]
# # 30 · Backtest the out-of-sample positions
#
# **Question.** Net of trading costs, how did each model's out-of-sample positions do beside the
# long-only, time-series momentum (TSMOM) and MACD benchmarks on the same symbols and dates, and how
# sure can we be?
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
# number of configurations tried before this test.

# %% tags=["parameters"]
# Data and universe (defaults: the small smoke case that CI runs)
data_path = ""                 # empty: the committed S&P 500 store (or $KIT_DATA)
symbols = ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"]
n_symbols = 0                  # > 0: the n most liquid symbols as known on universe_as_of, instead of `symbols`
universe_as_of = "2009-12-31"  # universe chosen from data up to this date only
start = "2008-01-01"           # first date loaded (features need about 15 months of warm-up)
end = "2021-04-21"             # last date loaded

# Walk-forward and models
models = ["dmn_lstm", "ldtm"]  # any of dmn_lstm, momentum_transformer, linear, mlp, ensemble, ldtm
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

# Backtest
cost_bps = 5.0                 # cost per unit of traded notional, basis points
cost_sweep = [0.0, 1.0, 2.0, 5.0, 10.0, 20.0]
max_gross = 0.95               # gross exposure cap, fraction of equity (room for costs: no borrowing)
bootstrap = True               # add stationary-bootstrap Sharpe intervals to the table
rolling_window = 126           # trading days of the rolling Sharpe ratio
var_confidence = 0.95
stop_atr = 2.0                 # ATR stop distance (seed 004), take-profit at take_profit_ratio times it
take_profit_ratio = 1.5
dd_threshold = 0.10            # drawdown control: cut exposure beyond a 10% drawdown
dd_floor = 0.25                # down to a quarter of the exposure at twice the threshold

# Set by `python -m kit run`; empty when run by hand (then nothing is saved to a run folder)
run_dir = ""
profile = "notebook-defaults"


# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kit import analytics, data, features, portfolio, reports, training
from kit.conventions import TRADING_DAYS
from kit.models import MODEL_LABELS

settings = training.WalkForwardSettings.from_params(globals())  # type- and range-checked
prices, quality, universe = data.load_universe(data_path or None, symbols, n_symbols, universe_as_of, start, end)
frames = data.wide_fields(prices)
close = frames["close"]
# the positions 20_train wrote into this run, or (run on its own) the same walk-forward trained here
outputs = reports.model_outputs(run_dir, models, frames, settings)
model_positions = {MODEL_LABELS[name]: pos for name, (pos, _) in outputs.items()}
# the foundation models 20_train ran in this run, when their weights were present (none when run by hand)
model_positions.update({label: reports.load_positions(run_dir, name) for name, label in reports.foundation_models_of_run(run_dir).items()})
vol = features.ex_ante_vol(features.daily_returns(close))
oos = next(iter(model_positions.values())).index
n_symbols_oos = next(iter(model_positions.values())).shape[1]
print(f"{n_symbols_oos} symbols, out of sample {oos[0].date()} to {oos[-1].date()} ({len(oos)} days), costs {cost_bps} bps")
high, low = data.to_wide(prices, "high"), data.to_wide(prices, "low")
train_metrics = reports.load_metrics(run_dir).get("train", {}) if run_dir else {}
n_trials = int(train_metrics.get("configurations_tried") or len(models))
print(f"configurations tried before this test (for the deflated Sharpe ratio): {n_trials}")

# %%
positions = {**model_positions, **portfolio.benchmark_positions(close, oos)}
results = portfolio.compare_strategies(close, positions, vol, cost_bps=cost_bps, target_vol=target_vol, max_gross=max_gross)
returns = {k: r.returns for k, r in results.items()}
table = analytics.performance_table(returns, {k: portfolio.turnover(r.weights) for k, r in results.items()}, benchmark="Long only",
                                  n_trials=n_trials, bootstrap=bootstrap, level=var_confidence)
pct = ["annual_return", "annual_volatility", "max_drawdown", "pct_positive", "downside_deviation", "value_at_risk", "conditional_value_at_risk", "hit_rate"]
two = ["sharpe_ratio", "sharpe_ci_low", "sharpe_ci_high", "sharpe_boot_low", "sharpe_boot_high", "sortino_ratio", "calmar_ratio",
       "avg_profit_over_avg_loss", "information_ratio", "probabilistic_sharpe_ratio", "deflated_sharpe_ratio"]
table.style.format({c: "{:.2%}" for c in pct if c in table} | {c: "{:.2f}" for c in two if c in table}
                   | {"turnover": "{:.3f}", "min_track_record_length": "{:,.0f}"}, na_rep="n/a")

# %% [markdown]
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
# The strategies run at different volatilities (a model's positions are often small). For a like-for-like look at the *shape* of the curves, each is rescaled ex post to 10% annualised volatility, as in the DMN paper's comparisons. This uses the whole period's volatility, so it is a display aid only: the Sharpe ratio is unchanged by it and no figure in the table uses it.

# %%
fig, ax = plt.subplots(figsize=(11, 4))
for name, r in results.items():
    scaled = r.returns * 0.10 / (r.returns.std() * TRADING_DAYS ** 0.5)
    (1 + scaled).cumprod().plot(ax=ax, label=name, logy=True)
ax.set_title("Equity rescaled ex post to 10% annualised volatility (display only)")
ax.legend()
plt.tight_layout()

# %% [markdown]
# Cost sensitivity: the Sharpe ratio of each strategy at 0, 1, 2, 5, 10 and 20 basis points of traded
# notional (the same weights; only the cost changes).

# %%
sweep_rows = []
for name, r in results.items():
    rets = portfolio.cost_sweep(close.loc[r.weights.index], r.weights, costs=cost_sweep)
    t = analytics.performance_table({c: rets[c] for c in rets.columns})
    for c, row in t.iterrows():
        sweep_rows.append({"cost_bps": float(c), "strategy": name, "sharpe_ratio": row.sharpe_ratio, "sharpe_ci_low": row.sharpe_ci_low,
                           "sharpe_ci_high": row.sharpe_ci_high, "annual_return": row.annual_return, "max_drawdown": row.max_drawdown})
sweep = pd.DataFrame(sweep_rows)
sweep.pivot(index="cost_bps", columns="strategy", values="sharpe_ratio").round(3)

# %% [markdown]
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
heat_names = [next(iter(model_positions)), "Long only"]
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
asset_returns = features.daily_returns(close)
stress = []
for name, r in results.items():
    st = analytics.stress_test(r.weights.iloc[-1], asset_returns, worst_k=3)
    stress.append(st.assign(strategy=name).reset_index(names="scenario"))
stress = pd.concat(stress, ignore_index=True)
stress.pivot(index="scenario", columns="strategy", values="cumulative_return").style.format("{:.2%}", na_rep="no data")

# %% [markdown]
# Risk overlays on the first model: ATR stop-loss and take-profit (stop at `stop_atr` x ATR,
# take-profit at `take_profit_ratio` times the stop distance, as in seed 004) and a drawdown control
# that cuts exposure beyond `dd_threshold` and restores it on recovery, each decided from data up to
# the decision day only; same costs. An overlay that looks better here was still chosen after seeing
# this period: treat the comparison as descriptive.

# %%
first = next(iter(model_positions))
over = portfolio.overlay_strategies(close, high, low, model_positions[first], vol, cost_bps=cost_bps, target_vol=target_vol, max_gross=max_gross,
                               stop_atr=stop_atr, take_profit_ratio=take_profit_ratio, dd_threshold=dd_threshold, dd_floor=dd_floor)
mult = over.pop("exposure_multiplier")
overlay_table = analytics.performance_table({k: v.returns for k, v in over.items()}, {k: portfolio.turnover(v.weights) for k, v in over.items()})
fig, ax = plt.subplots(figsize=(11, 3.5))
for k, v in over.items():
    v.equity.plot(ax=ax, label=k, logy=True)
ax.set_title(f"{first}: with and without the overlays (drawdown control multiplier below 1 on {(mult < 1).mean():.0%} of days)")
ax.legend()
plt.tight_layout()
overlay_table[["annual_return", "annual_volatility", "sharpe_ratio", "sharpe_ci_low", "sharpe_ci_high", "max_drawdown", "turnover"]].round(4)

# %%
if run_dir:
    reports.save_table(run_dir, "performance", table, index=True)
    reports.save_table(run_dir, "cost_sweep", sweep)
    reports.save_table(run_dir, "value_at_risk", var, index=True)
    reports.save_table(run_dir, "stress_tests", stress)
    reports.save_table(run_dir, "overlays", overlay_table, index=True)
    reports.save_returns(run_dir, returns)
    reports.save_metrics(run_dir, "backtest", {
        "models": models, "cost_bps": cost_bps, "n_symbols": n_symbols_oos, "start": oos[0].date().isoformat(), "end": oos[-1].date().isoformat(),
        "n_trials": n_trials, "strategies": table.drop(columns=["start", "end"]).to_dict(orient="index"),
        "cost_sweep": sweep.to_dict(orient="records"), "overlays": overlay_table.drop(columns=["start", "end"]).to_dict(orient="index"),
    })
for name, row in table.iterrows():
    print(f"{name:22s} Sharpe {row.sharpe_ratio:5.2f} [{row.sharpe_ci_low:5.2f}, {row.sharpe_ci_high:5.2f}]  "
          f"DSR {row.deflated_sharpe_ratio:4.2f}  return {row.annual_return:6.2%}  vol {row.annual_volatility:6.2%}  max DD {row.max_drawdown:7.2%}")

# %% [markdown]
# ## Caveats
# * Survivorship: the universe is the 2021 index membership, which flatters long exposure.
# * The Mertens interval assumes independent days; the bootstrap interval allows for autocorrelation.
#   With a few years of data both are wide, and overlapping intervals mean the strategies are not
#   distinguishable on this evidence.
# * Several models (and benchmarks) are compared on the same test period: the deflated Sharpe ratio
#   corrects the best of them for the number of configurations tried (its no-skill variance of the
#   trials' Sharpe ratios is an assumption; the closing row of each run records `n_trials`).
# * Costs are a flat rate per unit of traded notional; market impact and borrow fees for shorts are
#   not modelled. The cost sweep shows how quickly each result decays.
