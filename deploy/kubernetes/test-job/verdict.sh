#!/usr/bin/env bash
# Waits for the vajra-test Job to end and exits with its verdict: 0 when
# the test's thresholds held, 1 when they did not (or the Job failed).
#
#   bash deploy/kubernetes/test-job/verdict.sh [TIMEOUT_SECONDS]   # default 3600
set -euo pipefail
limit=${1:-3600}
for ((waited = 0; waited < limit; waited += 5)); do
  succeeded=$(kubectl get job vajra-test -o jsonpath='{.status.succeeded}')
  failed=$(kubectl get job vajra-test -o jsonpath='{.status.failed}')
  if [[ "${succeeded:-0}" -ge 1 ]]; then
    echo "vajra-test passed"
    exit 0
  fi
  if [[ "${failed:-0}" -ge 1 ]]; then
    echo "vajra-test failed: kubectl logs job/vajra-test" >&2
    exit 1
  fi
  sleep 5
done
echo "vajra-test did not end within ${limit}s" >&2
exit 1
