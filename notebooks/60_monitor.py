# %% [raw]
# ---
# title: "60 · Monitoring: the daily loop"
# format: dashboard
# ---

# %% [markdown]
# **Question.** Is the daily loop healthy: is the account within its drawdown limit, is the traded
# model still as accurate as the gate demanded, have its inputs moved away from its training data,
# and what did the loop retrain and raise?
#
# **Method.** `python -m kit daily` (`kit.live.loop.run_daily`) records every day in the database:
# the paper step's equity and exposure, the ledger's outcomes, the drift checks (PSI and a
# Kolmogorov-Smirnov test per feature, recent window against the model's training window, Holm-adjusted;
# the rolling direction accuracy and MAPE against the gate, with a one-sided test clustered by day),
# each retraining and the gate's decision, and the alerts it sent. This page reads those records
# (`kit.live.loop.daily_history`); the same figures went to Prometheus as metrics.

# %% tags=["parameters"]
# Whose records (defaults: a short demonstration in a temporary database, the fast case CI runs)
account = ""                   # the daily loop's paper account; empty: run the demonstration below first
db_url = ""                    # empty: the kit database in a profile run, a temporary SQLite file for the demonstration
window = 30                    # trading days of the rolling accuracy

# The demonstration (only when account is empty): the daily loop replayed on a few stocks with a tiny model
data_path = ""
demo_n_symbols = 24            # the most liquid as known at the end of 2019 (the feature check needs 20 rows a day)
demo_train_until = "2020-12-31"
demo_start = "2021-01-04"
demo_end = "2021-01-15"

# Set by `python -m kit run`
run_dir = ""
profile = "notebook-defaults"

# %%
# %matplotlib inline
import tempfile

import matplotlib.pyplot as plt
import pandas as pd

from kit import live, reports
from kit.live import loop

if not account:
    tmp = tempfile.mkdtemp(prefix="kit-monitor-")
    db_url = db_url or f"sqlite:///{tmp}/kit.db"
    account = "monitor-demo"
    cfg = {"account": account, "scope": "monitor-demo", "require_active": True, "data_path": data_path, "n_symbols": demo_n_symbols,
           "universe_as_of": "2019-12-31", "history_start": "2015-01-01", "state_dir": f"{tmp}/state", "limits": {"max_position": 0.1}}
    demo_monitor = {"gate": {"min_direction_accuracy": 0.0}, "retrain": {"every_n_days": 5, "epochs": 1}}
    live.prepare_model(cfg, demo_train_until, db=db_url, epochs=1, hidden_size=3, test_years=2, gate={"min_direction_accuracy": 0.0})
    loop.replay_daily(demo_start, demo_end, cfg, demo_monitor, profile="60_monitor-demo", db=db_url)
db = db_url or None
h = loop.daily_history(account, window=window, db=db)
runs = h["runs"]
days_text = (f"account {account!r}: {len(runs)} day(s) of the daily loop"
             + (f"\n{runs.index[0].date()} to {runs.index[-1].date()}\n{int(runs['needs_person'].sum())} needed a person" if len(runs) else ""))

# %% [markdown]
# ## The account

# %%
#| title: Equity and drawdown
eq = h["equity"]
if eq.empty:
    print("no paper-trading days recorded for this account")
else:
    peak = eq.cummax()
    fig, axes = plt.subplots(2, 1, figsize=(7, 4), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    eq.plot(ax=axes[0], color="black")
    axes[0].ticklabel_format(axis="y", useOffset=False, style="plain")
    axes[0].set_ylabel("USD")
    axes[0].set_title("Equity at the close")
    (eq / peak - 1).rename("drawdown").plot(ax=axes[1], color="firebrick")
    limit = runs["drawdown_limit"].dropna()
    if len(limit):
        axes[1].axhline(-float(limit.iloc[-1]), color="grey", ls="--", label=f"limit {float(limit.iloc[-1]):.0%}")
        axes[1].legend(loc="lower left")
    axes[1].set_ylabel("drawdown")
    plt.tight_layout()
    plt.show()

# %%
#| title: Exposure
if runs["gross_exposure"].notna().any():
    ex = runs[["gross_exposure", "net_exposure"]].astype(float)
    ax = (ex.div(runs["equity"].astype(float), axis=0)).plot(figsize=(7, 4), style=["-", "--"])
    ax.set_ylabel("fraction of equity")
    ax.set_title("Gross and net exposure at the close (positions' market value)")
    plt.tight_layout()
    plt.show()
else:
    print("no exposure recorded yet")

# %% [markdown]
# ## The model

# %%
#| title: Live accuracy per model
acc = h["accuracy"]
checks = h["checks"]
gate = checks.loc[checks["check"] == "direction_accuracy", "threshold"]
if acc.empty:
    print("no filled ledger outcomes yet (the first outcome is known one trading day after the first prediction)")
else:
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, g in acc.groupby("label"):
        ax.plot(g["run_date"], g["direction_accuracy"], marker=".", label=label)
    if len(gate):
        ax.axhline(float(gate.iloc[-1]), color="grey", ls="--", label=f"gate {float(gate.iloc[-1]):.2f}")
    ax.set_ylabel(f"direction accuracy, last {window} trading days")
    ax.legend(fontsize=7)
    plt.tight_layout()
    plt.show()

# %%
#| title: Drift scores against their thresholds
if checks.empty:
    print("no drift checks recorded")
else:
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    psi = checks[checks["check"] == "psi"].pivot(index="as_of", columns="subject", values="value")
    if len(psi):
        psi.plot(ax=axes[0], legend=False, lw=1)
        axes[0].axhline(float(checks.loc[checks["check"] == "psi", "threshold"].iloc[-1]), color="black", ls="--")
    axes[0].set_title("PSI per feature (dashed: threshold)", fontsize=9)
    summary = checks[checks["check"] == "feature_drift"].set_index("as_of")
    flagged = summary.index[summary["verdict"] == "drift"]
    for ax in axes:
        for d in flagged:
            ax.axvline(d, color="red", alpha=0.15, lw=4)
    ks = checks[checks["check"] == "ks"].pivot(index="as_of", columns="subject", values="p_value")
    if len(ks):
        ks.plot(ax=axes[1], logy=True, lw=1)
        axes[1].axhline(float(checks.loc[checks["check"] == "ks", "threshold"].iloc[-1]), color="black", ls="--")
        axes[1].legend(fontsize=6, ncol=2)
    axes[1].set_title("KS p-value, Holm-adjusted (dashed: alpha; red: days with drift)", fontsize=9)
    plt.tight_layout()
    plt.show()

# %% [markdown]
# ## Decisions

# %%
#| title: Verdicts by day
if not checks.empty:
    summary = checks[checks["check"].isin(["feature_drift", "direction_accuracy", "mape"])]
    table = summary.pivot_table(index="as_of", columns="check", values="verdict", aggfunc="first")
    table.index = table.index.date
    display(table.tail(15))

# %%
#| title: Retraining history
rt = h["retraining"]
if rt.empty:
    print("no retraining by the daily loop")
else:
    display(rt.assign(as_of=rt["as_of"].dt.date, reason=rt["reason"].str.split(":").str[0])[["as_of", "reason", "label", "outcome", "seconds"]])
life = h["lifecycle"]
if len(life):
    print("registry, last events:\n" + "\n".join(f"  {r.label}: {r.event}" for r in life.tail(6).itertuples()))

# %%
#| title: Alerts
al = h["alerts"]
print(days_text)
if al.empty:
    print("no alerts: nothing needed a person")
else:
    display(al.assign(as_of=al["as_of"].dt.date).tail(20))

# %%
if run_dir:
    last = runs.iloc[-1] if len(runs) else None
    reports.save_metrics(run_dir, "monitor", {
        "account": account, "days": int(len(runs)), "needed_a_person": int(runs["needs_person"].sum()) if len(runs) else 0,
        "retrainings": int(len(rt)), "alerts": int(len(al)), "last_day": str(runs.index[-1].date()) if len(runs) else None,
        "equity": None if last is None else last["equity"], "drawdown": None if last is None else last["drawdown"],
    })

# %% [markdown]
# ## Caveats
#
# **Caveats.** The drift tests assume independent observations; the loop compares the day's
# cross-section with cross-sections of the training window 21 days apart, each minus its day's mean
# (a move of the whole market is not drift: the accuracy checks and the drawdown limit watch that),
# and asks for a large shift (PSI) as well as a significant one (KS). The false-positive rates
# measured on simulated undrifted panels are in `docs/monitoring.md`. Accuracy over a 30-day window is noisy: a verdict needs the one-sided test,
# not the line crossing the gate. A retrained model that the gate refused is not traded.
