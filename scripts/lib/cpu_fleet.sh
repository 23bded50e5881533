# Sourced by the CPU benchmark scripts (bench_scale_weights.sh, bench_dispatch.sh): a generated
# model cached in $EEP_MODEL_CACHE (default /tmp/eep-models), and one coordinator at a time on
# free loopback ports. Needs BIN (the binaries' folder) set by the caller.
#   fleet_model PRESET            prints the model's folder, generating it on first use
#   fleet_start NAME ARGS...      starts eep-coordinator --device cpu ARGS (log RUN/coordinator-NAME.log),
#                                 waits until it serves; sets ADMIN and URL
#   fleet_stop                    shuts it down (also on exit)
FLEET_RUN=$(mktemp -d -t eep-fleet-XXXXXX)
FLEET_COORD=""

fleet_model() {
  local cache=${EEP_MODEL_CACHE:-/tmp/eep-models}
  if [ ! -f "$cache/$1/config.json" ]; then
    mkdir -p "$cache"
    "$BIN/eep-mkmodel" --preset "$1" --seed 1 --out "$cache/$1" >&2
  fi
  echo "$cache/$1"
}

fleet_stop() {
  if [ -n "$FLEET_COORD" ] && kill -0 "$FLEET_COORD" 2>/dev/null; then
    "$BIN/eepctl" --admin "$ADMIN" shutdown >/dev/null 2>&1 || kill "$FLEET_COORD"
    wait "$FLEET_COORD" 2>/dev/null || true
  fi
  FLEET_COORD=""
}
trap 'fleet_stop; rm -rf "$FLEET_RUN"' EXIT

fleet_start() {
  local name=$1 log="$FLEET_RUN/coordinator-$1.log"
  shift
  rm -f "$FLEET_RUN/ready.json"
  "$BIN/eep-coordinator" --device cpu --admin 'tcp://127.0.0.1:*' \
    --control 'tcp://127.0.0.1:*' --http 127.0.0.1:0 --ready-file "$FLEET_RUN/ready.json" "$@" \
    >"$log" 2>&1 &
  FLEET_COORD=$!
  for _ in $(seq 200); do [ -f "$FLEET_RUN/ready.json" ] && break; sleep 0.1; done
  ADMIN=$(sed -n 's/.*"admin":"\([^"]*\)".*/\1/p' "$FLEET_RUN/ready.json")
  URL="http://127.0.0.1:$(sed -n 's/.*"http_port":\([0-9]*\).*/\1/p' "$FLEET_RUN/ready.json")"
  for _ in $(seq 3000); do
    curl -sf "$URL/health" >/dev/null && return 0
    kill -0 "$FLEET_COORD" || { tail "$log"; exit 1; }
    sleep 0.1
  done
  echo "the fleet did not serve within 300 s" >&2
  tail "$log"
  exit 1
}
