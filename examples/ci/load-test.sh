#!/usr/bin/env bash
# The load test a CI job runs: start the service under test, load it with
# thresholds, keep the JSON and HTML reports, and exit with vajra-peer's
# verdict (0 passed, 3 a threshold failed; see the README's exit codes).
# github-actions.yml and gitlab-ci.yml call this script; tests/ci_examples.rs
# runs it too.
#
# Settings (environment):
#   SERVICE_CMD   starts the service, in the background [default: vajra-peer's
#                 built-in target on 127.0.0.1:18080, a stand-in for yours]
#   TARGET_URL    what to load [default: http://127.0.0.1:18080/]
#   LOAD          vajra-peer run's load options [default: 200/s for 20 s, 5 s ramp]
#   THRESHOLDS    the pass/fail criteria, ';'-separated
#   REPORTS       where the reports go [default: reports]
set -euo pipefail

SERVICE_CMD=${SERVICE_CMD:-"vajra-peer serve --listen 127.0.0.1:18080"}
TARGET_URL=${TARGET_URL:-http://127.0.0.1:18080/}
LOAD=${LOAD:-"--tps 200 --duration 20s --ramp-up 5s"}
THRESHOLDS=${THRESHOLDS:-"p99<250ms;error_rate<1%"}
REPORTS=${REPORTS:-reports}

mkdir -p "$REPORTS"
$SERVICE_CMD > "$REPORTS/service.log" 2>&1 &
service=$!
trap 'kill $service 2>/dev/null || true' EXIT

# Wait (at most 30 s) until the service accepts connections.
host_port=${TARGET_URL#*://}
host_port=${host_port%%/*}
for _ in $(seq 300); do
  if (exec 3<>"/dev/tcp/${host_port%:*}/${host_port##*:}") 2>/dev/null; then
    break
  fi
  sleep 0.1
done

thresholds=()
IFS=';' read -ra criteria <<< "$THRESHOLDS"
for criterion in "${criteria[@]}"; do
  thresholds+=(--threshold "$criterion")
done

# shellcheck disable=SC2086 # LOAD is a list of options
set +e
vajra-peer run --url "$TARGET_URL" $LOAD "${thresholds[@]}" \
  --output "$REPORTS/report.json" --quiet
verdict=$?
set -e
if [[ -f "$REPORTS/report.json" ]]; then
  vajra-peer report "$REPORTS/report.json" --output "$REPORTS/report.html"
fi
exit "$verdict"
