"""One-axis pooling passes. Each pools ``x`` along one axis into a new (or given) array.

* :func:`direct_pass` combines, for each window offset, one strided slice: the general case,
  and the fastest for small windows.
* :func:`van_herk_pass` (van Herk / Gil-Werman) gives max and min of wide windows in a cost
  independent of the window: prefix and suffix extremes within blocks of the window's size.
* :func:`running_sum_pass` gives sums of wide windows as differences of a prefix sum kept in
  a wide accumulator (float64 or int64), so float32 does not drift.
* :func:`pixel_pass` handles an axis followed by a few contiguous cells (the W of HWC):
  whole rows are combined with shifted views (long, vectorised loops), then every stride-th
  pixel is picked in one copy of fixed-size records.
"""

from __future__ import annotations

import numpy as np

from .geometry import Axis

# Chosen by measurement (benchmarks/tune_kernels.py): below these windows direct passes win.
VAN_HERK_MIN_WINDOW = 7
RUNNING_SUM_MIN_WINDOW = 7
# A pixel of at most this many cells (e.g. RGB) is too short for NumPy's inner loops.
PIXEL_PASS_MAX_CELLS = 16


def along(a: np.ndarray, axis: int, index) -> np.ndarray:
    """``a[..., index, ...]`` with ``index`` on ``axis``."""
    return a[(slice(None),) * axis + (index,)]


def _empty(x: np.ndarray, axis: int, n: int, dtype, out: np.ndarray | None) -> np.ndarray:
    return np.empty(x.shape[:axis] + (n,) + x.shape[axis + 1:], dtype) if out is None else out


def choose_pass(x: np.ndarray, axis: int, g: Axis, combine: np.ufunc):
    """The fastest exact pass for this axis, geometry and reduction."""
    trailing = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    # Every pixel between two outputs must see an input cell: true without dilation.
    if (1 < trailing <= PIXEL_PASS_MAX_CELLS and _trailing_contiguous(x, axis)
            and (g.dilation == 1 or g.stride == 1)):
        return pixel_pass
    if g.dilation == 1 and g.stride < g.window:
        if combine is np.add and g.window >= RUNNING_SUM_MIN_WINDOW:
            return running_sum_pass
        if combine in (np.maximum, np.minimum) and g.window >= VAN_HERK_MIN_WINDOW:
            return van_herk_pass
    return direct_pass


def _trailing_contiguous(x: np.ndarray, axis: int) -> bool:
    expected = x.itemsize
    for n, stride in zip(x.shape[:axis:-1], x.strides[:axis:-1]):
        if n > 1 and stride != expected:
            return False
        expected *= n
    return True


def direct_pass(x, axis: int, g: Axis, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """Combine one strided slice per window offset; padding is skipped, never filled.

    An output's first in-range tap is copied in, later taps are combined with it, so no
    initial value is needed and padding can never win.
    """
    out = _empty(x, axis, g.out, dtype, out)
    s = g.stride
    filled = None  # outputs [filled, ...) already hold a partial result
    for j, (lo, hi) in enumerate(g.offset_ranges()):
        if lo == hi:
            continue
        start = lo * s - g.pad_begin + j * g.dilation
        taps = along(x, axis, slice(start, start + (hi - lo - 1) * s + 1, s))
        if filled is None:
            along(out, axis, slice(lo, hi))[...] = taps
        else:
            along(out, axis, slice(lo, filled))[...] = along(taps, axis, slice(0, filled - lo))
            partial = along(out, axis, slice(filled, hi))
            combine(partial, along(taps, axis, slice(filled - lo, None)), out=partial,
                    casting="unsafe")  # sums of uint64 wrap into int64, as NumPy's sum does
        filled = lo
    return out


def van_herk_pass(x, axis: int, g: Axis, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """Max or min of wide windows (dilation 1) in O(1) operations per cell, any window size."""
    k, s = g.window, g.stride
    blocks = -(-((g.out - 1) * s + k) // k)
    padded = _padded_copy(x, axis, g.pad_begin, blocks * k, _identity(combine, x.dtype))
    shape = padded.shape[:axis] + (blocks, k) + padded.shape[axis + 1:]
    prefix = padded.reshape(shape)
    suffix = prefix.copy()
    for j in range(1, k):
        combine(along(prefix, axis + 1, j), along(prefix, axis + 1, j - 1), out=along(prefix, axis + 1, j))
        i = k - 1 - j
        combine(along(suffix, axis + 1, i), along(suffix, axis + 1, i + 1), out=along(suffix, axis + 1, i))
    prefix = prefix.reshape(padded.shape)
    suffix = suffix.reshape(padded.shape)
    last = (g.out - 1) * s
    out = _empty(x, axis, g.out, dtype, out)
    combine(along(suffix, axis, slice(0, last + 1, s)),
            along(prefix, axis, slice(k - 1, last + k, s)), out=out)
    return out


def running_sum_pass(x, axis: int, g: Axis, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """Window sums (dilation 1) as differences of a wide prefix sum: cost independent of k."""
    wide = np.int64 if np.dtype(dtype).kind in "biu" else np.float64
    shape = x.shape[:axis] + (x.shape[axis] + 1,) + x.shape[axis + 1:]
    prefix = np.empty(shape, wide)
    along(prefix, axis, slice(0, 1))[...] = 0
    np.cumsum(x, axis=axis, dtype=wide, out=along(prefix, axis, slice(1, None)))
    starts = np.arange(g.out) * g.stride - g.pad_begin
    lo = np.clip(starts, 0, g.length)
    hi = np.clip(starts + g.window, 0, g.length)
    out = _empty(x, axis, g.out, dtype, out)
    np.subtract(np.take(prefix, hi, axis=axis), np.take(prefix, lo, axis=axis), out=out,
                casting="unsafe")
    return out


def pixel_pass(x, axis: int, g: Axis, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """A pass along an axis followed by a short contiguous pixel (HWC's W with C cells).

    The window is combined at every pixel over whole merged rows (long, vectorised loops),
    then every stride-th pixel is picked by viewing each pixel as one opaque record.
    """
    cells = int(np.prod(x.shape[axis + 1:], dtype=np.int64))
    merged = x.reshape(x.shape[:axis] + (-1,))
    every_pixel = (g.out - 1) * g.stride + 1
    rows = direct_pass(merged, axis, Axis(g.length * cells, g.window, 1, g.dilation * cells,
                                          g.pad_begin * cells, g.pad_end * cells,
                                          every_pixel * cells), combine, dtype)
    rows = rows.reshape(x.shape[:axis] + (every_pixel, cells))
    target = out if out is not None and _pixels(out, axis, cells) is not None else None
    result = _empty(x, axis, g.out, dtype, target)
    _pixels(result, axis, cells)[...] = along(_pixels(rows, axis, cells), axis,
                                              slice(None, None, g.stride))
    if out is not None and target is None:
        out[...] = result  # an output slice that cannot be viewed as pixels
        return out
    return result


def _pixels(a: np.ndarray, axis: int, cells: int) -> np.ndarray | None:
    """View the cells after ``axis`` as one opaque record per pixel, or None if no view can."""
    if a.size == 0 or not _trailing_contiguous(a, axis):
        return None
    merged = a.reshape(a.shape[:axis] + (a.shape[axis], cells))
    if not np.shares_memory(merged, a):
        return None
    return merged.view(np.dtype((np.void, cells * a.itemsize)))[..., 0]


def _identity(combine: np.ufunc, dtype: np.dtype):
    """A value that never wins: the lowest for max, the highest for min."""
    low = combine is np.maximum
    if dtype.kind == "f":
        return -np.inf if low else np.inf
    if dtype.kind == "b":
        return not low
    info = np.iinfo(dtype)
    return info.min if low else info.max


def _padded_copy(x, axis: int, pad_begin: int, length: int, fill) -> np.ndarray:
    """``x`` along ``axis`` placed at ``pad_begin`` in a buffer of ``length`` filled with ``fill``."""
    buffer = np.empty(x.shape[:axis] + (length,) + x.shape[axis + 1:], x.dtype)
    stop = min(pad_begin + x.shape[axis], length)
    along(buffer, axis, slice(0, pad_begin))[...] = fill
    along(buffer, axis, slice(pad_begin, stop))[...] = along(x, axis, slice(0, stop - pad_begin))
    along(buffer, axis, slice(stop, None))[...] = fill
    return buffer
