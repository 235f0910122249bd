"""Paper trading: the next-open execution model, SimBroker, the daily step (double runs, crashes in
real processes, locks) and the replay against the reference backtest."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kit import live as paper
from kit import portfolio
from kit.live import brokers

ROOT = Path(__file__).resolve().parent.parent
SYMBOLS = ["AAPL", "JPM", "KO"]


# --------------------------------------------------------------------------- execution model


def _book(seed, T=120, N=4, gross=0.9):
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range("2020-01-01", periods=T)
    cols = [f"S{i}" for i in range(N)]
    close = pd.DataFrame(50 * np.exp(np.cumsum(rng.normal(0, 0.02, (T, N)), 0)), index=dates, columns=cols)
    open_ = close.shift(1) * (1 + rng.normal(0, 0.01, (T, N)))
    open_.iloc[0] = close.iloc[0]
    close.iloc[: T // 5, 1] = np.nan  # listed later
    open_.iloc[: T // 5, 1] = np.nan
    close.iloc[-T // 6 :, 2] = np.nan  # delisted: its holding is frozen, its last orders get no price
    open_.iloc[-T // 6 :, 2] = np.nan
    w = pd.DataFrame(rng.uniform(-1, 1, (T, N)), index=dates, columns=cols)
    w = w.div(w.abs().sum(axis=1), axis=0) * gross
    return close, open_, w


@pytest.mark.slow
@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 10_000), cost=st.sampled_from([0.0, 1.0, 5.0, 20.0]), slip=st.sampled_from([0.0, 2.0, 10.0]))
def test_next_open_reference_equals_vectorbt_on_its_fills(seed, cost, slip):
    close, open_, w = _book(seed)
    ref = portfolio.next_open_reference(close, open_, w, cost, slip, initial_cash=1e6)
    pf = portfolio.next_open_vectorbt(close, open_, ref.filled, cost, slip, initial_cash=1e6)
    np.testing.assert_allclose(pf.value().to_numpy(), ref.equity.to_numpy(), rtol=1e-10)
    assert (ref.filled.abs().sum(axis=1) > 0).sum() > 50


def test_next_open_reference_hand_case():
    d = pd.bdate_range("2021-01-04", periods=3)
    close = pd.DataFrame({"A": [10.0, 12.0, 12.0]}, index=d)
    open_ = pd.DataFrame({"A": [10.0, 11.0, 13.0]}, index=d)
    w = pd.DataFrame({"A": [0.5, 0.5, 0.5]}, index=d)
    r = portfolio.next_open_reference(close, open_, w, cost_bps=10.0, slippage_bps=0.0, initial_cash=1000.0)
    # day 0: 50 shares ordered at the close of 10; day 1: filled at the open of 11 paying 0.55
    assert r.orders.iloc[0, 0] == pytest.approx(50.0)
    assert r.cash.iloc[1] == pytest.approx(1000 - 550 - 0.55)
    assert r.equity.iloc[1] == pytest.approx(449.45 + 50 * 12)
    # day 1: target 0.5 * 1049.45 / 12 = 43.727 shares: sells 6.2729 at the open of 13 on day 2
    assert r.orders.iloc[1, 0] == pytest.approx(0.5 * 1049.45 / 12 - 50)
    assert r.commission.iloc[2] == pytest.approx(abs(r.orders.iloc[1, 0]) * 13 * 1e-3)


def test_next_open_reference_rejects_a_buy_it_cannot_pay_for():
    d = pd.bdate_range("2021-01-04", periods=2)
    close = pd.DataFrame({"A": [10.0, 10.0]}, index=d)
    open_ = pd.DataFrame({"A": [10.0, 20.0]}, index=d)  # gaps up: the buy sized at 10 costs twice that
    w = pd.DataFrame({"A": [0.9, 0.9]}, index=d)
    r = portfolio.next_open_reference(close, open_, w, initial_cash=100.0)
    assert r.rejected == [(d[1], "A", "insufficient cash")] and r.qty.iloc[1, 0] == 0


def test_order_quantities_hand_case_and_errors():
    o = portfolio.order_quantities(pd.Series({"A": 0.5, "B": -0.25}), pd.Series({"A": 10.0, "C": 3.0}), pd.Series({"A": 20.0, "B": 50.0, "C": 5.0}), 1000.0)
    assert o.loc["A", "side"] == "buy" and o.loc["A", "qty"] == pytest.approx(15.0)  # 25 target - 10 held
    assert o.loc["B", "side"] == "sell" and o.loc["B", "qty"] == pytest.approx(5.0)
    assert o.loc["C", "side"] == "sell" and o.loc["C", "qty"] == pytest.approx(3.0)  # held, no target: closed
    with pytest.raises(ValueError, match="equity"):
        portfolio.order_quantities(pd.Series({"A": 0.1}), pd.Series(dtype=float), pd.Series({"A": 1.0}), 0.0)
    with pytest.raises(ValueError, match=r"close\['A'\]"):
        portfolio.order_quantities(pd.Series({"A": 0.1}), pd.Series(dtype=float), pd.Series({"A": np.nan}), 100.0)
    with pytest.raises(ValueError, match=r"target_weights\['A'\]"):
        portfolio.order_quantities(pd.Series({"A": np.inf}), pd.Series(dtype=float), pd.Series({"A": 1.0}), 100.0)


# --------------------------------------------------------------------------- SimBroker


@pytest.fixture
def db(tmp_path):
    return f"sqlite:///{tmp_path / 'kit.db'}"


def test_simbroker_fills_at_next_open_with_slippage_and_commission(db):
    b = paper.SimBroker(db, "acct", initial_cash=10_000.0, cost_bps=10.0, slippage_bps=20.0)
    b.mark("2021-01-04", pd.Series({"A": 100.0}))
    o = b.submit(brokers.OrderRequest("A", "buy", 10, "c1"), decided_on="2021-01-04")
    assert o.status == "submitted"
    assert b.submit(brokers.OrderRequest("A", "buy", 10, "c1")).id == o.id  # idempotent: one order
    assert b.fill_open("2021-01-04", pd.Series({"A": 101.0})) == []  # not before the next bar
    filled = b.fill_open("2021-01-05", pd.Series({"A": 101.0}))
    price = 101.0 * 1.002
    assert filled[0].status == "filled" and filled[0].filled_avg_price == pytest.approx(price)
    b.mark("2021-01-05", pd.Series({"A": 102.0}))
    acct = b.account()
    assert acct.cash == pytest.approx(10_000 - 10 * price * 1.001)
    assert acct.equity == pytest.approx(acct.cash + 10 * 102.0)
    assert b.positions()["A"].qty == 10
    assert b.fill_open("2021-01-05", pd.Series({"A": 101.0})) == []  # idempotent
    assert len(b.fills()) == 1


def test_simbroker_rejects_with_reasons(db):
    from kit.portfolio import Limits

    b = paper.SimBroker(db, "r", initial_cash=1_000.0, limits=Limits(max_position=0.2))
    b.mark("2021-01-04", pd.Series({"A": 10.0, "B": 10.0}))
    big = b.submit(brokers.OrderRequest("A", "buy", 90, "big"), decided_on="2021-01-04")
    assert big.status == "rejected" and "position limit" in big.reject_reason
    b.submit(brokers.OrderRequest("A", "buy", 15, "ok"), decided_on="2021-01-04")
    b.submit(brokers.OrderRequest("B", "buy", 15, "nopx"), decided_on="2021-01-04")
    out = {o.client_order_id: o for o in b.fill_open("2021-01-05", pd.Series({"A": 10.0}))}
    assert out["ok"].status == "filled" and out["nopx"].status == "rejected" and out["nopx"].reject_reason == "no price"
    b.limits = None
    b.mark("2021-01-05", pd.Series({"A": 10.0}))
    b.submit(brokers.OrderRequest("A", "buy", 200, "cash"), decided_on="2021-01-05")
    (o,) = b.fill_open("2021-01-06", pd.Series({"A": 10.0}))
    assert o.status == "rejected" and o.reject_reason.startswith("insufficient cash")
    with pytest.raises(brokers.OrderNotFoundError):
        b.order_status("999")
    b.reset()
    assert paper.SimBroker(db, "r", initial_cash=5.0).account().cash == 5.0


# --------------------------------------------------------------------------- the daily step


@pytest.fixture(scope="module")
def model_db(tmp_path_factory):
    """A database with one DMN model trained on data up to 2020-12-31 (a candidate in scope 't')."""
    tmp = tmp_path_factory.mktemp("paper")
    url = f"sqlite:///{tmp / 'kit.db'}"
    row = paper.prepare_model(_cfg(tmp, "prep"), "2020-12-31", db=url, epochs=1, hidden_size=3, test_years=2)
    assert row["status"] in ("candidate", "active") and row["trained_on"] <= pd.Timestamp("2020-12-31").date()
    return tmp, url


def _cfg(tmp, account):
    return {
        "account": account, "scope": "t", "require_active": False, "symbols": SYMBOLS, "history_start": "2015-01-01",
        "state_dir": str(tmp / account), "limits": {"max_position": 0.4}, "cost_bps": 5.0, "slippage_bps": 2.0, "initial_cash": 100_000.0,
    }


def _orders(url, account):
    return paper.SimBroker(url, account).orders()


@pytest.mark.slow
def test_replay_equals_the_reference_backtest_and_a_second_run_trades_nothing(model_db):
    tmp, url = model_db
    cfg = _cfg(tmp, "replay")
    r = paper.replay("2021-01-04", "2021-02-12", cfg, db=url)
    assert len(r.days) == 29 and (r.days["status"] == "done").all()
    assert r.max_rel_diff < 1e-9
    assert r.reference.filled.abs().to_numpy().sum() > 0 and r.days["n_orders"].sum() > 0
    assert r.model_status.startswith(("active", "candidate"))
    n = len(_orders(url, "replay"))
    again = paper.run_day("2021-02-12", cfg, db=url)
    assert again.status == "already_done" and len(_orders(url, "replay")) == n
    # the ledger took one snapshot per symbol and day, and its chain verifies
    from kit.store import ledger

    assert ledger.verify(db=url).ok
    with pytest.raises(paper.PaperError, match="before the last completed"):
        paper.run_day("2020-12-31", cfg, db=url)  # never run, but before the last done day
    with pytest.raises(paper.PaperError, match="not a trading day"):
        paper.run_day("2021-02-13", cfg, db=url)  # a Saturday


@pytest.mark.slow
def test_lock_prevents_overlapping_steps_whatever_their_state_dir(model_db):
    """The lock lives with the database: a second step on the same account is refused even with
    another state_dir (another working folder, another machine sharing the database)."""
    from kit.store.engine import db_lock, get_engine

    tmp, url = model_db
    with db_lock(get_engine(url), "paper-locked"):  # as a first step holding the account would
        for state in ("a", "b"):
            cfg = {**_cfg(tmp, "locked"), "state_dir": str(tmp / f"elsewhere-{state}")}
            with pytest.raises(paper.PaperLockedError, match="another paper step for account 'locked'"):
                paper.run_day("2021-01-04", cfg, db=url)
        out = _cli(tmp, url, "locked", "2021-01-04")
        assert out.returncode == 75 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert paper.run_day("2021-01-04", _cfg(tmp, "locked"), db=url).status == "done"  # released


def _cli(tmp, url, account, as_of, crash=None):
    profile = tmp / f"{account}.yaml"
    cfg = _cfg(tmp, account)
    profile.write_text(json.dumps({"notebooks": ["40_paper_trade"], "paper": cfg}))
    env = {**os.environ, "KIT_DB_URL": url}
    env.pop("KIT_FAULT_AT", None)
    if crash:
        env["KIT_FAULT_AT"] = f"paper.{crash}"
    return subprocess.run([sys.executable, "-m", "kit", "paper", "--profile-file", str(profile), "--as-of", as_of], capture_output=True, text=True, env=env, cwd=ROOT)


CRASH_POINTS = ["after_fills", "after_journal", "after_first_submit", "after_submit", "before_done"]


@pytest.mark.slow
def test_processes_killed_mid_step_are_completed_by_the_next_run_without_double_orders(model_db):
    """Day 1 runs cleanly; on each later day a real process dies (os._exit, like SIGKILL) at one
    crash point of run_day, then the next run completes the day. The orders must equal those of an
    account that never crashed, with no client order id twice."""
    tmp, url = model_db
    days = ["2021-01-04", "2021-01-05", "2021-01-06", "2021-01-07", "2021-01-08", "2021-01-11"]
    account, clean = "crashy", "clean"
    assert paper.run_day(days[0], _cfg(tmp, account), db=url).status == "done"
    for day, crash in zip(days[1:], CRASH_POINTS, strict=True):
        died = _cli(tmp, url, account, day, crash=crash)
        assert died.returncode == 137, (crash, died.stderr[-2000:])
        assert paper.run_day(day, _cfg(tmp, account), db=url).status == "done", crash
        assert paper.run_day(day, _cfg(tmp, account), db=url).status == "already_done"
    for day in days:
        paper.run_day(day, _cfg(tmp, clean), db=url)
    orders = _orders(url, account)
    assert orders["client_order_id"].is_unique and len(orders) > 0
    hist = paper.paper_history(account, db=url)
    assert set(hist["runs"]["status"]) == {"done"} and len(hist["runs"]) == len(days)
    assert set(hist["orders"]["status"]) <= {"submitted", "filled", "rejected", "cancelled"}
    cols = ["symbol", "side", "qty", "decided_on", "status", "filled_avg_price"]
    got = orders[cols].sort_values(["decided_on", "symbol"]).reset_index(drop=True)
    want = _orders(url, clean)[cols].sort_values(["decided_on", "symbol"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, want, rtol=1e-12)
    eq = hist["runs"].set_index("as_of")["equity"]
    eq_clean = paper.paper_history(clean, db=url)["runs"].set_index("as_of")["equity"]
    pd.testing.assert_series_equal(eq.sort_index(), eq_clean.sort_index(), rtol=1e-12)


@pytest.mark.slow
def test_cli_paper_exit_codes(model_db):
    tmp, url = model_db
    out = _cli(tmp, url, "cli", "2021-01-09")  # a Saturday
    assert out.returncode == 2 and "not a trading day" in out.stderr


@pytest.mark.slow
def test_cli_alpaca_without_keys_is_a_clear_error_and_sends_nothing(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("APCA_")}
    env["KIT_DB_URL"] = f"sqlite:///{tmp_path / 'kit.db'}"
    out = subprocess.run([sys.executable, "-m", "kit", "paper", "--broker", "alpaca", "--as-of", "2021-04-21"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert out.returncode == 69 and "APCA_API_KEY_ID" in out.stderr and "Nothing was sent" in out.stderr


def test_load_history_takes_the_n_most_liquid_symbols_when_asked():
    from kit import data

    cfg = paper.PaperConfig(symbols="all", n_symbols=5, universe_as_of="2010-12-31", history_start="2010-01-01")
    bars = paper.load_history(cfg, "2011-03-31")
    _, _, want = data.load_universe(None, None, 5, "2010-12-31", "2010-01-01", "2011-03-31")
    assert sorted(bars["symbol"].unique()) == sorted(want) and len(want) == 5
    assert bars["date"].max() <= pd.Timestamp("2011-03-31")


@pytest.mark.slow
def test_switching_broker_with_open_orders_is_refused(model_db):
    tmp, url = model_db
    cfg = _cfg(tmp, "switch")
    assert paper.run_day("2021-01-04", cfg, db=url).status == "done"  # orders wait for the next open at the sim broker

    class OtherBroker(paper.SimBroker):
        name = "alpaca"

    with pytest.raises(paper.PaperError, match=r"open order\(s\) at broker 'sim'; refusing to trade it with broker 'alpaca'"):
        paper.run_day("2021-01-05", cfg, broker=OtherBroker(url, "switch"), db=url)
    assert paper.run_day("2021-01-05", cfg, db=url).status == "done"  # the sim broker carries on


@pytest.mark.slow
def test_a_corrupted_checkpoint_is_one_line_exit_65_and_the_day_is_recorded_failed(tmp_path):
    from kit.store import registry

    url = f"sqlite:///{tmp_path / 'kit.db'}"
    row = paper.prepare_model(_cfg(tmp_path, "prep"), "2020-12-31", db=url, epochs=1, hidden_size=3, test_years=2)
    Path(row["checkpoint_path"]).write_bytes(b"not a checkpoint any more")
    out = _cli(tmp_path, url, "corrupt", "2021-01-04")
    assert out.returncode == 65, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "CheckpointMismatchError" in out.stderr and "Traceback" not in out.stderr
    runs = paper.paper_history("corrupt", db=url)["runs"]
    assert list(runs["status"]) == ["failed"] and "CheckpointMismatchError" in runs["info"].iloc[0]["error"]
    assert registry.get_model(int(row["id"]), db=url)["status"] in ("candidate", "active")


@pytest.mark.slow
def test_a_tampered_ledger_stops_the_day_before_trading(model_db):
    import sqlalchemy as sa

    from kit.store import ledger
    from kit.store.engine import get_engine

    tmp, url = model_db
    engine = get_engine(url)
    cfg = _cfg(tmp, "tamper")
    assert paper.run_day("2021-01-04", cfg, db=url).status == "done"
    with engine.begin() as conn:  # one position edited in a SQL shell
        conn.execute(sa.text("UPDATE ledger_snapshots SET position = -position WHERE seq = (SELECT max(seq) FROM ledger_snapshots)"))
    n = len(_orders(url, "tamper"))
    with pytest.raises(ledger.TamperedLedgerError, match="ledger verification failed before trading"):
        paper.run_day("2021-01-05", cfg, db=url)
    assert len(_orders(url, "tamper")) == n  # nothing traded
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE ledger_snapshots SET position = -position WHERE seq = (SELECT max(seq) FROM ledger_snapshots)"))
    assert ledger.verify(db=url).ok


def test_paper_names_cannot_escape_the_state_folder():
    for bad in ("../../etc", "a/b", "", "x" * 65):
        with pytest.raises(ValueError, match="paper account must be"):
            paper.PaperConfig(account=bad)
    with pytest.raises(ValueError, match="paper target_vol must be a positive number"):
        paper.PaperConfig(target_vol="ten")


def test_a_forecaster_made_active_is_refused_before_its_weights_are_read(tmp_path):
    """The registry's gate may promote a forecaster (the LDTM, a foundation model); the paper loop
    trades position models, so it refuses one with its label, without loading its checkpoint."""
    from kit.live import daily
    from kit.store import registry
    from tests._ledger_worker import add_model

    db = f"sqlite:///{tmp_path / 'kit.db'}"
    mid = add_model(db, tmp_path, name="chronos_bolt", forecaster=True)  # the stand-in checkpoint is no torch file
    row = registry.get_model(mid, db=db)
    with pytest.raises(paper.PaperError, match=r"not the forecaster 'universe4-test_chronos_bolt_v1\.2020-12-31'"):
        daily._position_model(row, db)
