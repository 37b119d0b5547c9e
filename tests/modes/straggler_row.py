"""One line of tests/modes/straggler-table.sh's markdown table, from one cluster run's files.

Reads the parameter server's summary.json (epochs, staleness, per-worker compute), the parameter server's log (the
"Data plane: ... bytes per step" line), each worker node's log (the job's worker index it joined as) and the CPU
groups' counters the script saved. Seconds to the target and samples/s are counted as `disttrain compare` counts
them: training plus evaluation seconds summed over epochs, and training samples over training seconds.
"""
import argparse
import glob
import json
import math
import os
import re

parser = argparse.ArgumentParser()
for name in ("label", "variant", "runs", "logs", "usage", "target", "wall", "load", "cluster-log"):
    parser.add_argument(f"--{name}", required=True)
parser.add_argument("--straggler", type=int, required=True, help="the slowed worker's number, 0 for none")
parser.add_argument("--exit-code", type=int, required=True)
args = parser.parse_args()
target = float(args.target)

usage = {}
with open(args.usage) as f:
    for line in f:
        number, share, seconds, periods, throttled = line.split()
        usage[int(number)] = (share, float(seconds), int(periods), int(throttled))
workers = ", ".join(f"{usage[n][0]}%" + ("*" if n == args.straggler else "") for n in sorted(usage))
label = f"{args.label}, {args.variant}"


def cell(values):
    return ", ".join(values) if values else "-"


summaries = sorted(glob.glob(os.path.join(args.runs, "*", "summary.json")))
if not summaries:
    reason = "timed out" if args.exit_code == 124 else f"failed (exit {args.exit_code})"
    print(f"| {label} | {workers} | {reason}: see {args.cluster_log} and {args.logs or 'its logs'} | | | | | | | {args.wall} | {args.load} |")
    raise SystemExit(0)
with open(summaries[0]) as f:
    summary = json.load(f)

epochs = summary["epochs"]
seconds, reached = 0.0, None
for epoch in epochs:
    seconds += epoch["TrainSeconds"] + epoch["EvaluationSeconds"]
    if reached is None and epoch["TestAccuracy"] >= target:
        reached = seconds
train_seconds = sum(e["TrainSeconds"] for e in epochs)
samples_per_second = sum(e["TrainSamples"] for e in epochs) / train_seconds if train_seconds > 0 else 0
final = f"{100 * epochs[-1]['TestAccuracy']:.2f}% ({len(epochs)} epochs)"
if args.exit_code != 0:
    final += f", exit {args.exit_code}"

bytes_per_step = "-"
log = os.path.join(args.logs, "parameter-server.log")
if os.path.exists(log):
    with open(log, errors="replace") as f:
        match = re.findall(r"Data plane: .* ([\d,]+) bytes per step", f.read())
    if match:
        bytes_per_step = match[-1]

staleness = summary.get("staleness")
stale = "-" if not staleness else \
    f"{staleness['count']:,}, {staleness['mean']:.2f}, {staleness['p50']}, {staleness['p90']}, {staleness['max']}"

# The job's worker index of each worker node (worker-N.log), to put the straggler's compute beside its number.
index_of = {}
for number in usage:
    path = os.path.join(args.logs, f"worker-{number}.log")
    if os.path.exists(path):
        with open(path, errors="replace") as f:
            joined = re.findall(r"Joined the job as worker (\d+)", f.read())
        if joined:
            index_of[number] = int(joined[-1])
compute = {w["worker"]: w for w in summary.get("workers") or []}
per_worker = []
for number in sorted(usage):
    w = compute.get(index_of.get(number, -1))
    mark = "*" if number == args.straggler else ""
    per_worker.append(f"{w['mean_compute_seconds'] * 1000:.2f}{mark} ({w['reports']:,})" if w else f"-{mark}")
cpu = []
wall = float(args.wall)
for number in sorted(usage):
    _, used, periods, throttled = usage[number]
    share = f"{used / wall:.2f}" if wall > 0 and not math.isnan(used) else "-"
    cpu.append(f"{share} ({100 * throttled / periods:.0f}%)" if periods else share)

print(f"| {label} | {workers} | {'not reached' if reached is None else f'{reached:.1f}'} | {final} | {samples_per_second:,.0f} | "
      f"{bytes_per_step} | {stale} | {cell(per_worker)} | {cell(cpu)} | {args.wall} | {args.load} |")
