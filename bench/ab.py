#!/usr/bin/env python3
"""Compares two builds' benchmark samples from alternated runs (`./pg_test.sh ab`): per workload,
the median of each build's samples and B's median over A's. Usage: ab.py A_LABEL B_LABEL SAMPLES...
where each SAMPLES file is named <label>.<run> and holds bench/run.sh's raw samples."""

import pathlib
import statistics
import sys
from collections import defaultdict

a, b = sys.argv[1], sys.argv[2]
samples = defaultdict(lambda: defaultdict(list))
for path in map(pathlib.Path, sys.argv[3:]):
    label = path.name.rsplit(".", 1)[0]
    for line in path.read_text().splitlines():
        workload, variant, value = line.split()
        if variant == "org_stats" and not workload.endswith(".failed"):
            samples[workload][label].append(float(value))

# Durations (ms) are better lower; everything else (TPS) higher.
print(f"| workload | {a} (median) | {b} (median) | {b} / {a}, better is > 1 | samples each |")
print("|---|---:|---:|---:|---:|")
worst = None
for workload, by in sorted(samples.items()):
    if a not in by or b not in by:
        continue
    ma, mb = statistics.median(by[a]), statistics.median(by[b])
    lower_better = workload.startswith(("bulk_", "recalculate"))
    ratio = (ma / mb) if lower_better else (mb / ma)
    worst = ratio if worst is None else min(worst, ratio)
    unit = "ms" if lower_better else "TPS"
    print(f"| {workload} | {ma:,.1f} {unit} | {mb:,.1f} {unit} | {ratio:.3f}x | {len(by[a])}, {len(by[b])} |")
print(f"\nlowest {b} / {a}: {worst:.3f}x" if worst is not None else "\nno workload measured on both")
