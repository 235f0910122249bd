"""kit.live.loop and ``python -m kit daily``: the monitor settings (unknown keys named), the day's loop
on a synthetic price panel with a planted drift (a retraining is triggered and goes through the gate)
and without one (no drift, no retraining), idempotency per day (a second run does nothing: no trade,
no push, no webhook, no retraining), a crash after a retraining (not repeated), the exit statuses
(0, 3 when something needs a person, 2 for a day without data), the metrics pushed to a fake
Pushgateway and the webhook's alert.

The real Pushgateway and Prometheus: tests/test_monitoring_live.py (scripts/prometheus_test.sh).
"""

import numpy as np
import pandas as pd
import pytest
import yaml

from kit import cli, live
from kit.base.config import ConfigError
from kit.base.faults import set_hook
from kit.live import loop
from kit.live import monitoring as mon
from kit.store import monitoring as M
from kit.store import registry
from tests.test_monitoring import FakeServer, samples

SYMBOLS = [f"S{i:02d}" for i in range(24)]
DAYS = pd.bdate_range("2015-01-01", periods=1100)
TRAIN_UNTIL = DAYS[899]
DRIFT_FROM = 950  # the planted drift starts here, after the model's training window
CHECK_DAY = DAYS[1050]  # the recent window (63 days) lies inside the drift


def synthetic_store(path, drift: float, seed: int = 3) -> str:
    """A Parquet store of 24 random walks (1.5% daily volatility); from day 950 on, ``drift`` is added
    to the daily log returns of the first 12 and taken from the other 12 (the stocks drift apart: the
    spread of every momentum feature across stocks widens, which the loop's demeaned check sees)."""
    rng = np.random.default_rng(seed)
    r = rng.normal(0.0, 0.015, (len(DAYS), len(SYMBOLS)))
    r[DRIFT_FROM:, :12] += drift
    r[DRIFT_FROM:, 12:] -= drift
    close = 50.0 * np.exp(np.cumsum(r, axis=0))
    rows = []
    for j, s in enumerate(SYMBOLS):
        c = close[:, j]
        o = c * (1 + rng.normal(0, 0.002, len(c)))
        rows.append(pd.DataFrame({"symbol": s, "date": DAYS, "open": o, "high": np.maximum(o, c) * 1.005, "low": np.minimum(o, c) * 0.995,
                                  "close": c, "adjusted_close": c, "volume": rng.integers(10_000, 50_000, len(c)).astype("int64"),
                                  "dividend_amount": 0.0, "split_coefficient": 1.0}))
    pd.concat(rows, ignore_index=True).to_parquet(path)
    return str(path)


def paper_cfg(tmp, data_path, account="acct"):
    return {"account": account, "scope": "synth", "require_active": True, "data_path": data_path, "symbols": SYMBOLS,
            "history_start": "2015-01-01", "state_dir": str(tmp / f"state-{account}"), "limits": {"max_position": 0.2}}


MONITOR = {"retrain": {"every_n_days": None, "on_drift": True, "epochs": 1, "test_size": 63, "folds": 2},
           "gate": {"min_direction_accuracy": 0.0}, "drawdown_limit": 0.5}


def _world(tmp_path_factory, name, drift):
    tmp = tmp_path_factory.mktemp(name)
    data = synthetic_store(tmp / "prices.parquet", drift)
    url = f"sqlite:///{tmp / 'kit.db'}"
    row = live.prepare_model(paper_cfg(tmp, data), TRAIN_UNTIL, db=url, epochs=1, hidden_size=3, test_years=2, gate={"min_direction_accuracy": 0.0})
    assert row["status"] == "active" and pd.Timestamp(row["trained_on"]) <= TRAIN_UNTIL
    return tmp, data, url


@pytest.fixture(scope="module")
def drifted(tmp_path_factory):
    return _world(tmp_path_factory, "drifted", 0.006)


@pytest.fixture(scope="module")
def undrifted(tmp_path_factory):
    return _world(tmp_path_factory, "undrifted", 0.0)


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


# --------------------------------------------------------------------------- settings


def test_monitor_settings_name_unknown_keys_at_every_level():
    m = loop.MonitorConfig.from_dict({"drift": {"ks_alpha": 0.01}, "retrain": {"every_n_days": 21}, "gate": {"min_folds": 3}})
    assert m.drift.ks_alpha == 0.01 and m.retrain.every_n_days == 21 and m.gate.min_folds == 3 and m.drawdown_limit == 0.2
    cases = [
        ({"drift_limit": 0.1}, r"monitor: unknown key 'drift_limit' \(did you mean 'drift'\?\)"),
        ({"drift": {"stride": 5}}, r"monitor.drift: unknown key 'stride' \(did you mean 'sample_stride'\?\)"),
        ({"retrain": {"every_n_day": 5}}, r"retrain: unknown key 'every_n_day' \(did you mean 'every_n_days'\?\)"),
        ({"gate": {"min_accuracy": 0.5}}, r"monitor.gate: unknown key 'min_accuracy'"),
    ]
    for d, match in cases:
        with pytest.raises(ConfigError, match=match):
            loop.MonitorConfig.from_dict(d)
    for d, match in [({"drawdown_limit": 0}, "drawdown_limit"), ({"drawdown_limit": 1.5}, "drawdown_limit"),
                     ({"drift": {"ks_alpha": 1.0}}, "ks_alpha"), ({"drift": {"sample_stride": 0}}, "sample_stride"),
                     ({"pushgateway_url": "localhost:9091"}, "http:// or https://"), ({"validation_days": 1}, "validation_days"),
                     ({"drift": [1]}, "monitor drift must be a mapping"), ({"drift": {"require_psi": "yes"}}, "require_psi")]:
        with pytest.raises(ValueError, match=match):
            loop.MonitorConfig.from_dict(d)


def test_the_shipped_profiles_monitor_sections_are_valid():
    from kit import reports
    from kit.paths import PARAMS_DIR

    for name in ("paper", "monitor"):
        prof = yaml.safe_load((PARAMS_DIR / f"{name}.yaml").read_text())
        loop.MonitorConfig.from_dict(prof["monitor"])
        live.PaperConfig.from_dict(prof["paper"])
    monitor = reports.load_profile("monitor")
    reports.check_profile(monitor)  # the monitor section is an allowed top-level key; 60_monitor's keys exist
    reports.check_values(monitor)
    assert monitor["60_monitor"]["account"] == monitor["paper"]["account"]


# --------------------------------------------------------------------------- planted drift


@pytest.mark.slow
def test_a_planted_drift_triggers_a_retraining_through_the_gate(drifted, server):
    tmp, data, url = drifted
    before = registry.list_models(scope="synth", db=url)
    r = loop.run_daily(CHECK_DAY, paper_cfg(tmp, data), {**MONITOR, "pushgateway_url": server.url, "webhook_url": server.url},
                       profile="planted", db=url)
    checks = r.checks.set_index(["check", "subject"])
    assert checks.loc[("feature_drift", "*"), "verdict"] == "drift"
    assert checks.loc[("feature_drift", "*"), "value"] >= 3  # several momentum features moved
    assert r.retrain["decided"] and r.retrain["reason"].startswith("drift: feature_drift on")
    after = registry.list_models(scope="synth", db=url)
    assert len(after) == len(before) + 1 and r.retrain["model_id"] == int(after["id"].max())
    new = registry.get_model(r.retrain["model_id"], db=url)
    assert new["trained_on"] == DAYS[1048].date()  # everything up to two trading days before the day (the embargo)
    assert (new["extra"] or {}).get("retrained_by") == "python -m kit daily"
    assert r.retrain["gate"] in ("passed", "failed") and r.retrain["promoted"] == (new["status"] == "active")
    assert r.needs_person and "feature_drift" in {a["kind"] for a in r.alerts}
    stored = M.load_checks(account="acct", as_of=CHECK_DAY, db=url)
    assert len(stored) == len(r.checks) and set(stored["model_id"]) == {int(before["id"].iloc[-1])}
    # the push and the webhook
    pushes = [q for q in server.requests if q["path"].startswith("/metrics/")]
    hooks = [q for q in server.requests if q["path"] == "/"]
    assert [q["path"] for q in pushes] == ["/metrics/job/kit_daily/account/acct/profile/planted"]
    got = samples(pushes[0]["body"].decode())
    assert got[("kit_daily_needs_person", frozenset())] == 1.0
    assert got[("kit_drift_verdict", frozenset({("check", "feature_drift"), ("subject", "*"), ("verdict", "drift")}))] == 1.0
    assert got[("kit_retrain_promoted", frozenset())] == float(r.retrain["promoted"])
    assert got[("kit_data_rows_ingested", frozenset())] == len(SYMBOLS)
    import json

    (hook,) = hooks
    body = json.loads(hook["body"])
    assert body["as_of"] == str(CHECK_DAY.date()) and "feature_drift" in {a["kind"] for a in body["alerts"]} and body["status"] == "done"


@pytest.mark.slow
def test_no_drift_no_retraining_and_a_second_run_does_nothing(undrifted, server):
    tmp, data, url = undrifted
    monitor = {**MONITOR, "pushgateway_url": server.url, "webhook_url": server.url}
    n_models = len(registry.list_models(scope="synth", db=url))
    r = loop.run_daily(CHECK_DAY, paper_cfg(tmp, data), monitor, profile="clean", db=url)
    assert r.status == "done" and r.paper.status == "done"
    checks = r.checks.set_index(["check", "subject"])
    assert checks.loc[("feature_drift", "*"), "verdict"] == "ok"
    assert r.retrain == {"decided": False, "reason": r.retrain["reason"]} and "no drift verdict" in r.retrain["reason"]
    assert not r.needs_person and r.alerts == [] and r.published is True and r.webhook_sent is None
    assert len(registry.list_models(scope="synth", db=url)) == n_models
    n_requests = len(server.requests)
    row = M.get_run("acct", CHECK_DAY, db=url)
    again = loop.run_daily(CHECK_DAY, paper_cfg(tmp, data), monitor, profile="clean", db=url)
    assert again.status == "already_done" and again.paper is None
    assert len(server.requests) == n_requests  # no second push, no webhook
    assert M.get_run("acct", CHECK_DAY, db=url) == row  # the record untouched
    assert len(live.paper_history("acct", db=url)["runs"]) == 1
    with pytest.raises(ValueError, match="before the last completed daily run"):
        loop.run_daily(DAYS[1049], paper_cfg(tmp, data), monitor, db=url)


@pytest.mark.slow
def test_a_retraining_is_not_repeated_when_the_day_is_run_again_after_a_crash(undrifted):
    tmp, data, url = undrifted
    cfg = paper_cfg(tmp, data, account="crash")
    monitor = {**MONITOR, "retrain": {**MONITOR["retrain"], "every_n_days": 1}}  # due every day
    day = DAYS[1052]
    n0 = len(registry.list_models(scope="synth", db=url))

    class Crash(RuntimeError):
        pass

    def boom():
        raise Crash("killed after the retraining")

    with set_hook("daily.after_retrain", boom), pytest.raises(Crash):
        loop.run_daily(day, cfg, monitor, db=url)
    row = M.get_run("crash", day, db=url)
    assert row["status"] == "failed" and row["retrain"]["attempted"] and "outcome" in row["retrain"]
    assert len(registry.list_models(scope="synth", db=url)) == n0 + 1
    r = loop.run_daily(day, cfg, monitor, db=url)
    assert r.status == "done" and "not repeated" in r.retrain["note"]
    assert len(registry.list_models(scope="synth", db=url)) == n0 + 1


@pytest.mark.slow
def test_drawdown_beyond_the_limit_is_an_alert(undrifted):
    tmp, data, url = undrifted
    cfg = paper_cfg(tmp, data, account="dd")
    monitor = {**MONITOR, "retrain": {"on_drift": False}, "drawdown_limit": 1e-9}
    results = [loop.run_daily(d, cfg, monitor, db=url) for d in DAYS[1060:1064]]
    equity = np.array([100_000.0] + [r.metrics["equity_dollars"] for r in results])
    for k, r in enumerate(results, start=1):
        dd = 1 - equity[k] / equity[: k + 1].max()
        assert r.metrics["drawdown_ratio"] == pytest.approx(dd, abs=1e-12)
        assert r.metrics["daily_pnl_dollars"] == pytest.approx(equity[k] - equity[k - 1])
        assert ("drawdown" in {a["kind"] for a in r.alerts}) == (dd > 1e-9)
    assert any(r.metrics["drawdown_ratio"] > 0 for r in results)  # the case is exercised


@pytest.mark.slow
def test_a_day_before_the_models_training_end_is_refused(undrifted):
    tmp, data, url = undrifted
    active = registry.active_model("synth", db=url)
    early = DAYS[DAYS.get_loc(pd.Timestamp(active["trained_on"])) - 1]
    with pytest.raises(live.PaperError, match="would be look-ahead"):
        loop.run_daily(early, paper_cfg(tmp, data, account="early-bird"), MONITOR, db=url)
    assert M.get_run("early-bird", early, db=url)["status"] == "failed"
    assert live.paper_history("early-bird", db=url)["runs"].empty  # nothing traded


# --------------------------------------------------------------------------- the command


def _profile(tmp, data, server, account, **monitor):
    path = tmp / f"{account}.yaml"
    prof = {"notebooks": ["60_monitor"], "paper": paper_cfg(tmp, data, account),
            "monitor": {**MONITOR, "pushgateway_url": server.url, "webhook_url": server.url, **monitor}}
    path.write_text(yaml.safe_dump(prof))
    return str(path)


@pytest.mark.slow
def test_the_command_exits_3_when_something_needs_a_person_0_when_not_and_2_without_data(drifted, undrifted, server, capsys):
    tmp, data, url = drifted
    f = _profile(tmp, data, server, "cli", retrain={"on_drift": False})
    assert cli.main(["daily", "--profile-file", f, "--as-of", str(CHECK_DAY.date()), "--db", url]) == cli.EXIT_NEEDS_PERSON
    out = capsys.readouterr().out
    assert "feature drift drift" in out and "alert feature_drift:" in out
    assert cli.main(["daily", "--profile-file", f, "--as-of", str(CHECK_DAY.date()), "--db", url]) == cli.EXIT_OK
    assert "already done" in capsys.readouterr().out
    # without the drift: nothing needs a person
    tmp, data, url = undrifted
    f2 = _profile(tmp, data, server, "early", retrain={"on_drift": False})
    assert cli.main(["daily", "--profile-file", f2, "--as-of", str(DAYS[1070].date()), "--db", url]) == cli.EXIT_OK
    assert "feature drift ok" in capsys.readouterr().out
    # a day the feed does not have: refused, recorded failed, the failure pushed and sent
    n = len(server.requests)
    saturday = (DAYS[1075] + pd.offsets.Week(weekday=5)).date()
    assert cli.main(["daily", "--profile-file", f2, "--as-of", str(saturday), "--db", url]) == cli.EXIT_USAGE
    assert "no bars dated" in capsys.readouterr().err
    assert M.get_run("early", saturday, db=url)["status"] == "failed"
    new = server.requests[n:]
    push = next(q for q in new if q["path"].startswith("/metrics/"))
    got = samples(push["body"].decode())
    assert got[("kit_run_success", frozenset())] == 0.0
    assert got[("kit_data_last_date_timestamp_seconds", frozenset())] == pd.Timestamp(saturday - pd.Timedelta(days=1), tz="UTC").timestamp()
    assert any(q["path"] == "/" and b"FAILED" in q["body"] for q in new)
    # an unknown key of the monitor section is a usage error naming it
    bad = tmp / "bad.yaml"
    bad.write_text(yaml.safe_dump({"notebooks": ["60_monitor"], "paper": paper_cfg(tmp, data, "x"), "monitor": {"drift": {"psi": 1}}}))
    assert cli.main(["daily", "--profile-file", str(bad), "--db", url]) == cli.EXIT_USAGE
    assert "monitor.drift: unknown key 'psi'" in capsys.readouterr().err


def test_publish_is_skipped_without_a_destination(monkeypatch):
    monkeypatch.delenv(mon.PUSHGATEWAY_ENV, raising=False)
    monkeypatch.delenv(mon.TEXTFILE_ENV, raising=False)
    ctx = loop._Ctx(pd.Timestamp("2024-01-02"), live.PaperConfig(), loop.MonitorConfig(), None, "p")
    assert loop._publish(ctx, {"status": "success"}) is None
