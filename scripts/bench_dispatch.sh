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
CACHE=${EEP_MODEL_CACHE:-/tmp/eep-models}
MODEL="$CACHE/$PRESET"
if [ ! -f "$MODEL/config.json" ]; then
  mkdir -p "$CACHE"
  "$BIN/eep-mkmodel" --preset "$PRESET" --seed 1 --out "$MODEL"
fi

RUN=$(mktemp -d -t eep-dispatch-XXXXXX)
COORD=""
stop() {
  if [ -n "$COORD" ] && kill -0 "$COORD" 2>/dev/null; then
    "$BIN/eepctl" --admin "$ADMIN" shutdown >/dev/null 2>&1 || kill "$COORD"
    wait "$COORD" 2>/dev/null || true
  fi
  COORD=""
}
trap 'stop; rm -rf "$RUN"' EXIT

for mode in capacity push; do
  DEPTH=-1 MOVE=true
  [ "$mode" = push ] && DEPTH=1048576 MOVE=false
  echo "=== dispatch: $mode ($PRESET, $N0 CPU ranks, --max-num-seqs $MAX_SEQS)"
  rm -f "$RUN/ready.json"
  "$BIN/eep-coordinator" --device cpu --dp "$N0" --model "$MODEL" --max-workers 8 \
    --admin 'tcp://127.0.0.1:*' --control 'tcp://127.0.0.1:*' --http 127.0.0.1:0 \
    --ready-file "$RUN/ready.json" --worker-queue-depth "$DEPTH" --move-running "$MOVE" \
    --worker-arg="--max-num-seqs=$MAX_SEQS" --worker-arg=--kv-blocks=1024 \
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
    --no-progress "$@"
  stop
done
