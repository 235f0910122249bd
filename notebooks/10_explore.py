# %% [markdown]
# # 10 · Explore the universe
#
# **Question.** Which symbols does this run trade, is their data sound, and what do their returns and
# volatility look like before any model sees them?
#
# **Method.** Load the committed S&P 500 daily store (split- and dividend-adjusted with
# `adjusted_close / close`), run the kit's validation checks, and summarise returns and ex-ante
# volatility. Everything here comes from `kit.data` and `kit.features`; this notebook only calls and plots.

# %% tags=["parameters"]
# Data and universe (defaults: the small smoke case that CI runs)
data_path = ""                 # empty: the committed S&P 500 store (or $KIT_DATA)
symbols = ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"]
n_symbols = 0                  # > 0: the n most liquid symbols as known on universe_as_of, instead of `symbols`
universe_as_of = "2009-12-31"  # universe chosen from data up to this date only
start = "2008-01-01"           # first date loaded (features need about 15 months of warm-up)
end = "2021-04-21"             # last date loaded
indicator_symbol = "AAPL"        # symbol whose indicators the report plots

# Set by `python -m kit run`; empty when run by hand (then nothing is saved to a run folder)
run_dir = ""
profile = "notebook-defaults"


# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from kit import data, features, reports
from kit.conventions import TRADING_DAYS

prices, quality, universe = data.load_universe(data_path or None, symbols, n_symbols, universe_as_of, start, end)
close = data.to_wide(prices, "close")
returns = features.daily_returns(close)
print(f"{len(universe)} symbols, {close.index[0].date()} to {close.index[-1].date()}, {len(close)} trading days")

# %% [markdown]
# ## Universe
# One row per symbol: its first and last date in the loaded range, trading days, and median daily dollar volume (raw close × shares, millions of USD).

# %%
summary = data.universe_summary(prices)
summary.style.format({"median_dollar_volume": lambda v: f"${v / 1e6:,.0f}m"})

# %% [markdown]
# ## Data quality
# Every validation check of `kit.data.validate_prices` with the number of findings and symbols affected,
# then examples of each kind of finding. Findings are reported, not silently repaired: the loader
# drops only duplicate rows. The checks: duplicates, date order, missing values, non-positive prices
# and volumes, OHLC consistency, missing days inside a symbol's range, jumps over 50% without a split,
# stale quotes (open = high = low = close with zero volume), bad rows (all prices off by one factor
# from both neighbours), splits without a matching price move, dividends without the matching
# adjustment, and adjustment changes without an event.

# %%
display(quality.summary())
quality.issues.groupby("check").head(3).drop(columns="message").reset_index(drop=True)

# %% [markdown]
# ## Returns and volatility
# Annualised mean return and volatility of daily simple returns per symbol (252 trading days a year).

# %%
stats = pd.DataFrame({
    "annual_mean_return": returns.mean() * TRADING_DAYS,
    "annual_volatility": returns.std() * np.sqrt(TRADING_DAYS),
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
vol = features.ex_ante_vol(returns)
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
default_symbol = indicator_symbol if indicator_symbol in universe else universe[0]


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

    widgets.interact(lambda symbol: plot_indicators(symbol) and None, symbol=widgets.Dropdown(options=universe, value=default_symbol))

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
        "n_symbols": len(universe), "symbols": universe,
        "start": close.index[0].date().isoformat(), "end": close.index[-1].date().isoformat(),
        "trading_days": len(close), "validation": quality.summary()["issues"].to_dict(),
    })

# %% [markdown]
# ## Caveats
# * The store holds the S&P 500 constituents of 2021. Stocks that left the index before then are
#   missing, so any long-biased result on this universe is flattered by survivorship.
# * The liquidity ranking that picks a universe uses data up to `universe_as_of` only.
