"""Micro-benchmarks behind the core's choices (the constants in pool_cli/core/kernels.py and
pool_cli/core/execute.py): per-axis passes by window size, and band size against threads.

    python benchmarks/kernels.py            # a few minutes on a 2-core machine

Times are medians in microseconds (passes, one 1 MiB band in cache) or milliseconds (whole
(64, 512, 512) float32 pooling), measured side by side in one run.
"""

import time

import numpy as np

from pool_cli import pool
from pool_cli.core import execute, kernels, scratch
from pool_cli.core.geometry import make_axis


def median_us(function, runs=15):
    function()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        with scratch.band():
            function()
        times.append(time.perf_counter() - start)
    return np.median(times) * 1e6


def passes():
    """direct against flat passes, max and sum, along H (long rows behind) and W (none)."""
    band = np.random.default_rng(0).standard_normal((1, 512, 512), dtype=np.float32)
    print("window stride | H: direct flat (max) direct flat (sum) | W: direct flat (max) direct flat (sum)")
    for window, stride in ((2, 2), (3, 2), (3, 1), (5, 1), (7, 1), (13, 1), (25, 1), (63, 1), (255, 1)):
        pad = (window - 1) // 2 if stride == 1 or window == 3 else 0
        g = make_axis(512, window, stride, 1, (pad, pad), False)
        row = []
        for axis in (1, 2):
            for combine in (np.maximum, np.add):
                for run in (kernels.direct_pass, kernels.flat_pass):
                    row.append(median_us(lambda: run(band, axis, g, combine, band.dtype)))
        print(f"{window:6d} {stride:6d} | " + " ".join(f"{t:7.0f}" for t in row[:4]) + " | "
              + " ".join(f"{t:7.0f}" for t in row[4:]))


def bands():
    """Whole pooling of (64, 512, 512) float32 by band size and thread count (ms)."""
    x = np.random.default_rng(0).standard_normal((64, 512, 512), dtype=np.float32)
    workloads = {"max 2x2": dict(mode="max", window=2),
                 "avg 3x3 s1 p1": dict(mode="avg", window=3, stride=1, padding=1)}
    for budget in (256 << 10, 1 << 20, 4 << 20, 16 << 20):
        execute.BAND_BYTES = budget
        cells = []
        for name, kwargs in workloads.items():
            for threads in (1, 2):
                cells.append(f"{name} t{threads} {median_us(lambda: pool(x, threads=threads, **kwargs), 7) / 1e3:6.1f}")
        print(f"band {budget >> 10:6d} KiB: " + "  ".join(cells))


if __name__ == "__main__":
    passes()
    bands()
