#!/usr/bin/env bash
# The daily loop replayed over the last 60 trading days of the committed store with a real Pushgateway
# and Prometheus, then the monitoring page: the measurement of docs/monitoring.md.
#
#   bash scripts/prometheus_test.sh --run bash scripts/monitor_replay.sh [OUT]
#
# Needs KIT_TEST_PUSHGATEWAY_URL and KIT_TEST_PROMETHEUS_URL (set by prometheus_test.sh --run). OUT
# (default /tmp/kit-monitor-replay) receives the state (database, ledger key and anchors), the
# reports folder, replay.log, prometheus.txt (query answers) and the page. Steps: train, register and
# gate a model of the `monitor` profile on data up to 2021-01-25; `python -m kit daily --profile
# monitor --replay 2021-01-26 2021-04-21`; query Prometheus; `python -m kit run --profile monitor`.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
OUT="${1:-/tmp/kit-monitor-replay}"
: "${KIT_TEST_PUSHGATEWAY_URL:?run through scripts/prometheus_test.sh --run}" "${KIT_TEST_PROMETHEUS_URL:?}"
mkdir -p "$OUT"
export KIT_STATE_DIR="$OUT/state" KIT_PUSHGATEWAY_URL="$KIT_TEST_PUSHGATEWAY_URL"
unset KIT_DB_URL
T0=$(date +%s)
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee "$OUT/replay.log"
"$PY" -m kit daily --profile monitor --prepare-model 2021-01-25 2>&1 | tee -a "$OUT/replay.log"
T1=$(date +%s)
set +e
"$PY" -m kit daily --profile monitor --replay 2021-01-26 2021-04-21 2>&1 | tee -a "$OUT/replay.log"
status=${PIPESTATUS[0]}
set -e
T2=$(date +%s)
echo "prepare ${T1}-${T0} = $((T1 - T0)) s; replay $((T2 - T1)) s (exit $status); load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/replay.log"
sleep 3  # two scrapes at 1 s
"$PY" - "$KIT_TEST_PROMETHEUS_URL" "$T1" "$T2" > "$OUT/prometheus.txt" <<'PYEOF'
import json, sys, urllib.parse, urllib.request
prom, t1, t2 = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]) + 5

def get(path, **params):
    with urllib.request.urlopen(f"{prom}{path}?{urllib.parse.urlencode(params)}", timeout=30) as r:
        return json.loads(r.read())["data"]

sel = 'job="kit_daily",profile="monitor",account="monitor"'
print("# instant queries after the replay")
for q in (f"kit_run_success{{{sel}}}", f"kit_run_as_of_timestamp_seconds{{{sel}}}", f"kit_data_last_date_timestamp_seconds{{{sel}}}",
          f"kit_paper_equity_dollars{{{sel}}}", f"kit_paper_drawdown_ratio{{{sel}}}", f"kit_paper_positions{{{sel}}}",
          f"kit_paper_gross_exposure_dollars{{{sel}}}", f"kit_paper_orders{{{sel}}}", f"kit_model_info{{{sel}}}",
          f"kit_ledger_direction_accuracy_ratio{{{sel}}}", f'kit_drift_verdict{{{sel},check="feature_drift"}} == 1',
          f'kit_drift_value{{{sel},check="psi"}}', f"kit_daily_needs_person{{{sel}}}", f"kit_daily_alerts{{{sel}}} > 0",
          f"kit_retrain_last_as_of_timestamp_seconds{{{sel}}}", f"kit_retrain_promoted{{{sel}}}", f"kit_run_stage_duration_seconds{{{sel}}}",
          'kit_run_success{job="kit_profile"}', 'kit_run_stage_duration_seconds{job="kit_profile"}'):
    res = get("/api/v1/query", query=q)["result"]
    print(f"{q}: {len(res)} series")
    for r in res:
        labels = {k: v for k, v in r["metric"].items() if k not in ("job", "profile", "account", "instance")}
        print(f"    {labels} = {r['value'][1]}")
print()
print("# range query over the replay (1 s scrapes): the trading days pushed, one value per day")
res = get("/api/v1/query_range", query=f"kit_run_as_of_timestamp_seconds{{{sel}}}", start=t1, end=t2, step=1)["result"]
days = sorted({float(v) for r in res for _, v in r["values"]})
print(f"distinct kit_run_as_of_timestamp_seconds values seen by Prometheus: {len(days)}")
eq = get("/api/v1/query_range", query=f"kit_paper_equity_dollars{{{sel}}}", start=t1, end=t2, step=1)["result"]
vals = [float(v) for r in eq for _, v in r["values"]]
print(f"kit_paper_equity_dollars samples: {len(vals)}, distinct values {len(set(vals))}, min {min(vals):.2f}, max {max(vals):.2f}" if vals else "no equity")
print()
print("# alerts (rules evaluated every second)")
for a in get("/api/v1/alerts")["alerts"]:
    print(f"    {a['labels']['alertname']} {a['state']} {a['labels'].get('job')}/{a['labels'].get('profile')}: {a['annotations'].get('summary')}")
PYEOF
cat "$OUT/prometheus.txt"
T3=$(date +%s)
"$PY" -m kit run --profile monitor --reports-dir "$OUT/reports" 2>&1 | tee -a "$OUT/replay.log"
T4=$(date +%s)
echo "page $((T4 - T3)) s; load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$OUT/replay.log"
"$PY" - "$KIT_TEST_PROMETHEUS_URL" >> "$OUT/prometheus.txt" <<'PYEOF'
import json, sys, time, urllib.parse, urllib.request
time.sleep(3)
with urllib.request.urlopen(f"{sys.argv[1]}/api/v1/query?" + urllib.parse.urlencode({"query": '{job="kit_profile",profile="monitor"}'}), timeout=30) as r:
    res = json.loads(r.read())["data"]["result"]
print()
print(f"# the profile run's metrics (job kit_profile): {len(res)} series")
for r in res:
    print(f"    {r['metric']['__name__']} {dict((k, v) for k, v in r['metric'].items() if k == 'stage')} = {r['value'][1]}")
PYEOF
tail -n 12 "$OUT/prometheus.txt"
exit "$status"
