#!/usr/bin/env bash
# Benchmarks vajra-peer against wrk on this machine (see docs/benchmarks.md).
#
#   bash benches/compare.sh            # 5 alternating wrk/vajra rounds of 6 s
#   bash benches/compare.sh --quick    # one round of 3 s (CI smoke run)
#
# The machine's speed drifts between runs, so wrk and vajra alternate and the
# ratio is taken per round, each against the wrk run just before it.
#
# nginx (one worker) is pinned to CPU 0 and the generators to CPU 1, so each
# side has one core. Needs nginx and wrk (apt-get install nginx-light wrk).
set -euo pipefail
cd "$(dirname "$0")/.."

SECS=6
ROUNDS=5
[[ "${1:-}" == "--quick" ]] && SECS=3 && ROUNDS=1
PORT=${BENCH_PORT:-18080}
CONNS=50
TARGET_RATE=20000
URL="http://127.0.0.1:${PORT}/"
NGINX_CPU=0
GEN_CPU=1
[[ $(nproc) -lt 2 ]] && GEN_CPU=0

for tool in nginx wrk taskset python3; do
  command -v "$tool" >/dev/null || { echo "benches/compare.sh needs $tool (apt-get install nginx-light wrk)" >&2; exit 1; }
done

cargo build --release --quiet
BIN=target/release/vajra-peer
WORK=$(mktemp -d)
trap 'kill $(cat "$WORK/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT

cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
daemon on;
user root;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:${PORT} reuseport;
    location = /nginx_status { stub_status; }
    location / { return 200 "ok\n"; }
  }
}
CONF
taskset -c "$NGINX_CPU" nginx -c "$WORK/nginx.conf" -p "$WORK"
sleep 0.5

served() { # requests nginx has served so far (this query included)
  python3 - "$PORT" <<'PY'
import sys, urllib.request
text = urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/nginx_status").read().decode()
print(text.splitlines()[2].split()[2])
PY
}
json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }

echo "== closed model: ${CONNS} connections, generator pinned to CPU ${GEN_CPU}, nginx to CPU ${NGINX_CPU}, ${ROUNDS} alternating rounds of ${SECS}s"
for round in $(seq "$ROUNDS"); do
  taskset -c "$GEN_CPU" wrk -t1 -c"$CONNS" -d"${SECS}s" "$URL" > "$WORK/wrk.txt"
  WRK_RPS=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")

  BEFORE=$(served)
  taskset -c "$GEN_CPU" "$BIN" run --url "$URL" --concurrency "$CONNS" --duration "${SECS}s" --threads 1 \
    --quiet --output "$WORK/closed.json" > /dev/null
  AFTER=$(served)
  VAJRA_RPS=$(json "$WORK/closed.json" "round(r['main']['rate'], 1)")
  RECORDED=$(json "$WORK/closed.json" "r['main']['completed']")
  VAJRA_CPU=$(json "$WORK/closed.json" "round(r['self_check']['cpu_percent_mean'])")
  SERVED=$((AFTER - BEFORE - 1))
  RATIO=$(python3 -c "print(f'{float(\"$VAJRA_RPS\") / float(\"$WRK_RPS\"):.3f}')")
  echo "round ${round}: wrk ${WRK_RPS} req/s, vajra ${VAJRA_RPS} req/s, ratio ${RATIO} (vajra recorded ${RECORDED}, nginx served ${SERVED}, vajra CPU ${VAJRA_CPU}% of its core)"
  echo "$RATIO" >> "$WORK/ratios"
  if [[ "$RECORDED" != "$SERVED" ]]; then
    echo "MISMATCH: vajra recorded ${RECORDED} requests but nginx served ${SERVED}" >&2
    exit 1
  fi
done
python3 -c "import statistics,sys; r=[float(x) for x in open(sys.argv[1])]; print(f'median ratio vajra/wrk: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})')" "$WORK/ratios"

echo "== closed model with OTLP (metrics, traces at 1 %), Prometheus and BlazeMeter exporting, vs none, ${ROUNDS} alternating rounds of ${SECS}s"
RECV_PORT=$((PORT + 1))
METRICS="127.0.0.1:$((PORT + 2))"
taskset -c "$NGINX_CPU" python3 benches/receivers.py "$RECV_PORT" "$METRICS" &
RECV_PID=$!
trap 'kill $RECV_PID 2>/dev/null; kill $(cat "$WORK/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT
echo bench-key > "$WORK/bm-key"
sleep 0.5
EXPORTING=(--export otlp,blazemeter --otlp-endpoint "http://127.0.0.1:${RECV_PORT}" --otlp-interval 1s
  --trace-sample-ratio 0.01 --metrics-listen "$METRICS" --blazemeter-api "http://127.0.0.1:${RECV_PORT}"
  --blazemeter-data "http://127.0.0.1:${RECV_PORT}" --blazemeter-token-file "$WORK/bm-key"
  --blazemeter-interval 2s --blazemeter-test bench --export-flush-timeout 3s)
for round in $(seq "$ROUNDS"); do
  taskset -c "$GEN_CPU" "$BIN" run --url "$URL" --concurrency "$CONNS" --duration "${SECS}s" --threads 1 \
    --quiet --output "$WORK/plain.json" > /dev/null
  taskset -c "$GEN_CPU" "$BIN" run --url "$URL" --concurrency "$CONNS" --duration "${SECS}s" --threads 1 \
    --quiet --output "$WORK/exporting.json" "${EXPORTING[@]}" > "$WORK/exporting.txt"
  json "$WORK/exporting.json" "(
    f\"round ${round}: no exporters {json.load(open('$WORK/plain.json'))['main']['rate']:.0f} req/s, \"
    f\"exporting {r['main']['rate']:.0f} req/s, ratio {r['main']['rate'] / json.load(open('$WORK/plain.json'))['main']['rate']:.3f}, \"
    f\"peak RSS {r['self_check']['peak_rss_mb']:.0f} MiB (without: {json.load(open('$WORK/plain.json'))['self_check']['peak_rss_mb']:.0f} MiB); \"
    + '; '.join(e['exporter'] + (' complete' if e['not_delivered'] == 0 and e['report_delivered'] else ' INCOMPLETE: ' + str(e.get('error'))) for e in r['exports'])
  )" | tee -a "$WORK/exporting.log"
done
python3 -c "import re,statistics,sys; r=[float(m) for m in re.findall(r'ratio ([0-9.]+)', open(sys.argv[1]).read())]; print(f'median ratio exporting/none: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})')" "$WORK/exporting.log"
if grep -q INCOMPLETE "$WORK/exporting.log"; then
  echo "an exporter did not deliver everything to the stand-in receivers" >&2
  exit 1
fi

echo "== one-step scenario vs the http task, closed model, ${CONNS} connections, ${ROUNDS} alternating rounds of ${SECS}s"
cat > "$WORK/one.yaml" <<YAML
scenarios:
  - name: one
    steps:
      - request:
          name: get
          url: ${URL}
YAML
for round in $(seq "$ROUNDS"); do
  taskset -c "$GEN_CPU" "$BIN" run --url "$URL" --concurrency "$CONNS" --duration "${SECS}s" --threads 1 \
    --quiet --output "$WORK/http.json" > /dev/null
  taskset -c "$GEN_CPU" "$BIN" run --scenario "$WORK/one.yaml" --concurrency "$CONNS" --duration "${SECS}s" \
    --threads 1 --quiet --output "$WORK/scenario.json" > /dev/null
  json "$WORK/scenario.json" "(
    f\"round ${round}: http {json.load(open('$WORK/http.json'))['main']['rate']:.0f} req/s, \"
    f\"scenario {r['main']['rate']:.0f} iterations/s ({r['steps']['get']['completed']} steps, {r['main']['failure']} failed), \"
    f\"ratio {r['main']['rate'] / json.load(open('$WORK/http.json'))['main']['rate']:.3f}\"
  )" | tee -a "$WORK/scenario.log"
done
python3 -c "import re,statistics,sys; r=[float(m) for m in re.findall(r'ratio ([0-9.]+)', open(sys.argv[1]).read())]; print(f'median ratio scenario/http: {statistics.median(r):.3f} (min {min(r):.3f}, max {max(r):.3f})')" "$WORK/scenario.log"

echo "== no-op task, 1 instance, 1 thread, pinned to CPU ${GEN_CPU}, ${SECS}s"
taskset -c "$GEN_CPU" "$BIN" run --task noop --concurrency 1 --duration "${SECS}s" --threads 1 \
  --quiet --output "$WORK/noop.json" > /dev/null
json "$WORK/noop.json" "f\"noop: {r['main']['rate']/1e6:.2f} M executions/s/core, peak RSS {r['self_check'].get('peak_rss_mb', 0):.0f} MiB\""

echo "== open model at ${TARGET_RATE}/s against nginx, ${SECS}s"
taskset -c "$GEN_CPU" "$BIN" run --url "$URL" --tps "$TARGET_RATE" --duration "${SECS}s" --threads 1 \
  --quiet --output "$WORK/open.json" > /dev/null
json "$WORK/open.json" "(
  f\"planned {r['planned']}, completed {r['main']['completed']}, dropped {r['main']['dropped']}, \"
  f\"achieved {r['main']['rate']:.1f}/s ({100*r['main']['completed']/r['planned']:.3f}% of plan), \"
  f\"worst full second {min(w['dispatched'] for w in r['series'] if w['duration_s'] >= 0.999 and w['second'] < $SECS)}..\"
  f\"{max(w['dispatched'] for w in r['series'] if w['duration_s'] >= 0.999 and w['second'] < $SECS)} dispatched/s, \"
  f\"lag p99 {r['scheduler_lag']['p99_us']:.0f}us, latency p99 {r['main']['latency']['p99_us']:.0f}us, \"
  f\"service p99 {r['main']['service']['p99_us']:.0f}us, \"
  f\"generator CPU {r['self_check']['cpu_percent_mean']:.0f}% of its core, reliable {r['self_check']['reliable']}\"
)"
