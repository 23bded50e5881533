#!/bin/bash
# Where a serving run's GPU time goes: scripts/gpu/serve_bench.sh with every worker under Nsight
# Systems (nsys, CUDA trace, graph nodes traced one by one), then a breakdown per kernel family
# (scripts/gpu/profile_breakdown.py) over each worker's busiest stretch (the benchmark).
#   scripts/gpu/profile_serve.sh PRESET N [eep-bench arguments...]
# Reports (worker-PID.nsys-rep) and tables go to $OUT (default /tmp/eep-profile).
set -uo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=scripts/gpu/env.sh
source "$HERE/env.sh"
NSYS=$(command -v nsys || ls /usr/local/cuda/bin/nsys /opt/nvidia/nsight-systems/*/bin/nsys 2>/dev/null | head -n 1)
if [ -z "$NSYS" ]; then
  echo "nsys (Nsight Systems) is not installed here: nothing to profile with"
  exit 1
fi
"$NSYS" --version
PROFILE_DIR=${OUT:-/tmp/eep-profile}
mkdir -p "$PROFILE_DIR"
WRAPPER=$(mktemp -t eep-worker-nsys-XXXXXX)
# The coordinator starts this in place of eep-worker. nsys runs in a session of its own, so that
# the SIGKILL which follows a stop after 3 s reaches only this script: the stop's SIGTERM is
# passed on to the worker, nsys sees it exit and writes the report, however long that takes.
cat >"$WRAPPER" <<WRAP
#!/bin/bash
setsid "$NSYS" profile --trace=cuda --cuda-graph-trace=node --sample=none --cpuctxsw=none \\
  --force-overwrite=true -o "$PROFILE_DIR/worker-\$\$" "$EEP_ROOT/build-gpu/bin/eep-worker" "\$@" &
NSYS_PID=\$!
descendants() { for c in \$(pgrep -P "\$1"); do echo "\$c"; descendants "\$c"; done; }
stop_worker() {
  for p in \$(descendants \$NSYS_PID); do
    [ "\$(cat /proc/\$p/comm 2>/dev/null)" = eep-worker ] && kill -TERM "\$p"
  done
}
trap stop_worker TERM INT
wait \$NSYS_PID
wait \$NSYS_PID
WRAP
chmod +x "$WRAPPER"
export EEP_WORKER_ARGS="${EEP_WORKER_ARGS:-} --worker-binary $WRAPPER"
"$HERE/serve_bench.sh" "$@"
# nsys writes the reports after its workers exit.
for _ in $(seq 120); do pgrep -f "nsys profile" >/dev/null || break; sleep 1; done
rm -f "$WRAPPER"
for rep in "$PROFILE_DIR"/worker-*.nsys-rep; do
  [ -f "$rep" ] || continue
  "$NSYS" stats --quiet --report cuda_gpu_trace --format csv --output "${rep%.nsys-rep}" \
    --force-export=true "$rep" >/dev/null
  python3 "$HERE/profile_breakdown.py" "${rep%.nsys-rep}_cuda_gpu_trace.csv" |
    tee "${rep%.nsys-rep}.txt"
  rm -f "${rep%.nsys-rep}.sqlite"
done
