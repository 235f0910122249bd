"""kit.store.ledger: snapshots, bad inputs, fillback, leaderboard, the hash chain, and real-process
concurrency and crash tests.

Runs on SQLite by default and on PostgreSQL when ``KIT_DB_URL`` names one (scripts/postgres_test.sh).
"""

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from kit.store import engine as kdb
from kit.store import ledger
from kit.store import schema as S
from tests._ledger_worker import add_model, fresh_db, kill, predictions_for, spawn, synthetic_close, wait_for

D = pd.bdate_range("2021-01-04", periods=8)
HAND = pd.DataFrame({"A": [100, 110, 99, 99, 100, 120, 90, 100], "B": [50, 50, 55, 55, 55, 55, 55, 55]}, index=D, dtype=float)


@pytest.fixture
def url(tmp_path):
    with fresh_db(tmp_path) as u:
        yield u


@pytest.fixture
def model(url, tmp_path):
    return add_model(url, tmp_path)


def _count(url, table, where=None) -> int:
    stmt = sa.select(sa.func.count()).select_from(table)
    if where is not None:
        stmt = stmt.where(where)
    with kdb.get_engine(url).connect() as conn:
        return conn.execute(stmt).scalar()


def _state(url):
    """Everything a refused or killed call must leave untouched."""
    with kdb.get_engine(url).connect() as conn:
        snaps = conn.execute(sa.select(S.ledger_snapshots).order_by(S.ledger_snapshots.c.seq)).all()
        fcs = conn.execute(sa.select(S.ledger_forecasts).order_by(S.ledger_forecasts.c.id)).all()
        head = conn.execute(sa.select(S.ledger_head)).all()
    return [tuple(r) for r in snaps], [tuple(r) for r in fcs], [tuple(r) for r in head]


# ------------------------------------------------------------------------------------------------
# snapshot
# ------------------------------------------------------------------------------------------------


def test_snapshot_records_one_row_per_key_with_its_forecasts(url, model):
    pred = pd.DataFrame({"symbol": ["A", "B"], "run_date": [D[0], D[0]], "position": [0.3, -0.5], "forecast_1": [0.05, -0.01], "forecast_5": [-0.1, 0.02]})
    out = ledger.snapshot(pred, HAND, model, db=url)
    assert out["seq"].tolist() == [1, 2] and out["close"].tolist() == [100.0, 50.0]
    snaps = ledger.snapshots(db=url)
    assert snaps["symbol"].tolist() == ["A", "B"] and snaps["direction"].tolist() == [1, -1]  # sign of forecast_1
    assert snaps["forecast_1"].tolist() == [0.05, -0.01] and snaps["forecast_5"].tolist() == [-0.1, 0.02]
    assert snaps["forecast_21"].isna().all()  # no 21-day forecast: NULL, not NaN in the database
    assert _count(url, S.ledger_forecasts, S.ledger_forecasts.c.forecast.is_(None)) == 2
    assert snaps["prev_hash"].iloc[0] == ledger.GENESIS_HASH and snaps["prev_hash"].iloc[1] == snaps["hash"].iloc[0]
    assert ledger.verify(db=url).ok


def test_position_models_get_direction_from_the_position_and_null_forecasts(url, model):
    pred = pd.DataFrame({"symbol": ["A", "B", "A"], "run_date": [D[1], D[1], D[2]], "position": [-0.2, 0.0, 1.0]})
    ledger.snapshot(pred, HAND, model, db=url)
    snaps = ledger.snapshots(db=url)
    assert snaps["direction"].tolist() == [-1, 0, 1] and snaps["position"].tolist() == [-0.2, 0.0, 1.0]
    assert snaps[["forecast_1", "forecast_5", "forecast_21"]].isna().all().all()
    # direction only: the position defaults to the direction
    ledger.snapshot(pd.DataFrame({"symbol": ["B"], "run_date": [D[2]], "direction": [-1]}), HAND, model, db=url)
    assert ledger.snapshots(db=url)["position"].iloc[-1] == -1.0


def _base():
    return pd.DataFrame({"symbol": ["A", "B"], "run_date": [D[3], D[3]], "position": [0.5, -0.5], "forecast_1": [0.01, 0.02], "forecast_5": [0.0, 0.01]})


def _set(col, i, value):
    def f(p):
        p = p.copy()
        p[col] = p[col].astype(object) if not isinstance(value, float | int) else p[col]
        p.loc[i, col] = value
        return p

    return f


BAD_INPUTS = [
    ("NaN position", _set("position", 1, np.nan), ledger.NaNPredictionError, r"position is nan at symbol='B' run_date=2021-01-07"),
    ("infinite forecast", _set("forecast_1", 0, np.inf), ledger.NaNPredictionError, "forecast_1 is inf"),
    ("NaN 5-day forecast", _set("forecast_5", 1, np.nan), ledger.NaNPredictionError, "forecast_5 is nan"),
    ("NaN direction", lambda p: p.assign(direction=[1.0, np.nan]), ledger.NaNPredictionError, "direction is nan"),
    ("unknown symbol", _set("symbol", 1, "ZZZ"), ledger.UnknownSymbolError, r"\['ZZZ'\] not in the prices"),
    ("run date after the data", _set("run_date", 1, pd.Timestamp("2021-01-14")), ledger.FutureRunDateError,
     "run_date 2021-01-14 is after the prices' last date 2021-01-13"),
    ("run date on a weekend", _set("run_date", 0, pd.Timestamp("2021-01-09")), ledger.InvalidPredictionError, "2021-01-09 is not a trading day"),
    ("no close at the run date", lambda p: p.assign(symbol=["A", "C"]), ledger.InvalidPredictionError, r"no positive close at symbol='C'"),
    ("position out of range", _set("position", 0, 1.5), ledger.InvalidPredictionError, r"position must be in \[-1, 1\], got 1.5"),
    ("direction not a sign", lambda p: p.assign(direction=[1, 2]), ledger.InvalidPredictionError, "direction must be -1, 0 or 1, got 2"),
    ("forecast below -100%", _set("forecast_5", 0, -1.5), ledger.InvalidPredictionError, "forecast_5 must be a simple return > -1"),
    ("text in a number column", _set("position", 0, "high"), ledger.InvalidPredictionError, "position must be numeric"),
    ("unknown column", lambda p: p.assign(forecast_10=0.1), ledger.InvalidPredictionError, r"unknown prediction column\(s\) \['forecast_10'\]"),
    ("no symbol column", lambda p: p.drop(columns="symbol"), ledger.InvalidPredictionError, "needs a 'symbol' column"),
    ("no prediction column", lambda p: p[["symbol", "run_date"]], ledger.InvalidPredictionError, "needs a 'position', 'direction' or forecast"),
    ("missing symbol", _set("symbol", 0, None), ledger.InvalidPredictionError, "symbol is missing in row 0"),
    ("missing run date", _set("run_date", 0, None), ledger.InvalidPredictionError, "run_date is missing in row 0"),
    ("unparseable run date", _set("run_date", 0, "yesterday"), ledger.InvalidPredictionError, "run_date has a value that is not a date: Time data yesterday"),
    ("empty frame", lambda p: p.iloc[:0], ledger.InvalidPredictionError, "predictions is empty"),
    ("not a frame", lambda p: p.to_dict(), ledger.InvalidPredictionError, "predictions must be a DataFrame"),
    ("same key twice in one call", lambda p: pd.concat([p, p.iloc[:1]]), ledger.DuplicateSnapshotError, "appears 2 times in one call"),
]


@pytest.mark.parametrize(("case", "mutate", "exc", "match"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS])
def test_bad_input_is_refused_with_a_clear_error_and_nothing_written(url, model, case, mutate, exc, match):
    ledger.snapshot(pd.DataFrame({"symbol": ["A"], "run_date": [D[0]], "position": [0.1]}), HAND.assign(C=np.nan), model, db=url)
    before = _state(url)
    with pytest.raises(exc, match=match):
        ledger.snapshot(mutate(_base()), HAND.assign(C=np.nan), model, db=url)
    assert _state(url) == before
    assert ledger.verify(db=url).ok
    ledger.snapshot(_base(), HAND, model, db=url)  # the good batch goes in afterwards
    assert _count(url, S.ledger_snapshots) == 3


def test_a_second_snapshot_of_the_same_key_is_refused_never_overwritten(url, model, tmp_path):
    first = ledger.snapshot(_base(), HAND, model, db=url)
    before = _state(url)
    again = _base().assign(position=[-1.0, 1.0])
    with pytest.raises(ledger.DuplicateSnapshotError, match=r"2 prediction\(s\) already in the ledger, first symbol='A' run_date=2021-01-07"):
        ledger.snapshot(again, HAND, model, db=url)
    with pytest.raises(ledger.DuplicateSnapshotError, match="symbol='B'"):  # one clash in a batch refuses the whole batch
        ledger.snapshot(pd.concat([again.iloc[1:], again.iloc[:1].assign(run_date=D[4])]), HAND, model, db=url)
    assert _state(url) == before
    assert ledger.snapshots(db=url)["position"].tolist() == first["position"].tolist()
    # the same key for another model version is a different prediction
    other = add_model(url, tmp_path, trained_on="2021-01-29")
    ledger.snapshot(again, HAND, other, db=url)
    assert _count(url, S.ledger_snapshots) == 4


def test_unknown_model_is_refused(url, model):
    with pytest.raises(ledger.UnknownModelError, match="no model with id 999"):
        ledger.snapshot(_base(), HAND, 999, db=url)
    assert _count(url, S.ledger_snapshots) == 0
    from kit.store import registry

    assert issubclass(ledger.UnknownModelError, registry.UnknownModelError)


# ------------------------------------------------------------------------------------------------
# fillback
# ------------------------------------------------------------------------------------------------


def _hand_snapshot(url, model):
    fc = pd.DataFrame({"symbol": ["A"], "run_date": [D[0]], "position": [0.4], "forecast_1": [0.05], "forecast_5": [-0.1]})
    pos = pd.DataFrame({"symbol": ["B", "A"], "run_date": [D[0], D[1]], "position": [-0.5, 0.0]})
    ledger.snapshot(fc, HAND, model, db=url)
    ledger.snapshot(pos, HAND, model, db=url)


def test_fillback_hand_computed(url, model):
    _hand_snapshot(url, model)
    res = ledger.fillback(HAND, db=url)
    f = res.filled.set_index(["seq", "horizon"])
    # A on D0, h=1: target D1, actual 110, predicted 100 * 1.05 = 105 -> error 105/110 - 1; call +1, return +10%
    r = f.loc[(1, 1)]
    assert r["target_date"] == D[1] and r["actual_close"] == pytest.approx(110) and r["actual_return"] == pytest.approx(0.1)
    assert r["pct_error"] == pytest.approx(105 / 110 - 1, rel=1e-12) and r["direction_correct"]
    # A on D0, h=5: target D5 (120); predicted 90 -> error -25%; call -1 on a +20% move -> wrong
    r = f.loc[(1, 5)]
    assert r["target_date"] == D[5] and r["pct_error"] == pytest.approx(-0.25) and not r["direction_correct"]
    # B on D0, position model, h=1: return 0 -> a miss; no forecast -> no error
    r = f.loc[(2, 1)]
    assert r["actual_return"] == 0 and not pd.isna(r["direction_correct"]) and not r["direction_correct"] and np.isnan(r["pct_error"])
    # A on D1 with direction 0: no call, so neither right nor wrong
    assert pd.isna(f.loc[(3, 1), "direction_correct"])
    # 21-day horizons are not due on an 8-day calendar: neither filled nor skipped
    assert sorted(f.index) == [(1, 1), (1, 5), (2, 1), (2, 5), (3, 1), (3, 5)] and res.skipped.empty
    assert _count(url, S.ledger_forecasts, S.ledger_forecasts.c.filled_at.is_(None)) == 3
    out = ledger.outcomes(db=url).set_index("symbol")
    assert out.loc["B", "strategy_return"] == 0.0
    assert ledger.verify(db=url).ok


def test_fillback_is_idempotent_and_fills_the_rest_when_due(url, model):
    _hand_snapshot(url, model)
    first = ledger.fillback(HAND.iloc[:3], db=url)  # only horizon 1 is due on 3 days
    assert sorted(first.filled["horizon"].unique()) == [1] and first.n_filled == 3
    snap1 = _state(url)
    assert ledger.fillback(HAND.iloc[:3], db=url).n_filled == 0
    assert _state(url) == snap1  # a second run writes nothing
    second = ledger.fillback(HAND, db=url)
    assert sorted(second.filled["horizon"].unique()) == [5] and second.n_filled == 3
    assert ledger.fillback(HAND, db=url).n_filled == 0


def test_fillback_dry_run_lists_the_batch_and_writes_nothing(url, model):
    _hand_snapshot(url, model)
    before = _state(url)
    dry = ledger.fillback(HAND, dry_run=True, db=url)
    assert dry.dry_run and dry.n_filled == 6
    assert _state(url) == before
    real = ledger.fillback(HAND, db=url)
    pd.testing.assert_frame_equal(dry.filled, real.filled)
    assert ledger.fillback(HAND, dry_run=True, db=url).n_filled == 0


def test_fillback_as_of_and_price_basis(url, model):
    _hand_snapshot(url, model)
    assert ledger.fillback(HAND, as_of=D[0], db=url).n_filled == 0
    # the same series re-adjusted by a constant (a later dividend) gives the same outcome on the snapshot's basis
    res = ledger.fillback(HAND * 0.5, as_of=D[1], db=url)
    r = res.filled.set_index(["seq", "horizon"]).loc[(1, 1)]
    assert r["actual_close"] == pytest.approx(110) and r["pct_error"] == pytest.approx(105 / 110 - 1)


def test_fillback_skips_rows_without_prices_and_fills_them_later(url, model):
    _hand_snapshot(url, model)
    gap = HAND.copy()
    gap.loc[D[1], "B"] = np.nan
    res = ledger.fillback(gap, as_of=D[1], db=url)
    assert res.skipped[["seq", "horizon", "reason"]].values.tolist() == [[2, 1, "no positive price at the run date or the target date"]]
    assert ledger.fillback(HAND.drop(columns="B"), as_of=D[1], db=url).skipped["reason"].tolist() == ["symbol not in the prices"]
    assert ledger.fillback(HAND, as_of=D[1], db=url).filled["seq"].tolist() == [2]


# ------------------------------------------------------------------------------------------------
# leaderboard
# ------------------------------------------------------------------------------------------------

LB = pd.DataFrame({"A": [100, 101, 100, 101, 102, 101, 100], "B": [10, 10, 10, 10, 10, 10, 10]}, index=D[:7], dtype=float)


def _leaderboard_ledger(url, model):
    # A: returns + - + + - - ; positions 1, 1, -1, 1, 1 on D0..D4 -> right, wrong, wrong, right, wrong
    ledger.snapshot(pd.DataFrame({"symbol": "A", "run_date": D[:5], "position": [1, 1, -1, 1, 1.0]}), LB, model, db=url)
    ledger.snapshot(pd.DataFrame({"symbol": "A", "run_date": D[:5], "position": [1, 1, -1, 1, 1.0]}), LB, model + 1, db=url)
    ledger.fillback(LB, db=url)


def test_rolling_accuracy_and_leaderboard_hand_computed(url, model, tmp_path):
    add_model(url, tmp_path, trained_on="2021-02-26")
    _leaderboard_ledger(url, model)
    roll = ledger.rolling_accuracy(3, db=url)
    a = roll[roll["model_id"] == model]
    assert a["direction_accuracy"].tolist() == pytest.approx([1, 1 / 2, 1 / 3, 1 / 3, 1 / 3])
    assert a["n"].tolist() == [1, 2, 3, 3, 3] and a["mape"].isna().all()
    r = LB["A"].pct_change().shift(-1)
    expected = (1 - r.iloc[2]) * (1 + r.iloc[3]) * (1 + r.iloc[4]) - 1
    assert a["strategy_return"].iloc[-1] == pytest.approx(expected, rel=1e-12)
    lb = ledger.leaderboard(3, db=url)
    assert len(lb) == 2 and lb["n"].tolist() == [3, 3]
    assert lb["direction_accuracy"].tolist() == pytest.approx([1 / 3, 1 / 3]) and lb["strategy_return"].iloc[0] == pytest.approx(expected)
    assert lb["first_run_date"].iloc[0] == D[2].date() and lb["last_run_date"].iloc[0] == D[4].date()
    early = ledger.leaderboard(3, as_of=D[1], db=url)
    assert early["direction_accuracy"].tolist() == [0.5, 0.5] and early["n"].tolist() == [2, 2]
    with pytest.raises(ValueError, match="window"):
        ledger.leaderboard(0, db=url)
    with pytest.raises(ValueError, match="by must be"):
        ledger.leaderboard(by="sector", db=url)


def test_leaderboard_pools_symbols_per_model_and_uses_the_trading_calendar(url, model):
    ledger.snapshot(pd.DataFrame({"symbol": "A", "run_date": [D[0], D[2], D[3]], "position": [1, -1, 1.0]}), LB, model, db=url)
    ledger.snapshot(pd.DataFrame({"symbol": "B", "run_date": [D[3]], "position": [0.5]}), LB, model, db=url)
    ledger.fillback(LB, db=url)
    # on the trading calendar, a 2-day window at D3 holds D2 and D3 only (D0 is out even though D1 has no row)
    lb = ledger.leaderboard(2, calendar=LB.index, db=url).set_index("symbol")
    assert lb.loc["A", "n"] == 2 and lb.loc["A", "direction_accuracy"] == 0.5  # D2 wrong (+), D3 right (+)
    assert lb.loc["B", "n_calls"] == 1 and lb.loc["B", "direction_accuracy"] == 0.0  # a flat price is a miss
    pooled = ledger.leaderboard(2, by="model", calendar=LB.index, db=url)
    assert pooled["n"].tolist() == [3] and pooled["direction_accuracy"].iloc[0] == pytest.approx(1 / 3)
    rA = LB["A"].pct_change().shift(-1)
    assert pooled["strategy_return"].iloc[0] == pytest.approx((1 - rA.iloc[2]) * (1 + (rA.iloc[3] + 0.0) / 2) - 1)
    with pytest.raises(ValueError, match="not on the calendar"):
        ledger.leaderboard(2, calendar=LB.index[1:], db=url)


def test_empty_ledger_gives_empty_tables(url):
    assert ledger.leaderboard(db=url).empty and ledger.rolling_accuracy(db=url).empty and ledger.outcomes(db=url).empty
    rep = ledger.verify(db=url)
    assert rep.ok and rep.n_rows == 0


# ------------------------------------------------------------------------------------------------
# tamper evidence
# ------------------------------------------------------------------------------------------------


def _chain(url, model):
    close = synthetic_close(10, ("A", "B"))
    ledger.snapshot(predictions_for(close, ["A", "B"], close.index[:3]), close, model, db=url)  # seq 1..6
    ledger.fillback(close, db=url)
    assert ledger.verify(db=url).ok
    return close


def _sql(url, *statements):
    with kdb.get_engine(url).begin() as conn:
        for s in statements:
            conn.execute(sa.text(s))


FLIP = "{c} = CASE WHEN substr({c}, 1, 1) = 'f' THEN 'e' ELSE 'f' END || substr({c}, 2)"  # change the first hex digit


def _found(url):
    rep = ledger.verify(db=url)
    assert not rep.ok
    seqs = [None if pd.isna(x) else int(x) for x in rep.problems["seq"]]
    return sorted(zip(rep.problems["kind"], seqs, strict=True), key=lambda t: (t[0], -1 if t[1] is None else t[1]))


def test_verify_reports_an_edited_row(url, model):
    _chain(url, model)
    _sql(url, "UPDATE ledger_snapshots SET close = close * 1.01 WHERE seq = 3")
    assert _found(url) == [("edited", 3)]


def test_verify_reports_an_edited_forecast_and_a_deleted_forecast(url, model):
    _chain(url, model)
    _sql(url, "UPDATE ledger_forecasts SET forecast = 0.5 WHERE snapshot_seq = 2 AND horizon = 5",
         "DELETE FROM ledger_forecasts WHERE snapshot_seq = 5 AND horizon = 21")
    assert _found(url) == [("edited", 2), ("edited", 5)]


def test_verify_reports_an_edit_rehashed_without_the_key(url, model):
    _chain(url, model)
    with kdb.get_engine(url).begin() as conn:
        r = conn.execute(sa.select(S.ledger_snapshots).where(S.ledger_snapshots.c.seq == 3)).mappings().one()
        fcs = conn.execute(sa.select(S.ledger_forecasts.c.horizon, S.ledger_forecasts.c.forecast).where(S.ledger_forecasts.c.snapshot_seq == 3)).all()
        text = ledger._canonical_snapshot(3, r["model_id"], r["symbol"], r["run_date"], r["close"], r["direction"], -r["position"], r["recorded_at"], fcs)
        conn.execute(S.ledger_snapshots.update().where(S.ledger_snapshots.c.seq == 3).values(position=-r["position"], hash=ledger._sha(r["prev_hash"], text)))
    found = _found(url)  # re-hashed with plain sha256: the keyed hash shows the edit itself
    assert ("broken_link", 4) in found and ("edited", 3) in found


def test_verify_reports_deleted_rows_in_the_middle_and_at_the_end(url, model):
    _chain(url, model)
    _sql(url, "DELETE FROM ledger_forecasts WHERE snapshot_seq = 3", "DELETE FROM ledger_snapshots WHERE seq = 3")
    assert _found(url) == [("fills_removed", None), ("missing", 3)]  # seq 3's filled outcomes went with it
    _sql(url, "DELETE FROM ledger_forecasts WHERE snapshot_seq = 6", "DELETE FROM ledger_snapshots WHERE seq = 6")
    assert _found(url) == [("fills_removed", None), ("head", 6), ("missing", 3), ("truncated", 6)]


def test_a_tampered_head_stops_further_snapshots(url, model):
    close = _chain(url, model)
    _sql(url, "DELETE FROM ledger_forecasts WHERE snapshot_seq = 6", "DELETE FROM ledger_snapshots WHERE seq = 6")
    with pytest.raises(ledger.TamperedLedgerError, match="does not match its rows"):
        ledger.snapshot(predictions_for(close, ["A"], close.index[5:6]), close, model, db=url)


def test_verify_reports_inserted_rows(url, model):
    _chain(url, model)
    with kdb.get_engine(url).begin() as conn:
        last = conn.execute(sa.select(S.ledger_snapshots).where(S.ledger_snapshots.c.seq == 6)).mappings().one()
        text = ledger._canonical_snapshot(7, model, "A", "2021-01-15", 100.0, 1, 1.0, "2021-01-15T00:00:00.000000Z", [])
        conn.execute(S.ledger_snapshots.insert().values(
            seq=7, model_id=model, symbol="A", run_date=pd.Timestamp("2021-01-15").date(), close=100.0, direction=1, position=1.0,
            recorded_at="2021-01-15T00:00:00.000000Z", prev_hash=last["hash"], hash=ledger._sha(last["hash"], text)))
    assert _found(url) == [("edited", 7), ("head", 6)]  # hashed without the key: a forgery
    _sql(url, f"UPDATE ledger_snapshots SET {FLIP.format(c='hash')} WHERE seq = 7")
    assert _found(url) == [("edited", 7), ("head", 6)]


def test_verify_reports_an_edited_outcome(url, model):
    _chain(url, model)
    _sql(url, "UPDATE ledger_forecasts SET actual_close = actual_close + 1 WHERE snapshot_seq = 4 AND horizon = 1")
    assert _found(url) == [("edited_fill", 4)]


def test_verify_detects_any_single_field_edit(tmp_path):
    fields = {
        "close": "close = close + 0.0001", "position": "position = -position", "direction": "direction = -direction",
        "symbol": "symbol = 'X'", "recorded_at": "recorded_at = '2000-01-01T00:00:00.000000Z'",
        "run_date": "run_date = '2030-01-02'", "prev_hash": FLIP.format(c="prev_hash"),
    }
    with fresh_db(tmp_path) as url:
        model = add_model(url, tmp_path)
        _chain(url, model)
        original = _state(url)

        @settings(max_examples=20, deadline=None, derandomize=True)
        @given(st.integers(1, 6), st.sampled_from(sorted(fields)))
        def check(seq, name):
            with kdb.get_engine(url).begin() as conn:
                row = conn.execute(sa.select(S.ledger_snapshots).where(S.ledger_snapshots.c.seq == seq)).mappings().one()
                conn.execute(sa.text(f"UPDATE ledger_snapshots SET {fields[name]} WHERE seq = {seq}"))
            try:
                found = ledger.verify(db=url).problems
                assert seq in found["seq"].tolist(), (seq, name)
            finally:
                with kdb.get_engine(url).begin() as conn:
                    conn.execute(S.ledger_snapshots.update().where(S.ledger_snapshots.c.seq == seq).values(**{name: row[name]}))
            assert _state(url) == original and ledger.verify(db=url).ok

        check()


# ------------------------------------------------------------------------------------------------
# real processes: concurrency and crashes
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_processes_snapshotting_at_once_lose_nothing(url, model, tmp_path):
    close = synthetic_close()
    dates = [d.date().isoformat() for d in close.index[:15]]
    go = tmp_path / "go"
    procs = []
    for i, syms in enumerate((["AAA", "BBB"], ["CCC", "DDD"])):
        ready = tmp_path / f"ready{i}"
        procs.append(spawn("snapshot", url=url, model_id=model, symbols=syms, dates=dates, go_file=str(go), ready_file=str(ready), seed=i))
    for i, p in enumerate(procs):
        wait_for(tmp_path / f"ready{i}", p)
    go.write_text("go")  # both start their 15 one-date transactions at the same moment
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
        assert '"written": 30, "refused": []' in out
    snaps = ledger.snapshots(db=url)
    assert len(snaps) == 60 and snaps["seq"].tolist() == list(range(1, 61))
    assert len(snaps.drop_duplicates(["symbol", "run_date"])) == 60
    assert _count(url, S.ledger_forecasts) == 180
    rep = ledger.verify(db=url)
    assert rep.ok, rep.problems
    # the two writers interleaved (neither waited for the other to finish all 15 calls)
    firsts = snaps.groupby(snaps["symbol"].isin(["AAA", "BBB"]))["seq"].agg(["min", "max"])
    assert firsts["min"].max() < firsts["max"].min()


@pytest.mark.slow
def test_two_processes_snapshotting_the_same_keys_one_wins_one_is_refused(url, model, tmp_path):
    close = synthetic_close()
    dates = [d.date().isoformat() for d in close.index[:10]]
    go = tmp_path / "go"
    procs = []
    for i in range(2):
        procs.append(spawn("snapshot", url=url, model_id=model, symbols=["AAA", "BBB", "CCC"], dates=dates, go_file=str(go),
                           ready_file=str(tmp_path / f"ready{i}"), per_date=False, seed=i))
    for i, p in enumerate(procs):
        wait_for(tmp_path / f"ready{i}", p)
    go.write_text("go")
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert sorted('"written": 30, "refused": []' in o for o in outs) == [False, True]
    loser = next(o for o in outs if '"written": 0' in o)
    assert "already in the ledger" in loser
    snaps = ledger.snapshots(db=url)
    assert len(snaps) == 30 and snaps["seq"].tolist() == list(range(1, 31))
    assert ledger.verify(db=url).ok


@pytest.mark.slow
def test_a_process_killed_inside_a_snapshot_writes_nothing(url, model, tmp_path):
    close = synthetic_close()
    ledger.snapshot(predictions_for(close, ["AAA"], close.index[:2]), close, model, db=url)
    before = _state(url)
    ready = tmp_path / "ready"
    proc = spawn("snapshot_pause", url=url, model_id=model, symbols=["BBB", "CCC"], dates=[d.date().isoformat() for d in close.index[:5]],
                 ready_file=str(ready))
    wait_for(ready, proc)  # rows and head are written, not committed
    kill(proc)
    kdb.dispose_engines()
    assert _state(url) == before and ledger.verify(db=url).ok
    ledger.snapshot(predictions_for(close, ["BBB", "CCC"], close.index[:5]), close, model, db=url)  # not refused as a duplicate
    assert _count(url, S.ledger_snapshots) == 12 and ledger.verify(db=url).ok


@pytest.mark.slow
def test_a_process_killed_between_snapshot_and_fillback_leaves_pending_rows_the_next_run_fills(url, model, tmp_path):
    close = synthetic_close()
    dates = [d.date().isoformat() for d in close.index[:20]]
    ready = tmp_path / "ready"
    proc = spawn("snapshot_then_wait", url=url, model_id=model, symbols=["AAA", "BBB"], dates=dates, ready_file=str(ready))
    wait_for(ready, proc)
    kill(proc)
    kdb.dispose_engines()
    assert _count(url, S.ledger_snapshots) == 40
    assert _count(url, S.ledger_forecasts, S.ledger_forecasts.c.filled_at.is_not(None)) == 0
    assert ledger.verify(db=url).ok
    res = ledger.fillback(close, db=url)
    # 60 days: run dates 0..19; horizon 1 and 5 always due, horizon 21 due for run dates 0..38
    assert res.n_filled == 40 * 3
    assert ledger.fillback(close, db=url).n_filled == 0 and ledger.verify(db=url).n_filled == 120


@pytest.mark.slow
def test_a_process_killed_in_the_middle_of_a_fillback_batch_fills_nothing_and_the_next_run_completes(url, model, tmp_path):
    close = synthetic_close()
    ledger.snapshot(predictions_for(close, ["AAA", "BBB", "CCC", "DDD"], close.index[:30]), close, model, db=url)
    expected = ledger.fillback(close, dry_run=True, db=url)
    assert expected.n_filled == 4 * 30 * 3
    before = _state(url)
    ready = tmp_path / "ready"
    proc = spawn("fillback_pause", url=url, ready_file=str(ready))
    wait_for(ready, proc)  # every UPDATE of the batch is executed, the commit is not
    kill(proc)
    kdb.dispose_engines()
    assert _state(url) == before
    assert _count(url, S.ledger_forecasts, S.ledger_forecasts.c.filled_at.is_not(None)) == 0
    if not url.startswith("postgresql"):
        with kdb.get_engine(url).connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    res = ledger.fillback(close, db=url)
    pd.testing.assert_frame_equal(res.filled, expected.filled)
    rep = ledger.verify(db=url)
    assert rep.ok and rep.n_filled == 360


def test_predictions_frame_and_skip_existing(url, model):
    close = synthetic_close(10, ("A", "B"))
    pos = pd.DataFrame(0.5, index=close.index, columns=close.columns)
    pos.iloc[0, 0] = np.nan  # no prediction for A on the first day
    f1 = pos * 0.01
    p = ledger.predictions_frame(pos, {1: f1}, last=3)
    assert p.columns.tolist() == ["symbol", "run_date", "position", "forecast_1"] and len(p) == 6
    assert p["run_date"].min() == close.index[-3]
    assert len(ledger.predictions_frame(pos)) == 19
    with pytest.raises(ValueError, match="other dates or symbols"):
        ledger.predictions_frame(pos, {1: f1.iloc[1:]})
    with pytest.raises(ValueError, match="give positions"):
        ledger.predictions_frame()
    first = ledger.snapshot(ledger.predictions_frame(pos, last=5), close, model, db=url)
    assert len(first) == 10
    with pytest.raises(ledger.DuplicateSnapshotError):
        ledger.snapshot(ledger.predictions_frame(pos, last=7), close, model, db=url)
    before = ledger.snapshots(db=url)
    added = ledger.snapshot(ledger.predictions_frame(-pos, last=7), close, model, skip_existing=True, db=url)
    assert len(added) == 4 and added["seq"].tolist() == [11, 12, 13, 14]
    after = ledger.snapshots(db=url)
    pd.testing.assert_frame_equal(after.iloc[:10], before)  # recorded predictions untouched
    assert ledger.snapshot(ledger.predictions_frame(pos, last=7), close, model, skip_existing=True, db=url).empty
    assert ledger.verify(db=url).ok


def test_rolling_accuracy_per_model_pools_symbols(url, model):
    ledger.snapshot(pd.DataFrame({"symbol": "A", "run_date": [D[0], D[2], D[3]], "position": [1, -1, 1.0]}), LB, model, db=url)
    ledger.snapshot(pd.DataFrame({"symbol": "B", "run_date": [D[3]], "position": [0.5]}), LB, model, db=url)
    ledger.fillback(LB, db=url)
    roll = ledger.rolling_accuracy(2, by="model", calendar=LB.index, db=url)
    assert roll["run_date"].tolist() == [D[0], D[2], D[3]] and roll["n"].tolist() == [1, 1, 3]
    assert roll["direction_accuracy"].tolist() == pytest.approx([1.0, 0.0, 1 / 3])
    lb = ledger.leaderboard(2, by="model", calendar=LB.index, db=url)
    assert roll["strategy_return"].iloc[-1] == pytest.approx(lb["strategy_return"].iloc[0])


def _rechain(url, key, from_seq=1, position_of=None):
    """An attacker re-hashes every row from ``from_seq`` on (with ``key``, or plain sha256 when None)
    and repoints the head: the chain is then internally consistent."""
    with kdb.get_engine(url).begin() as conn:
        rows = conn.execute(sa.select(S.ledger_snapshots).order_by(S.ledger_snapshots.c.seq)).mappings().all()
        prev = ledger.GENESIS_HASH
        for r in rows:
            if r["seq"] >= from_seq:
                fcs = conn.execute(sa.select(S.ledger_forecasts.c.horizon, S.ledger_forecasts.c.forecast)
                                   .where(S.ledger_forecasts.c.snapshot_seq == r["seq"])).all()
                pos = position_of(r) if position_of else r["position"]
                text = ledger._canonical_snapshot(r["seq"], r["model_id"], r["symbol"], r["run_date"], r["close"], r["direction"], pos,
                                                  r["recorded_at"], fcs)
                h = ledger._sha(prev, text, key)
                conn.execute(S.ledger_snapshots.update().where(S.ledger_snapshots.c.seq == r["seq"]).values(position=pos, prev_hash=prev, hash=h))
                prev = h
            else:
                prev = r["hash"]
        conn.execute(S.ledger_head.update().values(last_seq=rows[-1]["seq"], last_hash=prev))


@pytest.mark.parametrize("attack", ["truncate_and_repoint_head", "edit_and_rechain_with_hashlib", "edit_and_rechain_with_the_key",
                                    "forge_a_row_with_hashlib", "remove_a_fill"])
def test_attacks_without_the_key_or_the_anchor_file_are_detected(url, model, attack):
    """The issue's attacks: a tail truncation with the head repointed by one SQL update, a row edited
    and re-chained with plain hashlib (or even with the key, when the anchor file is out of reach),
    a forged row, a removed outcome. Each one is reported; a clean chain is not."""
    _chain(url, model)
    engine = kdb.get_engine(url)
    if attack == "truncate_and_repoint_head":
        with engine.begin() as conn:
            h4 = conn.execute(sa.select(S.ledger_snapshots.c.hash).where(S.ledger_snapshots.c.seq == 4)).scalar()
        _sql(url, "DELETE FROM ledger_forecasts WHERE snapshot_seq > 4", "DELETE FROM ledger_snapshots WHERE seq > 4",
             f"UPDATE ledger_head SET last_seq = 4, last_hash = '{h4}'")
        assert ("truncated", 6) in _found(url)
    elif attack == "edit_and_rechain_with_hashlib":
        _rechain(url, None, from_seq=2, position_of=lambda r: -r["position"] if r["seq"] == 2 else r["position"])
        found = _found(url)
        assert ("edited", 2) in found and ("anchor_mismatch", 6) in found
    elif attack == "edit_and_rechain_with_the_key":
        _rechain(url, ledger.ledger_key(engine), from_seq=2, position_of=lambda r: -r["position"] if r["seq"] == 2 else r["position"])
        found = _found(url)
        assert not any(k == "edited" for k, _ in found)  # the key holder re-hashed consistently ...
        assert ("anchor_mismatch", 6) in found  # ... but the anchored head no longer matches
    elif attack == "forge_a_row_with_hashlib":
        _sql(url, "DELETE FROM ledger_forecasts WHERE snapshot_seq = 6")
        _rechain(url, None, from_seq=6, position_of=lambda r: 0.5)
        assert ("edited", 6) in _found(url)
    elif attack == "remove_a_fill":
        _sql(url, "UPDATE ledger_forecasts SET target_date = NULL, actual_close = NULL, actual_return = NULL, pct_error = NULL, "
                  "direction_correct = NULL, filled_at = NULL, fill_hash = NULL WHERE snapshot_seq = 2 AND horizon = 1")
        assert _found(url) == [("fills_removed", None)]


def test_verify_needs_the_key_of_a_keyed_ledger(url, model, monkeypatch):
    _chain(url, model)
    engine = kdb.get_engine(url)
    ledger.key_path(engine).rename(ledger.key_path(engine).with_suffix(".moved"))
    assert _found(url) == [("key", None)]
    close = synthetic_close(10, ("A", "B"))
    with pytest.raises(ledger.TamperedLedgerError, match="no key was found"):
        ledger.snapshot(predictions_for(close, ["A"], close.index[5:6]), close, model, db=url)
    monkeypatch.setenv("KIT_LEDGER_KEY_FILE", str(ledger.key_path(engine).with_suffix(".moved")))
    assert ledger.verify(db=url).ok


def test_a_missing_anchor_file_is_reported(url, model):
    _chain(url, model)
    ledger.anchor_path(kdb.get_engine(url)).unlink()
    assert _found(url) == [("anchor", None)]


# ------------------------------------------------------------------------------------------------
# quantile forecasts (schema version 5)
# ------------------------------------------------------------------------------------------------


def _quantile_predictions(close, symbols, dates, seed=0):
    p = predictions_for(close, symbols, dates, seed=seed)
    for h in (1, 5, 21):
        w = 0.02 * np.sqrt(h)
        p[f"forecast_q10_{h}"] = (p[f"forecast_{h}"] - w).round(6)
        p[f"forecast_q90_{h}"] = (p[f"forecast_{h}"] + w).round(6)
    return p


def test_quantile_forecasts_are_recorded_read_and_chained(url, model):
    close = synthetic_close(40, ("A", "B"))
    p = _quantile_predictions(close, ["A", "B"], close.index[:3])
    ledger.snapshot(p, close, model, db=url)
    ledger.snapshot(predictions_for(close, ["A", "B"], close.index[3:4], seed=1), close, model, db=url)  # a point forecaster's rows
    snaps = ledger.snapshots(db=url)
    for h in (1, 5, 21):
        np.testing.assert_array_equal(snaps[f"forecast_q10_{h}"].iloc[:6].astype(float), p[f"forecast_q10_{h}"])
        np.testing.assert_array_equal(snaps[f"forecast_q90_{h}"].iloc[:6].astype(float), p[f"forecast_q90_{h}"])
        assert snaps[f"forecast_q10_{h}"].iloc[6:].isna().all()
    assert ledger.verify(db=url).ok
    ledger.fillback(close, db=url)
    o = ledger.outcomes(horizon=5, db=url)
    assert {"forecast_q10", "forecast_q90"} <= set(o.columns) and o["forecast_q10"].notna().sum() == 6
    assert (o["forecast_q10"] <= o["forecast"]).where(o["forecast_q10"].notna(), True).all()
    assert ledger.verify(db=url).ok
    # a quantile is bound into the chain: editing it, or removing both of a row's, shows
    _sql(url, "UPDATE ledger_forecasts SET forecast_q90 = forecast_q90 + 0.01 WHERE snapshot_seq = 2 AND horizon = 21",
         "UPDATE ledger_forecasts SET forecast_q10 = NULL, forecast_q90 = NULL WHERE snapshot_seq = 4 AND horizon = 1")
    assert _found(url) == [("edited", 2), ("edited", 4)]


def test_rows_without_quantiles_hash_exactly_as_before_version_5():
    """The canonical text of a row without quantiles is the pre-version-5 one, written out by hand."""
    args = (7, 3, "AAPL", pd.Timestamp("2021-01-05"), 131.01, 1, 0.25, "2021-01-05T21:00:00+00:00")
    want = ('{"close":131.01,"direction":1,"forecasts":[[1,0.004],[5,null],[21,-0.01]],"model_id":3,"position":0.25,'
            '"recorded_at":"2021-01-05T21:00:00+00:00","run_date":"2021-01-05","seq":7,"symbol":"AAPL"}')
    assert ledger._canonical_snapshot(*args, [(21, -0.01), (1, 0.004), (5, None)]) == want
    assert ledger._canonical_snapshot(*args, [(1, 0.004, None, None), (5, None, None, None), (21, -0.01, None, None)]) == want
    with_q = ledger._canonical_snapshot(*args, [(1, 0.004, -0.01, 0.02), (5, None, None, None), (21, -0.01, None, None)])
    assert '"forecasts":[[1,0.004,-0.01,0.02],[5,null],[21,-0.01]]' in with_q


def test_a_ledger_written_before_version_5_still_verifies_after_the_upgrade(tmp_path, monkeypatch):
    """Rows written at schema version 3 (no quantile columns) keep verifying once the database is
    upgraded; quantile rows appended after them chain on."""
    if "postgresql" in str(kdb.default_url()):
        pytest.skip("SQLite file upgraded in place")
    url = f"sqlite:///{tmp_path / 'old.db'}"
    old = [m for m in S.MIGRATIONS if m[0] <= 3]
    monkeypatch.setattr(kdb, "MIGRATIONS", old)
    try:
        mid = add_model(url, tmp_path)
        close = synthetic_close(40, ("A", "B"))
        ledger.snapshot(predictions_for(close, ["A", "B"], close.index[:3]), close, mid, db=url)
        ledger.fillback(close, as_of=close.index[10], db=url)
        assert kdb.schema_version(url) == 3
        with kdb.get_engine(url).connect() as conn:
            assert "forecast_q10" not in {c["name"] for c in sa.inspect(conn).get_columns("ledger_forecasts")}
        monkeypatch.setattr(kdb, "MIGRATIONS", S.MIGRATIONS)
        assert kdb.ensure_schema(kdb.get_engine(url)) == S.LATEST_VERSION
        assert ledger.verify(db=url).ok
        ledger.snapshot(_quantile_predictions(close, ["A", "B"], close.index[3:5]), close, mid, db=url)
        ledger.fillback(close, db=url)
        rep = ledger.verify(db=url)
        assert rep.ok and rep.n_rows == 10
    finally:
        kdb.dispose_engines()


@pytest.mark.parametrize(
    "mutate, match",
    [
        (lambda p: p.drop(columns=["forecast_q90_5"]), "forecast_q10_5 given without forecast_q90_5"),
        (lambda p: p.drop(columns=["forecast_5"]), "quantiles of horizon 5 given without forecast_5"),
        (lambda p: p.assign(forecast_q10_1=p["forecast_1"] + 0.001), r"forecast_q10_1 <= forecast_1 <= forecast_q90_1"),
        (lambda p: p.assign(forecast_q90_21=p["forecast_21"] - 0.001), r"forecast_q10_21 <= forecast_21 <= forecast_q90_21"),
        (lambda p: p.assign(forecast_q10_1=np.nan), "forecast_q10_1 is nan"),
        (lambda p: p.assign(forecast_q10_1=-1.0), "forecast_q10_1 must be a simple return > -1"),
        (lambda p: p.assign(forecast_q50_1=0.0), "unknown prediction column"),
    ],
)
def test_bad_quantiles_are_refused_and_nothing_written(url, model, mutate, match):
    close = synthetic_close(30, ("A", "B"))
    p = mutate(_quantile_predictions(close, ["A", "B"], close.index[:2]))
    before = _state(url)
    with pytest.raises(ledger.LedgerError, match=match):
        ledger.snapshot(p, close, model, db=url)
    assert _state(url) == before


def test_predictions_frame_takes_quantile_forecasts(url, model):
    close = synthetic_close(12, ("A", "B"))
    mid = {h: pd.DataFrame(0.001 * h, index=close.index, columns=close.columns) for h in (1, 5, 21)}
    mid[1].iloc[0, 1] = np.nan  # no forecast for B on the first day
    qf = {0.1: {h: f - 0.01 for h, f in mid.items()}, 0.5: mid, 0.9: {h: f + 0.01 for h, f in mid.items()}}
    pos = pd.DataFrame(0.3, index=close.index, columns=close.columns)
    p = ledger.predictions_frame(pos, quantile_forecasts=qf, last=4)
    assert p.columns.tolist() == ["symbol", "run_date", "position", "forecast_1", "forecast_5", "forecast_21", "forecast_q10_1",
                                  "forecast_q90_1", "forecast_q10_5", "forecast_q90_5", "forecast_q10_21", "forecast_q90_21"]
    assert len(p) == 8
    np.testing.assert_allclose(p["forecast_q90_5"] - p["forecast_5"], 0.01)
    assert len(ledger.predictions_frame(pos, mid, quantile_forecasts=qf)) == 23  # the median may come twice, if equal
    with pytest.raises(ValueError, match="give the median once"):
        ledger.predictions_frame(pos, {h: f * 2 for h, f in mid.items()}, quantile_forecasts=qf)
    with pytest.raises(ValueError, match="give both 0.1 and 0.9"):
        ledger.predictions_frame(pos, mid, quantile_forecasts={0.1: qf[0.1]})
    with pytest.raises(ValueError, match="without its median"):
        ledger.predictions_frame(pos, quantile_forecasts={0.1: qf[0.1], 0.9: qf[0.9]})
    with pytest.raises(ValueError, match="levels must be among"):
        ledger.predictions_frame(pos, quantile_forecasts={0.25: qf[0.1]})
    written = ledger.snapshot(p, close, model, db=url)
    assert len(written) == 8 and ledger.verify(db=url).ok
    snaps = ledger.snapshots(db=url)
    np.testing.assert_allclose(snaps["forecast_q10_21"].astype(float), 0.021 - 0.01)
