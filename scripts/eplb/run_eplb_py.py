#!/usr/bin/env python3
"""DeepSeek's eplb.py on the cases of an EPLB reference file, timed, for a same-run comparison
with eep-eplb (docs/benchmarks.md, "EPLB at fleet scale").

eplb.py is not part of this repository: pass the folder that holds it (deepseek-ai/EPLB at commit
d52c72d, the one the reference file was made with). Needs torch (CPU is enough).

  python3 scripts/eplb/run_eplb_py.py --eplb-dir DIR tests/data/eplb/large-cases.json [--repeat 3]

For each case: ms per plan of `rebalance_experts` on `load` and on `drift_load` (best of
--repeat), the mean balancedness of the plan for `load` (mean over max of the ranks' loads, a
logical expert's load split evenly over its replicas, the metric of the reference file), the
share of slots whose expert differs between the two plans, and whether both plans equal the ones
recorded in the file (they should: same code, same inputs). Prints one JSON object per case.
"""
import argparse
import json
import sys
import time


def balancedness(phy2log, load, num_ranks, slots_per_rank):
    """Mean over layers of mean/max of the per-rank loads."""
    total = 0.0
    for layer_slots, layer_load in zip(phy2log, load):
        replicas = {}
        for expert in layer_slots:
            replicas[expert] = replicas.get(expert, 0) + 1
        ranks = [0.0] * num_ranks
        for slot, expert in enumerate(layer_slots):
            ranks[slot // slots_per_rank] += layer_load[expert] / replicas[expert]
        peak = max(ranks)
        total += (sum(ranks) / num_ranks) / peak if peak > 0 else 1.0
    return total / len(phy2log)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cases", help="a reference file: {'cases': [...]} as tests/data/eplb")
    parser.add_argument("--eplb-dir", required=True, help="the folder holding eplb.py")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="torch threads; 0: torch's default")
    args = parser.parse_args()
    sys.path.insert(0, args.eplb_dir)
    import torch  # noqa: E402
    import eplb  # noqa: E402

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    with open(args.cases) as f:
        cases = json.load(f)["cases"]
    for index, case in enumerate(cases):
        num_ranks, slots = case["num_ranks"], case["slots_per_rank"]
        plans, times_ms = {}, {}
        for key in ("load", "drift_load"):
            weight = torch.tensor(case[key], dtype=torch.int64)
            best = float("inf")
            for _ in range(args.repeat):
                start = time.perf_counter()
                phy2log, _, _ = eplb.rebalance_experts(weight, num_ranks * slots, case["num_groups"],
                                                       case["num_nodes"], num_ranks)
                best = min(best, time.perf_counter() - start)
            plans[key] = phy2log.tolist()
            times_ms[key] = round(best * 1000, 1)
        changed = sum(a != b for la, lb in zip(plans["load"], plans["drift_load"])
                      for a, b in zip(la, lb))
        num_slots = len(plans["load"]) * num_ranks * slots
        print(json.dumps({
            "case": index,
            "shape": f"{case['num_logical_experts']} / {num_ranks} x {slots} / {case['num_layers']}"
                     f" (groups {case['num_groups']}, nodes {case['num_nodes']})",
            "ms_per_plan": times_ms["load"],
            "ms_per_plan_drift": times_ms["drift_load"],
            "balancedness": round(balancedness(plans["load"], case["load"], num_ranks, slots), 4),
            "balancedness_drift": round(
                balancedness(plans["drift_load"], case["drift_load"], num_ranks, slots), 4),
            "slots_changed_after_drift": round(100.0 * changed / num_slots, 1),
            "equals_recorded_plans": plans["load"] == case["eplb_phy2log"]
                                     and plans["drift_load"] == case["eplb_drift_phy2log"],
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
        }), flush=True)


if __name__ == "__main__":
    main()
