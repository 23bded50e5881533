#!/usr/bin/env bash
# Device-side wrapper for make_golden.py.
#   run_make_golden.sh             the whole golden data set, new: $OUT/golden.tar.gz (model,
#                                  golden.*, references.*), $OUT/sources.tar.gz (the transformers
#                                  sources the forward depends on) and $OUT/log.txt
#   run_make_golden.sh --references
#                                  only the float64 / bfloat16 references of the golden data
#                                  committed in tests/data/golden: $OUT/references.safetensors,
#                                  $OUT/references.json, $OUT/references-log.txt
set -euo pipefail
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0 PYTHONUNBUFFERED=1
: "${OUT:?OUT must name an output folder}"
WORK=$(mktemp -d)
if [ "${1:-}" = "--references" ]; then
  python3 scripts/gpu/make_golden.py --references-from tests/data/golden --out "$WORK/refs" 2>&1 |
    tee "$OUT/references-log.txt"
  nvidia-smi --query-gpu=name,driver_version --format=csv >> "$OUT/references-log.txt" 2>&1 || true
  cp "$WORK/refs/references.safetensors" "$WORK/refs/references.json" "$OUT/"
  exit 0
fi
python3 scripts/gpu/make_golden.py --out "$WORK/golden" --dump-sources "$WORK/sources" 2>&1 | tee "$OUT/log.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv >> "$OUT/log.txt" 2>&1 || true
tar -C "$WORK" -czf "$OUT/golden.tar.gz" golden
tar -C "$WORK" -czf "$OUT/sources.tar.gz" sources
ls -la "$WORK/golden" "$WORK/golden"/* >> "$OUT/log.txt"
