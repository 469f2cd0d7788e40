"""Running a plan: bands of the input pooled into slices of one output, on a thread pool.

NumPy releases the GIL inside ufuncs, so threads share the work without copies. The split
into bands depends only on the input and a byte budget, never on the thread count, so every
thread count gives the same bits.
"""

from __future__ import annotations

import functools
import os
from concurrent import futures

import numpy as np

from . import scratch

# Input bytes per band: a band's intermediates stay in cache, and there are enough bands to
# share between threads. Chosen by measurement (benchmarks/README.md).
BAND_BYTES = 2 * 2**20


# Inputs larger than this (far beyond the caches) have each band copied into cache first.
STAGE_MIN_BYTES = 8 * 2**20


def _copy(part: np.ndarray) -> np.ndarray:
    buffer = scratch.empty(part.shape, part.dtype)
    np.copyto(buffer, part)
    return buffer


def default_threads() -> int:
    """Every core this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_bands(pool_band, x: np.ndarray, plan, out: np.ndarray, threads: int | None,
              band_bytes: int | None = None) -> np.ndarray:
    """Call ``pool_band(x_part, band, out_part)`` for every band of ``plan``, in parallel."""
    staged = x.nbytes > STAGE_MIN_BYTES and plan.stages_bands(x.itemsize)

    def work(bands):
        # NaN and inf are values here, not errors (errstate is per thread)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            try:
                for band in bands:
                    with scratch.band():
                        part = x[band.source]
                        if staged:  # one memcpy-speed read into cache beats ufuncs in memory
                            part = _copy(part)
                        pool_band(part, band, out[band.target])
            except BaseException:
                for _ in bands:  # the other workers stop at their next band
                    pass
                raise

    if out.size == 0:
        return out
    bands = plan.split(band_bytes or BAND_BYTES, x.itemsize)
    wanted = threads or default_threads()
    workers = min(wanted, len(bands))
    if workers <= 1:
        work(bands)
        return out
    # Each worker takes the next band from one shared iterator (next() holds the GIL): a
    # future per band costs more than a small band's pooling (measured: 7.8 vs 5.1 ms on W1).
    # The calling thread is one of the workers: one thread fewer to wake and to wait for.
    pending = iter(bands)
    helpers = [_helpers(wanted - 1, os.getpid()).submit(work, pending)
               for _ in range(workers - 1)]
    try:
        work(pending)
    finally:
        futures.wait(helpers)  # no band is still being written when this returns or raises
    for done in helpers:
        done.result()  # re-raises a helper's error
    return out


@functools.cache
def _helpers(count: int, pid: int):
    """One pool of ``count`` threads, kept: its threads keep their warm scratch buffers.

    Keyed by process too: a child made by fork has none of its parent's threads."""
    return futures.ThreadPoolExecutor(max_workers=count, thread_name_prefix="poolcli")
