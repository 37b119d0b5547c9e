#!/usr/bin/env python3
"""Checks a live Prometheus that scrapes a DistTrain cluster, through its HTTP API.

Waits (up to --timeout seconds) until
  * Prometheus has --targets scrape targets, all up;
  * disttrain_training_samples_total has a series for every target, with samples counted where the node's role
    runs (role="parameter-server" on the node that trains, role="worker" on every worker node);
  * every query of the Grafana dashboard returns data (Grafana itself is not started: its queries are run here).
Prints what it found. Exit code 0 when all of it holds, 1 when the time ran out first.

Usage: prometheus_check.py --url http://127.0.0.1:9090 --dashboard deploy/grafana/dashboards/disttrain.json --targets 4
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

# Grafana's built-in variables, as Grafana would fill them for a 5 s scrape interval.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "5s", "$__range": "5m"}


def api(url, path, **params):
    query = urllib.parse.urlencode(params)
    with urllib.request.urlopen(f"{url}/api/v1/{path}?{query}", timeout=10) as response:
        body = json.load(response)
    if body.get("status") != "success":
        raise RuntimeError(f"{path} {params}: {body}")
    return body["data"]


def dashboard_queries(path):
    with open(path, encoding="utf-8") as f:
        dashboard = json.load(f)
    queries = []
    for panel in dashboard.get("panels", []):
        for target in panel.get("targets", []):
            expr = target.get("expr")
            if expr:
                for name, value in GRAFANA_VARIABLES.items():
                    expr = expr.replace(name, value)
                queries.append((panel.get("title", "?"), expr))
    return queries


def check(url, expected_targets, queries):
    """Returns (problems, report lines)."""
    problems, report = [], []
    targets = api(url, "targets")["activeTargets"]
    instances = sorted(t["labels"]["instance"] for t in targets)
    down = [f'{t["labels"]["instance"]} ({t["health"]}: {t.get("lastError") or "not scraped yet"})' for t in targets if t["health"] != "up"]
    report.append(f"scrape targets: {len(targets)} ({', '.join(instances)}), down: {', '.join(down) or 'none'}")
    if len(targets) != expected_targets:
        problems.append(f"{len(targets)} scrape targets, expected {expected_targets}")
    if down:
        problems.append(f"targets not up: {', '.join(down)}")

    samples = {}
    for series in api(url, "query", query="disttrain_training_samples_total")["result"]:
        labels = series["metric"]
        samples.setdefault(labels["instance"], {})[labels.get("role", "?")] = float(series["value"][1])
    for target in targets:
        instance, job = target["labels"]["instance"], target["labels"]["job"]
        roles = samples.get(instance)
        report.append(f"disttrain_training_samples_total on {instance} ({job}): {roles}")
        if roles is None:
            problems.append(f"no disttrain_training_samples_total from {instance}")
        elif "worker" in job and not roles.get("worker", 0) > 0:
            problems.append(f"{instance}: no samples computed by its worker yet")
    if not any(roles.get("parameter-server", 0) > 0 for roles in samples.values()):
        problems.append("no parameter server has applied samples yet")

    for title, expr in queries:
        result = api(url, "query", query=expr)["result"]
        report.append(f"dashboard '{title}': {expr} -> {len(result)} series")
        if not result:
            problems.append(f"dashboard query returned no data: {expr}")
    return problems, report


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True)
    parser.add_argument("--dashboard", required=True)
    parser.add_argument("--targets", type=int, required=True, help="scrape targets expected (every DistTrain node)")
    parser.add_argument("--timeout", type=float, default=60)
    args = parser.parse_args()

    queries = dashboard_queries(args.dashboard)
    deadline = time.monotonic() + args.timeout
    # The job may end while this waits (its nodes then drop out of Prometheus): the attempt with the fewest problems counts.
    best = (["not queried yet"], [])
    while time.monotonic() < deadline:
        try:
            attempt = check(args.url, args.targets, queries)
        except (urllib.error.URLError, OSError, RuntimeError, KeyError) as e:
            attempt = ([f"Prometheus API: {e}"], [])
        if len(attempt[0]) <= len(best[0]) or not best[1]:
            best = attempt
        if not attempt[0]:
            break
        time.sleep(2)
    problems, report = best
    for line in report:
        print(line)
    for problem in problems:
        print(f"PROBLEM: {problem}")
    print(f"{len(queries)} dashboard queries, {'all returned data' if not problems else f'{len(problems)} problem(s)'}")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
