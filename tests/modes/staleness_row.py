"""One line of tests/modes/staleness-momentum.sh's table, from a run's output folder (the newest run under it).

Usage: staleness_row.py FOLDER LABEL RUN
Prints: | LABEL | RUN | test accuracy per epoch (%) | final | mean of the last 5 epochs | final train loss | staleness |
"""
import glob
import json
import sys

folder = sorted(glob.glob(sys.argv[1] + "/2*/"))[-1]
summary = json.load(open(folder + "summary.json"))
rows = [line.split(",") for line in open(folder + "epochs.csv").read().split("\n")[1:] if line]
accuracies = [float(r[4]) * 100 for r in rows]
last = accuracies[-5:]
staleness = summary.get("staleness") or {}
counts = ", ".join(f"{k}: {v}" for k, v in sorted((staleness.get("counts") or {}).items(), key=lambda kv: int(kv[0])))
print(f"| {sys.argv[2]} | {sys.argv[3]} | {' '.join(f'{a:.2f}' for a in accuracies)} | {accuracies[-1]:.2f}% | "
      f"{sum(last) / len(last):.2f}% | {float(rows[-1][2]):.4f} | {staleness.get('mean', float('nan')):.2f}; {counts} |")
