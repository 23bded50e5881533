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
CACHE=${EEP_MODEL_CACHE:-/tmp/eep-models}
MODEL="$CACHE/$PRESET"
if [ ! -f "$MODEL/config.json" ]; then
  mkdir -p "$CACHE"
  "$BIN/eep-mkmodel" --preset "$PRESET" --seed 1 --out "$MODEL"
fi
SCALE_ARGS=()
for scale in $SCALES; do SCALE_ARGS+=(--scale-at "${scale%%:*}" --scale-to "${scale##*:}"); done

RUN=$(mktemp -d -t eep-scale-weights-XXXXXX)
COORD=""
stop() {
  if [ -n "$COORD" ] && kill -0 "$COORD" 2>/dev/null; then
    "$BIN/eepctl" --admin "$ADMIN" shutdown >/dev/null 2>&1 || kill "$COORD"
    wait "$COORD" 2>/dev/null || true
  fi
  COORD=""
}
trap 'stop; rm -rf "$RUN"' EXIT

for mode in peers checkpoint; do
  echo "=== weights from $mode ($PRESET, $N0 CPU ranks, scales $SCALES)"
  rm -f "$RUN/ready.json"
  "$BIN/eep-coordinator" --device cpu --dp "$N0" --model "$MODEL" --max-workers 8 \
    --admin 'tcp://127.0.0.1:*' --control 'tcp://127.0.0.1:*' --http 127.0.0.1:0 \
    --ready-file "$RUN/ready.json" --scale-weights-from "$mode" --scale-timeout-ms 600000 \
    >"$RUN/coordinator-$mode.log" 2>&1 &
  COORD=$!
  for _ in $(seq 200); do [ -f "$RUN/ready.json" ] && break; sleep 0.1; done
  ADMIN=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$RUN/ready.json")
  PORT=$(sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' "$RUN/ready.json")
  for _ in $(seq 3000); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    kill -0 "$COORD" || { tail "$RUN/coordinator-$mode.log"; exit 1; }
    sleep 0.1
  done
  "$BIN/eep-bench" --base-url "http://127.0.0.1:$PORT" --admin "$ADMIN" --seed 0 --stream \
    --no-progress "${SCALE_ARGS[@]}" "$@"
  stop
done
