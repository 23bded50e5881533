#!/usr/bin/env bash
# Dispatch on capacity against the router it replaced (docs/serving.md), in the same run: for
# each mode a CPU fleet of N0 ranks with --max-num-seqs MAX_SEQS on a generated model
# (eep-mkmodel --preset PRESET, cached in $EEP_MODEL_CACHE, default /tmp/eep-models), and
# eep-bench against it with the given arguments (e.g. a --scale-at/--scale-to, or none for the
# steady state). Modes: "capacity" (the default: requests wait in the coordinator until a rank
# has room) and "push" (--worker-queue-depth 1048576 --move-running false: every request goes to
# the least loaded rank when it arrives and stays there, as before).
# Usage: scripts/bench_dispatch.sh PRESET N0 MAX_SEQS [eep-bench arguments...]
# e.g.   scripts/bench_dispatch.sh tiny 2 8 --num-prompts 400 --random-input-len 32 \
#            --random-output-len 64 --scale-at 2 --scale-to 4
# Binaries: $EEP_BIN (default build/bin).
set -euo pipefail
cd "$(dirname "$0")/.."
PRESET=$1 N0=$2 MAX_SEQS=$3
shift 3
BIN=${EEP_BIN:-build/bin}
source scripts/lib/cpu_fleet.sh
MODEL=$(fleet_model "$PRESET")

for mode in capacity push; do
  DEPTH=-1 MOVE=true
  [ "$mode" = push ] && DEPTH=1048576 MOVE=false
  echo "=== dispatch: $mode ($PRESET, $N0 CPU ranks, --max-num-seqs $MAX_SEQS)"
  fleet_start "$mode" --dp "$N0" --model "$MODEL" --max-workers 8 \
    --worker-queue-depth "$DEPTH" --move-running "$MOVE" \
    --worker-arg="--max-num-seqs=$MAX_SEQS" --worker-arg=--kv-blocks=1024
  "$BIN/eep-bench" --base-url "$URL" --admin "$ADMIN" --seed 0 --stream --no-progress "$@"
  fleet_stop
done
