"""Reusable scratch memory for the intermediates of one band.

Allocating a fresh array for every pass of every band makes the kernel zero new pages again
and again, and threads then queue on the process's memory map. Inside :func:`band`, kernels
take their temporaries from this thread's pool instead and give each back as soon as a pass is
done with it (:func:`release`; the rest return when the band ends), so a thread reuses the
same few cache-warm buffers for every pass of every band.
"""

from __future__ import annotations

import bisect
import math
import threading

import numpy as np

# Buffers larger than this are not kept between bands (an unsplittable huge input), nor more
# than KEEP_TOTAL in all per thread (the smallest go first): kept threads keep their pools.
KEEP_BYTES = 32 * 2**20
KEEP_TOTAL = 64 * 2**20


class _Pool(threading.local):
    def __init__(self):
        self.active = False
        self.free: list[np.ndarray] = []
        self.used: dict[int, np.ndarray] = {}  # by id: a band's buffers are all alive
        self.entered_with = 0  # buffers in free when the band began


_POOL = _Pool()


def empty(shape, dtype) -> np.ndarray:
    """``np.empty``, from this thread's pool while a band is running."""
    if not _POOL.active:
        return np.empty(shape, dtype)
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    free = _POOL.free  # smallest first: the first that fits fits best
    for i, buffer in enumerate(free):
        if buffer.size >= size:
            del free[i]
            break
    else:
        buffer = np.empty(max(size, 1), np.uint8)
    _POOL.used[id(buffer)] = buffer
    return buffer[:size].view(dtype).reshape(shape)


def release(*arrays: np.ndarray) -> None:
    """Give scratch arrays back before the band ends (none may be used after), so that a
    band's passes share a few cache-resident buffers instead of piling up new ones."""
    if not _POOL.active:
        return
    for array in arrays:
        while array is not None:
            found = _POOL.used.pop(id(array), None)
            if found is not None:
                bisect.insort(_POOL.free, found, key=len)
                break
            array = getattr(array, "base", None)


class band:
    """Scratch arrays made inside are reused after it: none may outlive it."""

    def __enter__(self):
        _POOL.active = True
        _POOL.entered_with = len(_POOL.free)

    def __exit__(self, *exc):
        pool = _POOL
        pool.active = False
        free = pool.free
        if not pool.used and len(free) == pool.entered_with:
            return  # the usual case: the same buffers, every one released already
        for buffer in pool.used.values():
            bisect.insort(free, buffer, key=len)
        pool.used.clear()
        free[:] = [b for b in free if b.size <= KEEP_BYTES]
        total = sum(b.size for b in free)
        while total > KEEP_TOTAL:
            total -= free.pop(0).size
