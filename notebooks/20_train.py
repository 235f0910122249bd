# %% [markdown]
# # 20 · Train the models (walk-forward)
#
# **Question.** Out of sample, what positions do the kit's models take on this universe?
#
# **Method.** Inputs per symbol and day (the Deep Momentum Network set of Lim, Zohren & Roberts, 2019):
# returns over 1, 21, 63, 126 and 252 days normalised by the ex-ante volatility (EWM std of daily
# returns, span 60) and √k, and the MACD indicators of Baz et al. (2015) for (8, 24), (16, 48),
# (32, 96). Each model maps a 63-day window to a position in [-1, 1]: the DMN LSTM, the Momentum
# Transformer (Wood et al., 2021), linear and MLP baselines, and an ensemble of members whose weights
# are fitted on each fold's validation block only. The per-ticker multi-horizon LSTM (`ldtm`, seed 003)
# is different: one forecaster per symbol on 11 price and volume inputs over 30 days, trained all at
# once (`kit.training.batched.train_universe`) with a multi-horizon MSE on 1-, 5- and 21-day forward returns
# (21-day embargo); its position is `tanh(s · forecast_1d / daily ex-ante vol)` with `s` fitted on
# the fold's validation forecasts. The loss is minus the annualised Sharpe ratio of the
# captured return `position_t · target_vol / ex_ante_vol_t · r_{t+1}` (target volatility 15%).
# Pretrained time-series foundation models (Chronos-Bolt, TimesFM 2.5; `foundation_models`) join the
# comparison when their weights are in the local weights folder: same folds, embargo and position
# rule as `ldtm`, on their median 1-day forecast, with their 10% and 90% quantiles kept.
# Walk-forward with an expanding window: before each test block every model is retrained from scratch
# on all earlier data, the last 10% of the window is the validation set for early stopping, and only
# the test blocks' positions are kept. Each fold's leakage count (training or validation rows whose
# target reaches into a later block) is checked and must be 0. With `search_trials > 0` the
# hyperparameters are first searched with optuna on dates before `test_start` only.
#
# **Trees and rankers** (`kit.training.trees`). Cross-sectional: on each month end every stock is a row
# of that date's list; `lambdamart` (LightGBM LambdaMART, Poh, Lim, Zohren & Roberts, 2021) learns to
# order the list by the next month's return decile from their inputs (returns over 3, 6 and 12 months
# normalised by volatility, the normalised MACD set and its lags, the DMN inputs); `ranker_regression`
# regresses the next month's return on the same rows (the pointwise baseline, so the value of ranking
# is measured). Their positions are the book's legs: +1 for the top quantile, -1 for the bottom one.
# Daily (seed 004): XGBoost and LightGBM models of the next day's (`tree_horizon`) direction or return,
# or trained on seed 004's "dollar profit" objective, pooled over symbols on the DMN inputs and six
# per-ticker indicators; positions `2p - 1`, `tanh(prediction / scale)` or `tanh(score)`. Each row is
# embargoed by its own label horizon; early stopping on the validation block. `tree_lstm_stack`
# combines a tree's and the DMN LSTM's positions with convex weights fitted on each fold's validation
# block only (seed 004's combination).
# **Changepoint features.** `features` (and a variant's own `features`) adds inputs to the DMN set:
# `cpd21`, `cpd126` (Wood, Giegerich, Roberts & Zohren, 2021: the severity and location of a
# Gaussian-process changepoint over the last 21 or 126 returns, the Momentum Transformer's published
# inputs) and `bocpd` (Bayesian online changepoint detection, Adams & MacKay, 2007: the probability of
# a change within the last 5 and 21 days and the expected run length). A *variant* trains a model of
# the catalogue on other features under its own name (e.g. `momentum_transformer_cpd`), so the
# backtest compares the model with and without them; every variant counts as a configuration tried.

# %% tags=["parameters"]
# Data and universe (defaults: the small smoke case that CI runs)
data_path = ""                 # empty: the committed S&P 500 store (or $KIT_DATA)
symbols = ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"]
n_symbols = 0                  # > 0: the n most liquid symbols as known on universe_as_of, instead of `symbols`
universe_as_of = "2009-12-31"  # universe chosen from data up to this date only
start = "2008-01-01"           # first date loaded (features need about 15 months of warm-up)
end = "2021-04-21"             # last date loaded
universe = "point_in_time"     # point_in_time: each decision date trains and trades that day's index members only; survivors: all loaded symbols
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

# Gradient-boosted trees and rankers (seed 004; Poh et al., 2021)
n_quantiles = 3                # rankers: relevance grades and book quantiles (deciles: 10, 6 symbols: 3)
rebalance_freq = "M"           # rankers' rebalance calendar: W, M or Q
tree_horizon = 1               # daily trees' label horizon in trading days (1 next day, 5 next week)
tree_rounds = 200              # maximum boosting rounds (early stopping on the validation block)
tree_early_stopping = 20       # rounds without improvement before stopping
tree_threads = 0               # LightGBM / XGBoost threads per fold task (0: the task threads, --threads)
stack_members = ["dmn_lstm", "xgb_direction"]  # tree_lstm_stack: an LSTM and a tree
stack_method = "nnls"          # the stack's meta-learner on validation blocks: nnls or sharpe
# Foundation models, read from local weights only (never downloaded; README: download once with `hf download`)
foundation_models = []         # e.g. ["chronos_bolt", "timesfm"]; one whose weights folder is missing is skipped, with the reason
foundation_fine_tune = False   # also fine-tune each on every fold's training windows (early stopping on validation)
foundation_epochs = 5          # maximum fine-tuning epochs per fold
foundation_context_length = 512  # closes per context, ending at the decision date
model_dir = ""                 # weights folder; empty: $KIT_MODEL_DIR, else data/state/models

# Registry: every trained model is registered as a candidate and put through the promotion gate
registry_scope = ""            # empty: derived from the universe (registry.universe_scope)
db_url = ""                    # empty: $KIT_DB_URL or data/state/kit.db in a profile run; a temporary SQLite file when run by hand
gate = {}                      # promotion thresholds overriding the seed 003 defaults, e.g. min_direction_accuracy

# Execution of the walk-forward tasks (python -m kit run --backend/--address/--workers/--threads set these)
backend = "serial"             # serial (this kernel), process (a local pool) or ray (a Ray cluster or a local instance)
address = ""                   # ray: the cluster's address (empty: $RAY_ADDRESS, else a local Ray instance)
workers = 0                    # process: pool size (0: the cores available / threads)
threads = 0                    # threads per task (0: $KIT_TASK_THREADS or 1); results depend on it, never on the backend

# Set by `python -m kit run`; empty when run by hand (then nothing is saved to a run folder)
run_dir = ""
profile = "notebook-defaults"


# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from kit import analytics, data, reports, training
from kit import exec as kexec
from kit.models import model_kind

settings = training.WalkForwardSettings.from_params(globals())  # type- and range-checked
foundation_settings = training.FoundationSettings.from_params(globals())
loaded = data.load_universe(data_path or None, symbols, n_symbols, universe_as_of, start, end, universe=universe, cleaning=cleaning)
prices, quality, universe_symbols = loaded
frames = data.wide_fields(prices)
close = frames["close"]
membership = loaded.mask_for(close)  # (T, N) index membership of each day; None for survivors
print(f"universe {universe}; cleaning removed {loaded.cleaning.rows_before - loaded.cleaning.rows_after} rows "
      f"for {len(loaded.cleaning.actions)} findings")
out_dir = run_dir or tempfile.mkdtemp(prefix="kit-train-")  # by hand: a scratch folder instead of a run
runner = kexec.make_backend(backend, address=address or None, workers=workers or None, threads=threads or None)
print(f"{len(universe_symbols)} symbols, {close.index[0].date()} to {close.index[-1].date()}; models {models}; "
      f"artifacts in {reports.artifacts_dir(out_dir)}; tasks run by {runner.describe()}")

# %%
searches = {}
if search_trials > 0:
    # trials run as tasks on the backend; on several nodes the study lives in the kit's database (PostgreSQL)
    study_storage = kexec.study_storage(runner, reports.search_storage(out_dir), db_url or None)
    study_prefix = "search-" if runner.nodes == 1 else f"search-{Path(out_dir).name}-"
    for name in [m for m in models if model_kind(settings.variant(m).model) == "position"]:
        searches[name] = training.search_hyperparameters(
            close, model=settings.variant(name).model, features=settings.variant(name).features, search_until=settings.test_start, n_trials=search_trials, val_fraction=settings.val_fraction,
            lookback=settings.lookback, target_vol=settings.target_vol, epochs=settings.epochs, patience=settings.patience,
            n_heads=settings.n_heads, seed=settings.seed, storage=study_storage, study_name=study_prefix + name, backend=runner,
            membership=membership,
        )
        reports.save_search_trials(out_dir, name, searches[name].trials)

    display(pd.DataFrame({n: {**s.best_params, "val_sharpe": s.best_val_sharpe, "trials": s.n_trials} for n, s in searches.items()}).T)
# one configuration per model trained without a search, every trial for a searched one
configurations_tried = sum(searches[m].n_trials if m in searches else 1 for m in models)
print(f"configurations tried: {configurations_tried}")

# %%
data_sha = data.data_sha256(data_path or None)
# every (model, fold) fit of the torch models is one task, and so is every fold fit of the tree and
# ranker models (a batch per model, after the torch models); the backend runs them, this kernel
# writes checkpoints and the registry; a stack's meta-learner is fitted here on the members' fold
# predictions
results = settings.run_models(
    frames, models, hypers={n: s.best_params for n, s in searches.items()},
    checkpoint_dir=reports.checkpoint_dir(out_dir), data_sha256=data_sha, backend=runner,
    membership=membership,
)
tasked = [r for r in results.values() if r.tasks is not None]
tasks = pd.concat([r.tasks for r in tasked], ignore_index=True).drop_duplicates("task") if tasked else pd.DataFrame()  # one row per task run
stage_walls = {}  # wall seconds per batch: the torch fits and combinations, then each tree model's folds
for r in tasked:
    stage_walls.update(r.config.get("exec", {}).get("stage_wall_seconds", {}))
exec_info = {**runner.describe(), "retries": getattr(runner, "retries", 0), "stage_wall_seconds": stage_walls, "tasks": len(tasks),
             "task_seconds": round(float(tasks["seconds"].sum()), 1) if len(tasks) else 0.0,
             "tasks_per_node": tasks["node"].value_counts().to_dict() if len(tasks) else {}}
runner.close()

# %% [markdown]
# ## Foundation models
# Chronos-Bolt (Ansari et al., 2024) and TimesFM 2.5 (Das et al., 2024) forecast the 10%, 50% and 90%
# quantiles of the 1-, 5- and 21-day returns from the last `foundation_context_length` closes (divided
# by the last one). Zero-shot the pretrained weights never change; with `foundation_fine_tune` each
# fold also gets a copy fine-tuned on its training windows with the pinball loss (early stopping on
# its validation windows). Positions follow the median 1-day forecast by the `ldtm` rule. Published
# studies find these models weak zero-shot forecasters of daily stock returns; this measures them
# under the same rules as the kit's own models. Weights are read from the local weights folder only;
# a model whose folder is missing is skipped, and the reason says where to put it.

# %%
foundation = foundation_settings.run(close, settings, checkpoint_dir=reports.checkpoint_dir(out_dir), data_sha256=data_sha)
if not foundation_models:
    print("no foundation models requested (foundation_models is empty)")
for r in foundation.skipped.itertuples():
    print(f"skipped {r.model} ({r.checkpoint}): {r.reason}\n")
results.update(foundation.results)
labels = {**{n: settings.label(n) for n in results if n not in foundation.results}, **foundation.labels}
configurations_tried += len(foundation.results)  # each is one more configuration tried on these test dates
if foundation.results:
    quantiles = pd.concat({labels[n]: analytics.quantile_metrics(r.quantile_forecasts, close).set_index("horizon")
                           for n, r in foundation.results.items()})
    display(quantiles.round(4))  # calibration of the 10-90% band (nominal coverage 0.8) and accuracy, out of sample

# %%
folds = pd.concat([r.folds for r in results.values()], ignore_index=True)
assert (folds["leakage_rows"] == 0).all()
folds.drop(columns=["checkpoint"], errors="ignore")

# %% [markdown]
# ## Training curves
#
# Training curves: the validation loss per epoch, one line per fold (minus the validation Sharpe ratio for the position models; for `ldtm` the multi-horizon MSE averaged over the per-ticker models; for trees and rankers the validation metric per boosting round, negated where higher is better, e.g. minus NDCG; for a fine-tuned foundation model its pinball loss); validation data serve model selection only. Early stopping keeps each fold's best epoch or round. The stack has no curve: its weights are fitted once per fold.

# %%
hist = pd.concat([r.history for r in results.values()], ignore_index=True)
names = list(hist["model"].unique())
fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.2), squeeze=False)
for ax, name in zip(axes[0], names):
    for fold, h in hist[hist["model"] == name].groupby("fold"):
        ax.plot(h["epoch"], h["val_loss"], lw=1)
    ax.set_title(labels.get(name, name))
    tree = name not in foundation.results and model_kind(settings.variant(name).model) in ("tree", "ranker")
    ax.set_xlabel("boosting round" if tree else "epoch")
    metric = hist.loc[hist["model"] == name, "metric"].iloc[0] if tree and "metric" in hist else ""
    ax.set_ylabel(f"validation {metric} (minus if higher is better)" if tree else "validation MSE" if name == "ldtm"
                  else "validation pinball loss" if name in foundation.results else "validation loss (minus Sharpe)")
plt.tight_layout()

# %% [markdown]
# ## Interpretation
#
# Interpretation of the Momentum Transformer (when trained): the mean variable-selection weight of each input and the mean attention of the decision step on each past step, on the last test block.

# %%
split_last = training.walk_forward_splits(close.index, settings.test_start, settings.test_size, None, settings.val_fraction)[-1]
explained = None
for name in [m for m in results if m not in foundation.results and settings.variant(m).model in ("momentum_transformer", "ensemble")]:
    if name in results:
        r = results[name]
        explained = training.explain_transformer(r.last_model, r.features, *split_last.test, settings.lookback, r.feature_names)
        if explained is not None:
            break
if explained is None:
    print("no Momentum Transformer in this run: nothing to interpret")
else:
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
    explained["variable_importance"].sort_values().plot.barh(ax=axes[0], title="Variable importance (mean selection weight)")
    axes[1].bar(range(len(explained["attention_by_lag"])), explained["attention_by_lag"])
    axes[1].set_xlabel("lag (trading days before the decision date)")
    axes[1].set_title("Attention of the decision step by lag")
    plt.tight_layout()

# %% [markdown]
# ## Out-of-sample positions
#
# Out-of-sample positions: their average across symbols over time.

# %%
fig, ax = plt.subplots(figsize=(11, 3.5))
for name, r in results.items():
    r.positions.mean(axis=1).plot(ax=ax, label=labels[name], lw=1)
ax.axhline(0, color="black", lw=0.5)
ax.set_title("Mean position across symbols (out of sample)")
ax.legend()
plt.tight_layout()

# %%
for name, r in results.items():
    reports.save_model_outputs(out_dir, name, r.positions, r.forecasts, getattr(r, "scores", None), getattr(r, "quantile_forecasts", None))
reports.save_table(out_dir, "folds", folds)
reports.save_table(out_dir, "training_curves", hist)
reports.save_table(out_dir, "tasks", tasks)
first = results[models[0]].positions
if run_dir:
    reports.save_metrics(run_dir, "exec", exec_info)
    reports.save_metrics(run_dir, "train", {
        "models": models, "configs": {n: r.config for n, r in results.items()}, "feature_names": results[models[0]].feature_names,
        "folds": int(folds["fold"].nunique()), "leakage_rows": int(folds["leakage_rows"].sum()),
        "oos_start": first.index[0].date().isoformat(), "oos_end": first.index[-1].date().isoformat(),
        "configurations_tried": configurations_tried, "universe": universe, "cleaning": loaded.cleaning.to_dict()["summary"],
        "foundation": {"labels": foundation.labels, "skipped": foundation.skipped.to_dict(orient="records")},
        "search": {n: {"best_params": s.best_params, "best_val_sharpe": s.best_val_sharpe, "trials": s.n_trials} for n, s in searches.items()},
    })
print(f"{len(results)} model(s), {folds['fold'].nunique()} folds, out of sample {first.index[0].date()} to {first.index[-1].date()}, "
      f"leakage rows {int(folds['leakage_rows'].sum())}, configurations tried {configurations_tried}")

# %% [markdown]
# ## Registry and promotion gate
#
# Registry: each model of this run is registered as a candidate (its last fold's checkpoint copied to a
# versioned name, its per-fold metrics recorded) and put through the promotion gate (seed 003: next-day
# direction accuracy at least 52%, mean absolute percentage error at most 5% for forecasters, no leakage
# rows, at least 2 folds). A model that passes becomes the scope's active model and the previous one is
# retired; when several pass, the one with the highest out-of-sample Sharpe ratio net of the gate's
# `cost_bps` (5 by default, on every change of the volatility-scaled position) wins. One that fails
# stays a candidate with the failed criteria recorded. `50_audit` shows the registry and its history.

# %%
from kit.store import registry

db = db_url or (None if run_dir else f"sqlite:///{reports.artifacts_dir(out_dir) / 'registry.db'}")
scope = registry_scope or registry.universe_scope(universe_symbols)
decisions = registry.register_and_gate(results, close, scope, gate, extra={"run_dir": run_dir, "profile": profile}, db=db)
if run_dir:
    reports.save_metrics(run_dir, "registry", {
        "scope": scope, "models": decisions.set_index("name")[["model_id", "label", "status", "gate", "reasons"]].to_dict(orient="index"),
    })
decisions

# %% [markdown]
# ## Caveats
# * Hyperparameters are fixed before the run, or searched on dates before `test_start` only; the number
#   of configurations tried is recorded for the deflated Sharpe ratio.
# * One seed per fold and model; a different seed gives different positions.
# * A ranker's position is the leg it puts a stock in (+1 long, -1 short, 0 neither); the registry's
#   direction accuracy scores those legs against each stock's next-day return, a time-series criterion
#   that a market-neutral book is not built to meet. The ledger records the same legs as positions.
# * Foundation models were pretrained on public time series that may include these stocks' prices in
#   the test period; their out-of-sample figures may be optimistic for that reason. A model skipped for
#   missing weights is not in any table here.
