"""kit.live.monitoring against a real Pushgateway and Prometheus (started by scripts/prometheus_test.sh).

``python -m kit daily`` runs on a replayed day of the committed store (a small model trained first)
and a profile run (``python -m kit run``, one notebook) finishes; the test queries Prometheus' HTTP
API until their metrics appear (bounded wait). A synthetic daily run published through
:func:`kit.live.monitoring.publish` checks names, labels and values, that a failed run keeps the last
success time, and that the alerting rules of monitoring/alerts.yml evaluate (no rule errors) and go
pending for a failed run, drift, stale data, a drawdown beyond the limit and a refused retraining.

Needs ``KIT_TEST_PUSHGATEWAY_URL`` and ``KIT_TEST_PROMETHEUS_URL``; skipped otherwise.
"""

import datetime as dt
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import requests
from prometheus_client import delete_from_gateway

from kit.analytics.drift import DriftCheck
from kit.live import monitoring as mon

PUSHGATEWAY = os.environ.get("KIT_TEST_PUSHGATEWAY_URL", "")
PROMETHEUS = os.environ.get("KIT_TEST_PROMETHEUS_URL", "")
WAIT_S = float(os.environ.get("KIT_TEST_PROMETHEUS_WAIT", "60"))

pytestmark = pytest.mark.skipif(
    not (PUSHGATEWAY and PROMETHEUS),
    reason="needs a live Pushgateway and Prometheus: run `bash scripts/prometheus_test.sh` (sets KIT_TEST_PUSHGATEWAY_URL and KIT_TEST_PROMETHEUS_URL)",
)

AS_OF = dt.date(2024, 3, 28)
FINISHED = dt.datetime(2024, 3, 28, 21, 30, tzinfo=dt.UTC)


def query(expr: str) -> list[dict]:
    r = requests.get(f"{PROMETHEUS}/api/v1/query", params={"query": expr}, timeout=10)
    r.raise_for_status()
    body = r.json()
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_for(what: str, fn, timeout: float = WAIT_S):
    """Poll ``fn`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(0.5)
    pytest.fail(f"{what}: not seen within {timeout:.0f} s (last answer: {last!r})")


@pytest.fixture
def group():
    g = {"profile": f"live-{uuid.uuid4().hex[:8]}", "account": "paper"}
    yield g
    try:
        delete_from_gateway(PUSHGATEWAY, job="kit_daily", grouping_key=g, timeout=5)
    except OSError:
        pass


def run_metrics(**over):
    m = {
        "status": "success", "finished_at": FINISHED, "duration_seconds": 42.5, "as_of": AS_OF, "last_data_date": AS_OF, "rows_ingested": 500,
        "validation_findings": {"error": 0, "warning": 3}, "positions": 17, "gross_exposure_dollars": 95_000.0, "net_exposure_dollars": 12_500.0,
        "equity_dollars": 101_234.5, "daily_pnl_dollars": -321.25, "drawdown_ratio": 0.031, "drawdown_limit_ratio": 0.2,
        "orders": {"sent": 10, "filled": 9, "rejected": 1},
        "models": [{"model": "dmn_lstm", "scope": "sp500-daily", "version": "1.0.20240327"}],
        "ledger": [{"model": "dmn_lstm@1.0.20240327", "window_days": 30, "n": 3000, "direction_accuracy": 0.515, "mape": 0.012}],
        "gate": {"min_direction_accuracy": 0.52, "max_mape": 0.05},
        "drift": [DriftCheck("feature_drift", "*", 1, 1, 0.003, "drift", AS_OF, 8),
                  DriftCheck("direction_accuracy", "dmn_lstm@1.0.20240327", 0.515, 0.52, 0.31, "ok", AS_OF, 3000)],
        "stages": {"paper": {"seconds": 3.5, "status": "ok"}}, "needs_person": True, "alerts": {"feature_drift": 1},
        "retrain": {"as_of": AS_OF, "promoted": False},
    }
    m.update(over)
    return m


def one(expr: str) -> dict:
    res = wait_for(expr, lambda: query(expr))
    assert len(res) == 1, res
    return res[0]


def test_a_daily_run_is_queryable_with_its_labels_and_values(group):
    assert mon.publish(run_metrics(), job="kit_daily", grouping=group, pushgateway_url=PUSHGATEWAY, timeout=5) is True
    sel = f'job="kit_daily",profile="{group["profile"]}",account="paper"'
    equity = one(f"kit_paper_equity_dollars{{{sel}}}")
    assert float(equity["value"][1]) == 101_234.5
    labels = equity["metric"]
    assert labels["job"] == "kit_daily" and labels["profile"] == group["profile"] and labels["account"] == "paper"  # honor_labels kept them
    assert float(one(f'kit_paper_orders{{{sel},state="filled"}}')["value"][1]) == 9
    assert float(one(f"kit_run_last_success_timestamp_seconds{{{sel}}}")["value"][1]) == FINISHED.timestamp()
    assert float(one(f"kit_data_last_date_timestamp_seconds{{{sel}}}")["value"][1]) == dt.datetime(2024, 3, 28, tzinfo=dt.UTC).timestamp()
    info = one(f"kit_model_info{{{sel}}}")["metric"]
    assert (info["model"], info["scope"], info["version"]) == ("dmn_lstm", "sp500-daily", "1.0.20240327")
    assert float(one(f'kit_ledger_direction_accuracy_ratio{{{sel},model="dmn_lstm@1.0.20240327",window_days="30"}}')["value"][1]) == 0.515
    assert float(one(f'kit_drift_verdict{{{sel},check="feature_drift",verdict="drift"}}')["value"][1]) == 1
    # every metric of the run reached Prometheus
    names = {r["metric"]["__name__"] for r in query(f'{{{sel},__name__=~"kit_.+"}}')}
    assert names == set(mon.METRICS)


def test_a_failed_run_keeps_the_last_success_and_the_rules_go_pending(group):
    sel = f'job="kit_daily",profile="{group["profile"]}"'
    assert mon.publish(run_metrics(), job="kit_daily", grouping=group, pushgateway_url=PUSHGATEWAY, timeout=5)
    one(f"kit_run_success{{{sel}}} == 1")
    later = dt.datetime(2024, 3, 29, 21, 0, tzinfo=dt.UTC)
    failed = {"status": "failed", "duration_seconds": 2.0, "finished_at": later, "drawdown_ratio": 0.25, "drawdown_limit_ratio": 0.2}
    assert mon.publish(failed, job="kit_daily", grouping=group, pushgateway_url=PUSHGATEWAY, timeout=5)
    one(f"kit_run_success{{{sel}}} == 0")
    assert float(one(f"kit_run_finished_timestamp_seconds{{{sel}}}")["value"][1]) == later.timestamp()
    assert float(one(f"kit_run_last_success_timestamp_seconds{{{sel}}}")["value"][1]) == FINISHED.timestamp()  # pushadd kept it
    assert float(one(f"kit_paper_equity_dollars{{{sel}}}")["value"][1]) == 101_234.5

    def alerts():
        r = requests.get(f"{PROMETHEUS}/api/v1/alerts", timeout=10).json()["data"]["alerts"]
        mine = {a["labels"]["alertname"]: a for a in r if a["labels"].get("profile") == group["profile"]}
        want = {"KitRunFailed", "KitFeatureDrift", "KitDataStale", "KitRunNotSucceededRecently", "KitDrawdownBeyondLimit", "KitRetrainRejected"}
        return mine if want <= set(mine) else None

    mine = wait_for("pending alerts", alerts)
    assert {a["state"] for a in mine.values()} == {"pending"}  # `for:` not yet elapsed
    assert "KitAccuracyBelowGate" not in mine  # its verdict was "ok"
    assert mine["KitRunFailed"]["labels"]["severity"] == "critical"
    assert mine["KitDrawdownBeyondLimit"]["annotations"]["summary"].endswith("drawdown 25% beyond the limit")
    rules = requests.get(f"{PROMETHEUS}/api/v1/rules", timeout=10).json()["data"]["groups"]
    health = {r["name"]: r["health"] for g in rules for r in g["rules"]}
    assert len(health) == 8 and set(health.values()) == {"ok"}, health


ROOT = Path(__file__).resolve().parent.parent


def _env(tmp_path) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIT_")}
    env.update(KIT_PUSHGATEWAY_URL=PUSHGATEWAY, KIT_STATE_DIR=str(tmp_path / "state"), KIT_DB_URL=f"sqlite:///{tmp_path / 'kit.db'}",
               PYTHONPATH=str(ROOT), NUMBA_CACHE_DIR=os.environ.get("NUMBA_CACHE_DIR", str(tmp_path / "numba")))
    return env


def test_the_daily_command_on_a_replayed_day_reaches_prometheus(tmp_path):
    """``python -m kit daily`` as cron would run it, on 2021-01-04 of the committed store (6 stocks, a
    model trained on data up to 2020-12-31 first), pushes to the real Pushgateway; Prometheus scrapes
    it and answers queries for the job's metrics."""
    import yaml

    name = f"live-daily-{uuid.uuid4().hex[:8]}"
    profile = tmp_path / f"{name}.yaml"
    profile.write_text(yaml.safe_dump({
        "notebooks": ["60_monitor"],
        "paper": {"account": "live", "scope": "live-check", "require_active": True, "symbols": ["AAPL", "MSFT", "JPM", "XOM", "KO", "JNJ"],
                  "history_start": "2015-01-01", "state_dir": str(tmp_path / "paper-state"), "limits": {"max_position": 0.25}},
        "monitor": {"gate": {"min_direction_accuracy": 0.0}, "retrain": {"on_drift": False}, "drift": {"recent_days": 21, "sample_stride": 5}},
    }))
    cmd = [sys.executable, "-m", "kit", "daily", "--profile-file", str(profile), "--prepare-model", "2020-12-31", "--as-of", "2021-01-04"]
    t0 = time.monotonic()
    r = subprocess.run(cmd, env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode in (0, 3), r.stdout + r.stderr
    print(f"kit daily: exit {r.returncode} in {time.monotonic() - t0:.1f} s: {r.stdout.strip()}")
    sel = f'job="kit_daily",profile="{name}",account="live"'
    try:
        assert float(one(f"kit_run_success{{{sel}}}")["value"][1]) == 1.0
        assert float(one(f"kit_data_last_date_timestamp_seconds{{{sel}}}")["value"][1]) == dt.datetime(2021, 1, 4, tzinfo=dt.UTC).timestamp()
        assert float(one(f"kit_run_as_of_timestamp_seconds{{{sel}}}")["value"][1]) == dt.datetime(2021, 1, 4, tzinfo=dt.UTC).timestamp()
        assert float(one(f"kit_data_rows_ingested{{{sel}}}")["value"][1]) == 6
        equity = float(one(f"kit_paper_equity_dollars{{{sel}}}")["value"][1])
        assert f"equity {equity:,.2f}" in r.stdout  # the figure the command printed
        info = one(f"kit_model_info{{{sel}}}")["metric"]
        assert info["scope"] == "live-check" and info["model"] == "dmn_lstm"
        needs = float(one(f"kit_daily_needs_person{{{sel}}}")["value"][1])
        assert needs == (1.0 if r.returncode == 3 else 0.0)
        verdicts = query(f'kit_drift_verdict{{{sel},check="feature_drift"}} == 1')
        assert len(verdicts) == 1 and verdicts[0]["metric"]["verdict"] in ("drift", "ok", "insufficient_data")
        stages = {x["metric"]["stage"] for x in query(f"kit_run_stage_duration_seconds{{{sel}}}")}
        assert {"ingest", "paper", "fillback", "drift", "retrain"} <= stages
    finally:
        delete_from_gateway(PUSHGATEWAY, job="kit_daily", grouping_key={"profile": name, "account": "live"}, timeout=5)


def test_a_profile_run_reaches_prometheus(tmp_path):
    """``python -m kit run`` (the smoke profile's first notebook) publishes its status and stage
    durations at the end of the run (kit.reports.runs -> kit.live.monitoring.publish_profile_run)."""
    reports_dir = tmp_path / "reports"
    cmd = [sys.executable, "-m", "kit", "run", "--profile", "smoke", "--notebooks", "10_explore", "--renderer", "nbconvert",
           "--reports-dir", str(reports_dir)]
    started = time.time()
    r = subprocess.run(cmd, env=_env(tmp_path), cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    sel = 'job="kit_profile",profile="smoke"'
    try:
        # this run's push, not an earlier one's (the wait ends when Prometheus has scraped it)
        finished = float(one(f"kit_run_finished_timestamp_seconds{{{sel}}} >= {started - 1:.0f}")["value"][1])
        assert started - 1 <= finished <= time.time()
        assert float(one(f"kit_run_success{{{sel}}}")["value"][1]) == 1.0
        assert float(one(f'kit_run_stage_success{{{sel},stage="10_explore"}}')["value"][1]) == 1.0
        assert float(one(f'kit_run_stage_duration_seconds{{{sel},stage="10_explore"}}')["value"][1]) > 0
    finally:
        delete_from_gateway(PUSHGATEWAY, job="kit_profile", grouping_key={"profile": "smoke"}, timeout=5)
