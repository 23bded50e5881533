#!/bin/bash
# Scales a serving CUDA fleet while eep-bench runs against it: starts N0 GPUs on a generated
# model, starts eep-bench (streaming, greedy, tokens saved), then after each SECONDS runs
# `eepctl scale --dp N` (which waits and prints the stage timeline), and reports the bench with
# its failed requests. Usage:
#   scripts/gpu/scale_bench.sh PRESET N0 "SECONDS:N ..." [eep-bench arguments...]
# e.g. scripts/gpu/scale_bench.sh tiny 2 "2:1 4:2" --num-prompts 2000 --request-rate 400
# Optional: the variables of scripts/gpu/fleet.sh (EEP_WORKER_ARGS="--worker-arg=--batch-invariant"
# for greedy outputs comparable bit for bit with an unscaled run, docs/cuda_backend.md). Results:
# $OUT/scale-bench.json when $OUT is set.
set -euo pipefail
# shellcheck source=scripts/gpu/fleet.sh
source "$(dirname "$0")/fleet.sh"
PRESET=$1 N0=$2 SCALES=$3
shift 3
fleet_start "$PRESET" "$N0"
RESULT=${OUT:-$RUN}/scale-bench.json
"$BIN/eep-bench" --base-url "http://127.0.0.1:$PORT" --seed 0 --no-progress --stream \
  --save-tokens --result-json "$RESULT" "$@" &
BENCH=$!
started=$(now)
for scale in $SCALES; do
  at=${scale%%:*} dp=${scale##*:}
  python3 -c "import sys, time; time.sleep(max(0.0, float(sys.argv[1]) - (time.time() - float(sys.argv[2]))))" "$at" "$started"
  echo "== at $(since "$started") s: scale to $dp"
  "$BIN/eepctl" --admin "$ADMIN" scale --dp "$dp" || echo "scale to $dp FAILED"
done
wait "$BENCH"
"$BIN/eepctl" --admin "$ADMIN" status
python3 - "$RESULT" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))
summary = report["summary"]
print(f"completed {summary['completed']}, failed {summary['failed']}")
PY
