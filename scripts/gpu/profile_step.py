#!/usr/bin/env python3
"""Where a model step's GPU time goes, from Nsight Compute's per-kernel durations.

Input: `ncu --metrics gpu__time_duration.sum --graph-profiling node --csv --print-units base`
over bench_model_step (scripts/gpu/profile_step.sh), so every kernel, CUDA-graph nodes included,
was timed on its own (serialized: no overlap, no launch gaps). A step starts at its embedding
kernel, and a phase is a run of steps whose embedding has the same grid (bench_model_step runs
its prefill steps, then the decode steps of each batch size; --phases names them in that order).
Per phase, the median step's GPU time per kernel family is printed;
set against the step's measured wall time (bench_model_step without ncu), the rest is host
work, launch gaps and waiting."""
import argparse
import csv
import re
import statistics
import sys

# First match wins; the names are our kernels' (kernels/src/cuda) and the libraries'.
FAMILIES = [
    ("attention", r"paged_attention"),
    ("expert GEMM (grouped, mma.sync)", r"grouped_matmul"),
    ("dense GEMM (cuBLAS)", r"gemm|nvjet|xmma|cutlass|sm90_|sm80_|cublas"),
    ("exchange (NCCL)", r"nccl"),
    ("MoE route, gather, combine", r"router|count_entries|scan_offsets|assign_rows|gather_entries|"
     r"scatter_entries|pack_rows|choose_replicas|combine_|set_dense_offsets"),
    ("sampling", r"sampling|Radix|Segmented|DeviceScan|cub::"),
    ("norm, embedding, qkv, SiLU", r"rmsnorm|embedding|qkv_prepare|silu_mul|rowwise_matmul"),
]
UNITS_NS = {"nsecond": 1.0, "ns": 1.0, "usecond": 1e3, "us": 1e3, "msecond": 1e6, "ms": 1e6,
            "second": 1e9, "s": 1e9}


def family(name):
    for label, pattern in FAMILIES:
        if re.search(pattern, name):
            return label
    return "other: " + name[:50]


def read_kernels(path):
    """(kernel name, grid, ns) in launch order."""
    kernels = []
    with open(path, newline="") as f:
        lines = [line for line in f if line.startswith('"')]  # ncu prints its own notes too
    for row in csv.DictReader(lines):
        if row.get("Metric Name") != "gpu__time_duration.sum":
            continue
        value = float(row["Metric Value"].replace(",", ""))
        kernels.append((row["Kernel Name"], row.get("Grid Size", ""),
                        value * UNITS_NS[row["Metric Unit"]]))
    return kernels


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("ncu_csv")
    parser.add_argument("--phases", required=True,
                        help="the phases' names in run order, e.g. 'prefill 8x256,decode 256'")
    parser.add_argument("--wall-ms", default="",
                        help="the measured ms per step of each phase, same order, e.g. 98.4,30.8")
    args = parser.parse_args()
    # Steps, each opened by its embedding kernel; runs of steps with the same embedding grid.
    runs = []  # [grid, [step, ...]], a step = [(name, ns), ...]
    for name, grid, ns in read_kernels(args.ncu_csv):
        if re.search(r"embedding", name):
            if not runs or runs[-1][0] != grid:
                runs.append([grid, []])
            runs[-1][1].append([])
        if runs:
            runs[-1][1][-1].append((name, ns))
    labels = args.phases.split(",")
    walls = [float(w) for w in args.wall_ms.split(",")] if args.wall_ms else []
    runs = [run for run in runs if len(run[1]) >= 2]  # a lone step is no phase (a warm-up)
    if len(runs) != len(labels):
        print(f"{args.ncu_csv}: {len(runs)} phases of 2 or more steps found "
              f"({[(grid, len(steps)) for grid, steps in runs]}), {len(labels)} named")
        return 1
    for idx, (label, (grid, group)) in enumerate(zip(labels, runs)):
        totals = [sum(ns for _, ns in step) for step in group]
        median_idx = sorted(range(len(group)), key=lambda i: totals[i])[len(group) // 2]
        step = group[median_idx]
        by_family = {}
        for name, ns in step:
            t, c = by_family.get(family(name), (0.0, 0))
            by_family[family(name)] = (t + ns, c + 1)
        gpu_ms = totals[median_idx] / 1e6
        print(f"\n### {label}: median of {len(group)} steps (embedding grid {grid}), "
              f"{len(step)} kernels, GPU time {gpu_ms:.2f} ms")
        wall = walls[idx] if idx < len(walls) else None
        base = wall if wall else gpu_ms
        print(f"| family | ms | % of {'the step' if wall else 'GPU time'} | kernels |")
        print("| --- | --- | --- | --- |")
        for fam, (t, c) in sorted(by_family.items(), key=lambda kv: -kv[1][0]):
            print(f"| {fam} | {t / 1e6:.3f} | {100 * t / 1e6 / base:.1f} | {c} |")
        if wall:
            print(f"| not GPU kernels (host, launches, gaps) | {wall - gpu_ms:.3f} | "
                  f"{100 * (wall - gpu_ms) / wall:.1f} | |")
            print(f"| **step (measured without ncu)** | **{wall:.3f}** | 100 | |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
