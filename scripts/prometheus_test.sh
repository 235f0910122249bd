#!/usr/bin/env bash
# Check the Prometheus config and alerting rules, then test kit.live.monitoring against a real Pushgateway
# and Prometheus.
#
#   bash scripts/prometheus_test.sh [pytest arguments; default: tests/test_monitoring_live.py tests/test_monitoring.py]
#   bash scripts/prometheus_test.sh --run COMMAND [ARGS...]   # instead of pytest, e.g. scripts/monitor_replay.sh
#
# Uses Debian's packages `prometheus` (prometheus, promtool) and `prometheus-pushgateway`, installed with
# apt-get when missing and we are root (their services are not started: on this kind of machine
# policy-rc.d forbids it, and we run our own instances anyway). Then:
#   1. promtool check config monitoring/prometheus.yml; promtool check rules monitoring/alerts.yml;
#      promtool test rules monitoring/alerts_test.yml (the rules' unit tests);
#   2. starts the Pushgateway and Prometheus on 127.0.0.1 with free ports, a temporary storage folder
#      (also for the Pushgateway's persistence file: Debian's build defaults to
#      /var/lib/prometheus/pushgateway.data, which would carry one run's metrics into the next), and a
#      copy of monitoring/prometheus.yml whose Pushgateway port is rewritten and whose scrape and
#      evaluation intervals are 1 s instead of 15 s;
#   3. waits (bounded) until both are ready and Prometheus' scrape of the Pushgateway is up;
#   4. runs pytest with KIT_TEST_PUSHGATEWAY_URL and KIT_TEST_PROMETHEUS_URL set: the live tests run
#      `python -m kit daily` on a replayed day of the committed store and `python -m kit run` (one
#      notebook), publish a synthetic daily run, and poll Prometheus' /api/v1/query until the jobs'
#      metrics appear (bounded wait), then check the alerting rules' state;
#   5. stops both and removes the folder, also on failure (trap).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
export NUMBA_CACHE_DIR="${NUMBA_CACHE_DIR:-$PWD/.venv/numba_cache}" PYTHONHASHSEED="${PYTHONHASHSEED:-0}"
WAIT_S="${PROMETHEUS_TEST_WAIT:-60}"

PG_BIN="$(command -v prometheus-pushgateway || command -v pushgateway || true)"
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1 || [ -z "$PG_BIN" ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "prometheus_test: installing Debian's prometheus and prometheus-pushgateway packages" >&2
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus prometheus-pushgateway >/dev/null
        PG_BIN="$(command -v prometheus-pushgateway || command -v pushgateway || true)"
    fi
fi
if ! command -v prometheus >/dev/null 2>&1 || ! command -v promtool >/dev/null 2>&1 || [ -z "$PG_BIN" ]; then
    echo "prometheus_test: prometheus, promtool or the Pushgateway not found; install Debian's prometheus and prometheus-pushgateway packages" >&2
    exit 2
fi
"$PY" -c "import prometheus_client" 2>/dev/null || "$PY" -m pip install --quiet "prometheus-client==0.26.0"
echo "prometheus_test: $(prometheus --version 2>&1 | head -n 1); $("$PG_BIN" --version 2>&1 | head -n 1)" >&2

# 1. static checks
promtool check config monitoring/prometheus.yml
promtool check rules monitoring/alerts.yml
promtool test rules monitoring/alerts_test.yml

# 2. start both on free ports
TMP="$(mktemp -d /tmp/kit-prom.XXXXXX)"
PIDS=()
stop() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    rm -rf "$TMP"
}
trap stop EXIT

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
PG_PORT="$(free_port)"
PROM_PORT="$(free_port)"
while [ "$PROM_PORT" = "$PG_PORT" ]; do PROM_PORT="$(free_port)"; done

cp monitoring/alerts.yml "$TMP/alerts.yml"
sed -e "s/127\.0\.0\.1:9091/127.0.0.1:$PG_PORT/" -e "s/scrape_interval: 15s/scrape_interval: 1s/" \
    -e "s/evaluation_interval: 15s/evaluation_interval: 1s/" monitoring/prometheus.yml >"$TMP/prometheus.yml"
grep -q "127.0.0.1:$PG_PORT" "$TMP/prometheus.yml" && grep -q "scrape_interval: 1s" "$TMP/prometheus.yml" \
    || { echo "prometheus_test: could not rewrite monitoring/prometheus.yml (target or interval changed?)" >&2; exit 1; }
promtool check config "$TMP/prometheus.yml" >/dev/null

start=$(date +%s)
"$PG_BIN" --web.listen-address="127.0.0.1:$PG_PORT" --persistence.file="$TMP/pushgateway.data" >"$TMP/pushgateway.log" 2>&1 &
PIDS+=($!)
prometheus --config.file="$TMP/prometheus.yml" --storage.tsdb.path="$TMP/data" --web.listen-address="127.0.0.1:$PROM_PORT" \
    >"$TMP/prometheus.log" 2>&1 &
PIDS+=($!)

# 3. bounded wait: both ready, and Prometheus' scrape of the Pushgateway up
wait_until() {  # what, command...
    local what="$1"; shift
    local deadline=$(( $(date +%s) + WAIT_S ))
    until "$@" >/dev/null 2>&1; do
        if [ "$(date +%s)" -ge "$deadline" ]; then
            echo "prometheus_test: $what not ready within $WAIT_S s" >&2
            tail -n 20 "$TMP/pushgateway.log" "$TMP/prometheus.log" >&2 || true
            exit 1
        fi
        sleep 0.5
    done
}
http_ok() {  # URL [text the answer must contain]
    "$PY" - "$@" <<'PYEOF'
import sys, urllib.request
with urllib.request.urlopen(sys.argv[1], timeout=5) as r:
    body = r.read().decode()
sys.exit(0 if r.status == 200 and (len(sys.argv) < 3 or sys.argv[2] in body) else 1)
PYEOF
}
PG_URL="http://127.0.0.1:$PG_PORT"
PROM_URL="http://127.0.0.1:$PROM_PORT"
wait_until "the Pushgateway" http_ok "$PG_URL/-/ready"
wait_until "Prometheus" http_ok "$PROM_URL/-/ready"
wait_until "the scrape of the Pushgateway" http_ok "$PROM_URL/api/v1/query?query=up%7Bjob%3D%22pushgateway%22%7D%3D%3D1" '"job":"pushgateway"'

echo "prometheus_test: Pushgateway on $PG_URL and Prometheus on $PROM_URL up in $(( $(date +%s) - start )) s" >&2

# 4. the tests (or, with --run, a command given the same two URLs)
export KIT_TEST_PUSHGATEWAY_URL="$PG_URL" KIT_TEST_PROMETHEUS_URL="$PROM_URL" KIT_TEST_PROMETHEUS_WAIT="$WAIT_S"
status=0
if [ "${1:-}" = "--run" ]; then
    shift
    "$@" || status=$?
    echo "prometheus_test: $* finished in $(( $(date +%s) - start )) s (exit $status)" >&2
    exit $status
fi
if [ $# -eq 0 ]; then set -- tests/test_monitoring_live.py tests/test_monitoring.py; fi
"$PY" -m pytest -q "$@" || status=$?
echo "prometheus_test: finished in $(( $(date +%s) - start )) s (pytest exit $status)" >&2
exit $status
