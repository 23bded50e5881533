#!/usr/bin/env bash
# The embedded demo: installs what is needed, builds, generates the `tiny` model, serves it with
# a coordinator and 2 CPU workers, runs eep-bench against the OpenAI API, scales the fleet to 4
# (and benchmarks again) and back to 2, printing what an operator sees; then benchmarks once more
# while it scales to 4 and back to 2 under load, and writes that run's timeline plot (SVG) and CSV
# under $EEP_BUILD_DIR/demo/ (kept after the demo; the path is printed); then shuts down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
BIN=${EEP_BUILD_DIR:-build}/bin
PLOT_DIR=${EEP_BUILD_DIR:-build}/demo
mkdir -p "$PLOT_DIR"

RUN_DIR=$(mktemp -d -t eep-demo-XXXXXX)
cleanup() {
  if [ -n "${COORD_PID:-}" ] && kill -0 "$COORD_PID" 2>/dev/null; then
    "$BIN/eepctl" --admin "$ADMIN" shutdown >/dev/null 2>&1 || kill "$COORD_PID"
    wait "$COORD_PID" 2>/dev/null || true
  fi
  rm -rf "$RUN_DIR"
}
trap cleanup EXIT

# Free loopback ports, read back from the ready file, so the demo never collides with a fleet
# already running here.
echo "== eep-mkmodel --preset tiny"
"$BIN/eep-mkmodel" --preset tiny --seed 1 --out "$RUN_DIR/tiny"
"$BIN/eep-coordinator" --config config/demo.toml --model "$RUN_DIR/tiny" --admin 'tcp://127.0.0.1:*' \
  --control 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --ready-file "$RUN_DIR/ready.json" \
  --worker-log-dir "$RUN_DIR" >"$RUN_DIR/coordinator.log" 2>&1 &
COORD_PID=$!
for _ in $(seq 100); do [ -f "$RUN_DIR/ready.json" ] && break; sleep 0.1; done
ADMIN=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$RUN_DIR/ready.json")
HTTP_PORT=$(sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' "$RUN_DIR/ready.json")
URL="http://127.0.0.1:$HTTP_PORT"
echo "== coordinator up (admin $ADMIN, OpenAI API $URL), waiting for 2 workers"
for _ in $(seq 300); do
  curl -sf "$URL/health" >/dev/null && break
  sleep 0.1
done
"$BIN/eepctl" --admin "$ADMIN" status
echo
echo "== curl $URL/v1/completions"
curl -s "$URL/v1/completions" -H 'Content-Type: application/json' \
  -d '{"model": "tiny", "prompt": "Hello", "max_tokens": 8, "temperature": 0}'
echo
echo
echo "== eep-bench on 2 workers"
"$BIN/eep-bench" --base-url "$URL" --num-prompts 64 --random-input-len 32 \
  --random-output-len 32 --seed 0 --no-progress
echo
echo "== eepctl scale --dp 4"
"$BIN/eepctl" --admin "$ADMIN" scale --dp 4
"$BIN/eepctl" --admin "$ADMIN" status
echo
echo "== eep-bench on 4 workers"
"$BIN/eep-bench" --base-url "$URL" --num-prompts 64 --random-input-len 32 \
  --random-output-len 32 --seed 0 --no-progress
echo
echo "== eepctl scale --dp 2"
"$BIN/eepctl" --admin "$ADMIN" scale --dp 2
"$BIN/eepctl" --admin "$ADMIN" status
echo
echo "== eep-bench while the fleet scales 2 -> 4 at 1 s and 4 -> 2 at 4 s, plotted"
"$BIN/eep-bench" --base-url "$URL" --admin "$ADMIN" --num-prompts 640 --random-input-len 16 \
  --random-output-len 64 --max-concurrency 32 --seed 0 --no-progress \
  --scale-at 1 --scale-to 4 --scale-at 4 --scale-to 2 \
  --plot "$PLOT_DIR/timeline.svg" --timeline-csv "$PLOT_DIR/timeline.csv" \
  --result-json "$PLOT_DIR/result.json"
echo "timeline of that run: $(realpath "$PLOT_DIR/timeline.svg") (open it in a browser; the"
echo "same series in $(realpath "$PLOT_DIR/timeline.csv"), every request in result.json)"
echo
echo "== eepctl shutdown"
"$BIN/eepctl" --admin "$ADMIN" shutdown
wait "$COORD_PID"
COORD_PID=
echo "demo finished; the coordinator's log was:"
sed 's/^/  /' "$RUN_DIR/coordinator.log" | tail -n 12
