#!/usr/bin/env bash
# Benchmarks the http task's HTTP/2 against h2load, and its HTTPS against wrk
# with the generator on either core (see docs/benchmarks.md).
#
#   bash benches/protocols.sh http2    # h2c: h2load vs vajra, 5 alternating rounds
#   bash benches/protocols.sh https    # TLS: wrk vs vajra, generator on CPU 1 then CPU 0
#   bash benches/protocols.sh          # both
#
# nginx runs one worker; the tools alternate round by round so the
# machine's drift hits both, and each ratio is against the run just before
# it. Needs nginx, wrk, h2load and openssl (apt-get install nginx-light wrk
# nghttp2-client openssl).
set -euo pipefail
cd "$(dirname "$0")/.."

WHICH=${1:-all}
SECS=${BENCH_SECS:-5}
ROUNDS=${BENCH_ROUNDS:-5}
H2_PORT=${BENCH_PORT:-18090}
TLS_PORT=$((H2_PORT + 1))
# h2load's shape: clients, and streams at once on each.
CLIENTS=${BENCH_CLIENTS:-10}
STREAMS=${BENCH_STREAMS:-10}
CONNS=50

for tool in nginx wrk h2load openssl taskset python3; do
  command -v "$tool" >/dev/null || { echo "benches/protocols.sh needs $tool (apt-get install nginx-light wrk nghttp2-client openssl)" >&2; exit 1; }
done

cargo build --release --quiet
BIN=target/release/vajra-peer
WORK=$(mktemp -d)
trap 'kill $(cat "$WORK/nginx.pid" 2>/dev/null) 2>/dev/null || true; rm -rf "$WORK"' EXIT

openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=127.0.0.1 \
  -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null

# $1: the CPU nginx's worker runs on.
start_nginx() {
  kill "$(cat "$WORK/nginx.pid" 2>/dev/null)" 2>/dev/null && sleep 0.5 || true
  cat > "$WORK/nginx.conf" <<CONF
worker_processes 1;
worker_cpu_affinity $(python3 -c "print(format(1 << $1, 'b'))");
daemon on;
user root;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  keepalive_requests 100000000;
  server {
    listen 127.0.0.1:${H2_PORT} http2;
    location / { return 200 "ok\n"; }
  }
  server {
    listen 127.0.0.1:${TLS_PORT} ssl;
    ssl_certificate $WORK/cert.pem;
    ssl_certificate_key $WORK/key.pem;
    ssl_protocols TLSv1.3;
    location / { return 200 "ok\n"; }
  }
}
CONF
  nginx -c "$WORK/nginx.conf" -p "$WORK"
  sleep 0.5
}

json() { python3 -c "import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))" "$@"; }
ratio() { python3 -c "print(f'{float(\"$1\") / float(\"$2\"):.3f}')"; }
median() { sort -n "$1" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# One vajra run: $1 CPU, then its flags; prints "req/s cpu% failed".
vajra() {
  local cpu=$1; shift
  taskset -c "$cpu" "$BIN" run --duration "${SECS}s" --threads 1 --quiet --output "$WORK/run.json" "$@" > /dev/null
  json "$WORK/run.json" "f\"{r['main']['rate']:.0f} {r['self_check']['cpu_percent_mean']:.0f} {r['main']['failure']}\""
}

http2() {
  start_nginx 0
  local url="http://127.0.0.1:${H2_PORT}/"
  echo "== HTTP/2 (h2c): ${CLIENTS} connections x ${STREAMS} streams, generator on CPU 1, nginx on CPU 0, ${ROUNDS} rounds of ${SECS}s"
  : > "$WORK/h2.ratios"
  for round in $(seq "$ROUNDS"); do
    taskset -c 1 h2load -t1 -c"$CLIENTS" -m"$STREAMS" -D"$SECS" "$url" > "$WORK/h2load.txt"
    local h2load_rps
    h2load_rps=$(awk '/^finished in/ {print $4}' "$WORK/h2load.txt")
    read -r rps cpu failed < <(vajra 1 --url "$url" --http2 --h2-streams "$STREAMS" \
      --concurrency $((CLIENTS * STREAMS)))
    local r
    r=$(ratio "$rps" "$h2load_rps")
    echo "round ${round}: h2load ${h2load_rps} req/s, vajra ${rps} req/s (CPU ${cpu}%, ${failed} failed), ratio ${r}"
    echo "$r" >> "$WORK/h2.ratios"
  done
  echo "median vajra/h2load: $(median "$WORK/h2.ratios")"
}

# $1: the generator's CPU (nginx takes the other).
https_on() {
  local gen=$1 server=$((1 - $1))
  start_nginx "$server"
  local url="https://127.0.0.1:${TLS_PORT}/"
  echo "== HTTPS closed model: ${CONNS} connections, generator on CPU ${gen}, nginx on CPU ${server}, ${ROUNDS} rounds of ${SECS}s"
  : > "$WORK/tls.ratios"
  : > "$WORK/spin.ratios"
  for round in $(seq "$ROUNDS"); do
    taskset -c "$gen" wrk -t1 -c"$CONNS" -d"${SECS}s" "$url" > "$WORK/wrk.txt"
    local wrk_rps
    wrk_rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.txt")
    read -r rps cpu failed < <(vajra "$gen" --url "$url" --https-skip-verify --concurrency "$CONNS" \
      --no-busy-poll)
    read -r spin_rps spin_cpu spin_failed < <(vajra "$gen" --url "$url" --https-skip-verify \
      --concurrency "$CONNS")
    local r s
    r=$(ratio "$rps" "$wrk_rps")
    s=$(ratio "$spin_rps" "$wrk_rps")
    echo "round ${round}: wrk ${wrk_rps} req/s, vajra ${spin_rps} req/s (CPU ${spin_cpu}% of work, ${spin_failed} failed) ratio ${s}," \
      "--no-busy-poll ${rps} req/s (CPU ${cpu}%, ${failed} failed) ratio ${r}"
    echo "$r" >> "$WORK/tls.ratios"
    echo "$s" >> "$WORK/spin.ratios"
  done
  echo "median vajra/wrk, generator on CPU ${gen}: $(median "$WORK/spin.ratios"), with --no-busy-poll $(median "$WORK/tls.ratios")"
}

case "$WHICH" in
  http2) http2 ;;
  https) https_on 1; https_on 0 ;;
  all) http2; https_on 1; https_on 0 ;;
  *) echo "usage: benches/protocols.sh [http2|https|all]" >&2; exit 2 ;;
esac
