"""A window of launches from Nsight Compute's CSV (tests/gpu/profile_kernels.sh): from the first launch of a kernel to its
next launch (one decode step from embedding gather to embedding gather, one prefill the same way, one ViT pass from
patch columns to patch columns), summed by kernel and grid, largest first.

    python3 tests/gpu/kernel_table.py ncu.csv GatherKernel "one decode step"
"""
import collections
import csv
import re
import sys


def main(path, first_kernel, title):
    with open(path) as f:
        rows = list(csv.DictReader(line for line in f if line.startswith('"')))
    launches = []  # (kernel, grid, ns)
    for row in rows:
        match = re.search(r"::(\w+)<", row["Kernel Name"]) or re.search(r"^(\w+)", row["Kernel Name"])
        name = match.group(1) if match else row["Kernel Name"][:40]
        launches.append((name, row["Grid Size"], float(row["Metric Value"].replace(",", ""))))
    starts = [i for i, (name, _, _) in enumerate(launches) if name == first_kernel]
    if len(starts) < 2:
        sys.exit(f"{path}: fewer than two {first_kernel} launches in {len(launches)}: no whole window to show")
    step = launches[starts[0]:starts[1]]
    totals = collections.defaultdict(lambda: [0, 0.0])
    for name, grid, ns in step:
        totals[(name, grid)][0] += 1
        totals[(name, grid)][1] += ns
    step_us = sum(ns for _, _, ns in step) / 1e3
    print(f"{title}: {len(step)} kernels, {step_us:.1f} us of GPU time (ncu clocks)")
    print(f"{'kernel':32s} {'grid':>16s} {'launches':>8s} {'us':>10s} {'us each':>9s} {'share':>6s}")
    for (name, grid), (count, ns) in sorted(totals.items(), key=lambda item: -item[1][1]):
        print(f"{name:32s} {grid:>16s} {count:8d} {ns / 1e3:10.1f} {ns / count / 1e3:9.2f} "
              f"{100 * ns / 1e3 / step_us:5.1f}%")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
