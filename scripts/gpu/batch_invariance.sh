#!/bin/bash
# Does a request's greedy output depend on what it was batched with? One CUDA fleet of N GPUs
# serving a generated model of the qwen3-30b-a3b shape with LAYERS layers (random bf16 weights)
# runs the same prompts twice with eep-bench: all at once, then at most 3 at a time (other
# batch sizes, other neighbours, prefill chunks split differently). Prints how many greedy
# outputs differ. Scaling and EPLB can only keep greedy outputs identical on a fleet where this
# prints 0 (docs/cuda_backend.md).
#   scripts/gpu/batch_invariance.sh N [LAYERS]
set -euo pipefail
# shellcheck source=scripts/gpu/fleet.sh
source "$(dirname "$0")/fleet.sh"
N=$1 LAYERS=${2:-4}
RESULTS=${OUT:-$(mktemp -d -t eep-batch-XXXXXX)}
export EEP_MKMODEL_ARGS="--layers $LAYERS"
export EEP_MODEL_NAME="qwen3-30b-a3b-l$LAYERS"
fleet_start qwen3-30b-a3b "$N"
BENCH=(--base-url "http://127.0.0.1:$PORT" --seed 0 --no-progress --save-tokens
       --num-prompts 96 --random-input-len 200 --random-output-len 64)
echo "== all at once"
"$BIN/eep-bench" "${BENCH[@]}" --result-json "$RESULTS/batch-all.json" | grep -E "Successful|Output token"
echo "== at most 3 at a time"
"$BIN/eep-bench" "${BENCH[@]}" --max-concurrency 3 --result-json "$RESULTS/batch-3.json" |
  grep -E "Successful|Output token"
python3 - "$RESULTS/batch-all.json" "$RESULTS/batch-3.json" <<'PY'
import json, sys
a, b = ({q["id"]: q["output_ids"] for q in json.load(open(p))["requests"]} for p in sys.argv[1:3])
differ = [i for i in a if a[i] != b.get(i)]
first = [next((k for k, (s, t) in enumerate(zip(a[i], b[i])) if s != t), 0) for i in differ]
print(f"batch invariance: greedy outputs differ in {len(differ)} of {len(a)} requests"
      + (f", first at token {min(first)} (mean {sum(first) / len(first):.1f})" if differ else ""))
PY
