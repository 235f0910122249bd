# %% [markdown]
# # 35 · Factor analysis of every score
#
# **Question.** Before any portfolio is built: does each model's score, and each benchmark's signal,
# order the stocks by their future returns, how strongly, over which horizon, and how fast does it
# change?
#
# **Method.** The standard tools for a cross-sectional signal (Grinold & Kahn; Quantopian's alphalens,
# through alphalens-reloaded, in `kit.analytics.factors`). On every date a score exists, the stocks are
# compared with their forward returns `close_{t+h} / close_t - 1` over `horizons` trading days:
# the **information coefficient** (Pearson correlation across stocks) and the **rank IC** (Spearman), each
# averaged over dates with a t-statistic (plain, and Newey-West for overlapping horizons); the **IC
# decay** over horizons; the **mean forward return by quantile** of the score; the **long-short
# spread** (top quantile minus bottom, halved: a gross-1 book); the **rank autocorrelation** of the score
# from one scored date to the next; and the **turnover** of the top and bottom quantiles. Scores: the
# rankers' scores on their rebalance dates, the tree models' raw outputs (P(up), predicted return, raw
# score), the LDTM's one-day forecast, the other models' positions; and the benchmarks' signals: the
# 12-1 momentum return (cross-sectional momentum), the Baz et al. MACD composite, and the 12-month
# return whose sign is TSMOM. Only the out-of-sample period is analysed.

# %% tags=["parameters"]
# Data and universe (defaults: the small smoke case that CI runs)
data_path = ""                 # empty: the committed S&P 500 store (or $KIT_DATA)
symbols = ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"]
n_symbols = 0                  # > 0: the n most liquid symbols as known on universe_as_of, instead of `symbols`
universe_as_of = "2009-12-31"  # universe chosen from data up to this date only
universe = "point_in_time"     # point_in_time: each decision date scores that day's index members only; survivors: all loaded symbols
cleaning = "default"           # cleaning policy: default (errors masked, warnings kept), none, or a mapping
start = "2008-01-01"           # first date loaded (features need about 15 months of warm-up)
end = "2021-04-21"             # last date loaded

# Walk-forward and models: a profile passes its models and this notebook reads their scores from the
# run; run on its own it trains them here (default: the tree models only, seconds on 2 cores)
models = ["lambdamart", "ranker_regression", "xgb_direction"]  # the catalogue's names, or variants
features = "dmn"               # inputs of the position models (e.g. dmn+cpd21+bocpd)
variants = {}                  # a model on other features, under its own name (as in 20_train)
members = ["dmn_lstm", "linear", "mlp"]  # members when model is ensemble
ensemble_method = "stacked"    # equal, inverse_loss or stacked
n_heads = 4
test_start = "2016-01-01"      # first out-of-sample date
test_size = 504                # trading days per test block
val_fraction = 0.1
lookback = 63
hidden_size = 10
num_layers = 1
dropout = 0.1
epochs = 3
patience = 3
batch_size = 128
lr = 0.001
target_vol = 0.15
max_grad_norm = 1.0
search_trials = 0              # searches happen in 20_train only
seed = 0
ldtm_hidden_size = 16
ldtm_lookback = 30
ldtm_sample_stride = 1
n_quantiles = 3                # rankers: relevance grades and book quantiles
rebalance_freq = "M"           # rankers' rebalance calendar
tree_horizon = 1
tree_rounds = 200
tree_early_stopping = 20
tree_threads = 0
stack_members = ["dmn_lstm", "xgb_direction"]
stack_method = "nnls"

# Factor analysis
horizons = [1, 5, 21]          # forward-return horizons, trading days
factor_quantiles = 3           # quantiles of the factor analysis (5 in the profiles; 3 on 6 symbols)

# Set by `python -m kit run`; empty when run by hand (then nothing is saved to a run folder)
run_dir = ""
profile = "notebook-defaults"


# %%
# %matplotlib inline
import matplotlib.pyplot as plt
import pandas as pd

from kit import analytics, data, reports, training
from kit import features as kf  # the module; `features` is the parameter (feature specification)
from kit.models import model_kind

settings = training.WalkForwardSettings.from_params(globals())  # type- and range-checked
loaded = data.load_universe(data_path or None, symbols, n_symbols, universe_as_of, start, end, universe=universe, cleaning=cleaning)
prices = loaded[0]
frames = data.wide_fields(prices)
close = frames["close"]
membership = loaded.mask_for(close)  # (T, N) index membership of each day; None for survivors
outputs = reports.model_outputs(run_dir, models, frames, settings, with_scores=True, membership=membership)
oos = next(iter(outputs.values()))[0].index


def on_close(frame: pd.DataFrame) -> pd.DataFrame:
    """A score on the out-of-sample dates, on the full axes of ``close`` (NaN elsewhere and, with a
    point-in-time universe, where the symbol is not an index member that day)."""
    out = frame.reindex(index=oos).reindex(index=close.index, columns=close.columns)
    return out if membership is None else out.where(data.align_membership(membership, close))


scores = {}
for name, (pos, fcs, raw) in outputs.items():
    if raw is not None:
        scores[settings.label(name)] = on_close(raw)  # tree and ranker models: their raw outputs
    elif fcs:
        scores[settings.label(name)] = on_close(fcs[min(fcs)])  # a forecaster: its shortest-horizon forecast
    else:
        scores[settings.label(name)] = on_close(pos)  # the other models: their positions
scores["12-1 momentum (CS momentum)"] = on_close(kf.momentum_12_1(close))
scores["MACD composite (Baz)"] = on_close(kf.macd_composite(close).where(close.notna()))
scores["12-month return (TSMOM signal)"] = on_close(kf.momentum_12_1(close, 252, 0))
print(f"{len(close.columns)} symbols, out of sample {oos[0].date()} to {oos[-1].date()}; {len(scores)} scores; horizons {horizons}")

# %%
reports_by_score = {name: analytics.factor_report(s, close, horizons=horizons, n_quantiles=factor_quantiles) for name, s in scores.items()}
summary = pd.DataFrame({name: rep["summary"] for name, rep in reports_by_score.items()}).T
by_label = {settings.label(m): m for m in models}
summary.insert(0, "kind", [model_kind(settings.variant(by_label[k]).model) if k in by_label else "benchmark signal" for k in summary.index])
summary.style.format({c: "{:.3f}" for c in summary.columns if c != "kind"}, na_rep="n/a")

# %% [markdown]
# Rank IC with its t-statistics, per horizon (the plain t-statistic assumes independent dates; the
# Newey-West one allows for the overlap of h-day returns on daily scores).

# %%
ic_tables = []
for name, rep in reports_by_score.items():
    t = rep["rank_ic_summary"][["IC Mean", "IC Std.", "t-stat(IC)", "t-stat(IC) NW", "n_dates"]].copy()
    t["pearson_ic"] = rep["ic_summary"]["IC Mean"]
    t["pearson_t_nw"] = rep["ic_summary"]["t-stat(IC) NW"]
    ic_tables.append(t.assign(score=name).reset_index())
ic_table = pd.concat(ic_tables, ignore_index=True).set_index(["score", "horizon"])
ic_table.round(4)

# %% [markdown]
# IC decay: the mean rank IC at each horizon (left) and the cumulative rank IC at the shortest horizon over
# time (right: a steady slope is a steady edge; a flat or falling stretch is a period without one).

# %%
fig, axes = plt.subplots(1, 2, figsize=(14, 4))
decay = pd.DataFrame({name: rep["ic_decay"]["rank_ic"] for name, rep in reports_by_score.items()})
decay.plot(ax=axes[0], marker="o")
axes[0].axhline(0, color="black", lw=0.5)
axes[0].set_xlabel("horizon (trading days)")
axes[0].set_title("Mean rank IC by horizon")
axes[0].legend(fontsize=7)
h0 = f"{min(horizons)}D"
for name, rep in reports_by_score.items():
    rep["rank_ic"][h0].fillna(0.0).cumsum().plot(ax=axes[1], label=name, lw=1)
axes[1].set_title(f"Cumulative rank IC, {h0}")
plt.tight_layout()

# %% [markdown]
# Mean forward return by quantile of each score (h-day returns, not annualised; 1 = lowest score) and
# the long-short spread: the mean of (top quantile minus bottom quantile) / 2 per date, with its
# Newey-West t-statistic.

# %%
hq = f"{max(horizons)}D"
qret = pd.DataFrame({name: rep["quantile_returns"][hq] for name, rep in reports_by_score.items()})
fig, ax = plt.subplots(figsize=(12, 3.8))
qret.T.plot.bar(ax=ax)
ax.axhline(0, color="black", lw=0.5)
ax.set_title(f"Mean {hq} forward return by quantile")
ax.legend(title="quantile", fontsize=7)
plt.tight_layout()
spreads = pd.concat({name: rep["spread_summary"] for name, rep in reports_by_score.items()}, names=["score"])
spreads.round(5)

# %% [markdown]
# Rank autocorrelation (from one scored date to the next: near 1 = a slow score, cheap to trade) and the
# turnover of the top and bottom quantiles (the share of names new to the quantile), averaged over dates.

# %%
stability = pd.DataFrame({name: {"rank_autocorrelation": rep["summary"]["rank_autocorrelation"], "turnover_top": rep["summary"]["turnover_top"],
                                 "turnover_bottom": rep["summary"]["turnover_bottom"], "scored_dates": rep["factor_data"].index.get_level_values("date").nunique()}
                          for name, rep in reports_by_score.items()}).T
stability.round(3)

# %%
if run_dir:
    reports.save_table(run_dir, "factor_summary", summary, index=True)
    reports.save_table(run_dir, "factor_ic_decay", ic_table, index=True)
    reports.save_metrics(run_dir, "factors", {
        "horizons": horizons, "factor_quantiles": factor_quantiles, "start": oos[0].date().isoformat(), "end": oos[-1].date().isoformat(),
        "summary": summary.drop(columns=["kind"]).to_dict(orient="index"),
    })
for name, row in summary.iterrows():
    print(f"{name:36s} rank IC {h0} {row[f'rank_ic_{h0}']:+.4f} (NW t {row[f'rank_ic_t_nw_{h0}']:+.2f})  "
          f"spread {h0} {row[f'spread_{h0}']:+.5f}  autocorrelation {row['rank_autocorrelation']:.2f}")

# %% [markdown]
# ## Caveats
# * An IC averaged over many dates can be significant and still too small to pay for trading costs:
#   `30_backtest` prices the books built from these scores.
# * Ranker scores exist on rebalance dates only, daily models' scores on every date: their t-statistics
#   rest on different numbers of dates (`scored_dates`).
# * Quantiles of a score with many ties (the legs of a book, a sign) are coarse: the ranking inside a
#   tied group is not defined.
# * Universe: with `universe = "point_in_time"` each date scores that day's S&P 500 members only; with
#   `survivors` the loaded symbols are scored on every date (survivorship bias).
