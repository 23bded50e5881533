#!/bin/bash
# Serves a generated model (eep-mkmodel --preset PRESET, random bf16 weights) on a CUDA fleet of
# N GPUs and runs eep-bench against it.
#   scripts/gpu/serve_bench.sh PRESET N [eep-bench arguments...]
# The checkpoint is cached in $EEP_MODEL_CACHE (default /dev/shm/eep-models), under
# $EEP_MODEL_NAME (default PRESET). Optional: $EEP_MKMODEL_ARGS (more eep-mkmodel flags),
# $EEP_WORKER_ARGS (more eep-coordinator flags), $EEP_STATUS_JSON (where `eepctl status --json`
# after the run goes).
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$EEP_ROOT"
PRESET=$1 N=$2
shift 2
BIN=build-gpu/bin
now() { date +%s.%N; }
since() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$1"; }
CACHE=${EEP_MODEL_CACHE:-/dev/shm/eep-models}
MODEL="$CACHE/${EEP_MODEL_NAME:-$PRESET}"
if [ ! -f "$MODEL/config.json" ]; then
  mkdir -p "$CACHE"
  start=$(now)
  "$BIN/eep-mkmodel" --preset "$PRESET" --seed 1 ${EEP_MKMODEL_ARGS:-} --out "$MODEL"
  echo "generated $MODEL in $(since "$start") s"
fi
RUN=$(mktemp -d -t eep-serve-XXXXXX)
cleanup() {
  if [ -n "${COORD:-}" ] && kill -0 "$COORD" 2>/dev/null; then
    "$BIN/eepctl" --admin "$ADMIN" shutdown >/dev/null 2>&1 || kill "$COORD"
    wait "$COORD" 2>/dev/null || true
  fi
  for f in "$RUN"/*.log; do echo "--- $f"; tail -n 15 "$f"; done
  rm -rf "$RUN"
}
trap cleanup EXIT
"$BIN/eep-coordinator" --device cuda --dp "$N" --model "$MODEL" --admin 'tcp://127.0.0.1:*' \
  --control 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --ready-file "$RUN/ready.json" \
  --worker-log-dir "$RUN" --scale-timeout-ms 600000 --heartbeat-timeout-ms 60000 \
  ${EEP_WORKER_ARGS:-} >"$RUN/coordinator.log" 2>&1 &
COORD=$!
for _ in $(seq 200); do [ -f "$RUN/ready.json" ] && break; sleep 0.1; done
ADMIN=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$RUN/ready.json")
PORT=$(sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' "$RUN/ready.json")
start=$(now)
for _ in $(seq 3000); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 "$COORD" || { echo "coordinator exited"; exit 1; }
  sleep 0.1
done
echo "fleet of $N ready in $(since "$start") s"
"$BIN/eepctl" --admin "$ADMIN" status
"$BIN/eep-bench" --base-url "http://127.0.0.1:$PORT" --seed 0 --no-progress "$@"
sleep 1  # the last load reports and RebalanceDone answers
"$BIN/eepctl" --admin "$ADMIN" status
if [ -n "${EEP_STATUS_JSON:-}" ]; then
  "$BIN/eepctl" --admin "$ADMIN" status --json >"$EEP_STATUS_JSON"
fi
grep "EPLB" "$RUN/coordinator.log" || true
