"""Running a plan: bands of the input pooled into slices of one output, on a thread pool.

NumPy releases the GIL inside ufuncs, so threads share the work without copies. The split
into bands depends only on the input and a byte budget, never on the thread count, so every
thread count gives the same bits.
"""

from __future__ import annotations

import os
import threading
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


def split_order(x: np.ndarray, plan) -> str:
    """How ``plan`` splits ``x`` into bands, each a run of its memory: ``"F"`` (last axis
    first) for a Fortran-ordered ``x`` and a plan that can cut its spatial axes, else ``"C"``."""
    fortran = x.flags.f_contiguous and not x.flags.c_contiguous
    return "F" if fortran and plan.splits_spatially else "C"


def run_bands(pool_band, x: np.ndarray, plan, out: np.ndarray, threads: int | None,
              combine: np.ufunc, band_bytes: int | None = None) -> np.ndarray:
    """Call ``pool_band(x_part, band, out_part)`` for every band of ``plan``, in parallel
    (``combine``: how the plan's windows are reduced, which decides whether bands are staged).

    A Fortran-ordered ``x`` is split along its last axis first, so that each band is a run of
    its memory, not a slice spread over all of it. Plans that cannot cut their spatial axes
    (global and adaptive pooling) split it by the leading axes; adaptive pooling, and global
    sums, copy each band of an input not in C order into C order first.
    """
    order = split_order(x, plan)
    spread = order == "C" and not x.flags.c_contiguous  # bands are strided views
    staged = ((x.nbytes > STAGE_MIN_BYTES and plan.stages_bands(x.itemsize, combine))
              or (spread and plan.stages_spread_bands(combine)))

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
    bands = plan.split(band_bytes or BAND_BYTES, x.itemsize, order)
    workers = min(threads or default_threads(), len(bands))
    if workers <= 1:
        work(bands)
        return out
    # Each worker takes the next band from one shared iterator (next() holds the GIL): a
    # future per band costs more than a small band's pooling (measured: 6.6 vs 5.0 ms on W1).
    # The calling thread is one of the workers: one thread fewer to wake and to wait for.
    pending = iter(bands)
    helpers = _start_helpers(workers - 1, work, pending)
    try:
        work(pending)
    finally:
        # A helper still queued behind another call's work has nothing left to do: cancel it
        # rather than wait for it. None of the started ones writes once this returns or raises.
        futures.wait([done for done in helpers if not done.cancel()])
    for done in helpers:
        if not done.cancelled():
            done.result()  # re-raises a helper's error
    return out


_HELPERS: dict[int, tuple[int, futures.ThreadPoolExecutor]] = {}
_HELPERS_LOCK = threading.Lock()


def _start_helpers(count: int, work, pending) -> list[futures.Future]:
    """``work(pending)`` on ``count`` threads of a kept pool (its threads keep their warm
    scratch buffers): one pool per process, as a child made by fork has none of its parent's
    threads, replaced by a larger one when more threads are asked for (no idle pools pile up)."""
    with _HELPERS_LOCK:  # no call submits to a pool another call has just shut down
        size, pool = _HELPERS.get(os.getpid(), (0, None))
        if size < count:
            if pool is not None:
                pool.shutdown(wait=False)  # its queued work still runs
            pool = futures.ThreadPoolExecutor(max_workers=count, thread_name_prefix="poolcli")
            _HELPERS[os.getpid()] = (count, pool)
        return [pool.submit(work, pending) for _ in range(count)]
