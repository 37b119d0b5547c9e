#!/usr/bin/env python3
"""Step time T(N) of DistTrain's parameter-server data parallelism against the worker count N (docs/scaling.md).

Standalone: python3 from Debian, standard library only; matplotlib (Debian's python3-matplotlib) only for --plot.

    python3 tests/scaling/model.py                        # calibration table and predictions, as Markdown
    python3 tests/scaling/model.py --plot docs/scaling.png

The calibration figures come from a CSV written by tests/scaling/measure-loopback.sh (default: the committed
tests/scaling/loopback-2026-11-30.csv). Every formula is stated in docs/scaling.md; the names below follow it.
Units: seconds, bytes, bytes/s, samples/s. Every run first checks the closed forms and equivalences in self_check.
"""
import argparse
import csv
import math
import os
import statistics
from dataclasses import dataclass, replace

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_CSV = os.path.join(HERE, "loopback-2026-11-30.csv")


@dataclass(frozen=True)
class Job:
    """One model and its training settings. Times in seconds."""
    name: str
    parameters: int                 # P, elements of the flat vector
    compute_per_sample: float       # c, seconds of one worker's forward + backward per sample
    compute_cv: float               # v, coefficient of variation of one worker's minibatch compute time
    batch: int                      # b, minibatch per worker
    step_per_element: float         # u, server optimizer step per element (seconds)
    average_per_element: float      # a, server averaging per element per worker (seconds)
    state_buffers: int = 1          # optimizer state buffers LocalSgd carries (SGD momentum: 1, Adam: 2)


@dataclass(frozen=True)
class Link:
    """Every node's link: full duplex, the same rate each way."""
    name: str
    bandwidth: float                # B, bytes/s each way
    latency: float                  # L, one-way seconds


WEIGHT_BYTES = 4.0                  # float32 weights, always


def gradient_bytes(compression, top_k_ratio=0.01):
    """Bytes on the wire per gradient element: float32 4, Float16/BFloat16 2, TopK 8 per sent element."""
    return {"None": 4.0, "Float16": 2.0, "BFloat16": 2.0, "TopK": 8.0 * top_k_ratio}[compression]


# Encoding a gradient on the worker and decoding it at the server, seconds per element, one thread of this machine:
# CompressionBenchmarks (tests/DistTrain.Benchmarks, 235,146 elements, error feedback on, 2026-11-30, BenchmarkDotNet
# ShortRun at load average 10-13): encode Float16 332 µs, BFloat16 287 µs, TopK 1% 3,542 µs; decode 62, 32 and 20 µs.
# float32's own copy (24 µs encode) is already part of the measured compute.
ENCODE_PER_ELEMENT = {"None": 0.0, "Float16": 332e-6 / 235_146, "BFloat16": 287e-6 / 235_146, "TopK": 628e-6 / 235_146}
DECODE_PER_ELEMENT = {"None": 0.0, "Float16": 62e-6 / 235_146, "BFloat16": 32e-6 / 235_146, "TopK": 20e-6 / 235_146}


def normal_pdf(x):
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def normal_cdf(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def expected_max_standard_normal(n):
    """E[max of n independent standard normals]: the integral of x·n·φ(x)·Φ(x)^(n−1), Simpson's rule on [−12, 12]."""
    if n <= 1:
        return 0.0
    steps, lo, hi = 4800, -12.0, 12.0
    h = (hi - lo) / steps
    total = 0.0
    for i in range(steps + 1):
        x = lo + i * h
        weight = 1 if i in (0, steps) else (4 if i % 2 else 2)
        total += weight * x * n * normal_pdf(x) * normal_cdf(x) ** (n - 1)
    return total * h / 3


def slowest_compute(job, n, steps=1, stretch=1.0):
    """Expected compute time of the slowest of n workers over `steps` local minibatches (seconds).
    Each minibatch: mean c·b·stretch, standard deviation v times that, independent; the sum of `steps` of them has
    coefficient of variation v/√steps, and the maximum of n is approximated as normal: μ(1 + v/√steps · e_n)."""
    mean = job.compute_per_sample * job.batch * stretch * steps
    return mean * (1 + job.compute_cv / math.sqrt(steps) * expected_max_standard_normal(n))


def transfer(bytes_per_worker, n, shards, link):
    """Seconds to move bytes_per_worker to (or from) each of n workers through the busiest NIC, one direction.
    Each of K shards sends its 1/K to every worker: the shard's NIC carries n·bytes/K, a worker's NIC all its bytes."""
    return max(n / shards, 1.0) * bytes_per_worker / link.bandwidth


def step_time(job, link, n, mode="Sync", shards=1, compression="None", local_steps=4, staleness=1, stretch=1.0,
              encoding_cost=True):
    """Seconds per synchronous round in Sync and LocalSgd (per local step for LocalSgd), or per N minibatches in
    Async and BoundedStaleness (so that samples/s = N·b / T in every mode). Returns (T, terms)."""
    p, k = job.parameters, shards
    weights = WEIGHT_BYTES * p
    grads = gradient_bytes(compression) * p
    mean_compute = job.compute_per_sample * job.batch * stretch
    encode = ENCODE_PER_ELEMENT[compression] * p if encoding_cost else 0.0
    decode = DECODE_PER_ELEMENT[compression] * p / k if encoding_cost else 0.0
    if mode == "Sync":
        terms = {
            "weights out": transfer(weights, n, k, link) + link.latency,
            "compute (slowest)": slowest_compute(job, n, stretch=stretch),
            "encode": encode,
            "gradients in": transfer(grads, n, k, link) + link.latency,
            "average + step": (job.step_per_element + job.average_per_element * n) * p / k + decode * n,
        }
        return sum(terms.values()), terms
    if mode == "LocalSgd":
        # Weights and optimizer state both ways once per local_steps steps; compression does not apply (model averaging).
        state = WEIGHT_BYTES * p * (1 + job.state_buffers)
        terms = {
            "weights out": (transfer(state, n, k, link) + link.latency) / local_steps,
            "compute (slowest)": slowest_compute(job, n, steps=local_steps, stretch=stretch) / local_steps,
            "gradients in": (transfer(state, n, k, link) + link.latency) / local_steps,
            "average + step": job.average_per_element * n * p * (1 + job.state_buffers) / k / local_steps,
        }
        return sum(terms.values()), terms
    if mode in ("Async", "BoundedStaleness"):
        # A worker's own cycle: its weights in, its compute, its gradient out. Async: each gradient is one update,
        # applied before its worker gets new weights; BoundedStaleness: one averaged update per round, which a worker
        # does not wait for, and a worker waits for a straggler only 1/(s+1) as often as in Sync.
        cycle_out = weights / link.bandwidth + link.latency
        cycle_in = grads / link.bandwidth + link.latency
        if mode == "Async":
            one_update = (job.step_per_element + job.average_per_element) * p / k + decode
            cycle_compute = mean_compute + encode + one_update
            server_update = one_update * n
        else:
            cycle_compute = (mean_compute + encode +
                             (slowest_compute(job, n, stretch=stretch) - mean_compute) / (staleness + 1))
            server_update = (job.step_per_element + job.average_per_element * n) * p / k + decode * n
        cycle = cycle_out + cycle_compute + cycle_in
        # The server's NIC directions and its update work run beside each other: per N minibatches each must fit.
        nic = max(transfer(weights, n, k, link), transfer(grads, n, k, link))
        t = max(cycle, nic, server_update)
        terms = {"worker cycle": cycle, "server NIC, busier direction": nic, "server updates": server_update}
        return t, terms
    raise ValueError(f"unknown mode {mode!r}: Sync, Async, BoundedStaleness or LocalSgd")


def samples_per_second(job, link, n, **kwargs):
    t, _ = step_time(job, link, n, **kwargs)
    return n * job.batch / t


def efficiency(job, link, n, **kwargs):
    """Samples/s over n times one worker's compute-only rate 1/c (1.0 = linear scaling, no overhead)."""
    return samples_per_second(job, link, n, **kwargs) / (n / job.compute_per_sample)


def server_growth_per_worker(job, link, mode="Sync", shards=1, compression="None", local_steps=4, encoding_cost=True,
                             **_):
    """Seconds each added worker adds to a step (Sync, LocalSgd: per local step) once N > K: its bytes through the
    shard's link in both directions and its share of the averaging. In Async and BoundedStaleness: the server's time per
    minibatch, the busier of its link and its update work."""
    p, k = job.parameters, shards
    w, g = WEIGHT_BYTES, gradient_bytes(compression)
    decode = DECODE_PER_ELEMENT[compression] * p / k if encoding_cost else 0.0
    if mode == "Sync":
        return (w + g) * p / (k * link.bandwidth) + job.average_per_element * p / k + decode
    if mode == "LocalSgd":
        moved = 2 * WEIGHT_BYTES * (1 + job.state_buffers) * p / (k * link.bandwidth)
        return (moved + job.average_per_element * (1 + job.state_buffers) * p / k) / local_steps
    link_time = max(w, g) * p / (k * link.bandwidth)
    if mode == "Async":
        return max(link_time, (job.step_per_element + job.average_per_element) * p / k + decode)
    return max(link_time, job.average_per_element * p / k + decode)


def ceiling(job, link, **kwargs):
    """Samples/s as N grows without bound: b over the time each worker adds at the server. (Sync's straggler term grows
    as about √(2 ln N) and does not change the limit.) BoundedStaleness adds the fixed step per round to its update
    work, so its true ceiling is a little lower at small N."""
    return job.batch / server_growth_per_worker(job, link, **kwargs)


def saturation_workers(job, link, limit=4096, **kwargs):
    """The knee: smallest N at which the samples/s reach half of the ceiling. There the time the workers add at the
    server equals everything else in the step (Sync: N·growth = T0 in T = T0 + N·growth), and doubling N from there
    adds at most a third. None if not reached by `limit`."""
    half = ceiling(job, link, **kwargs) / 2
    for n in range(1, limit + 1):
        if samples_per_second(job, link, n, **kwargs) >= half:
            return n
    return None


# ---------------------------------------------------------------- calibration on loopback

def read_runs(path):
    with open(path) as f:
        return [{k: (float(v) if k not in ("round", "workers") else int(v)) for k, v in row.items()} for row in csv.DictReader(f)]


@dataclass(frozen=True)
class Calibration:
    job: Job
    loopback: Link
    cores: int
    runs: list


def calibrate(runs, parameters=235_146, batch=64, cores=2):
    """From the one-worker runs: c = compute / b, its CV, the loopback's effective rate (bytes per step over messaging
    time); from every run the server's update time as u + a·N per element (least squares over N)."""
    ones = [r for r in runs if r["workers"] == 1]
    compute = statistics.fmean(r["compute_ms"] for r in ones) / 1000
    cv = statistics.fmean(r["compute_cv"] for r in ones)
    rate = statistics.fmean(r["bytes_per_step"] / (r["messaging_ms"] / 1000) for r in ones)
    xs = [r["workers"] for r in runs]
    ys = [r["update_ms"] / 1000 / parameters for r in runs]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    a = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    s = my - a * mx
    job = Job("MLP 784-256-128-10", parameters, compute / batch, cv, batch, s, a)
    # One worker's messaging time is its weights in and its gradient out, one after the other, so bytes per step over
    # messaging time is the rate of each direction.
    return Calibration(job, Link("loopback (TLS)", rate, 0.0), cores, runs)


def raw_table(runs):
    """Every run's samples/s and the 1-minute load average it started at, by worker count and round."""
    rounds = sorted({r["round"] for r in runs})
    lines = ["| workers | " + " | ".join(f"round {i}" for i in rounds) + " |", "|---" * (len(rounds) + 1) + "|"]
    for n in sorted({r["workers"] for r in runs}):
        cells = []
        for i in rounds:
            run = next((r for r in runs if r["workers"] == n and r["round"] == i), None)
            cells.append(f"{run['samples_per_s']:,.0f} ({run['load_before']:.1f})" if run else "")
        lines.append(f"| {n} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def loopback_table(cal):
    """Predicted against measured samples/s for each N measured; compute stretched by max(1, N/cores)."""
    lines = ["| workers | runs | load average, lowest at a start to highest at an end | measured samples/s | predicted | predicted / measured | "
             "slowest compute ms, measured / predicted | slowest / mean compute, measured / 1 + v·e_N | "
             "messaging ms, measured / predicted |",
             "|---|---|---|---|---|---|---|---|---|"]
    for n in sorted({r["workers"] for r in cal.runs}):
        rows = [r for r in cal.runs if r["workers"] == n]
        stretch = max(1.0, n / cal.cores)
        t, terms = step_time(cal.job, cal.loopback, n, stretch=stretch)
        predicted = n * cal.job.batch / t
        measured = statistics.fmean(r["samples_per_s"] for r in rows)
        loads = f"{min(r['load_before'] for r in rows):.1f}-{max(r['load_after'] for r in rows):.1f}"
        compute_measured = statistics.fmean(r["compute_ms"] for r in rows)
        messaging_measured = statistics.fmean(r["messaging_ms"] for r in rows)
        messaging_predicted = 1000 * (terms["weights out"] + terms["gradients in"])
        # steps.csv's waiting column is the round minus the workers' mean compute, so the mean compute is their difference.
        mean_compute = statistics.fmean(r["round_ms"] - r["waiting_ms"] for r in rows)
        lines.append(f"| {n} | {len(rows)} | {loads} | {measured:,.0f} ({min(r['samples_per_s'] for r in rows):,.0f}-"
                     f"{max(r['samples_per_s'] for r in rows):,.0f}) | {predicted:,.0f} | {predicted / measured:.2f} | "
                     f"{compute_measured:.2f} / {1000 * terms['compute (slowest)']:.2f} | "
                     f"{compute_measured / mean_compute:.2f} / {1 + cal.job.compute_cv * expected_max_standard_normal(n):.2f} | "
                     f"{messaging_measured:.2f} / {messaging_predicted:.2f} |")
    return "\n".join(lines)


# The main job over shaped links (docs/benchmarks.md, "Cluster mode over shaped links": 2 workers, TLS on, 2026-11-30,
# load average 48-100): link (rate bytes/s, one-way delay s), then per round the measured samples/s and the parameter
# server's mean ms per step for compute (slowest worker), average + update and messaging. BARE_MESSAGING_MS: the same
# round's messaging on bare veth links (no rate, no delay): this loaded machine's own per-step cost of moving the bytes
# (TLS, copies, the kernel), which a real NIC does not remove.
BARE_MESSAGING_MS = [15.4, 29.7]
SHAPED_RUNS = [
    ("1gbit/0.2", 1e9 / 8, 0.2e-3, [(1_568, 8.3, 1.1, 82.3), (856, 8.9, 1.0, 140.7)]),
    ("100mbit/2", 100e6 / 8, 2e-3, [(222, 20.5, 1.2, 466.4), (260, 26.1, 1.8, 454.6)]),
]


def shaped_table(job):
    """Predicted against measured samples/s on the shaped links, with each run's own compute and update times (the
    delay program and tbf ran on the same 2 cores, so compute there is not the quiet figure)."""
    lines = ["| link | round | measured samples/s | predicted: link only | + bare-link messaging | "
             "messaging ms: measured, link only, + bare |", "|---|---|---|---|---|---|"]
    n = 2
    for name, rate, delay, rounds in SHAPED_RUNS:
        link = Link(name, rate, delay)
        for i, (measured, compute_ms, update_ms, messaging_ms) in enumerate(rounds, 1):
            messaging = 2 * (transfer(WEIGHT_BYTES * job.parameters, n, 1, link) + delay)
            t = messaging + (compute_ms + update_ms) / 1000
            bare = BARE_MESSAGING_MS[i - 1] / 1000
            predicted, with_bare = n * job.batch / t, n * job.batch / (t + bare)
            lines.append(f"| {name} | {i} | {measured:,} | {predicted:,.0f} ({predicted / measured:.2f}x) | "
                         f"{with_bare:,.0f} ({with_bare / measured:.2f}x) | "
                         f"{messaging_ms:.1f}, {1000 * messaging:.1f}, {1000 * (messaging + bare):.1f} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- predictions

GBIT = 1e9 / 8
LINKS = [Link("10 Gbit/s", 10 * GBIT, 25e-6), Link("100 Gbit/s", 100 * GBIT, 10e-6)]
WORKERS = [1, 8, 16, 32, 64]

# ResNet-50 (torchvision: 25,557,032 parameters). Compute: NVIDIA DeepLearningExamples, ResNet50 v1.5 for PyTorch,
# DGX-1 16GB, 1 V100, FP32: 367 img/s (2.72 ms per image). Batch 64 per worker as in Horovod's benchmark command.
# Server update per element as measured for the MLP on this machine's server process (the same fused loop).
def resnet50(cal):
    return replace(cal.job, name="ResNet-50 (V100 FP32)", parameters=25_557_032, compute_per_sample=1 / 367.0,
                   compute_cv=cal.job.compute_cv, batch=64)


SCENARIOS = [
    ("Sync, 1 server", dict(mode="Sync")),
    ("Sync, K=2", dict(mode="Sync", shards=2)),
    ("Sync, K=4", dict(mode="Sync", shards=4)),
    ("Sync, K=8", dict(mode="Sync", shards=8)),
    ("Sync, Float16 gradients", dict(mode="Sync", compression="Float16")),
    ("Sync, TopK 1% gradients", dict(mode="Sync", compression="TopK")),
    ("Sync, TopK 1%, K=8", dict(mode="Sync", compression="TopK", shards=8)),
    ("Sync, TopK 1%, K=8, encoding free", dict(mode="Sync", compression="TopK", shards=8, encoding_cost=False)),
    ("Async, 1 server", dict(mode="Async")),
    ("BoundedStaleness s=2, 1 server", dict(mode="BoundedStaleness", staleness=2)),
    ("LocalSgd k=4, 1 server", dict(mode="LocalSgd", local_steps=4)),
    ("LocalSgd k=4, K=8", dict(mode="LocalSgd", local_steps=4, shards=8)),
]


def prediction_table(job, link):
    head = ("| scenario | " + " | ".join(f"N={n}" for n in WORKERS) +
            " | ceiling (N → ∞) | knee: half the ceiling at N |")
    lines = [head, "|---" * (len(WORKERS) + 3) + "|"]
    for name, kwargs in SCENARIOS:
        cells = []
        for n in WORKERS:
            x = samples_per_second(job, link, n, **kwargs)
            cells.append(f"{x:,.0f} ({100 * efficiency(job, link, n, **kwargs):.0f}%)")
        sat = saturation_workers(job, link, **kwargs)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {ceiling(job, link, **kwargs):,.0f} | "
                     f"{sat if sat else '> 4096'} |")
    return "\n".join(lines)


def plot(cal, path):
    """Predicted samples/s against N, every scenario, for the MLP at 10 Gbit/s and ResNet-50 at 10 and 100 Gbit/s."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ns = [1, 2, 4, 8, 16, 32, 64]
    panels = [(cal.job, LINKS[0]), (resnet50(cal), LINKS[0]), (resnet50(cal), LINKS[1])]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5.5))
    for ax, (job, link) in zip(axes, panels):
        ax.plot(ns, [n / job.compute_per_sample for n in ns], "k:", label="linear (N / c: compute only)")
        for i, (name, kwargs) in enumerate(SCENARIOS):
            style = "--" if "LocalSgd" in name or "Async" in name or "Staleness" in name else "-"
            ax.plot(ns, [samples_per_second(job, link, n, **kwargs) for n in ns], style, marker="o", markersize=3,
                    label=name, color=plt.cm.tab10(i) if i < 10 else ["darkred", "darkgoldenrod"][i - 10])
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(ns, [str(n) for n in ns])
        ax.set_xlabel("workers N")
        ax.set_ylabel("samples/s")
        ax.set_title(f"{job.name}\n{job.parameters:,} parameters, {link.name}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=4, fontsize=8)
    fig.suptitle("Predicted samples/s (tests/scaling/model.py, calibrated on loopback runs)")
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    fig.savefig(path, dpi=100)


def self_check(job):
    """Closed forms and the code's own equivalences the model must reproduce; raises AssertionError if not."""
    # E[max of 2] = 1/√π and E[max of 3] = 3/(2√π) for standard normals.
    assert abs(expected_max_standard_normal(2) - 1 / math.sqrt(math.pi)) < 1e-9
    assert abs(expected_max_standard_normal(3) - 1.5 / math.sqrt(math.pi)) < 1e-9
    link = LINKS[0]
    # Async with one worker is Sync step for step (docs/architecture.md), and so is BoundedStaleness with s = 0.
    sync = samples_per_second(job, link, 1)
    assert abs(samples_per_second(job, link, 1, mode="Async") - sync) < 1e-6 * sync
    # K shards with N <= K: every worker's own link is the limit, so K = N and K = 2N take as long to transfer.
    assert transfer(4.0 * job.parameters, 4, 4, link) == transfer(4.0 * job.parameters, 4, 8, link)
    # LocalSgd with k = 1 and no optimizer state moves Sync's bytes; it only skips the server's optimizer step.
    plain = replace(job, state_buffers=0, step_per_element=0.0)
    t_local, _ = step_time(plain, link, 8, mode="LocalSgd", local_steps=1)
    t_sync, _ = step_time(plain, link, 8)
    assert abs(t_local - t_sync) < 1e-12


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=DEFAULT_CSV, help="CSV from tests/scaling/measure-loopback.sh")
    parser.add_argument("--plot", metavar="PNG", help="also draw predicted samples/s against N (needs matplotlib)")
    parser.add_argument("--parameters", type=int, default=235_146,
                        help="P of the measured job (default: the main job's MLP, 235,146)")
    parser.add_argument("--batch", type=int, default=64, help="minibatch per worker of the measured job (default 64)")
    parser.add_argument("--name", default="MLP 784-256-128-10", help="name of the measured job in the tables")
    parser.add_argument("--cores", type=int, default=2,
                        help="cores the measured job had to itself: N workers' compute is stretched by max(1, N/cores)")
    parser.add_argument("--calibration-only", action="store_true",
                        help="print the calibration and the loopback comparison only (for a job other than the MLP)")
    parser.add_argument("--max-load", type=float, default=4.5,
                        help="use only runs that started at a 1-minute load average of at most this (default 4.5: a run leaves its own N + 1 processes in the next run's starting figure)")
    args = parser.parse_args()
    all_runs = read_runs(args.runs)
    runs = [r for r in all_runs if r["load_before"] <= args.max_load]
    if not any(r["workers"] == 1 for r in runs):
        parser.error(f"{args.runs} has no one-worker run at a load average of {args.max_load} or less to calibrate from; "
                     "raise --max-load or measure again on a quieter machine")
    cal = calibrate(runs, parameters=args.parameters, batch=args.batch, cores=args.cores)
    cal = replace(cal, job=replace(cal.job, name=args.name))
    job = cal.job
    self_check(job)
    print(f"## Calibration ({os.path.basename(args.runs)}, {len(runs)} runs at a load average of {args.max_load} or less)\n")
    print(f"- compute per sample c = {1e6 * job.compute_per_sample:.2f} µs (one core), coefficient of variation of a "
          f"minibatch's compute v = {job.compute_cv:.3f}")
    print(f"- server step u = {1e9 * job.step_per_element:.3f} ns per element, averaging a = "
          f"{1e9 * job.average_per_element:.3f} ns per element per worker")
    print(f"- loopback rate each way B = {cal.loopback.bandwidth / 1e6:,.0f} MB/s (TLS on, this machine)")
    print(f"- e_N, expected maximum of N standard normals: " +
          ", ".join(f"e_{n} = {expected_max_standard_normal(n):.3f}" for n in (2, 3, 4, 8, 16, 32, 64)) + "\n")
    print("Every run: samples/s (1-minute load average at its start)\n")
    print(raw_table(all_runs) + "\n")
    print(loopback_table(cal) + "\n")
    if args.calibration_only:
        return
    print("## Shaped links (network namespaces), 2 workers\n")
    print(shaped_table(job) + "\n")
    for model in (job, resnet50(cal)):
        for link in LINKS:
            print(f"## {model.name}, {link.name} (samples/s, efficiency)\n")
            print(prediction_table(model, link) + "\n")
    if args.plot:
        plot(cal, args.plot)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
