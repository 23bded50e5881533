#!/bin/bash
# Serves a generated model on a CUDA fleet of N GPUs (scripts/gpu/fleet.sh) and runs eep-bench
# against it.
#   scripts/gpu/serve_bench.sh PRESET N [eep-bench arguments...]
# Optional: $EEP_MODEL_NAME, $EEP_MKMODEL_ARGS, $EEP_WORKER_ARGS (fleet.sh), $EEP_STATUS_JSON
# (where `eepctl status --json` after the run goes).
set -euo pipefail
# shellcheck source=scripts/gpu/fleet.sh
source "$(dirname "$0")/fleet.sh"
PRESET=$1 N=$2
shift 2
fleet_start "$PRESET" "$N"
"$BIN/eepctl" --admin "$ADMIN" status
"$BIN/eep-bench" --base-url "http://127.0.0.1:$PORT" --seed 0 --no-progress "$@"
sleep 1  # the last load reports and RebalanceDone answers
"$BIN/eepctl" --admin "$ADMIN" status
if [ -n "${EEP_STATUS_JSON:-}" ]; then
  "$BIN/eepctl" --admin "$ADMIN" status --json >"$EEP_STATUS_JSON"
fi
grep "EPLB" "$RUN/coordinator.log" || true
