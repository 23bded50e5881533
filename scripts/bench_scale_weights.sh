#!/usr/bin/env bash
# Scales under load with the new generation's weights taken from the serving ranks and, in the
# same run, from the checkpoint (docs/weight_transfer.md): for each mode a CPU fleet of N0 ranks
# on a generated model (eep-mkmodel --preset PRESET, cached in $EEP_MODEL_CACHE, default
# /tmp/eep-models), eep-bench streaming against it with --scale-at/--scale-to, and its report with
# each scale's timeline, build steps, weight sources and before/during/after windows.
# Usage: scripts/bench_scale_weights.sh PRESET N0 "SECONDS:N ..." [eep-bench arguments...]
# e.g.   scripts/bench_scale_weights.sh small 2 "3:4 9:2" --num-prompts 300 --request-rate 20
# Binaries: $EEP_BIN (default build/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=$1 N0=$2 SCALES=$3
shift 3
BIN=${EEP_BIN:-build/bin}
source scripts/lib/cpu_fleet.sh
MODEL=$(fleet_model "$PRESET")
SCALE_ARGS=()
for scale in $SCALES; do SCALE_ARGS+=(--scale-at "${scale%%:*}" --scale-to "${scale##*:}"); done

for mode in peers checkpoint; do
  echo "=== weights from $mode ($PRESET, $N0 CPU ranks, scales $SCALES)"
  fleet_start "$mode" --dp "$N0" --model "$MODEL" --max-workers 8 \
    --scale-weights-from "$mode" --scale-timeout-ms 600000
  "$BIN/eep-bench" --base-url "$URL" --admin "$ADMIN" --seed 0 --stream \
    --no-progress "${SCALE_ARGS[@]}" "$@"
  fleet_stop
done
