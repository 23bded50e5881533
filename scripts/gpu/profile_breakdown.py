#!/usr/bin/env python3
"""Breaks a worker's GPU time down by kernel family, from `nsys stats --report cuda_gpu_trace
--format csv` (scripts/gpu/profile_serve.sh). The window is the worker's busiest stretch: GPU work
merged wherever it pauses less than --gap-s, the longest such stretch kept (a serving benchmark;
the load and the warm-up before it are cut off). Prints the window, the GPU's busy share of it
and, per family, the time, its share of the window and the number of launches."""
import argparse
import csv
import re
import sys

# First match wins; the names are our kernels' (kernels/src/cuda) and the libraries'.
FAMILIES = [
    ("attention (paged_attention)", r"paged_attention"),
    ("expert GEMM (grouped_matmul)", r"grouped_matmul"),
    ("dense GEMM (cuBLAS)", r"gemm|nvjet|xmma|cutlass|sm90_|sm80_|cublas"),
    ("exchange (NCCL)", r"nccl"),
    ("MoE route, gather, combine", r"router|count_entries|scan_offsets|assign_rows|gather_entries|"
     r"scatter_entries|pack_rows|choose_replicas|combine_"),
    ("sampling", r"sampling|cub::|DeviceSegmented|DeviceRadix|DeviceScan|Sort"),
    ("norm, embedding, qkv, SiLU", r"rmsnorm|embedding|qkv_prepare|silu_mul|rowwise_matmul"),
    ("memcpy / memset", r"^\[CUDA mem"),
]


def family(name):
    for label, pattern in FAMILIES:
        if re.search(pattern, name):
            return label
    return "other: " + name[:60]


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("trace_csv")
    parser.add_argument("--gap-s", type=float, default=0.5)
    args = parser.parse_args()
    rows = []
    with open(args.trace_csv, newline="") as f:
        reader = csv.DictReader(f)
        start_key = next(k for k in reader.fieldnames if k.startswith("Start"))
        dur_key = next(k for k in reader.fieldnames if k.startswith("Duration"))
        name_key = "Name"
        for row in reader:
            rows.append((int(row[start_key]), int(row[dur_key]), row[name_key]))
    if not rows:
        print(f"{args.trace_csv}: no GPU work traced")
        return 1
    rows.sort()
    # Stretches of work with pauses under the gap; keep the longest.
    gap_ns = int(args.gap_s * 1e9)
    best = (0, 0, 0)  # (length, first index, end index)
    first = 0
    end_ns = rows[0][0] + rows[0][1]
    for idx in range(1, len(rows) + 1):
        if idx == len(rows) or rows[idx][0] > end_ns + gap_ns:
            length = end_ns - rows[first][0]
            if length > best[0]:
                best = (length, first, idx)
            if idx < len(rows):
                first = idx
                end_ns = rows[idx][0] + rows[idx][1]
            continue
        end_ns = max(end_ns, rows[idx][0] + rows[idx][1])
    window_ns, lo, hi = best
    window = rows[lo:hi]
    # Busy time: the union of the intervals (kernels of two streams may overlap).
    busy = 0
    cur_start, cur_end = window[0][0], window[0][0]
    for start, dur, _ in window:
        if start > cur_end:
            busy += cur_end - cur_start
            cur_start, cur_end = start, start + dur
        else:
            cur_end = max(cur_end, start + dur)
    busy += cur_end - cur_start
    totals = {}
    for _, dur, name in window:
        label = family(name)
        time_ns, count = totals.get(label, (0, 0))
        totals[label] = (time_ns + dur, count + 1)
    print(f"window {window_ns / 1e9:.3f} s ({len(window)} GPU operations), "
          f"GPU busy {busy / 1e9:.3f} s ({100.0 * busy / window_ns:.1f}%), "
          f"idle {(window_ns - busy) / 1e9:.3f} s")
    print("| family | GPU s | % of window | launches |")
    print("| --- | --- | --- | --- |")
    for label, (time_ns, count) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        print(f"| {label} | {time_ns / 1e9:.3f} | {100.0 * time_ns / window_ns:.1f} | {count} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
