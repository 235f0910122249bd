#!/usr/bin/env bash
# A real two-node Ray cluster on this machine: a head node and a second node started as separate
# processes on 127.0.0.1 (one CPU each), the smoke profile run on them with
#   python -m kit run --profile smoke --backend ray --address 127.0.0.1:PORT
# a check that its walk-forward tasks ran on both nodes (metrics.json: exec.tasks_per_node), and the
# nodes stopped (ray stop --force, also on failure). Called by .ci/run; run by hand with
#   bash scripts/ray_test.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
RAY="$(dirname "$PY")/ray"
PORT="${KIT_RAY_PORT:-6391}"
work="$(mktemp -d /tmp/kit-ray-test.XXXXXX)"

stop() {
    "$RAY" stop --force >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap stop EXIT

export RAY_USAGE_STATS_ENABLED=0
# token authentication with a token of this test only (every process here inherits it)
export RAY_AUTH_MODE=token
RAY_AUTH_TOKEN="$("$PY" -c 'import secrets; print(secrets.token_hex(32))')"
export RAY_AUTH_TOKEN
"$RAY" start --head --node-ip-address=127.0.0.1 --port="$PORT" --num-cpus=1 --include-dashboard=false \
    --disable-usage-stats >"$work/head.log" 2>&1 || { cat "$work/head.log"; exit 1; }
"$RAY" start --address="127.0.0.1:$PORT" --node-ip-address=127.0.0.1 --num-cpus=1 \
    --disable-usage-stats >"$work/node.log" 2>&1 || { cat "$work/node.log"; exit 1; }

"$PY" - "$PORT" <<'EOF'
import sys, time
import ray
ray.init(address=f"127.0.0.1:{sys.argv[1]}", log_to_driver=False)
for _ in range(60):
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) == 2:
        break
    time.sleep(1)
print(f"ray cluster: {len(alive)} nodes, {int(ray.cluster_resources().get('CPU', 0))} CPUs")
assert len(alive) == 2, f"expected 2 alive nodes, got {len(alive)}"
EOF

t0=$(date +%s)
"$PY" -m kit run --profile smoke --backend ray --address "127.0.0.1:$PORT" --reports-dir "$work/reports"
echo "smoke profile on 2 Ray nodes: $(( $(date +%s) - t0 )) s (load average $(cut -d' ' -f1-3 /proc/loadavg))"

"$PY" - "$work/reports" <<'EOF'
import json, sys
from pathlib import Path
run = next((Path(sys.argv[1]) / "runs").iterdir())
info = json.loads((run / "run.json").read_text())
metrics = json.loads((run / "metrics.json").read_text())
per_node = metrics["exec"]["tasks_per_node"]
print(f"run {run.name}: status {info['status']}, exec {info['exec']}, tasks per node {per_node}")
assert info["status"] == "ok", info["status"]
assert info["exec"]["backend"] == "ray" and metrics["exec"]["nodes"] == 2, (info["exec"], metrics["exec"])
assert len(per_node) == 2 and all(n > 0 for n in per_node.values()), f"tasks did not run on both nodes: {per_node}"
print("ray_test: 1 passed, 0 failed")
EOF
