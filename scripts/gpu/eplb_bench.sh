#!/bin/bash
# EPLB on a CUDA fleet of N GPUs: a generated model of the qwen3-30b-a3b shape with LAYERS layers
# (random bf16 weights, the router skewed towards a few experts), eep-bench 512 x 256 in / 128 out
# twice without EPLB and then with --enable-eplb, the workers batch-invariant with the exact
# combine (docs/cuda_backend.md) so that greedy outputs can be compared bit for bit. Prints the
# runs, the EPLB status (balancedness, bytes moved, time moving, longest step gap) and how many
# greedy outputs differ between the two runs without EPLB (the control) and between the first of
# them and the run with EPLB.
#   scripts/gpu/eplb_bench.sh N [LAYERS]
set -euo pipefail
# shellcheck source=scripts/gpu/env.sh
source "$(dirname "$0")/env.sh"
cd "$EEP_ROOT"
N=$1 LAYERS=${2:-8}
RESULTS=${OUT:-$(mktemp -d -t eep-eplb-XXXXXX)}
export EEP_MKMODEL_ARGS="--layers $LAYERS --router-skew 4"
export EEP_MODEL_NAME="qwen3-30b-a3b-l$LAYERS-skew4"
BENCH=(--num-prompts 512 --random-input-len 256 --random-output-len 128 --save-tokens)
echo "== EP=$N without EPLB"
WORKERS="--worker-arg=--batch-invariant --worker-arg=--moe-combine=exact"
EEP_WORKER_ARGS="$WORKERS" EEP_STATUS_JSON="$RESULTS/eplb-off-$N-status.json" \
  scripts/gpu/serve_bench.sh qwen3-30b-a3b "$N" "${BENCH[@]}" --result-json "$RESULTS/eplb-off-$N.json"
echo "== EP=$N without EPLB, again (the control)"
EEP_WORKER_ARGS="$WORKERS" scripts/gpu/serve_bench.sh qwen3-30b-a3b "$N" "${BENCH[@]}" \
  --result-json "$RESULTS/eplb-off2-$N.json" >/dev/null
echo "== EP=$N with EPLB"
EEP_WORKER_ARGS="$WORKERS --enable-eplb --num-redundant-experts $((8 * N)) --eplb-window-size 40
  --eplb-step-interval 60 --eplb-layers-per-step 1" \
  EEP_STATUS_JSON="$RESULTS/eplb-on-$N-status.json" \
  scripts/gpu/serve_bench.sh qwen3-30b-a3b "$N" "${BENCH[@]}" --result-json "$RESULTS/eplb-on-$N.json"
python3 - "$RESULTS/eplb-off-$N.json" "$RESULTS/eplb-off2-$N.json" "$RESULTS/eplb-on-$N.json" \
  "$RESULTS/eplb-on-$N-status.json" <<'PY'
import json, sys
off, off2, on, status = (json.load(open(p)) for p in sys.argv[1:5])
outputs = lambda r: {q["id"]: q["output_ids"] for q in r["requests"]}
def compare(name, x, y):
    a, b = outputs(x), outputs(y)
    differ = [i for i in a if a[i] != b.get(i)]
    same = sum(next((k for k, (s, t) in enumerate(zip(a[i], b[i])) if s != t), len(a[i]))
               for i in differ)
    print(f"{name}: greedy outputs differ in {len(differ)} of {len(a)} requests; those agree on "
          f"their first {same / max(len(differ), 1):.1f} tokens on average")
print(f"failed: {off['summary']['failed']} and {off2['summary']['failed']} without EPLB, "
      f"{on['summary']['failed']} with")
compare("without EPLB, run 1 vs run 2 (control)", off, off2)
compare("without EPLB (run 1) vs with EPLB", off, on)
eplb = status.get("eplb", {})
last = eplb.get("last_rebalance")
print(f"balancedness now {eplb.get('balancedness')} over {eplb.get('window_steps')} steps")
if last:
    gbps = last["bytes_moved"] / 1e9 / last["move_seconds"] if last.get("move_seconds") else 0
    print(f"last rebalance {last['plan_id']} ok={last['ok']}: {last['before_balancedness']:.4f} -> "
          f"{last['after_balancedness']:.4f} predicted; {last['bytes_moved'] / 1e9:.3f} GB received "
          f"(all ranks) in {last['seconds']:.3f} s, {last.get('move_seconds', 0):.4f} s moving "
          f"({gbps:.1f} GB/s all ranks); longest step gap {last['longest_step_gap_ms']:.1f} ms")
PY
