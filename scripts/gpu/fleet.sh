# shellcheck shell=bash
# Sourced by the scripts in scripts/gpu that serve a generated model on a CUDA fleet:
#   fleet_start PRESET N   generates the checkpoint if needed (models.sh's generated_model, under
#                          $EEP_MODEL_NAME, default PRESET), starts eep-coordinator
#                          --device cuda --dp N (more
#                          flags in $EEP_WORKER_ARGS) and waits until it serves. Sets BIN, ADMIN,
#                          PORT, RUN (logs), COORD (pid).
# The coordinator is shut down and the logs' tails printed when the script exits (the whole logs
# copied to $OUT/logs when $OUT is set).
# shellcheck source=scripts/gpu/env.sh
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
# shellcheck source=scripts/gpu/models.sh
source "$(dirname "${BASH_SOURCE[0]}")/models.sh"
cd "$EEP_ROOT" || exit 1
# EEP_FLEET_BIN / EEP_FLEET_DEVICE: other binaries and device (a CPU try-out of these scripts).
BIN=${EEP_FLEET_BIN:-build-gpu/bin}
now() { date +%s.%N; }
since() { python3 -c "import sys, time; print(f'{time.time() - float(sys.argv[1]):.2f}')" "$1"; }

fleet_stop() {
  if [ -n "${COORD:-}" ] && kill -0 "$COORD" 2>/dev/null; then
    "$BIN/eepctl" --admin "$ADMIN" shutdown >/dev/null 2>&1 || kill "$COORD"
    wait "$COORD" 2>/dev/null || true
  fi
  if [ -n "${RUN:-}" ]; then
    for f in "$RUN"/*.log; do echo "--- $f"; tail -n 15 "$f"; done
    # The whole logs come back with a device call's $OUT.
    [ -n "${OUT:-}" ] && mkdir -p "$OUT/logs" && cp -r "$RUN" "$OUT/logs/"
    rm -rf "$RUN"
  fi
}

fleet_start() {
  local preset=$1 n=$2
  generated_model "$preset" "${EEP_MODEL_NAME:-$preset}" || return 1
  RUN=$(mktemp -d -t eep-serve-XXXXXX)
  trap fleet_stop EXIT
  # shellcheck disable=SC2086 # EEP_WORKER_ARGS is a list of arguments
  "$BIN/eep-coordinator" --device "${EEP_FLEET_DEVICE:-cuda}" --dp "$n" --model "$MODEL" --admin 'tcp://127.0.0.1:*' \
    --control 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --ready-file "$RUN/ready.json" \
    --worker-log-dir "$RUN" --scale-timeout-ms 600000 --heartbeat-timeout-ms 60000 \
    ${EEP_WORKER_ARGS:-} >"$RUN/coordinator.log" 2>&1 &
  COORD=$!
  for _ in $(seq 200); do [ -f "$RUN/ready.json" ] && break; sleep 0.1; done
  if [ ! -f "$RUN/ready.json" ]; then
    echo "the coordinator wrote no $RUN/ready.json within 20 s"
    tail -n 20 "$RUN/coordinator.log"
    return 1
  fi
  ADMIN=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$RUN/ready.json")
  PORT=$(sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' "$RUN/ready.json")
  local start
  start=$(now)
  for _ in $(seq 3000); do
    curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
    kill -0 "$COORD" || { echo "coordinator exited"; return 1; }
    sleep 0.1
  done
  echo "fleet of $n ready in $(since "$start") s"
}
