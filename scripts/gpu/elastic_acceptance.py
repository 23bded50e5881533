#!/usr/bin/env python3
"""Helper of scripts/gpu/elastic_acceptance.sh (python3, standard library only).

  probe --eepctl BIN/eepctl --admin ADDR --log-dir DIR --label L [--coordinator-pid P]
      One JSON line on stdout: the fleet's generation and size, GPU memory per card
      (nvidia-smi; null where there is none), and per worker its rank, pid, device, threads,
      descriptors and RSS (/proc) and the groups its log says are live (built minus destroyed
      since the process registered; NCCL ones apart).
  rank-pid --eepctl ... --admin ADDR --rank R
      The pid of the ACTIVE worker of rank R.
  wait-fleet --eepctl ... --admin ADDR --dp N [--recoveries K] [--timeout-s S]
      Waits until N workers serve, no scale runs and at least K recoveries happened.
  summarize DIR
      Reads what the script left in DIR (eep-bench result JSONs, status JSONs, probes, worker
      log lines), prints the summary tables, writes DIR/summary.json and DIR/summary.md (rows
      for docs/benchmarks.md: date, machine, exact commands). Exit status 2 when a part did
      not get through (problems.txt), 1 with --strict when a check failed, else 0.
"""
import argparse
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time


# ---------------------------------------------------------------------------------------------
# Reading the fleet


def eepctl_json(eepctl, admin, *args):
    out = subprocess.run([eepctl, "--admin", admin, "--json", *args], check=False,
                         capture_output=True, text=True, timeout=60)
    try:
        return json.loads(out.stdout)
    except json.JSONDecodeError:
        return {"ok": False, "error": (out.stdout + out.stderr).strip()}


def gpu_memory_mib():
    """memory.used per GPU in MiB, or None without nvidia-smi (a CPU try-out)."""
    if shutil.which("nvidia-smi") is None:
        return None
    out = subprocess.run(["nvidia-smi", "--query-gpu=index,memory.used",
                          "--format=csv,noheader,nounits"], capture_output=True, text=True,
                         check=False, timeout=60)
    if out.returncode != 0:
        return None
    used = {}
    for line in out.stdout.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0].isdigit():
            used[parts[0]] = int(float(parts[1]))
    return used or None


def proc_figures(pid):
    figures = {"threads": None, "fds": None, "rss_kib": None}
    try:
        with open(f"/proc/{pid}/status", encoding="utf-8") as status:
            for line in status:
                if line.startswith("Threads:"):
                    figures["threads"] = int(line.split()[1])
                elif line.startswith("VmRSS:"):
                    figures["rss_kib"] = int(line.split()[1])
        figures["fds"] = len(os.listdir(f"/proc/{pid}/fd"))
    except (OSError, ValueError):
        pass
    return figures


GROUP_BUILT = re.compile(r"\[group (\S+) gen=(\d+) rank=\d+/\d+( nccl)?\] built ")
GROUP_DESTROYED = re.compile(r"\[group (\S+) gen=(\d+) rank=\d+/\d+( nccl)?\] destroyed")


def live_groups(log_path):
    """Groups built minus destroyed by the process that registered last in this log (a worker
    relaunched under the same id appends to its log)."""
    try:
        with open(log_path, encoding="utf-8", errors="replace") as log:
            lines = log.readlines()
    except OSError:
        return None
    start = 0
    for idx, line in enumerate(lines):
        if "registered with " in line:
            start = idx
    live = {}
    for line in lines[start:]:
        built = GROUP_BUILT.search(line)
        if built:
            live[(built.group(1), built.group(2))] = bool(built.group(3))
            continue
        destroyed = GROUP_DESTROYED.search(line)
        if destroyed:
            live.pop((destroyed.group(1), destroyed.group(2)), None)
    return {"groups": len(live), "nccl": sum(1 for nccl in live.values() if nccl)}


def probe(args):
    status = eepctl_json(args.eepctl, args.admin, "status")
    health = status.get("health") or {}
    record = {"label": args.label, "time": time.time(), "ok": bool(status.get("ok")),
              "generation": status.get("generation"), "active_dp": status.get("active_dp"),
              "num_recoveries": health.get("num_recoveries"),
              "last_recovery_s": health.get("last_recovery_s"),
              "gpu_memory_mib": gpu_memory_mib(), "workers": []}
    if args.note:
        record["note"] = args.note
    if args.load_json:
        load = load_json(args.load_json, {}).get("summary", {})
        record["load"] = {"completed": load.get("completed"), "failed": load.get("failed")}
    if args.coordinator_pid:
        record["coordinator"] = proc_figures(args.coordinator_pid)
    for worker in status.get("workers", []):
        if worker.get("state") not in ("ACTIVE", "SPARE", "JOINING"):
            continue
        entry = {key: worker.get(key) for key in ("id", "rank", "pid", "state", "device_idx")}
        entry.update(proc_figures(worker.get("pid", 0)))
        groups = live_groups(os.path.join(args.log_dir, f"{worker.get('id')}.log"))
        entry["groups_live"] = groups["groups"] if groups else None
        entry["nccl_live"] = groups["nccl"] if groups else None
        record["workers"].append(entry)
    record["workers"].sort(key=lambda w: (w.get("rank", -1) if w.get("rank", -1) >= 0 else 99))
    print(json.dumps(record), flush=True)
    return 0


def show_probe(_args):
    """One probe line (stdin) as one line of text."""
    row = json.loads(sys.stdin.readline())
    load = row.get("load") or {}
    print(f"  [{row['label']}] generation {row.get('generation')}, dp {row.get('active_dp')}, "
          f"GPU MiB {mem_text(row)}; threads {workers_text(row, 'threads')}; "
          f"fds {workers_text(row, 'fds')}; NCCL {workers_text(row, 'nccl_live')}; "
          f"load {load.get('completed')} ok / {load.get('failed')} failed"
          + (f"; {row['note']}" if row.get("note") else ""), flush=True)
    return 0


def status_field(args):
    value = eepctl_json(args.eepctl, args.admin, "status")
    for key in args.path.split("."):
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        print(f"no {args.path} in the status", file=sys.stderr)
        return 1
    print(value)
    return 0


def rank_pid(args):
    status = eepctl_json(args.eepctl, args.admin, "status")
    for worker in status.get("workers", []):
        if worker.get("state") == "ACTIVE" and worker.get("rank") == args.rank:
            print(worker.get("pid"))
            return 0
    print(f"no ACTIVE worker of rank {args.rank}", file=sys.stderr)
    return 1


def wait_fleet(args):
    deadline = time.time() + args.timeout_s
    last = {}
    while time.time() < deadline:
        status = eepctl_json(args.eepctl, args.admin, "status")
        last = status
        health = status.get("health") or {}
        active = [w for w in status.get("workers", []) if w.get("state") == "ACTIVE"]
        if (status.get("active_dp") == args.dp and len(active) == args.dp
                and (status.get("scale") or {}).get("state") != "running"
                and health.get("num_recoveries", 0) >= args.recoveries):
            return 0
        time.sleep(0.1)
    print(f"the fleet was not whole at dp {args.dp} with {args.recoveries} recoveries within "
          f"{args.timeout_s} s; last status: {json.dumps(last)[:2000]}", file=sys.stderr)
    return 1


# ---------------------------------------------------------------------------------------------
# Summary


def load_json(path, default=None):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return default


def read_text(path, default=""):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return default


def load_jsonl(path):
    rows = []
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return rows


def fmt(value, spec=".2f", unit=""):
    if value is None:
        return "n/a"
    return f"{value:{spec}}{unit}"


def table(header, rows):
    out = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


NEW_RANK_BUILT = re.compile(r"generation (\d+) built in [\d.e+-]+ s \(rank (\d+) of (\d+),.*"
                            r"weights: (\d+) bytes from peers \(([\d.e+-]+) s in (\d+) chunks\)")
SERVING_RANK_BUILT = re.compile(r"generation (\d+) built: weights (\d+) bytes from peers and \d+ "
                                r"from the checkpoint, chunks sent in ([\d.e+-]+) s "
                                r"\(([\d.e+-]+) s in (\d+) chunks\)")


def receivers_from_logs(lines_path):
    """{generation: [{worker, bytes, seconds, chunks}]} of the ranks that received weights from
    peers, from the worker log lines the script kept ("FILE:LINE")."""
    out = {}
    try:
        with open(lines_path, encoding="utf-8", errors="replace") as f:
            lines = f.readlines()
    except OSError:
        return out
    for line in lines:
        worker = os.path.basename(line.split(":", 1)[0]).removesuffix(".log")
        new = NEW_RANK_BUILT.search(line)
        if new:
            gen, received, secs, chunks = int(new.group(1)), int(new.group(4)), float(
                new.group(5)), int(new.group(6))
        else:
            serving = SERVING_RANK_BUILT.search(line)
            if not serving:
                continue
            gen, received, secs, chunks = int(serving.group(1)), int(serving.group(2)), float(
                serving.group(3)), int(serving.group(5))
        if received > 0:
            out.setdefault(gen, []).append({"worker": worker, "bytes": received,
                                            "seconds": secs, "chunks": chunks})
    return out


def scale_summary(scale, receivers):
    """The figures the issue asks for, of one scale of eep-bench's report."""
    timeline = scale.get("timeline") or []
    build = scale.get("build_stages") or []
    windows = scale.get("windows") or {}
    # New ranks serve at the switch: the end of WAIT_ACKS (scale-up) or DRAIN_LEAVING.
    to_switch = sum(s["seconds"] for s in timeline if s["stage"] != "RETIRE_LEAVING")
    if scale.get("accepted_s", -1) >= 0 and scale.get("command_s", -1) >= 0:
        to_switch += scale["accepted_s"] - scale["command_s"]
    got = receivers.get(scale.get("target_generation"), [])
    per_gpu = [{"worker": r["worker"], "gb": r["bytes"] / 1e9, "seconds": r["seconds"],
                "gbps": r["bytes"] / 1e9 / r["seconds"] if r["seconds"] > 0 else None}
               for r in got]
    total_bytes = scale.get("weight_bytes_from_peers") or 0
    # Receiving ranks: from the logs; else the new ranks of a scale-up, the staying ones of a
    # scale-down.
    from_dp, to_dp = scale.get("from_dp") or 0, scale.get("to_dp") or 0
    receiving = len(got) or max(1, to_dp - from_dp if to_dp > from_dp else to_dp)
    transfer_s = scale.get("weight_transfer_s") or 0
    before = (windows.get("before") or {}).get("output_throughput")
    after = (windows.get("after") or {}).get("output_throughput")
    return {
        "from_dp": scale.get("from_dp"), "to_dp": scale.get("to_dp"),
        "outcome": scale.get("outcome"), "reason": scale.get("reason"),
        "command_s": scale.get("command_s"), "total_s": scale.get("total_s"),
        "to_serving_s": to_switch if timeline else None,
        "stages": {s["stage"]: s["seconds"] for s in timeline},
        "build_stages": {s["stage"]: s["seconds"] for s in build},
        "weight_gb_from_peers": total_bytes / 1e9,
        "weight_gb_from_checkpoint": (scale.get("weight_bytes_from_checkpoint") or 0) / 1e9,
        "weight_transfer_s": transfer_s,
        "receiving_gpus": receiving,
        "gbps_per_receiving_gpu": (total_bytes / receiving / 1e9 / transfer_s
                                   if transfer_s > 0 and total_bytes > 0 else None),
        "per_gpu": per_gpu,
        "longest_gap_during_ms": (windows.get("during") or {}).get("longest_gap_ms"),
        "throughput": {k: (windows.get(k) or {}).get("output_throughput")
                       for k in ("before", "during", "after")},
        "window_s": {k: ((windows.get(k) or {}).get("end_s", 0)
                         - (windows.get(k) or {}).get("begin_s", 0)) if windows.get(k) else None
                     for k in ("before", "during", "after")},
        "failed": {k: (windows.get(k) or {}).get("failed") for k in ("before", "during", "after")},
        "after_over_before": after / before if before and after is not None else None,
    }


def stage_text(summary):
    """The coordinator's stages, WAIT_ACKS with its build steps (each the slowest rank's)."""
    parts = []
    for stage, seconds in summary["stages"].items():
        part = f"{stage} {seconds:.2f}"
        if stage == "WAIT_ACKS" and summary["build_stages"]:
            part += " (" + ", ".join(f"{k} {v:.2f}" for k, v in
                                     summary["build_stages"].items()) + ")"
        parts.append(part)
    return "; ".join(parts) or "n/a"


def scale_info_stages(info):
    """stage_text of a ScaleInfo of the status (a recovery's, a scale of eepctl's)."""
    return stage_text({"stages": {s["stage"]: s["seconds"] for s in info.get("timeline", [])},
                       "build_stages": {s["stage"]: s["seconds"]
                                        for s in info.get("build_stages", [])}})


def size_text(num_bytes):
    return f"{num_bytes / 1e9:.2f} GB" if num_bytes >= 1e8 else f"{num_bytes / 1e6:.1f} MB"


def rate_text(gbps):
    return "n/a" if gbps is None else f"{gbps:.3g}"


def summarize_scale_run(name, outdir, report, md, result):
    bench = load_json(os.path.join(outdir, f"{name}.bench.json"))
    if bench is None:
        report.append(f"{name}: no eep-bench result ({name}.bench.json)")
        result["checks"].append({"run": name, "check": "eep-bench result", "ok": False})
        return
    receivers = receivers_from_logs(os.path.join(outdir, f"{name}.workers.log"))
    summ = bench["summary"]
    scales = [scale_summary(s, receivers) for s in bench.get("scales", [])]
    result["runs"][name] = {"command": read_text(os.path.join(outdir, f"{name}.cmd")),
                            "completed": summ["completed"], "failed": summ["failed"],
                            "duration_s": summ["duration_s"],
                            "output_throughput": summ["output_throughput"], "scales": scales}
    checks = [("0 failed requests", summ["failed"] == 0, f"{summ['failed']} failed")]
    for idx, s in enumerate(scales):
        checks.append((f"scale {idx + 1} {s['from_dp']} -> {s['to_dp']} succeeded",
                       s["outcome"] == "succeeded", f"{s['outcome']} {s['reason'] or ''}".strip()))
        if s["from_dp"] and s["to_dp"] and s["to_dp"] >= 2 * s["from_dp"]:
            ratio = s["after_over_before"]
            checks.append((f"scale {idx + 1} {s['from_dp']} -> {s['to_dp']}: after >= 1.8x before",
                           ratio is not None and ratio >= 1.8, f"ratio {fmt(ratio)}"))
    rows = []
    for s in scales:
        rows.append([f"{s['from_dp']} -> {s['to_dp']}", s["outcome"], fmt(s["command_s"]),
                     fmt(s["to_serving_s"], unit=" s"), stage_text(s),
                     f"{size_text(s['weight_gb_from_peers'] * 1e9)} to {s['receiving_gpus']} "
                     f"GPUs in {s['weight_transfer_s']:.2f} s",
                     rate_text(s["gbps_per_receiving_gpu"]),
                     ", ".join(f"{g['worker']} {size_text(g['gb'] * 1e9)} {rate_text(g['gbps'])}"
                               for g in s["per_gpu"]) or "n/a",
                     fmt(s["longest_gap_during_ms"], ".0f", " ms"),
                     " / ".join(fmt(s["throughput"][k], ".0f") for k in ("before", "during",
                                                                         "after")),
                     " / ".join(fmt(s["window_s"][k], ".1f") for k in ("before", "during",
                                                                       "after")),
                     fmt(s["after_over_before"], ".2f", "x")])
    header = ["scale", "outcome", "sent at s", "command to new ranks serving", "stages (s)",
              "weights from peers (slowest rank's s)", "GB/s per receiving GPU",
              "per receiving GPU (worker logs): received, GB/s",
              "longest token gap during", "out tok/s before / during / after",
              "window s before / during / after", "after / before"]
    text = table(header, rows)
    report.append(f"== {name}: {summ['completed']} completed, {summ['failed']} failed, "
                  f"{summ['duration_s']:.1f} s, {summ['output_throughput']:.0f} out tok/s\n"
                  + text)
    md.append(f"- Command: `{result['runs'][name]['command']}`\n\n{text}\n")
    add_checks(result, name, checks, report)


def add_checks(result, name, checks, report):
    for what, ok, detail in checks:
        result["checks"].append({"run": name, "check": what, "ok": ok, "detail": detail})
        report.append(f"  [{'PASS' if ok else 'FAIL'}] {what}: {detail}")


def memory_delta(first, last):
    if not first or not last or first.get("gpu_memory_mib") is None \
            or last.get("gpu_memory_mib") is None:
        return None
    return {gpu: last["gpu_memory_mib"].get(gpu, 0) - used
            for gpu, used in first["gpu_memory_mib"].items()}


def mem_text(probe_row):
    used = probe_row.get("gpu_memory_mib")
    if used is None:
        return "n/a (no nvidia-smi)"
    return " / ".join(f"{used[k]}" for k in sorted(used, key=int))


def workers_text(probe_row, key):
    return " / ".join(f"{w['id']}:{'n/a' if w.get(key) is None else w.get(key)}"
                      for w in probe_row.get("workers", []))


def resource_checks(name, first, last, tolerance_mib, report, result):
    """Flat between probes first and last: memory within the tolerance, and threads, fds and
    live groups equal on every worker that lived through both (same pid)."""
    report.append(f"  {name}: [{first['label']}] -> [{last['label']}]")
    checks = []
    delta = memory_delta(first, last)
    if delta is None:
        checks.append(("GPU memory back where it was", None, "n/a (no nvidia-smi)"))
    else:
        worst = max((abs(d) for d in delta.values()), default=0)
        checks.append(("GPU memory back where it was", worst <= tolerance_mib,
                       "delta MiB per GPU " + ", ".join(f"{g}: {d:+d}" for g, d in
                                                       sorted(delta.items())) +
                       f" (tolerance {tolerance_mib})"))
    before = {w["pid"]: w for w in first.get("workers", [])}
    for key, what in (("threads", "threads"), ("fds", "descriptors"),
                      ("groups_live", "groups live (log)"), ("nccl_live", "NCCL communicators")):
        pairs = [(before[w["pid"]], w) for w in last.get("workers", []) if w["pid"] in before]
        values = [(a.get(key), b.get(key), b["id"]) for a, b in pairs]
        if not values or any(a is None or b is None for a, b, _ in values):
            checks.append((f"{what} flat", None, "n/a"))
            continue
        if key == "nccl_live" and not any(a or b for a, b, _ in values):
            checks.append((f"{what} flat", None, "n/a (no NCCL group in the worker logs)"))
            continue
        checks.append((f"{what} flat", all(a == b for a, b, _ in values),
                       ", ".join(f"{wid} {a} -> {b}" for a, b, wid in values)))
    coordinator = [(first.get("coordinator") or {}).get(k) for k in ("threads", "fds")] + \
                  [(last.get("coordinator") or {}).get(k) for k in ("threads", "fds")]
    if None not in coordinator:
        checks.append(("coordinator threads and descriptors flat",
                       coordinator[0] == coordinator[2] and coordinator[1] == coordinator[3],
                       f"threads {coordinator[0]} -> {coordinator[2]}, "
                       f"fds {coordinator[1]} -> {coordinator[3]}"))
    for what, ok, detail in checks:
        result["checks"].append({"run": name, "check": what, "ok": ok, "detail": detail})
        tag = "n/a " if ok is None else ("PASS" if ok else "FAIL")
        report.append(f"  [{tag}] {what}: {detail}")


def probe_table(probes, recoveries=False):
    rows = []
    for p in probes:
        row = [p["label"], p.get("generation"), p.get("active_dp"), mem_text(p),
               workers_text(p, "threads"), workers_text(p, "fds"),
               workers_text(p, "nccl_live"), workers_text(p, "groups_live"),
               workers_text(p, "rss_kib")]
        if recoveries:
            row += [fmt(p.get("last_recovery_s"), ".3f", " s"), p.get("note", "")]
        rows.append(row)
    header = ["probe", "generation", "dp", "GPU memory.used MiB (per GPU)", "threads", "fds",
              "NCCL comms live", "groups live", "RSS KiB"]
    if recoveries:
        header += ["last loss -> recovered (coordinator)", "cycle"]
    return table(header, rows)


def summarize_kill(outdir, report, md, result, tolerance_mib):
    name = "kill"
    bench = load_json(os.path.join(outdir, "kill.bench.json"))
    status = load_json(os.path.join(outdir, "kill.status.json"), {})
    if bench is not None:
        summ = bench["summary"]
        rows = []
        faults = bench.get("faults", [])
        recovers = [s for s in status.get("recent_scales", []) if s.get("kind") == "recover"]
        for f in faults:
            w = f.get("windows") or {}
            # The fault's recovery: the first one into a generation after the one it hit.
            rec = next((r for r in recovers if r.get("target_generation", -1)
                        > f.get("generation_before", 0)), {})
            rows.append([
                ", ".join(f"SIG{t['signal']} rank {t['rank']} ({t['worker_id']})"
                          for t in f.get("targets", [])),
                fmt(f.get("recovered_s", -1) - f.get("signal_s", 0)
                    if f.get("recovered_s", -1) >= 0 else None, unit=" s"),
                fmt(f.get("coordinator_recovery_s"), ".3f", " s"),
                (f"{rec.get('from_dp')} -> {rec.get('to_dp')} {rec.get('state')}: "
                 + scale_info_stages(rec)) if rec else "n/a",
                fmt(f.get("back_to_size_s", -1) - f.get("signal_s", 0)
                    if f.get("back_to_size_s", -1) >= 0 else None, unit=" s"),
                fmt((w.get("during") or {}).get("longest_gap_ms"), ".0f", " ms"),
                " / ".join(fmt((w.get(k) or {}).get("output_throughput"), ".0f")
                           for k in ("before", "during", "after")),
                sum((w.get(k) or {}).get("failed", 0) for k in ("before", "during", "after")),
                f.get("error") or ""])
        text = table(["fault", "signal -> recovered", "loss -> recovered (coordinator)",
                      "recovery (status): stages s", "signal -> back to size",
                      "longest token gap during", "out tok/s before / during / after",
                      "failed in windows", "error"], rows)
        command = read_text(os.path.join(outdir, "kill.cmd"))
        result["runs"][name] = {"command": command, "completed": summ["completed"],
                                "failed": summ["failed"], "faults": faults,
                                "recoveries": recovers}
        report.append(f"== kill: {summ['completed']} completed, {summ['failed']} failed\n" + text)
        md.append(f"- Command: `{command}`\n\n{text}\n")
        add_checks(result, name, [
            ("0 failed requests", summ["failed"] == 0, f"{summ['failed']} failed"),
            ("every fault recovered and back to size",
             bool(faults) and all(f.get("back_to_size_s", -1) >= 0 for f in faults),
             f"{len(faults)} faults")], report)
    else:
        report.append("kill: no eep-bench result (kill.bench.json)")
    probes = load_jsonl(os.path.join(outdir, "kill-cycles.probes.jsonl"))
    if probes:
        cycles = [p for p in probes if p["label"].startswith("cycle ")]
        text = probe_table(probes, recoveries=True)
        report.append(f"== kill/recover cycles: {len(cycles) - 1} cycles\n" + text)
        md.append(f"- Kill/recover cycles: `{read_text(os.path.join(outdir, 'kill-cycles.cmd'))}`"
                  f"\n\n{text}\n")
        first = next((p for p in probes if p["label"] == "cycle 0"), probes[0])
        resource_checks("kill-cycles", first, probes[-1], tolerance_mib, report, result)
        result["runs"]["kill-cycles"] = {"probes": probes}


def spread(values):
    ordered = sorted(values)
    return [ordered[0], ordered[len(ordered) // 2], ordered[-1]] if ordered else []


def summarize_cycles(outdir, report, md, result, tolerance_mib):
    probes = load_jsonl(os.path.join(outdir, "cycles.probes.jsonl"))
    if not probes:
        report.append("cycles: no probes (cycles.probes.jsonl)")
        return
    scales = load_jsonl(os.path.join(outdir, "cycles.scales.jsonl"))
    text = probe_table(probes)
    rows = []
    for s in scales:
        info = s.get("scale") or {}
        rows.append([f"{info.get('from_dp')} -> {info.get('to_dp')}", info.get("state"),
                     fmt(info.get("elapsed_s"), unit=" s"),
                     scale_info_stages(info)])
    scale_text = table(["scale", "state", "elapsed", "stages (s)"], rows) if rows else ""
    # Printed: each direction's scales in one row (the device call returns only the end of its
    # output); summary.md has every scale.
    by_direction = {}
    for s in scales:
        info = s.get("scale") or {}
        by_direction.setdefault(f"{info.get('from_dp')} -> {info.get('to_dp')}", []).append(info)
    short = table(["scale", "count", "succeeded", "elapsed s min / median / max"],
                  [[d, len(v), sum(1 for i in v if i.get("state") == "succeeded"),
                    " / ".join(f"{x:.2f}" for x in spread([i.get("elapsed_s", 0) for i in v]))]
                   for d, v in by_direction.items()])
    report.append(f"== scale cycles: {len(scales)} scales\n{text}\n{short}")
    md.append(f"- Scale cycles: `{read_text(os.path.join(outdir, 'cycles.cmd'))}`\n\n{text}\n\n"
              f"{scale_text}\n")
    result["runs"]["cycles"] = {"probes": probes, "scales": scales}
    add_checks(result, "cycles", [("every scale succeeded",
                                   bool(scales) and all((s.get("scale") or {}).get("state")
                                                        == "succeeded" for s in scales),
                                   f"{len(scales)} scales")], report)
    # Like with like: the first and the last probe at each size (low: cycle 0, before any
    # scale, and after the last cycle; high: after the first scale up and the last).
    for phase in ("low", "high"):
        same = [p for p in probes if p["label"].endswith(phase)]
        if len(same) >= 2:
            resource_checks(f"cycles ({phase})", same[0], same[-1], tolerance_mib, report,
                            result)


def summarize(args):
    outdir = args.dir
    result = {"date": read_text(os.path.join(outdir, "date.txt")),
              "machine": read_text(os.path.join(outdir, "machine.txt")),
              "runs": {}, "checks": []}
    report, md = [], []
    for name in ("updown", "downup"):
        if os.path.exists(os.path.join(outdir, f"{name}.cmd")):
            summarize_scale_run(name, outdir, report, md, result)
    if os.path.exists(os.path.join(outdir, "kill.cmd")) or \
            os.path.exists(os.path.join(outdir, "kill-cycles.cmd")):
        summarize_kill(outdir, report, md, result, args.memory_tolerance_mib)
    if os.path.exists(os.path.join(outdir, "cycles.cmd")):
        summarize_cycles(outdir, report, md, result, args.memory_tolerance_mib)
    for line in read_text(os.path.join(outdir, "skipped.txt")).splitlines():
        report.append(f"skipped: {line}")
        result.setdefault("skipped", []).append(line)
    problems = read_text(os.path.join(outdir, "problems.txt")).splitlines()
    add_checks(result, "script", [(line, False, "see the output above") for line in problems],
               report)
    failed = [c for c in result["checks"] if c["ok"] is False]
    verdict = (f"{len(result['checks'])} checks, {len(failed)} failed"
               + ("" if not failed else ": " + "; ".join(f"{c['run']}: {c['check']}"
                                                           for c in failed)))
    result["verdict"] = verdict
    head = (f"- Date: {result['date']}. Machine: {result['machine'] or 'n/a'}.\n"
            f"- Script: `{read_text(os.path.join(outdir, 'script.cmd'))}`\n")
    with open(os.path.join(outdir, "summary.json"), "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    with open(os.path.join(outdir, "summary.md"), "w", encoding="utf-8") as f:
        f.write(head + "\n" + "\n".join(md) + f"\n{verdict}\n")
    print(f"Date: {result['date']}\nMachine: {result['machine'] or 'n/a'}")
    print("\n".join(report))
    print(verdict)
    if problems:
        return 2  # the script itself did not get through a part
    return 1 if failed and args.strict else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    for cmd in ("probe", "rank-pid", "wait-fleet", "status-field"):
        p = sub.add_parser(cmd)
        p.add_argument("--eepctl", required=True)
        p.add_argument("--admin", required=True)
        if cmd == "probe":
            p.add_argument("--log-dir", required=True)
            p.add_argument("--label", required=True)
            p.add_argument("--coordinator-pid", type=int)
            p.add_argument("--load-json", help="the result of the load run before the reading")
            p.add_argument("--note", help="kept in the reading")
        elif cmd == "status-field":
            p.add_argument("path", help="e.g. health.num_recoveries")
        elif cmd == "rank-pid":
            p.add_argument("--rank", type=int, required=True)
        else:
            p.add_argument("--dp", type=int, required=True)
            p.add_argument("--recoveries", type=int, default=0)
            p.add_argument("--timeout-s", type=float, default=600)
    sub.add_parser("show-probe")
    p = sub.add_parser("summarize")
    p.add_argument("dir")
    p.add_argument("--memory-tolerance-mib", type=int, default=64,
                   help="how far a GPU's memory.used may end from where it started")
    p.add_argument("--strict", action="store_true", help="exit 1 when a check failed")
    args = parser.parse_args()
    return {"probe": probe, "rank-pid": rank_pid, "wait-fleet": wait_fleet,
            "status-field": status_field, "show-probe": show_probe,
            "summarize": summarize}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
