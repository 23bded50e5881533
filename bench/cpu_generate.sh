#!/usr/bin/env bash
# Tokens per second of eep-generate on the CPU backend (one rank, one sequence, greedy), for the
# generated `tiny` and `small` models: prompt of 128 tokens, 128 generated, best of 3 runs.
# Prints a table. Usage: bench/cpu_generate.sh [build dir]
set -euo pipefail
BIN=${1:-build}/bin
WORK=$(mktemp -d -t eep-bench-XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PROMPT=$(seq 0 127 | awk '{printf "%s%d", (NR>1?",":""), ($1*37)%500}')
printf "%-6s %12s %14s %14s\n" model params "prefill tok/s" "decode tok/s"
for preset in tiny small; do
  "$BIN/eep-mkmodel" --preset "$preset" --seed 1 --out "$WORK/$preset" >/dev/null
  best_prefill=0; best_decode=0
  for _ in 1 2 3; do
    line=$("$BIN/eep-generate" --model "$WORK/$preset" --prompt-ids "$PROMPT" --max-tokens 128 \
      --ignore-eos 2>&1 >/dev/null | grep '^prefill:')
    prefill=$(echo "$line" | sed 's/.*tokens in [0-9.e-]* s (\([0-9.]*\) tok\/s); decode.*/\1/')
    decode=$(echo "$line" | sed 's/.*decode: .* s (\([0-9.]*\) tok\/s).*/\1/')
    best_prefill=$(awk -v a="$best_prefill" -v b="$prefill" 'BEGIN{print (b>a)?b:a}')
    best_decode=$(awk -v a="$best_decode" -v b="$decode" 'BEGIN{print (b>a)?b:a}')
  done
  params=$(du -b "$WORK/$preset/model.safetensors" | awk '{printf "%.1fM", $1/2/1e6}')
  printf "%-6s %12s %14.0f %14.0f\n" "$preset" "$params" "$best_prefill" "$best_decode"
done
