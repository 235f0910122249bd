# %% [markdown]
# # 10 · Explore the universe
#
# **Question.** Which symbols does this run trade, is their data sound, and what do their returns and
# volatility look like before any model sees them?
#
# **Method.** Load the committed S&P 500 daily store (split- and dividend-adjusted with
# `adjusted_close / close`), run the kit's validation checks (each finding with a severity), apply the
# cleaning policy that training and backtests use, measure how much of the index the store covers on
# the backtest's first day (survivorship), and summarise returns and ex-ante volatility. Everything
# here comes from `kit.data` and `kit.features`; this notebook only calls and plots.

# %% tags=["parameters"]
# Data and universe (defaults: the small smoke case that CI runs)
data_path = ""                 # empty: the committed S&P 500 store (or $KIT_DATA)
symbols = ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"]
n_symbols = 0                  # > 0: the n most liquid symbols as known on universe_as_of, instead of `symbols`
universe_as_of = "2009-12-31"  # universe chosen from data up to this date only
start = "2008-01-01"           # first date loaded (features need about 15 months of warm-up)
end = "2021-04-21"             # last date loaded
indicator_symbol = "AAPL"        # symbol whose indicators the report plots
universe = "point_in_time"     # point_in_time: index members of each day only; survivors: the store's symbols throughout
cleaning = "default"           # cleaning policy: default (errors masked, warnings kept), none, or a mapping
test_start = "2016-01-01"      # first day of the backtest window (for the survivorship coverage)

# Set by `python -m kit run`; empty when run by hand (then nothing is saved to a run folder)
run_dir = ""
profile = "notebook-defaults"


# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kit import data, features, reports

loaded = data.load_universe(data_path or None, symbols, n_symbols, universe_as_of, start, end, universe=universe, cleaning=cleaning)
prices, quality, universe_symbols = loaded
close = data.to_wide(prices, "close")
returns = features.daily_returns(close)
print(f"{len(universe_symbols)} symbols ({universe} universe), {close.index[0].date()} to {close.index[-1].date()}, "
      f"{len(close)} trading days, {quality.frequency} bars ({quality.bars_per_year:g} a year)")

# %% [markdown]
# ## Universe
# One row per symbol: its first and last date in the loaded range, trading days, and median daily dollar volume (raw close × shares, millions of USD).

# %%
summary = data.universe_summary(prices)
summary.style.format({"median_dollar_volume": lambda v: f"${v / 1e6:,.0f}m"})

# %% [markdown]
# ## Data quality
# Every validation check of `kit.data.validate_prices` (`kit.data.CHECKS` states each rule) with its
# findings by severity: `error` (the row is wrong), `warning` (unusual but possibly real, e.g. a crash,
# or a move on a day the whole market moved the same way), `info` (harmless for adjusted returns).
# Moves are judged on the adjusted close, and the market's move of each day comes from the whole store.

# %%
display(quality.summary())
quality.issues.sort_values(["severity", "check"]).groupby(["check", "severity"]).head(3).reset_index(drop=True)

# %% [markdown]
# ## Cleaning
# What the cleaning policy did before any feature or target was computed (`kit.data.clean_prices`):
# for each finding acted on, the action (`drop` the row, `mask` the symbol's rows around it, or
# `exclude` the symbol from that date on) and the dates removed. Removed rows are gaps (NaN) in the
# wide frames: no return, target or feature is computed across them.

# %%
print(f"policy: {loaded.cleaning.policy}; rows {loaded.cleaning.rows_before} -> {loaded.cleaning.rows_after}")
display(loaded.cleaning.summary())
loaded.cleaning.actions

# %% [markdown]
# ## Survivorship
# The store holds the S&P 500 members of April 2021. On the backtest's first day, how many of the
# index's members of that day have prices in the store, and which are missing (the kit has no market
# capitalisations: the list shows the missing members that had been in the index for at least five
# years). With `universe: point_in_time` every decision date trades only that day's members, but the
# members the store lacks cannot be traded: the coverage below is the survivorship bias that remains.

# %%
store_days = data.trading_calendar(data_path or None)
first_day = store_days[store_days >= pd.Timestamp(test_start)][0]  # the backtest's first trading day
coverage = data.store_coverage([first_day], data_path or None)
cov = coverage.iloc[0]
print(f"{coverage.index[0]}: {cov['in_store']} of {cov['members']} index members have prices in the store ({cov['coverage']:.0%}); "
      f"matched through ticker aliases: {cov['aliased']}")
print(f"missing long-standing members ({len(cov['missing_long_standing'])}): {', '.join(cov['missing_long_standing'])}")
firsts = [store_days[store_days.year == y][0] for y in sorted(set(store_days.year))]
by_year = data.store_coverage(firsts, data_path or None)
ax = by_year["coverage"].plot(marker="o", figsize=(8, 3), title="Share of the index's members with prices in the store")
ax.set_ylim(0, 1.05)
plt.tight_layout()

# %% [markdown]
# ## Returns and volatility
# Annualised mean return and volatility of simple returns per symbol (bars per year from the data: 252 for daily bars).

# %%
stats = pd.DataFrame({
    "annual_mean_return": returns.mean() * quality.bars_per_year,
    "annual_volatility": returns.std() * np.sqrt(quality.bars_per_year),
}).sort_values("annual_volatility")
fig, ax = plt.subplots(figsize=(10, 4))
stats.plot.bar(ax=ax)
ax.set_title("Annualised mean return and volatility per symbol")
ax.axhline(0, color="black", lw=0.5)
plt.tight_layout()
stats.T.style.format("{:.1%}")

# %% [markdown]
# Ex-ante volatility (EWM standard deviation of daily returns, span 60, annualised) across the universe over time, and an equal-weight buy-and-hold index of the universe for orientation.

# %%
vol = features.ex_ante_vol(returns, bars_per_year=quality.bars_per_year)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
vol.median(axis=1).plot(ax=axes[0], label="median")
vol.quantile(0.9, axis=1).plot(ax=axes[0], label="90th percentile", alpha=0.7)
axes[0].set_title("Ex-ante volatility (annualised)")
axes[0].legend()
ew = (1 + returns.mean(axis=1).fillna(0)).cumprod()
ew.plot(ax=axes[1], logy=True)
axes[1].set_title("Equal-weight index of the universe (log scale)")
plt.tight_layout()

# %% [markdown]
# ## Indicators for one symbol
# Close with its 20-day SMA, EMA, Bollinger bands (2 population standard deviations) and rolling VWAP;
# RSI-14 and ATR-14 (Wilder); volume over its 20-day mean. All from `kit.features.kernels` (numba, checked
# against pandas in the tests). Run by hand in JupyterLab, a picker chooses the symbol; in a rendered
# report the plot shows `indicator_symbol` (or the first symbol of the universe).

# %%
frames = data.wide_fields(prices)
default_symbol = indicator_symbol if indicator_symbol in universe_symbols else universe_symbols[0]


def plot_indicators(symbol, last_days=500):
    ind = features.symbol_indicators(frames, symbol).iloc[-last_days:]
    fig, axes = plt.subplots(3, 1, figsize=(11, 8), sharex=True, gridspec_kw={"height_ratios": [3, 1, 1]})
    ind[["close", "sma", "ema", "vwap"]].plot(ax=axes[0], lw=1)
    axes[0].fill_between(ind.index, ind["bb_lower"], ind["bb_upper"], alpha=0.15, label="Bollinger (20, 2)")
    axes[0].set_title(f"{symbol}: adjusted close and moving averages (last {len(ind)} days)")
    axes[0].legend(loc="upper left")
    ind["rsi"].plot(ax=axes[1], title="RSI-14")
    axes[1].axhline(70, color="grey", lw=0.5)
    axes[1].axhline(30, color="grey", lw=0.5)
    ind["volume_ratio"].plot(ax=axes[2], title="Volume / 20-day mean")
    plt.tight_layout()
    return fig


if run_dir:  # a rendered report: a static plot of the default symbol
    plot_indicators(default_symbol)
else:  # by hand in JupyterLab: pick a symbol
    import ipywidgets as widgets

    widgets.interact(lambda symbol: plot_indicators(symbol) and None, symbol=widgets.Dropdown(options=universe_symbols, value=default_symbol))

# %% [markdown]
# Correlation of daily returns over the loaded period.

# %%
corr = returns.corr()
fig, ax = plt.subplots(figsize=(6, 5))
im = ax.imshow(corr.to_numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
if len(corr) <= 30:
    ax.set_xticks(range(len(corr)), corr.columns, rotation=90)
    ax.set_yticks(range(len(corr)), corr.columns)
fig.colorbar(im)
ax.set_title(f"Return correlations (mean off-diagonal {corr.to_numpy()[~np.eye(len(corr), dtype=bool)].mean():.2f})")
plt.tight_layout()

# %%
if run_dir:
    reports.save_metrics(run_dir, "explore", {
        "n_symbols": len(universe_symbols), "symbols": universe_symbols, "universe": universe,
        "start": close.index[0].date().isoformat(), "end": close.index[-1].date().isoformat(),
        "trading_days": len(close), "bars_per_year": quality.bars_per_year,
        "validation": quality.summary()["issues"].to_dict(),
        "validation_by_severity": quality.counts().to_dict(orient="records"),
        "cleaning": loaded.cleaning.to_dict(),
        "survivorship": {**cov.to_dict(), "date": str(coverage.index[0])},
    })

# %% [markdown]
# ## Caveats
# * The store holds the S&P 500 constituents of 2021. Stocks that left the index before then are
#   missing (the coverage above), so any long-biased result on this universe is flattered by
#   survivorship, even with point-in-time membership.
# * The cleaning policy acts on findings whose rule fits; a wrong price no rule catches stays in.
# * The liquidity ranking that picks a universe uses data up to `universe_as_of` only.
