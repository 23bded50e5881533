#!/bin/bash
# What --batch-invariant costs: one GPU-fleet size N serving a generated model of the
# qwen3-30b-a3b shape with LAYERS layers, eep-bench 512 x 256 in / 128 out against a fresh fleet
# per run, in the order default, --batch-invariant, default, --batch-invariant. Prints a table.
#   scripts/gpu/bench_batch_invariant.sh N [LAYERS]
set -euo pipefail
cd "$(dirname "$0")/../.."
N=$1 LAYERS=${2:-8}
RESULTS=${OUT:-$(mktemp -d -t eep-bi-XXXXXX)}
export EEP_MKMODEL_ARGS="--layers $LAYERS"
export EEP_MODEL_NAME="qwen3-30b-a3b-l$LAYERS"
BENCH=(--num-prompts 512 --random-input-len 256 --random-output-len 128)
runs=()
for i in 1 2; do
  for mode in default batch-invariant; do
    args=""
    [ "$mode" = batch-invariant ] && args="--worker-arg=--batch-invariant"
    EEP_WORKER_ARGS="$args" scripts/gpu/serve_bench.sh qwen3-30b-a3b "$N" "${BENCH[@]}" \
      --result-json "$RESULTS/bi-$mode-$i.json" >"$RESULTS/bi-$mode-$i.log" 2>&1
    runs+=("$mode:$RESULTS/bi-$mode-$i.json")
  done
done
python3 - "${runs[@]}" <<'PY'
import json, sys
print("| run | mode | output tok/s | mean TTFT ms | mean TPOT ms | failed |")
print("| --- | --- | --- | --- | --- | --- |")
for i, arg in enumerate(sys.argv[1:], 1):
    mode, path = arg.split(":", 1)
    s = json.load(open(path))["summary"]
    print(f"| {i} | {mode} | {s['output_throughput']:.0f} | {s['ttft']['mean_ms']:.1f} | "
          f"{s['tpot']['mean_ms']:.2f} | {s['failed']} |")
PY
