#!/usr/bin/env bash
# The embedded demo: installs what is needed, builds, starts a coordinator with 2 CPU workers,
# scales the fleet to 4 and back to 2 while printing what the operator sees, then shuts down.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
scripts/build.sh >/dev/null
BIN=${EEP_BUILD_DIR:-build}/bin

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
"$BIN/eep-coordinator" --config config/demo.toml --admin 'tcp://127.0.0.1:*' \
  --control 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --ready-file "$RUN_DIR/ready.json" \
  --worker-log-dir "$RUN_DIR" >"$RUN_DIR/coordinator.log" 2>&1 &
COORD_PID=$!
for _ in $(seq 100); do [ -f "$RUN_DIR/ready.json" ] && break; sleep 0.1; done
ADMIN=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$RUN_DIR/ready.json")
echo "== coordinator up (admin $ADMIN), waiting for 2 workers"
for _ in $(seq 100); do
  "$BIN/eepctl" --admin "$ADMIN" status --json | grep -q '"active_dp":2' && break
  sleep 0.1
done
"$BIN/eepctl" --admin "$ADMIN" status
echo
echo "== eepctl scale --dp 4"
"$BIN/eepctl" --admin "$ADMIN" scale --dp 4
"$BIN/eepctl" --admin "$ADMIN" status
echo
echo "== eepctl scale --dp 2"
"$BIN/eepctl" --admin "$ADMIN" scale --dp 2
"$BIN/eepctl" --admin "$ADMIN" status
echo
echo "== eepctl shutdown"
"$BIN/eepctl" --admin "$ADMIN" shutdown
wait "$COORD_PID"
COORD_PID=
echo "demo finished; the coordinator's log was:"
sed 's/^/  /' "$RUN_DIR/coordinator.log" | tail -n 25
