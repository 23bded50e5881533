#!/usr/bin/env bash
# Device-side wrapper for make_golden.py: writes $OUT/golden.tar.gz (the golden data),
# $OUT/sources.tar.gz (the transformers sources the forward depends on) and $OUT/log.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
export NCCL_NVLS_ENABLE=0
: "${OUT:?OUT must name an output folder}"
WORK=$(mktemp -d)
python3 scripts/gpu/make_golden.py --out "$WORK/golden" --dump-sources "$WORK/sources" 2>&1 | tee "$OUT/log.txt"
nvidia-smi --query-gpu=name,driver_version --format=csv >> "$OUT/log.txt" 2>&1 || true
tar -C "$WORK" -czf "$OUT/golden.tar.gz" golden
tar -C "$WORK" -czf "$OUT/sources.tar.gz" sources
ls -la "$WORK/golden" "$WORK/golden"/* >> "$OUT/log.txt"
