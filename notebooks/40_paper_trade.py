# %% [markdown]
# # 40 · Paper trading: the daily step, or a replay of it over history
#
# **Question.** Run as a desk would run it every evening, what does the kit's trading loop do, and
# does its profit and loss equal the backtest of the same decisions?
#
# **Method.** `kit.live.run_day` is the daily step (cron: `python -m kit paper`): load bars up to
# the day, fill yesterday's orders at today's open in the simulated broker, update the streaming
# feature state, predict with the registry's model, record the predictions in the audit ledger and
# fill back past outcomes, turn positions into volatility-targeted weights, run the pre-trade check
# against the limits, and send market orders (deterministic client order ids; a second run of a day
# trades nothing). In `replay` mode the same step runs day by day over a historical window with a
# model trained only on data before it; the replayed equity is then compared with
# `kit.live.next_open_reference`, a plain-numpy backtest of the same weights under the same
# execution and cost model (decide at the close, fill at the next open with slippage and commission),
# whose fills vectorbt reproduces.

# %% tags=["parameters"]
# Mode (defaults: a short replay on a few symbols, the fast case CI runs)
mode = "replay"                # replay: step through replay_start..replay_end; step: one day (as_of)
as_of = ""                     # step mode: trading day (empty: the last day of the data)
replay_start = "2021-01-04"
replay_end = "2021-02-26"
train_until = ""               # last date the replay model may see (empty: the day before replay_start)

# Universe and data
data_path = ""
symbols = ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"]
n_symbols = 0                  # > 0: the n most liquid symbols as of universe_as_of instead
universe_as_of = "2009-12-31"
history_start = "2008-01-01"   # the streaming state warms up from here

# Account, model and risk
account = ""                   # empty: a fresh account per run (replay) or paper (step)
scope = "paper-demo"           # registry scope of the traded model
require_active = False         # False: trade the newest candidate if the gate promoted none (demonstration)
model_epochs = 3               # replay model (trained when the scope has none)
model_hidden_size = 8
target_vol = 0.15
max_gross = 0.95
cost_bps = 5.0                 # commission, basis points of traded notional
slippage_bps = 2.0             # basis points of the open price
initial_cash = 100000.0
limits = {"max_position": 0.25, "max_gross": 0.95, "max_net": 0.95}
db_url = ""                    # empty: a temporary database when run by hand, the kit database in a profile run

# Set by `python -m kit run`
run_dir = ""
profile = "notebook-defaults"


# %%
# %matplotlib inline
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from kit import analytics, data, live, portfolio, reports
from kit.store import ledger, registry

if not db_url:
    db_url = "" if run_dir else f"sqlite:///{tempfile.mkdtemp(prefix='kit-paper-')}/kit.db"
db = db_url or None
if not account:
    account = ("replay-" + (Path(run_dir).name if run_dir else pd.Timestamp.now(tz="UTC").strftime("%Y%m%dT%H%M%S"))) if mode == "replay" else "paper"
state_dir = str(reports.artifacts_dir(run_dir) / "paper-state") if run_dir else tempfile.mkdtemp(prefix="kit-paper-state-")
config = live.PaperConfig(
    account=account, scope=scope, require_active=require_active, data_path=data_path,
    symbols=symbols if symbols else "all", n_symbols=n_symbols, universe_as_of=universe_as_of, history_start=history_start,
    target_vol=target_vol, max_gross=max_gross, cost_bps=cost_bps, slippage_bps=slippage_bps, initial_cash=initial_cash,
    limits=limits, state_dir=state_dir,
)
print(f"mode {mode}; account {account!r}; scope {scope!r}; database {db_url or 'kit default'}")

# %% [markdown]
# The model. In a replay it must not have seen the replayed window: when the scope has no model,
# one is trained walk-forward on data up to `train_until` only, registered as a candidate and put
# through the promotion gate. The gate's decision is shown; a model that failed it is traded only
# because `require_active` is False, and every record of the run says so.

# %%
if mode == "replay" and registry.list_models(scope=scope, db=db).empty:
    until = train_until or (pd.Timestamp(replay_start) - pd.Timedelta(days=1)).date().isoformat()
    row = live.prepare_model(config, until, db=db, epochs=model_epochs, hidden_size=model_hidden_size)
    print(f"trained and registered {row['label']} (data up to {until}): {row['status']}")
    for reason in row["gate_reasons"]:
        print("  gate: failed", reason)
registry.list_models(scope=scope, db=db)[["id", "label", "status", "trained_on", "oos_sharpe", "benchmark_sharpe"]]

# %%
if mode == "replay":
    result = live.replay(replay_start, replay_end, config, db=db)
    days = result.days
    print(f"{len(days)} trading days replayed with {result.model} ({result.model_status})")
    print(f"max |paper equity / reference backtest equity - 1| = {result.max_rel_diff:.2e}")
else:
    day = live.run_day(as_of or live.load_history(config, "2100-01-01")["date"].max(), config, db=db)
    print(f"{day.as_of.date()}: {day.status}; model {day.model}; equity {day.equity:,.2f}; cash {day.cash:,.2f}")
    days = live.paper_history(account, db=db)["runs"].set_index("as_of")

# %% [markdown]
# Paper equity against the backtest expectation. *Reference (next open)* is the numpy backtest of
# the weights the loop recorded under the loop's own execution model; the two curves must coincide (the
# difference is float rounding). *Backtest (at the close)* is the research backtest
# (`kit.portfolio.simulate`, vectorbt, orders filled at the close of the decision day) of the same
# weights and costs without slippage: the gap between it and the paper curve is the price of trading
# at the next open instead of the close.

# %%
if mode == "replay":
    hist = live.load_history(config, replay_end)
    wide = data.wide_fields(hist, ("open", "close"))
    close = wide["close"].loc[result.weights.index]
    at_close = portfolio.simulate(close.ffill(), result.weights.fillna(0.0), cost_bps=cost_bps, name="Backtest (at the close)")
    ref_vbt = portfolio.next_open_vectorbt(close, wide["open"].loc[result.weights.index], result.reference.filled, cost_bps, slippage_bps, initial_cash)
    vbt_diff = float(((ref_vbt.value() / result.reference.equity) - 1).abs().max())
    curves = pd.DataFrame({
        "Paper (SimBroker)": days["equity"] / initial_cash,
        "Reference (next open)": result.reference.equity / initial_cash,
        "Backtest (at the close)": at_close.equity,
    })
    fig, axes = plt.subplots(2, 1, figsize=(11, 6), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    curves.plot(ax=axes[0])
    axes[0].set_title("Equity since the start of the replay (1 = initial cash), net of costs")
    ((days["equity"] / result.reference.equity) - 1).plot(ax=axes[1], color="black")
    axes[1].set_title("Paper / reference - 1")
    plt.tight_layout()
    table = analytics.performance_table({k: v.pct_change().fillna(0.0) for k, v in curves.items()})
    print(f"vectorbt replay of the reference fills: max relative difference {vbt_diff:.2e}")
    display(table[["annual_return", "annual_volatility", "sharpe_ratio", "sharpe_ci_low", "sharpe_ci_high", "max_drawdown", "days"]].round(4))

# %% [markdown]
# Orders, fills and positions: the last days' orders with their client order ids and statuses,
# and the account now.

# %%
broker = live.SimBroker(db, account)
orders = broker.orders()
print(f"{len(orders)} orders: " + ", ".join(f"{k} {v}" for k, v in orders["status"].value_counts().items()))
display(orders.tail(12)[["client_order_id", "symbol", "side", "qty", "status", "decided_on", "fill_date", "filled_avg_price", "commission", "reject_reason"]])
acct = broker.account()
pos = pd.DataFrame([p.__dict__ for p in broker.positions().values()])
print(f"cash {acct.cash:,.2f}  equity {acct.equity:,.2f}  (P&L since start {acct.equity / broker.initial_cash - 1:+.2%})")
pos

# %% [markdown]
# Risk checks: every change the pre-trade check made to the model's target weights (clipped to the
# position limit, scaled to the gross or net cap, names frozen for want of a price), by check.

# %%
rec = live.paper_history(account, db=db)
checks = rec["checks"]
n_days = len(rec["runs"])
if checks.empty:
    print(f"{n_days} days: every target passed the pre-trade check unchanged")
else:
    summary = checks.groupby("check").agg(days=("as_of", "nunique"), rows=("symbol", "size"))
    summary["share_of_days"] = summary["days"] / n_days
    display(summary)
    display(checks.tail(8)[["as_of", "symbol", "check", "value", "limit", "action"]])

# %% [markdown]
# The audit ledger: every prediction was recorded before its outcome was known; the fillback
# added outcomes whose dates have passed. Leaderboard: direction accuracy and strategy return over
# the last 30 trading days per symbol (the chain of row hashes is verified first).

# %%
check = ledger.verify(db=db)
print(f"ledger chain verified: {check.ok}")
board = ledger.leaderboard(30, db=db)
board

# %%
if run_dir:
    out = {"mode": mode, "account": account, "scope": scope, "days": int(len(days)), "orders": int(len(orders)),
           "equity": float(acct.equity), "pnl": float(acct.equity / broker.initial_cash - 1), "ledger_ok": bool(check.ok)}
    if mode == "replay":
        out.update(start=str(days.index[0].date()), end=str(days.index[-1].date()), max_rel_diff=result.max_rel_diff,
                   vectorbt_rel_diff=vbt_diff, model=result.model, model_status=result.model_status,
                   table=table.drop(columns=["start", "end"], errors="ignore").to_dict(orient="index"))
        reports.save_table(run_dir, "paper_days", days, index=True)
    reports.save_metrics(run_dir, "paper", out)

# %% [markdown]
# ## Caveats
# * The simulated broker fills market orders at the next open of the (split- and dividend-adjusted)
#   daily bars with a flat slippage; real fills vary with liquidity, and auctions are not modelled.
# * A replay's model may have failed the promotion gate; it is traded here only to exercise the loop.
#   Live trading from cron refuses a scope without an active model.
# * Short positions pay no borrow fee and earn no interest on cash.
