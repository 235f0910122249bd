# %% [markdown]
# # 50 · Audit: model registry and prediction ledger
#
# **Question.** Which models may trade, on what evidence, and how accurate have their recorded
# predictions turned out to be?
#
# **Method.** Seed 003's audit frame, in `kit.store.registry` and `kit.store.ledger`. Every model trained by
# `20_train` is registered as a *candidate* with its walk-forward metrics per fold and a checkpoint
# copied to a versioned file (`{scope}_{model}_v{major}.{trained_on}.pt`; the major number changes
# with the architecture). A promotion gate then checks the pooled out-of-sample folds: next-day
# direction accuracy ≥ 52%, mean absolute percentage error of the predicted price ≤ 5% (forecasters
# only), zero leakage rows, at least 2 folds. A pass makes the model *active* and retires the previous
# active model of the same universe, in one transaction; a failure leaves it a candidate with each
# failed criterion and its value on record. Every prediction goes into the ledger as a snapshot
# (close, forecasts at 1, 5 and 21 trading days, with the 10% and 90% quantiles of a quantile
# forecaster, direction, position), hash-chained to the previous
# row so that any later edit, insertion or deletion shows; *fillback* fills in the outcomes once
# their target dates have passed, and the leaderboard shows the accuracy over the last 30 trading days.

# %% tags=["parameters"]
# Data and universe (defaults: the small smoke case that CI runs)
data_path = ""                 # empty: the committed S&P 500 store (or $KIT_DATA)
symbols = ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"]
n_symbols = 0                  # > 0: the n most liquid symbols as known on universe_as_of, instead of symbols
universe_as_of = "2009-12-31"  # universe chosen from data up to this date only
start = "2008-01-01"           # first date loaded
end = "2021-04-21"             # last date loaded
universe = "point_in_time"     # point_in_time: each decision date uses that day's index members only; survivors: all loaded symbols
cleaning = "default"           # cleaning policy: default (errors masked, warnings kept), none, or a mapping

# Registry and ledger
db_url = ""                    # empty: $KIT_DB_URL or data/state/kit.db in a profile run; a temporary SQLite file when run by hand
gate = {}                      # promotion thresholds overriding the seed 003 defaults, e.g. min_direction_accuracy, max_mape, min_folds
replay_days = 60               # last out-of-sample days of each model of this run written to the ledger
window = 30                    # leaderboard window in trading days

# Standalone runs: when this run registered no model, these are trained here (small and fast)
demo_models = ["linear", "mlp"]
demo_test_start = "2016-01-01"
demo_test_size = 504
demo_epochs = 2
seed = 0

# Set by `python -m kit run`; empty when run by hand (then nothing is saved to a run folder)
run_dir = ""
profile = "notebook-defaults"


# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from kit import data, reports, training
from kit.store import get_engine, ledger, registry

loaded = data.load_universe(data_path or None, symbols, n_symbols, universe_as_of, start, end, universe=universe, cleaning=cleaning)
prices, quality, universe_symbols = loaded
frames = data.wide_fields(prices)
close = frames["close"]
membership = loaded.mask_for(close)  # (T, N) index membership of each day; None for survivors
db = db_url or (None if run_dir else f"sqlite:///{tempfile.mkdtemp(prefix='kit-audit-')}/audit.db")
engine = get_engine(db)
thresholds = registry.GateThresholds.from_dict(gate)
scope = registry.universe_scope(universe_symbols)
print(f"{len(universe_symbols)} symbols, prices to {close.index[-1].date()}; universe scope {scope}")
print(f"database {engine.url.render_as_string(hide_password=True)}; gate {thresholds.to_dict()}")

# %% [markdown]
# ## Models of this run
# In a profile run `20_train` has registered its models and applied the gate; their out-of-sample
# positions (and an LDTM's forecasts) are in the run's artifacts. Run by hand, with no run folder, the
# notebook trains the small `demo_models` walk-forward here and registers and gates them the same way
# (`registry.register_and_gate`).

# %%
run_registry = reports.load_metrics(run_dir).get("registry", {}) if run_dir else {}
predictions = {}  # model id -> tidy predictions of its last out-of-sample days
if run_registry.get("models"):
    for name, info in run_registry["models"].items():
        pos, fcs = reports.load_positions(run_dir, name), reports.load_forecasts(run_dir, name, ledger.HORIZONS)
        qfs = reports.load_quantile_forecasts(run_dir, name, ledger.HORIZONS)  # foundation models: 10% and 90% quantiles too
        predictions[info["model_id"]] = ledger.predictions_frame(pos, fcs, quantile_forecasts=qfs, last=replay_days)
    decisions = pd.DataFrame(run_registry["models"]).T.rename_axis("name").reset_index()
else:
    results = {}
    for name in demo_models:
        results[name] = training.walk_forward_model(
            frames, name, test_start=demo_test_start, test_size=demo_test_size, lookback=21, hidden_size=8,
            train=training.TrainConfig(epochs=demo_epochs, seed=seed), checkpoint_dir=Path(tempfile.mkdtemp(prefix="kit-audit-ck-")),
            progress=False, membership=membership,
        )
    decisions = registry.register_and_gate(results, close, scope, thresholds, extra={"profile": profile, "run_dir": run_dir}, db=db)
    for r in decisions.itertuples():
        res = results[r.name]
        predictions[r.model_id] = ledger.predictions_frame(res.positions, res.forecasts, last=replay_days)
decisions

# %% [markdown]
# ## Ledger: snapshot and fillback
# The committed store ends on 2021-04-21, so nothing here can be predicted live: the ledger is filled
# by *replaying* the last `replay_days` out-of-sample predictions of each model of this run, date by
# date as they were made (each by a model trained only on data before its test block). Keys already in
# the ledger (an earlier run of the same model version) are kept as recorded, never overwritten. Then
# fillback finds every prediction whose target date (1, 5 or 21 trading days later on the store's
# calendar) has passed and fills the actual price, the percentage error and whether the direction was
# right, in one transaction; the dry run first lists that batch without writing.

# %%
written = {mid: len(ledger.snapshot(p, close, mid, skip_existing=True, db=db)) for mid, p in predictions.items() if len(p)}
print(f"snapshots written this run: {written}")
pending = ledger.fillback(close, dry_run=True, db=db)
print(f"dry run: {pending.n_filled} outcomes due; {len(pending.skipped)} due but without a price")
filled = ledger.fillback(close, db=db)
print(f"filled {filled.n_filled} outcomes; a second pass finds {ledger.fillback(close, dry_run=True, db=db).n_filled}")
snaps = ledger.snapshots(db=db)
summary = snaps.groupby("label").agg(snapshots=("seq", "size"), symbols=("symbol", "nunique"), first_run_date=("run_date", "min"),
                                     last_run_date=("run_date", "max"))
summary

# %% [markdown]
# ## Registry
# Every registered model with its pooled walk-forward evidence (direction accuracy and MAPE are
# fold means weighted by each fold's number of calls), its status and the outcome of its last gate
# evaluation. `oos_sharpe` and `benchmark_sharpe` are the whole out-of-sample period's Sharpe ratios
# of the volatility-scaled book and of long only, net of the gate's `cost_bps` (5 bps of every change
# of the scaled position unless the profile's `gate` says otherwise); the net ratio decides which
# passing candidate becomes active. `oos_sharpe_gross` is the same before costs.

# %%
models_table = registry.list_models(db=db)
cols = ["label", "status", "forecaster", "folds", "n_obs", "direction_accuracy", "mape", "leakage_rows", "oos_sharpe", "oos_sharpe_gross",
        "benchmark_sharpe", "gate", "gate_failures"]
models_table[cols].set_index("label").round(4)

# %% [markdown]
# Gate decisions: each criterion of each model's last evaluation, as value, rule and verdict.

# %%
gates = registry.gate_results(db=db)
if gates.empty:
    print("no gate evaluation recorded")
else:
    last = gates[gates["evaluation_id"] == gates.groupby("model_id")["evaluation_id"].transform("max")]

    def verdict(r):
        v = "missing" if pd.isna(r.value) else f"{r.value:.4f}"
        return f"{v} {r.op} {r.threshold:g}: {'pass' if r.passed else 'FAIL'}"

    table = last.assign(result=last.apply(verdict, axis=1)).pivot(index="label", columns="criterion", values="result")
    table["decision"] = last.groupby("label")["gate_passed"].first().map({True: "active", False: "stays candidate"})
    display(table)

# %% [markdown]
# Lifecycle history: every registration, promotion, retirement and failed gate, oldest first.

# %%
registry.history(db=db).set_index("id")

# %% [markdown]
# Direction accuracy of each walk-forward fold (out of sample), with the gate's threshold. The plots
# show the models of this run's universe (its registry scope); the tables list every model in the
# database, which may hold other universes' models (e.g. an earlier run on survivors).

# %%
def of_scope(frame: pd.DataFrame) -> pd.DataFrame:
    """The rows of this universe's models (labels ``<scope>_<model>_<version>``)."""
    return frame[frame["label"].astype(str).str.startswith(f"{scope}_")] if len(frame) else frame


folds = of_scope(registry.fold_table(db=db))
if len(folds):
    acc = folds.assign(model=folds["label"].str.split("_", n=1).str[1]).pivot(index="fold", columns="model", values="direction_accuracy")
    fig, ax = plt.subplots(figsize=(10, 3.5))
    acc.plot.bar(ax=ax, rot=0)
    ax.axhline(thresholds.min_direction_accuracy, color="black", lw=1, ls="--", label=f"gate {thresholds.min_direction_accuracy:.0%}")
    ax.axhline(0.5, color="grey", lw=0.5)
    lo, hi = float(acc.min().min()), float(acc.max().max())
    ax.set_ylim(min(0.45, lo - 0.01), max(0.55, hi + 0.01))
    ax.set_ylabel("next-day direction accuracy")
    ax.set_title("Out-of-sample direction accuracy per walk-forward fold")
    ax.legend(fontsize=8, loc="upper left")
    plt.tight_layout()

# %% [markdown]
# ## Leaderboard
# Live accuracy from the ledger over the last `window` trading days of recorded predictions: direction
# accuracy of the next-day calls, mean absolute percentage error of the predicted next-day price
# (forecasters only) and the compounded strategy return `position × next-day return` (per model: the
# daily average over its symbols; not volatility-scaled and before costs).

# %%
board = ledger.leaderboard(window, by="model", calendar=close.index, db=db)
board.set_index("label").round(4)

# %%
by_symbol = of_scope(ledger.leaderboard(window, by="symbol", calendar=close.index, db=db))
rolling = of_scope(ledger.rolling_accuracy(window, by="model", calendar=close.index, db=db))
out = of_scope(ledger.outcomes(db=db))
if len(out):
    def short(label):  # the label without its scope
        return label.split("_", 1)[1]

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    for label, g in rolling.groupby("label"):
        g = g.iloc[window - 1:] if len(g) > window else g  # from the first full window on
        axes[0].plot(g["run_date"], g["direction_accuracy"], label=short(label), lw=1)
    axes[0].axhline(thresholds.min_direction_accuracy, color="black", lw=1, ls="--", label="gate")
    axes[0].axhline(0.5, color="grey", lw=0.5)
    axes[0].set_title(f"Rolling {window}-day direction accuracy")
    axes[0].legend(fontsize=7)
    daily = out.groupby(["label", "run_date"])["strategy_return"].mean().unstack(0).rename(columns=short)
    ((1 + daily.fillna(0)).cumprod() - 1).plot(ax=axes[1], lw=1, legend=False)
    axes[1].set_title("Cumulative return of the recorded calls")
    axes[1].set_xlabel("")
    pivot = by_symbol.assign(model=by_symbol["label"].map(short)).pivot(index="symbol", columns="model", values="direction_accuracy")
    pivot.plot.bar(ax=axes[2], legend=False, rot=0)
    axes[2].axhline(0.5, color="grey", lw=0.5)
    axes[2].set_title(f"Direction accuracy per symbol, last {window} days")
    fig.autofmt_xdate()
    plt.tight_layout()
else:
    print("no filled outcomes yet")

# %% [markdown]
# ## Tamper evidence
# `ledger.verify()` recomputes every row's hash from its contents and the previous row's hash, the
# hash binding each filled outcome to its prediction, and the head record; it lists any edited,
# inserted or deleted row.

# %%
check = ledger.verify(db=db)
print(check)
if not check.ok:
    display(check.problems)

# %%
if run_dir:
    status = models_table.set_index("label")["status"]
    reports.save_metrics(run_dir, "audit", {
        "scope": scope, "thresholds": thresholds.to_dict(), "models_registered": len(models_table),
        "status_counts": status.value_counts().to_dict(),
        "this_run": decisions.to_dict(orient="records"),
        "ledger_rows": int(check.n_rows), "outcomes_filled": int(check.n_filled), "filled_this_run": int(filled.n_filled),
        "ledger_verified": bool(check.ok), "leaderboard": board.drop(columns=["first_run_date", "last_run_date"]).to_dict(orient="records"),
    })
print(f"{len(models_table)} model(s) registered ({models_table['status'].value_counts().to_dict()}); "
      f"ledger {check.n_rows} snapshots, {check.n_filled} outcomes, chain {'verified' if check.ok else 'BROKEN'}")

# %% [markdown]
# ## Caveats
# * The ledger here is a replay of out-of-sample walk-forward predictions, not predictions recorded
#   before the market closed: the store ends in 2021. The same code records live predictions when fed
#   each evening's positions, and the chain then proves when each was written.
# * Thirty days of next-day calls per symbol is a small sample: the standard error of an accuracy near
#   50% over 30 calls is about 9 percentage points, so the per-symbol leaderboard is mostly noise; the
#   per-model figures pool the symbols.
# * Passing the gate is necessary, not sufficient: 52% direction accuracy says nothing about costs or
#   the size of the moves. The backtest (`30_backtest`) shows what the positions earn net of costs.
# * The hash chain shows changes made outside the kit's code; someone able to run that code against
#   the database can rebuild a consistent chain, which only an external copy of the head hash would
#   expose.
