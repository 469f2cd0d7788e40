"""Micro-benchmarks behind the core's choices (the constants in pool_cli/core/kernels.py and
pool_cli/core/execute.py): per-axis passes by window size, all axes at once against one by
one, and band size against threads.

    python benchmarks/kernels.py            # a few minutes on a 2-core machine

Times are medians in microseconds (passes, one 1 MiB band in cache) or milliseconds (whole
(64, 512, 512) float32 pooling), measured side by side in one run.
"""

import time

import numpy as np

from pool_cli import pool
from pool_cli.core import execute, kernels, plans, scratch
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


def compare_passes(first, second, names: str, geometries) -> None:
    """One row per (window, stride, padding): ``first`` against ``second``, max and sum,
    along H (long rows behind) and W (none) of a (1, 512, 512) float32 band in cache (us)."""
    band = np.random.default_rng(0).standard_normal((1, 512, 512), dtype=np.float32)
    print(f"window stride | H: {names} (max) {names} (sum) | W: {names} (max) {names} (sum)")
    for window, stride, pad in geometries:
        g = make_axis(512, window, stride, 1, (pad, pad), False)
        row = [median_us(lambda: run(band, axis, g, combine, band.dtype))
               for axis in (1, 2) for combine in (np.maximum, np.add) for run in (first, second)]
        print(f"{window:6d} {stride:6d} | " + " ".join(f"{t:7.0f}" for t in row[:4]) + " | "
              + " ".join(f"{t:7.0f}" for t in row[4:]))


def passes():
    """Direct against flat passes."""
    geometries = [(2, 2, 0), (3, 2, 1)] + [(k, 1, (k - 1) // 2) for k in (3, 5, 7, 13, 25, 63, 255)]
    compare_passes(kernels.direct_pass, kernels.flat_pass, "direct flat", geometries)


def same_length():
    """Stride-1 windows that keep the length: sliding over the band itself (the ends pooled
    apart) against the padded copy and pick."""
    geometries = [(k, 1, (k - 1) // 2) for k in (3, 5, 13, 25, 33, 63, 127)]
    compare_passes(kernels.flat_pass, kernels._padded_flat_pass, "same padded", geometries)


def tiled():
    """Tiled 2x2 windows along W: tile pass against flat pass and pick, by dtype (us)."""
    g = make_axis(512, 2, 2, 1, (0, 0), False)
    print("dtype    combine  | tile    flat")
    for dtype, combine in ((np.float32, np.maximum), (np.float32, np.add), (np.uint8, np.maximum),
                           (np.uint16, np.add)):
        band = np.random.default_rng(0).integers(0, 200, (1, 512, 512)).astype(dtype)
        row = [median_us(lambda: run(band, 2, g, combine, band.dtype))
               for run in (kernels.tile_pass, kernels._padded_flat_pass)]
        print(f"{np.dtype(dtype).name:8s} {combine.__name__:8s} | " + " ".join(f"{t:6.0f}" for t in row))


def side_by_side_ms(functions: dict, runs=15) -> dict:
    """Medians (ms) of ``functions`` timed in alternation, round after round."""
    times = {name: [] for name in functions}
    for function in functions.values():
        function()
    for _ in range(runs):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: np.median(t) * 1e3 for name, t in times.items()}


def all_axes_at_once():
    """flat_all_pass (every axis over the flat band, one pick) against the one-axis passes,
    by stride and number of pooled axes, whole pooling with 1 and 2 threads (ms)."""
    rng = np.random.default_rng(0)
    chw = rng.standard_normal((64, 512, 512), dtype=np.float32)
    ncdhw = rng.standard_normal((1, 8, 64, 128, 128), dtype=np.float32)
    cases = [("max 2x2 s2", chw, dict(mode="max", window=2)),
             ("avg 2x2 s2", chw, dict(mode="avg", window=2)),
             ("max 3x3 s2", chw, dict(mode="max", window=3, stride=2)),
             ("avg 3x3 s2", chw, dict(mode="avg", window=3, stride=2)),
             ("max 2x2 s1", chw, dict(mode="max", window=2, stride=1)),
             ("max 3x3 s3", chw, dict(mode="max", window=3)),
             ("avg 3x3 s3", chw, dict(mode="avg", window=3)),
             ("avg 2x2x2 s2 NCDHW", ncdhw, dict(mode="avg", window=2))]

    def with_limit(limit, x, threads, kwargs):
        def run():
            kernels.FLAT_ALL_MAX_STRIDE, kernels.FLAT_ALL_MAX_AXES = limit, 3
            plans._passes.cache_clear()
            try:
                pool(x, threads=threads, **kwargs)
            finally:
                kernels.FLAT_ALL_MAX_STRIDE, kernels.FLAT_ALL_MAX_AXES = saved
                plans._passes.cache_clear()
        return run

    saved = kernels.FLAT_ALL_MAX_STRIDE, kernels.FLAT_ALL_MAX_AXES
    print("workload              | t1: one by one  all at once | t2: one by one  all at once")
    for name, x, kwargs in cases:
        row = []
        for threads in (1, 2):
            t = side_by_side_ms({"one": with_limit(0, x, threads, kwargs),
                                 "all": with_limit(1 << 30, x, threads, kwargs)})
            row += [t["one"], t["all"]]
        print(f"{name:21s} | {row[0]:14.2f} {row[1]:12.2f} | {row[2]:14.2f} {row[3]:12.2f}")


def staging():
    """Bands copied into cache before a strided first pass, or read in place, by the length
    of the rows that pass reads: max 3x3 stride 2 pad 1 over 64 MiB of float32 (ms)."""
    rng = np.random.default_rng(0)
    saved = plans.STAGED_ROW_BYTES

    def with_rows(limit, x, threads):
        def run():
            plans.STAGED_ROW_BYTES = limit
            try:
                pool(x, "max", window=3, stride=2, padding=1, threads=threads)
            finally:
                plans.STAGED_ROW_BYTES = saved
        return run

    print("row bytes | t1: staged  in place | t2: staged  in place")
    for width in (512, 1024, 2048, 4096):
        x = rng.standard_normal((64 * 512 // width, 512, width), dtype=np.float32)
        row = []
        for threads in (1, 2):
            t = side_by_side_ms({"staged": with_rows(1 << 30, x, threads),
                                 "in place": with_rows(0, x, threads)})
            row += [t["staged"], t["in place"]]
        print(f"{width * 4:9d} | {row[0]:10.2f} {row[1]:9.2f} | {row[2]:10.2f} {row[3]:9.2f}")


def bands():
    """Whole pooling of (64, 512, 512) float32 by band size and thread count (ms)."""
    x = np.random.default_rng(0).standard_normal((64, 512, 512), dtype=np.float32)
    workloads = {"max 2x2": dict(mode="max", window=2),
                 "avg 3x3 s1 p1": dict(mode="avg", window=3, stride=1, padding=1)}
    for budget in (256 << 10, 1 << 20, 2 << 20, 4 << 20, 16 << 20):
        execute.BAND_BYTES = budget
        cells = []
        for name, kwargs in workloads.items():
            for threads in (1, 2):
                cells.append(f"{name} t{threads} {median_us(lambda: pool(x, threads=threads, **kwargs), 7) / 1e3:6.1f}")
        print(f"band {budget >> 10:6d} KiB: " + "  ".join(cells))


if __name__ == "__main__":
    passes()
    same_length()
    tiled()
    all_axes_at_once()
    staging()
    bands()
