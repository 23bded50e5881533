#!/bin/bash
# The figures of issue 21 Part 1 (elastic scaling and fault tolerance on GPUs) on a CUDA fleet of
# a generated model (scripts/gpu/fleet.sh), in parts that each fit one 10-minute device call:
#   updown  a fleet of 2 under eep-bench load, scales 2 -> 4 and 4 -> 2 in one run
#   downup  a fleet of 4 under the same load, scales 4 -> 3 and 3 -> 4 in one run
#   kill    a fleet of 4 under the same load, kill -9 of one worker (recovery, back to size);
#           then kill/recover cycles with GPU memory, threads, descriptors and live NCCL
#           communicators read after each
#   killcycles  the kill/recover cycles alone (a fresh fleet of 4)
#   cycles  scale cycles 2 -> 3 -> 2 (1 -> 2 -> 1 on 2 GPUs) with the same readings
# Usage: scripts/gpu/elastic_acceptance.sh [--parts LIST] [--tryout] [--help]
#   LIST: comma-separated parts, or `scale` (updown,downup) or `all` (default)
#   --tryout: a CPU try-out on a development machine (EEP_FLEET_BIN=build/bin,
#             EEP_FLEET_DEVICE=cpu, the tiny preset, small sizes), every knob still overridable
# Results go to $OUT (else a new temporary folder, printed): per run NAME.cmd (the exact command),
# NAME.bench.json (eep-bench's result), NAME.status.json (`eepctl status --json` after it),
# NAME.workers.log (the worker log lines about groups and weights), NAME.svg (eep-bench's
# timeline plot), NAME.probes.jsonl (readings); summary.json, summary.md (rows for
# docs/benchmarks.md) and the summary tables, printed last (again with
# `python3 scripts/gpu/elastic_acceptance.py summarize DIR`).
# Knobs (environment; defaults for the GPU machine):
#   EEP_ACC_PRESET=qwen3-30b-a3b  EEP_ACC_LAYERS=  (empty: the preset's)  EEP_ACC_GPUS=(nvidia-smi -L)
#   EEP_ACC_PROMPTS=6144 EEP_ACC_INPUT_LEN=256 EEP_ACC_OUTPUT_LEN=128 EEP_ACC_CONCURRENCY=1024
#     (0: every prompt at once) EEP_ACC_BENCH_ARGS= (more eep-bench arguments for the loaded runs)
#     The issue's requests (256 in / 128 out, streamed), but 6144 of them at most 1024 in flight
#     rather than 512 at once: 512 at once end in 8.6 s at EP=2 (benchmarks.md (c)), before a
#     scale whose new ranks take about 14 GB each in 64 MiB chunks (one per serving step) can
#     end; 1024 in flight fill 4 ranks of --max-num-seqs 256 and keep a queue before 2, so the
#     windows before and after a scale both measure a full fleet.
#   EEP_ACC_UPDOWN="2 10:4 50:2"  EEP_ACC_DOWNUP="4 10:3 50:4"  (start size, then SECONDS:SIZE)
#   EEP_ACC_KILL="4 10:2" (start size, SECONDS:RANK)  EEP_ACC_KILL_PROMPTS=2048
#   EEP_ACC_KILL_CYCLES=10  EEP_ACC_CYCLES=10  EEP_ACC_CYCLE_DP="2 3" ("1 2" with 2 GPUs)
#   EEP_ACC_CYCLES_LAYERS=8 (the cycles' model; empty: the preset's)  EEP_ACC_PROBE_PROMPTS=8
#   EEP_ACC_MEM_TOLERANCE_MIB=128  EEP_ACC_STATUS_WAIT_S=600
#   EEP_ACC_DEADLINE_S=540: past it (since the start) no cycle or part begins, so the summary
#     still prints within a 600 s device call
#   EEP_WORKER_ARGS (coordinator flags, fleet.sh), default on CUDA
#     "--worker-arg=--gpu-memory-utilization=0.7": a staying rank holds two generations'
#     weights during a scale (docs/weight_transfer.md); --max-workers is the GPU count.
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d' | sed 's/^# \{0,1\}//'; }
PARTS=all
TRYOUT=0
while [ $# -gt 0 ]; do
  case $1 in
    --parts) PARTS=${2:?--parts needs a list}; shift 2 ;;
    --parts=*) PARTS=${1#--parts=}; shift ;;
    --tryout) TRYOUT=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "unknown argument: $1 (--help)" >&2; exit 2 ;;
  esac
done
case $PARTS in
  all) PARTS=updown,downup,kill,cycles ;;
  scale) PARTS=updown,downup ;;
esac
for part in ${PARTS//,/ }; do
  case $part in
    updown | downup | kill | killcycles | cycles) ;;
    *) echo "unknown part: $part (updown, downup, kill, killcycles, cycles, scale, all)" >&2; exit 2 ;;
  esac
done
if [ "$TRYOUT" = 1 ]; then
  export EEP_FLEET_BIN=${EEP_FLEET_BIN:-build/bin} EEP_FLEET_DEVICE=${EEP_FLEET_DEVICE:-cpu}
  : "${EEP_ACC_PRESET:=tiny}" "${EEP_ACC_PROMPTS:=160}" "${EEP_ACC_INPUT_LEN:=16}"
  : "${EEP_ACC_OUTPUT_LEN:=64}" "${EEP_ACC_CONCURRENCY:=32}" "${EEP_ACC_UPDOWN:=2 2:4 6:2}"
  : "${EEP_ACC_DOWNUP:=4 2:3 6:4}" "${EEP_ACC_KILL:=4 1.5:2}" "${EEP_ACC_KILL_PROMPTS:=96}"
  : "${EEP_ACC_KILL_CYCLES:=3}" "${EEP_ACC_CYCLES:=3}" "${EEP_ACC_CYCLES_LAYERS:=}"
  : "${EEP_ACC_GPUS:=4}" "${EEP_ACC_PROBE_PROMPTS:=4}"
fi
# shellcheck source=scripts/gpu/fleet.sh
source "$HERE/fleet.sh"  # cd "$EEP_ROOT"; BIN

DEVICE=${EEP_FLEET_DEVICE:-cuda}
HAVE_SMI=0
command -v nvidia-smi >/dev/null 2>&1 && HAVE_SMI=1
if [ -n "${EEP_ACC_GPUS:-}" ]; then
  NUM_GPUS=$EEP_ACC_GPUS
elif [ "$HAVE_SMI" = 1 ]; then
  NUM_GPUS=$(nvidia-smi -L | wc -l)
else
  NUM_GPUS=4
fi
PRESET=${EEP_ACC_PRESET:-qwen3-30b-a3b}
LAYERS=${EEP_ACC_LAYERS:-}
PROMPTS=${EEP_ACC_PROMPTS:-6144}
INPUT_LEN=${EEP_ACC_INPUT_LEN:-256}
OUTPUT_LEN=${EEP_ACC_OUTPUT_LEN:-128}
CONCURRENCY=${EEP_ACC_CONCURRENCY:-1024}
read -r -a EXTRA_BENCH <<<"${EEP_ACC_BENCH_ARGS:-}"
UPDOWN=${EEP_ACC_UPDOWN:-2 10:4 50:2}
DOWNUP=${EEP_ACC_DOWNUP:-4 10:3 50:4}
KILL=${EEP_ACC_KILL:-4 10:2}
KILL_PROMPTS=${EEP_ACC_KILL_PROMPTS:-2048}
KILL_CYCLES=${EEP_ACC_KILL_CYCLES:-10}
CYCLES=${EEP_ACC_CYCLES:-10}
if [ "$NUM_GPUS" -ge 3 ]; then CYCLE_DP=${EEP_ACC_CYCLE_DP:-2 3}; else CYCLE_DP=${EEP_ACC_CYCLE_DP:-1 2}; fi
CYCLES_LAYERS=${EEP_ACC_CYCLES_LAYERS-8}
PROBE_PROMPTS=${EEP_ACC_PROBE_PROMPTS:-8}
MEM_TOLERANCE=${EEP_ACC_MEM_TOLERANCE_MIB:-128}
STATUS_WAIT_S=${EEP_ACC_STATUS_WAIT_S:-600}
DEADLINE=${EEP_ACC_DEADLINE_S:-540}
if [ "$DEVICE" = cuda ]; then
  WORKER_ARGS="${EEP_WORKER_ARGS---worker-arg=--gpu-memory-utilization=0.7} --max-workers $NUM_GPUS"
else
  WORKER_ARGS=${EEP_WORKER_ARGS---worker-arg=--kv-blocks=256 --worker-arg=--cpu-threads=1}
fi
HELPER=(python3 "$HERE/elastic_acceptance.py")
for tool in eep-coordinator eep-worker eepctl eep-bench eep-mkmodel; do
  [ -x "$BIN/$tool" ] || { echo "no $BIN/$tool: build first (scripts/gpu/build.sh)" >&2; exit 1; }
done

RESULTS=${OUT:-$(mktemp -d -t eep-acceptance-XXXXXX)}
mkdir -p "$RESULTS"
date -u +%Y-%m-%dT%H:%MZ >"$RESULTS/date.txt"
if [ "$HAVE_SMI" = 1 ]; then
  # "4 x NVIDIA H100 80GB HBM3, driver 580.95.05" from nvidia-smi -L.
  { nvidia-smi -L | sed -e 's/^GPU [0-9]*: //' -e 's/ (UUID.*//' | sort | uniq -c |
      sed -E 's/^ *([0-9]+) /\1 x /' | paste -sd ';' -
    # sed reads to the end: `head -1` would end nvidia-smi with SIGPIPE, fatal under pipefail.
    nvidia-smi --query-gpu=driver_version --format=csv,noheader | sed -n '1s/^/driver /p'; } |
    paste -sd ',' - | sed 's/,/, /' >"$RESULTS/machine.txt"
else
  echo "$(uname -n), $(nproc) CPUs, no nvidia-smi (GPU memory n/a)" >"$RESULTS/machine.txt"
fi
{
  env | grep -E '^(EEP_ACC_|EEP_FLEET_|EEP_WORKER_ARGS=|EEP_MODEL_CACHE=)' | sort | sed 's/=\(.*\)/="\1"/' |
    paste -sd ' ' -
  echo "scripts/gpu/elastic_acceptance.sh --parts $PARTS$([ "$TRYOUT" = 1 ] && echo ' --tryout')"
} | paste -sd ' ' - | sed 's/^ //' >"$RESULTS/script.cmd"
echo "== results in $RESULTS; $(cat "$RESULTS/machine.txt"); device $DEVICE, $NUM_GPUS GPUs"

# What the summary lists apart: parts left out, and what went wrong outside eep-bench's report.
skipped() { echo "== skipped: $1"; echo "$1" >>"$RESULTS/skipped.txt"; }
problem() { echo "== FAILED: $1"; echo "$1" >>"$RESULTS/problems.txt"; }
# Past EEP_ACC_DEADLINE_S since the start, cycles and parts stop so that the summary is still
# printed inside the device call's limit.
out_of_time() {
  [ "$SECONDS" -ge "$DEADLINE" ] || return 1
  problem "$1: past EEP_ACC_DEADLINE_S=$DEADLINE s"
}
# How long a step may still wait: EEP_ACC_STATUS_WAIT_S, at most until 40 s past the deadline.
wait_s() {
  local left=$((DEADLINE + 40 - SECONDS))
  [ "$left" -lt 10 ] && left=10
  [ "$left" -gt "$STATUS_WAIT_S" ] && left=$STATUS_WAIT_S
  echo "$left"
}

# The command line as text, with this fleet's addresses as placeholders.
show_cmd() {
  local word out=""
  for word in "$@"; do
    word=${word//"$RESULTS"\//}
    [ -n "${PORT:-}" ] && word=${word//"127.0.0.1:$PORT"/127.0.0.1:PORT}
    [ -n "${ADMIN:-}" ] && word=${word//"$ADMIN"/ADMIN}
    word=${word#"$BIN"/}
    out+=" $(printf '%q' "$word")"
  done
  echo "${out# }"
}

# Starts the fleet of a part: PRESET at size N, with LAYERS layers when given.
start_fleet() {
  local n=$1 layers=$2
  if [ -n "$layers" ]; then
    export EEP_MODEL_NAME="$PRESET-l$layers" EEP_MKMODEL_ARGS="--layers $layers"
  else
    unset EEP_MODEL_NAME EEP_MKMODEL_ARGS
  fi
  EEP_WORKER_ARGS=$WORKER_ARGS fleet_start "$PRESET" "$n"
}

# Keeps what the summary needs from the logs, then stops the fleet (fleet.sh) quietly.
stop_fleet() {
  local name=$1 f
  if [ -n "${RUN:-}" ] && [ -d "$RUN" ]; then
    (cd "$RUN" && grep -H -E '\[group |generation [0-9]+ built|handed over|registered with|exiting' \
      w*.log) >"$RESULTS/$name.workers.log" 2>/dev/null || true
    for f in "$RUN"/*.log; do
      echo "--- $(basename "$f")"
      tail -n 200 "$f"
    done >"$RESULTS/$name.log-tails.txt"
  fi
  fleet_stop >/dev/null 2>&1 || true
  COORD="" RUN=""
}

start_failed() {
  stop_fleet "$1"
  problem "$1: the fleet did not start"
  tail -n 40 "$RESULTS/$1.log-tails.txt" 2>/dev/null || true
}

status_json() {
  "$BIN/eepctl" --admin "$ADMIN" status --json >"$RESULTS/$1.status.json" || true
}

# eep-bench under the issue's load, with more arguments (scales, kills) after NAME and PROMPTS.
loaded_bench() {
  local name=$1 prompts=$2
  shift 2
  local cmd=("$BIN/eep-bench" --base-url "http://127.0.0.1:$PORT" --admin "$ADMIN" --seed 0
    --no-progress --stream --num-prompts "$prompts" --random-input-len "$INPUT_LEN"
    --random-output-len "$OUTPUT_LEN")
  [ "$CONCURRENCY" != 0 ] && cmd+=(--max-concurrency "$CONCURRENCY")
  cmd+=("$@" "${EXTRA_BENCH[@]}" --result-json "$RESULTS/$name.bench.json"
    --plot "$RESULTS/$name.svg")
  show_cmd "${cmd[@]}" >"$RESULTS/$name.cmd"
  echo "== $name: $(cat "$RESULTS/$name.cmd")"
  timeout "$(wait_s)" "${cmd[@]}" >"$RESULTS/$name.bench.txt" 2>&1 ||
    problem "$name: eep-bench exited with $? (124: stopped at the deadline)"
  sed -n '/Scales =\|Faults =/,$p' "$RESULTS/$name.bench.txt"
  grep -E 'Successful requests|Failed requests|Output token throughput' "$RESULTS/$name.bench.txt" || true
}

# A few requests (every rank runs the model in this generation), then a reading.
probe() {
  local name=$1 label=$2
  shift 2
  "$BIN/eep-bench" --base-url "http://127.0.0.1:$PORT" --seed 1 --no-progress \
    --num-prompts "$PROBE_PROMPTS" --random-input-len 16 --random-output-len 8 \
    --result-json "$RESULTS/probe-load.json" >/dev/null 2>&1 || true
  "${HELPER[@]}" probe --eepctl "$BIN/eepctl" --admin "$ADMIN" --log-dir "$RUN" --label "$label" \
    --coordinator-pid "$COORD" --load-json "$RESULTS/probe-load.json" "$@" \
    >>"$RESULTS/$name.probes.jsonl"
  tail -n 1 "$RESULTS/$name.probes.jsonl" | "${HELPER[@]}" show-probe
}

# updown / downup: one loaded run through the scales of SPEC ("START AT:SIZE ...").
part_scales() {
  local name=$1 spec=$2 start pair largest args=()
  read -r start _ <<<"$spec"
  largest=$start
  for pair in ${spec#* }; do
    args+=(--scale-at "${pair%%:*}" --scale-to "${pair##*:}")
    [ "${pair##*:}" -gt "$largest" ] && largest=${pair##*:}
  done
  if [ "$largest" -gt "$NUM_GPUS" ]; then skipped "$name: it needs $largest GPUs, $NUM_GPUS here"; return; fi
  start_fleet "$start" "$LAYERS" || { start_failed "$name"; return; }
  loaded_bench "$name" "$PROMPTS" "${args[@]}"
  status_json "$name"
  stop_fleet "$name"
}

# kill: the loaded run with one kill, then the cycles; killcycles: the cycles alone.
part_kill() {
  local part=$1 start pair at rank cycle pid began recoveries
  read -r start pair <<<"$KILL"
  at=${pair%%:*} rank=${pair##*:}
  if [ "$start" -gt "$NUM_GPUS" ]; then skipped "$part: it needs $start GPUs, $NUM_GPUS here"; return; fi
  start_fleet "$start" "$LAYERS" || { start_failed "$part"; return; }
  if [ "$part" = kill ]; then
    loaded_bench kill "$KILL_PROMPTS" --kill-at "$at" --kill-rank "$rank"
    status_json kill
  fi
  if [ "$KILL_CYCLES" -le 0 ]; then stop_fleet "$part"; return; fi
  echo "kill -9 of the worker of rank $rank, then: wait until $start serve again, eep-bench" \
    "--num-prompts $PROBE_PROMPTS --random-input-len 16 --random-output-len 8, read; $KILL_CYCLES" \
    "times" >"$RESULTS/kill-cycles.cmd"
  echo "== kill-cycles: $(cat "$RESULTS/kill-cycles.cmd")"
  if ! "${HELPER[@]}" wait-fleet --eepctl "$BIN/eepctl" --admin "$ADMIN" --dp "$start" \
    --timeout-s "$(wait_s)"; then
    problem "kill-cycles: the fleet was not back at $start after the run"
    stop_fleet kill-cycles
    return
  fi
  probe kill-cycles "cycle 0"
  for ((cycle = 1; cycle <= KILL_CYCLES; cycle++)); do
    out_of_time "kill-cycles: stopped before cycle $cycle" && break
    recoveries=$("${HELPER[@]}" status-field --eepctl "$BIN/eepctl" --admin "$ADMIN" \
      health.num_recoveries) || { problem "kill-cycles: cycle $cycle: no status"; break; }
    pid=$("${HELPER[@]}" rank-pid --eepctl "$BIN/eepctl" --admin "$ADMIN" --rank "$rank") ||
      { problem "kill-cycles: cycle $cycle: no worker of rank $rank"; break; }
    began=$(now)
    kill -9 "$pid"
    if ! "${HELPER[@]}" wait-fleet --eepctl "$BIN/eepctl" --admin "$ADMIN" --dp "$start" \
      --recoveries $((recoveries + 1)) --timeout-s "$(wait_s)"; then
      problem "kill-cycles: cycle $cycle: the fleet did not come back"
      break
    fi
    probe kill-cycles "cycle $cycle" --note "killed pid $pid (rank $rank); whole again after $(since "$began") s"
  done
  stop_fleet kill-cycles
}

part_cycles() {
  local low high cycle
  read -r low high <<<"$CYCLE_DP"
  if [ "$high" -gt "$NUM_GPUS" ]; then skipped "cycles: it needs $high GPUs, $NUM_GPUS here"; return; fi
  start_fleet "$low" "$CYCLES_LAYERS" || { start_failed cycles; return; }
  echo "on $PRESET${CYCLES_LAYERS:+ with $CYCLES_LAYERS layers}: $CYCLES times eepctl scale --dp $high," \
    "eep-bench --num-prompts $PROBE_PROMPTS --random-input-len 16 --random-output-len 8, read;" \
    "eepctl scale --dp $low, the same" >"$RESULTS/cycles.cmd"
  echo "== cycles: $(cat "$RESULTS/cycles.cmd")"
  probe cycles "cycle 0 low"
  for ((cycle = 1; cycle <= CYCLES; cycle++)); do
    out_of_time "cycles: stopped before cycle $cycle" && break
    "$BIN/eepctl" --admin "$ADMIN" --json scale --dp "$high" --wait-s "$(wait_s)" \
      >>"$RESULTS/cycles.scales.jsonl" || echo "cycle $cycle: scale to $high failed"
    probe cycles "cycle $cycle high"
    "$BIN/eepctl" --admin "$ADMIN" --json scale --dp "$low" --wait-s "$(wait_s)" \
      >>"$RESULTS/cycles.scales.jsonl" || echo "cycle $cycle: scale to $low failed"
    probe cycles "cycle $cycle low"
  done
  status_json cycles
  stop_fleet cycles
}

for part in ${PARTS//,/ }; do
  out_of_time "$part: not started" && continue
  case $part in
    updown) part_scales updown "$UPDOWN" ;;
    downup) part_scales downup "$DOWNUP" ;;
    kill | killcycles) part_kill "$part" ;;
    cycles) part_cycles ;;
  esac
done
rm -f "$RESULTS/probe-load.json"
echo
"${HELPER[@]}" summarize "$RESULTS" --memory-tolerance-mib "$MEM_TOLERANCE"
