"""kit.live.monitoring: metric names and values, publishing to a local fake Pushgateway and to a textfile
folder, no exception on a refused connection, an error status or a timeout, and the webhook.

The live test against a real Pushgateway and Prometheus is tests/test_monitoring_live.py
(scripts/prometheus_test.sh).
"""

import datetime as dt
import http.server
import json
import logging
import re
import shutil
import socket
import subprocess
import threading
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from kit.analytics.drift import DriftCheck
from kit.live import monitoring as mon

AS_OF = dt.date(2024, 3, 28)
MIDNIGHT = dt.datetime(2024, 3, 28, tzinfo=dt.UTC).timestamp()
FINISHED = dt.datetime(2024, 3, 28, 21, 30, tzinfo=dt.UTC)


def full_metrics(status="success", **over):
    """A synthetic daily run using every key."""
    m = {
        "status": status, "finished_at": FINISHED, "duration_seconds": 42.5, "as_of": AS_OF, "last_data_date": AS_OF,
        "rows_ingested": 500, "validation_findings": {"error": 0, "warning": 3, "info": 12}, "positions": 17,
        "gross_exposure_dollars": 95_000.0, "net_exposure_dollars": 12_500.0, "equity_dollars": 101_234.5, "daily_pnl_dollars": -321.25,
        "drawdown_ratio": 0.031, "drawdown_limit_ratio": 0.2, "orders": {"sent": 10, "filled": 9, "rejected": 1},
        "models": [{"model": "dmn_lstm", "scope": "sp500-daily", "version": "1.0.20240327"}],
        "ledger": [{"model": "dmn_lstm@1.0.20240327", "window_days": 30, "n": 3000, "direction_accuracy": 0.515, "mape": 0.012}],
        "gate": {"min_direction_accuracy": 0.52, "max_mape": 0.05},
        "drift": [DriftCheck("feature_drift", "*", 1, 1, 0.003, "drift", AS_OF, 8),
                  DriftCheck("direction_accuracy", "dmn_lstm@1.0.20240327", 0.515, 0.52, 0.31, "ok", AS_OF, 3000),
                  {"check": "ks", "subject": "ret_252", "value": None, "threshold": 0.05, "p_value": None, "verdict": "insufficient_data"}],
        "stages": {"ingest": {"seconds": 1.5, "status": "ok"}, "retrain": {"seconds": 30.0, "status": "ok"}},
        "needs_person": True, "alerts": {"feature_drift": 1, "drawdown": 0}, "retrain": {"as_of": AS_OF, "promoted": False},
    }
    m.update(over)
    return m


def samples(text: str) -> dict:
    """{(name, frozenset(labels)): value} from exposition text."""
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(text, name, **labels):
    return samples(text)[(name, frozenset(labels.items()))]


# ------------------------------------------------------------------------------------------------
# names and values
# ------------------------------------------------------------------------------------------------

UNIT_SUFFIXES = ("_seconds", "_dollars", "_ratio", "_info", "_value", "_threshold", "_verdict")
UNITLESS_COUNTS = {"kit_data_rows_ingested", "kit_data_validation_findings", "kit_paper_positions", "kit_paper_orders", "kit_ledger_outcomes",
                   "kit_run_success", "kit_run_stage_success", "kit_daily_needs_person", "kit_daily_alerts", "kit_retrain_promoted"}


def test_metric_names_follow_prometheus_conventions():
    for name, (help_, labels) in mon.METRICS.items():
        assert re.fullmatch(r"kit_[a-z][a-z0-9_]*[a-z0-9]", name), name
        assert not name.endswith("_total"), f"{name}: every metric is a gauge, so no _total (module docstring)"
        assert not re.search(r"_(ms|milliseconds|minutes|hours|days|percent|cents)(_|$)", name), f"{name}: base units only"
        assert name.endswith(UNIT_SUFFIXES) or name in UNITLESS_COUNTS or name == "kit_drift_p_value", name
        assert help_ and all(re.fullmatch(r"[a-z_][a-z0-9_]*", lab) for lab in labels)
    text = mon.exposition(full_metrics())
    assert {f.name for f in text_string_to_metric_families(text)} == set(mon.METRICS)  # the full run uses every metric
    assert {f.type for f in text_string_to_metric_families(text)} == {"gauge"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian package prometheus; scripts/prometheus_test.sh installs it)")
def test_promtool_check_metrics_finds_no_problem():
    r = subprocess.run(["promtool", "check", "metrics"], input=mon.exposition(full_metrics()), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and not r.stdout.strip() and not r.stderr.strip(), r.stdout + r.stderr
    # and it does complain about a counter-style name on a gauge (the check can fail)
    bad = "# HELP kit_orders_total x\n# TYPE kit_orders_total gauge\nkit_orders_total 1\n"
    r = subprocess.run(["promtool", "check", "metrics"], input=bad, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0


def test_values_units_and_labels():
    text = mon.exposition(full_metrics())
    assert value(text, "kit_run_success") == 1.0
    assert value(text, "kit_run_last_success_timestamp_seconds") == FINISHED.timestamp()
    assert value(text, "kit_run_finished_timestamp_seconds") == FINISHED.timestamp()
    assert value(text, "kit_data_last_date_timestamp_seconds") == MIDNIGHT
    assert value(text, "kit_run_as_of_timestamp_seconds") == MIDNIGHT
    assert value(text, "kit_paper_equity_dollars") == 101_234.5
    assert value(text, "kit_paper_daily_pnl_dollars") == -321.25
    assert value(text, "kit_paper_orders", state="rejected") == 1.0
    assert value(text, "kit_data_validation_findings", severity="warning") == 3.0
    assert value(text, "kit_model_info", model="dmn_lstm", scope="sp500-daily", version="1.0.20240327") == 1.0
    assert value(text, "kit_ledger_direction_accuracy_ratio", model="dmn_lstm@1.0.20240327", window_days="30") == 0.515
    assert value(text, "kit_drift_verdict", check="feature_drift", subject="*", verdict="drift") == 1.0
    assert value(text, "kit_drift_verdict", check="feature_drift", subject="*", verdict="ok") == 0.0
    assert value(text, "kit_drift_verdict", check="ks", subject="ret_252", verdict="insufficient_data") == 1.0
    assert ("kit_drift_value", frozenset({("check", "ks"), ("subject", "ret_252")})) not in samples(text)  # no value, no series
    assert value(text, "kit_run_stage_duration_seconds", stage="retrain") == 30.0
    assert value(text, "kit_run_stage_success", stage="ingest") == 1.0
    assert value(text, "kit_daily_needs_person") == 1.0 and value(text, "kit_daily_alerts", kind="drawdown") == 0.0
    assert value(text, "kit_retrain_last_as_of_timestamp_seconds") == MIDNIGHT and value(text, "kit_retrain_promoted") == 0.0


def test_a_failed_run_publishes_no_last_success():
    text = mon.exposition({"status": "failed", "duration_seconds": 3.0, "finished_at": FINISHED})
    assert value(text, "kit_run_success") == 0.0
    assert "kit_run_last_success_timestamp_seconds" not in {f.name for f in text_string_to_metric_families(text)}


@pytest.mark.parametrize(
    "metrics, match",
    [
        ({"status": "ok"}, "status"),
        ({"status": "success", "equity": 1.0}, r"unknown metric key\(s\) \['equity'\]"),
        ({"status": "success", "duration_seconds": -1}, r"metrics\['duration_seconds'\] must be >= 0"),
        ({"status": "success", "equity_dollars": float("nan")}, "must be finite"),
        ({"status": "success", "positions": 2.5}, "whole number"),
        ({"status": "success", "drawdown_ratio": 0.1}, "needs metrics\\['drawdown_limit_ratio'\\]"),
        ({"status": "success", "orders": {"sent": -1}}, r"orders\['sent'\]"),
        ({"status": "success", "last_data_date": "yesterday"}, "must be a date"),
        ({"status": "success", "finished_at": dt.datetime(2024, 1, 1)}, "timezone-aware"),
        ({"status": "success", "drift": [{"check": "ks", "subject": "f", "verdict": "bad"}]}, "verdict must be one of"),
        ({"status": "success", "models": [{"model": "m"}]}, "lacks 'scope'"),
        ({"status": "success", "stages": {"x": {"status": "maybe"}}}, "must be 'ok' or 'failed'"),
        ({"status": "success", "needs_person": 1}, "needs_person"),
        ({"status": "success", "retrain": {"as_of": AS_OF, "promoted": None}}, "promoted"),
    ],
)
def test_bad_metrics_raise_before_anything_is_sent(metrics, match):
    with pytest.raises(ValueError, match=match):
        mon.publish(metrics, job="kit_daily", pushgateway_url="http://127.0.0.1:1")


def test_bad_job_or_grouping_raise():
    with pytest.raises(ValueError, match="job"):
        mon.publish({"status": "success"}, job="", pushgateway_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="grouping label name 'bad-name'"):
        mon.publish({"status": "success"}, job="j", grouping={"bad-name": "x"}, pushgateway_url="http://127.0.0.1:1")
    with pytest.raises(ValueError, match="grouping label 'profile' must have a non-empty value"):
        mon.publish({"status": "success"}, job="j", grouping={"profile": ""}, pushgateway_url="http://127.0.0.1:1")


# ------------------------------------------------------------------------------------------------
# a local fake HTTP server
# ------------------------------------------------------------------------------------------------


class FakeServer:
    """Records requests; answers ``status`` after ``delay`` seconds."""

    def __init__(self, status=200, delay=0.0):
        self.status, self.delay, self.requests = status, delay, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _any(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                outer.requests.append({"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body})
                time.sleep(outer.delay)
                try:
                    self.send_response(outer.status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the client gave up (timeout)
                    pass

            do_POST = do_PUT = do_GET = _any

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.close()


def refused_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"  # nothing listens there now


def test_publish_pushadds_to_the_group_of_job_and_labels(server, caplog):
    ok = mon.publish(full_metrics(), job="kit_daily", grouping={"profile": "paper", "account": "paper-1"}, pushgateway_url=server.url)
    assert ok is True
    (req,) = server.requests
    assert req["method"] == "POST"  # pushadd: only the pushed names are replaced in the group
    assert req["path"] == "/metrics/job/kit_daily/account/paper-1/profile/paper"
    text = req["body"].decode()
    assert value(text, "kit_paper_equity_dollars") == 101_234.5
    assert value(text, "kit_paper_orders", state="filled") == 9.0


def test_publish_never_raises_on_connection_refused(caplog):
    caplog.set_level(logging.WARNING, logger="kit.live.monitoring")
    t = time.monotonic()
    assert mon.publish(full_metrics(), job="kit_daily", pushgateway_url=refused_url(), timeout=2.0) is False
    assert time.monotonic() - t < 2.0
    assert "push of job kit_daily" in caplog.text and "failed" in caplog.text


def test_publish_never_raises_on_an_error_status_or_a_timeout(caplog):
    caplog.set_level(logging.WARNING, logger="kit.live.monitoring")
    bad = FakeServer(status=500)
    slow = FakeServer(delay=1.5)
    try:
        assert mon.publish(full_metrics(), job="kit_daily", pushgateway_url=bad.url) is False
        t = time.monotonic()
        assert mon.publish(full_metrics(), job="kit_daily", pushgateway_url=slow.url, timeout=0.3) is False
        assert time.monotonic() - t < 1.4  # gave up at the timeout, not when the server answered
        assert len(bad.requests) == 1 and len(slow.requests) == 1
    finally:
        bad.close()
        slow.close()
    assert caplog.text.count("failed") == 2


def test_publish_without_a_destination_does_nothing(monkeypatch, caplog):
    monkeypatch.delenv(mon.PUSHGATEWAY_ENV, raising=False)
    monkeypatch.delenv(mon.TEXTFILE_ENV, raising=False)
    caplog.set_level(logging.INFO, logger="kit.live.monitoring")
    assert mon.publish({"status": "success"}, job="kit_daily") is False
    assert "not published" in caplog.text


def test_publish_reads_the_pushgateway_url_from_the_environment(server, monkeypatch):
    monkeypatch.setenv(mon.PUSHGATEWAY_ENV, server.url)
    assert mon.publish({"status": "success"}, job="kit_profile", grouping={"profile": "report"}) is True
    assert server.requests[0]["path"] == "/metrics/job/kit_profile/profile/report"


# ------------------------------------------------------------------------------------------------
# textfile collector
# ------------------------------------------------------------------------------------------------


def test_textfile_has_the_labels_and_keeps_the_last_success_after_a_failed_run(tmp_path):
    grouping = {"profile": "paper", "account": "paper-1"}
    assert mon.publish(full_metrics(), job="kit_daily", grouping=grouping, textfile_dir=tmp_path) is True
    path = mon.textfile_path(tmp_path, "kit_daily", grouping)
    assert path.name == "kit_kit_daily__account_paper-1__profile_paper.prom" and list(tmp_path.iterdir()) == [path]
    lab = {"job": "kit_daily", **grouping}
    text = path.read_text()
    assert value(text, "kit_paper_equity_dollars", **lab) == 101_234.5
    assert value(text, "kit_paper_orders", state="sent", **lab) == 10.0
    later = dt.datetime(2024, 3, 29, 21, 0, tzinfo=dt.UTC)
    assert mon.publish({"status": "failed", "duration_seconds": 1.0, "finished_at": later}, job="kit_daily", grouping=grouping, textfile_dir=tmp_path)
    text = path.read_text()
    assert value(text, "kit_run_success", **lab) == 0.0
    assert value(text, "kit_run_finished_timestamp_seconds", **lab) == later.timestamp()
    assert value(text, "kit_run_last_success_timestamp_seconds", **lab) == FINISHED.timestamp()  # kept from the success
    assert value(text, "kit_paper_equity_dollars", **lab) == 101_234.5  # the last known value
    assert value(text, "kit_run_duration_seconds", **lab) == 1.0  # replaced


def test_textfile_write_failure_is_logged_not_raised(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="kit.live.monitoring")
    blocker = tmp_path / "not_a_dir"
    blocker.write_text("x")
    assert mon.publish({"status": "success"}, job="kit_daily", textfile_dir=blocker) is False
    assert "writing" in caplog.text


def test_both_destinations_and_one_failing(tmp_path, server):
    assert mon.publish({"status": "success"}, job="j", pushgateway_url=server.url, textfile_dir=tmp_path) is True
    assert mon.publish({"status": "success"}, job="j", pushgateway_url=refused_url(), textfile_dir=tmp_path, timeout=1.0) is False
    assert mon.textfile_path(tmp_path, "j").exists()


# ------------------------------------------------------------------------------------------------
# webhook
# ------------------------------------------------------------------------------------------------


def test_webhook_posts_json(server):
    payload = {"alert": "KitRunFailed", "as_of": AS_OF, "equity": np.float64(1.5), "n": np.int64(3), "bad": float("nan"), "xs": (1, 2)}
    assert mon.send_webhook(server.url + "/hook", payload, timeout=2.0) is True
    (req,) = server.requests
    assert req["method"] == "POST" and req["path"] == "/hook"
    assert req["headers"]["Content-Type"] == "application/json"
    assert json.loads(req["body"]) == {"alert": "KitRunFailed", "as_of": "2024-03-28", "equity": 1.5, "n": 3, "bad": None, "xs": [1, 2]}


def test_webhook_failures_are_logged_not_raised(caplog):
    caplog.set_level(logging.WARNING, logger="kit.live.monitoring")
    slow, bad = FakeServer(delay=1.5), FakeServer(status=404)
    try:
        t = time.monotonic()
        assert mon.send_webhook(slow.url, {"a": 1}, timeout=0.3) is False
        assert time.monotonic() - t < 1.4
        assert mon.send_webhook(bad.url, {"a": 1}) is False
        assert mon.send_webhook(refused_url(), {"a": 1}, timeout=1.0) is False
    finally:
        slow.close()
        bad.close()
    assert caplog.text.count("webhook POST") == 3


def test_webhook_without_url_and_bad_arguments(monkeypatch):
    monkeypatch.delenv(mon.WEBHOOK_ENV, raising=False)
    assert mon.send_webhook(None, {"a": 1}) is False
    with pytest.raises(ValueError, match="timeout"):
        mon.send_webhook("http://127.0.0.1:1", {"a": 1}, timeout=0)
    with pytest.raises(ValueError, match="payload must be a mapping"):
        mon.send_webhook("http://127.0.0.1:1", [1, 2])



def test_a_profile_run_publishes_its_status_and_stage_durations(tmp_path, server, monkeypatch, caplog):
    monkeypatch.delenv(mon.PUSHGATEWAY_ENV, raising=False)
    monkeypatch.delenv(mon.TEXTFILE_ENV, raising=False)
    info = {"profile": "smoke", "status": "failed", "seconds": 12.5, "finished_utc": "2024-03-28T21:30:00+00:00",
            "notebooks": {"10_explore": {"status": "ok", "seconds": 4.0}, "20_train": {"status": "failed", "seconds": 8.0}}}
    assert mon.publish_profile_run(tmp_path, info) is False and not server.requests  # nothing configured: nothing sent
    (tmp_path / "params.yaml").write_text(f"notebooks: [10_explore]\nmonitor:\n  pushgateway_url: {server.url}\n")
    assert mon.publish_profile_run(tmp_path, info) is True
    (req,) = server.requests
    assert req["path"] == "/metrics/job/kit_profile/profile/smoke"
    text = req["body"].decode()
    assert value(text, "kit_run_success") == 0.0 and value(text, "kit_run_duration_seconds") == 12.5
    assert value(text, "kit_run_finished_timestamp_seconds") == FINISHED.timestamp()
    assert value(text, "kit_run_stage_duration_seconds", stage="20_train") == 8.0
    assert value(text, "kit_run_stage_success", stage="10_explore") == 1.0 and value(text, "kit_run_stage_success", stage="20_train") == 0.0
    # a broken record or an unreachable gateway is logged, never raised
    caplog.set_level(logging.WARNING, logger="kit.live.monitoring")
    assert mon.publish_profile_run(tmp_path, {"status": "ok", "seconds": -1}) is False
    (tmp_path / "params.yaml").write_text(f"notebooks: [10_explore]\nmonitor:\n  pushgateway_url: {refused_url()}\n")
    assert mon.publish_profile_run(tmp_path, info) is False
    assert "not published" in caplog.text and "failed" in caplog.text
