"""One-axis pooling passes. Each pools ``x`` along one axis into a new (or given) array.

* :func:`direct_pass` combines, for each window offset, one strided slice of the input: no
  copy, no padding buffer; the fastest for small windows along axes with long rows behind
  them (the H of CHW).
* :func:`tile_pass`: windows that tile an axis followed by at most a pixel (window <= stride,
  no padding, no remainder; the W of CHW or HWC) are evenly strided slices of the flat band,
  per cell (sums only: see :func:`choose_pass`).
* :func:`flat_pass` works on the band as one flat array (padded once where needed): wide
  windows by doubling (:func:`sliding`, about log2(k) passes, so a 13x13 window costs little
  more than a 5x5), and axes followed by short rows or pixels (the W of CHW or HWC), where
  NumPy's per-row loop overhead would dominate; stride-th positions are then picked (a pixel
  cell by cell when they are evenly spaced, else as one record).
* :func:`flat_all_pass` pools every spatial axis that way at every position and picks the
  outputs once at the end: two long contiguous passes and one pick for a 2x2 window over
  CHW, instead of a copy into cache, a pass per row and a strided pass.

Measured on this project's 2-core machine (benchmarks/kernels.py), doubling beat van Herk /
Gil-Werman and prefix-sum differences at every window from 7 to 255, so those are not used.
"""

from __future__ import annotations

import math

import numpy as np

from . import scratch
from .geometry import Axis

# Chosen by measurement (benchmarks/kernels.py): along an axis followed by fewer cells than
# this (the W of CHW, the W of HWC) NumPy's per-row loops cost more than flat passes; along
# other axes direct passes win below this window.
SHORT_ROW_CELLS = 64
FLAT_MIN_WINDOW = 7
# Stride-1 windows keep the input's length without a padded copy when the row is at least
# this many times the window's reach; wider windows make the row ends cost more than that
# copy (measured: benchmarks/README.md).
SAME_LENGTH_MIN_ROW = 16
# A pixel of at most this many cells (e.g. RGB) is handled cell by cell (tile passes, picks).
PIXEL_MAX_CELLS = 16
# flat_all_pass computes every position, stride times the outputs along each axis, in a
# full-size pass per axis: it pays up to this stride and this many pooled axes (measured:
# benchmarks/README.md).
FLAT_ALL_MAX_STRIDE = 2
FLAT_ALL_MAX_AXES = 2
# An operation of a direct pass costs about as much as this many cells' work (NumPy's call).
CALL_CELLS = 1000
# Sums over windows of up to this many cells add in the same order by doubling (sliding) as
# cell by cell (direct and tile passes), so any pass gives them the same bits.
SAME_ORDER_MAX_WINDOW = 3


def along(a: np.ndarray, axis: int, index) -> np.ndarray:
    """``a[..., index, ...]`` with ``index`` on ``axis``."""
    return a[(slice(None),) * axis + (index,)]


def _empty(x: np.ndarray, axis: int, n: int, dtype, out: np.ndarray | None) -> np.ndarray:
    return scratch.empty(x.shape[:axis] + (n,) + x.shape[axis + 1:], dtype) if out is None else out


def choose_pass(shape: tuple[int, ...], axis: int, g: Axis, combine: np.ufunc):
    """The fastest exact pass along ``axis`` of an array of ``shape`` (see the module's docstring).

    Max and min skip tile passes: NumPy vectorises their compare loops well only on contiguous
    data (measured: a strided float32 max costs 2.3x a strided add), so tiled windows are then
    cheaper as one contiguous pass and a pick. Sums over windows that do not overlap never take
    flat passes: whether an axis tiles depends on the band, and tile and direct passes add a
    window's cells in order, flat passes in doubling blocks (the same order up to 3 cells).
    """
    cells = math.prod(shape[axis + 1:])
    sums = combine is np.add
    if tiles(g) and cells <= PIXEL_MAX_CELLS and sums:
        return tile_pass
    if g.window == 1 or (sums and 3 < g.window <= g.stride and g.dilation == 1):
        return direct_pass
    if g.window > g.out and direct_is_cheaper(g):
        return direct_pass
    if cells < SHORT_ROW_CELLS or g.window >= FLAT_MIN_WINDOW:
        return flat_pass
    return direct_pass


def direct_is_cheaper(g: Axis) -> bool:
    """Whether a few windows far wider than the input (a huge padding) are cheaper pooled by a
    direct pass, one operation per window offset that reaches inside the input, than by a flat
    pass, which pads the input to their width (2**40 cells for a 2**40 window) and doubles
    over it."""
    padded = (g.out - 1) * g.stride + g.span
    offsets = min(g.window, g.out * (g.length // g.dilation + 1))
    return offsets * CALL_CELLS + g.out * g.length < math.log2(g.window) * padded


def _trailing_contiguous(x: np.ndarray, axis: int) -> bool:
    expected = x.itemsize
    for n, stride in zip(x.shape[:axis:-1], x.strides[:axis:-1]):
        if n > 1 and stride != expected:
            return False
        expected *= n
    return True


def direct_pass(x, axis: int, g: Axis, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """Combine one strided slice per window offset; padding is skipped, never filled.

    An output's first in-range taps are combined into it (or the first copied in), later taps
    are combined with it, so no initial value is needed and padding can never win.
    """
    out = _empty(x, axis, g.out, dtype, out)
    # indexes built here rather than by along(): every band calls this, and for a small band
    # the Python of each call costs as much as its pooling
    head, s = (slice(None),) * axis, g.stride

    def taps(j, lo, hi):
        start = lo * s - g.pad_begin + j * g.dilation
        return x[head + (slice(start, start + (hi - lo) * s, s),)]

    def outputs(lo, hi):
        return out[head + (slice(lo, hi),)]

    ranges = g.offset_ranges()
    filled = None  # outputs [filled, ...) already hold a partial result
    if len(ranges) > 1 and ranges[1][1] <= ranges[0][1] < ranges[1][2] <= ranges[0][2]:
        # the first two taps overlap (a later tap's range sits lower): one operation where
        # both reach instead of copy + combine, then copies where only one of them does
        (j0, lo0, hi0), (j1, lo1, hi1) = ranges[:2]
        combine(taps(j0, lo0, hi1), taps(j1, lo0, hi1), out=outputs(lo0, hi1),
                dtype=out.dtype, casting="unsafe")
        if hi1 < hi0:
            outputs(hi1, hi0)[...] = taps(j0, hi1, hi0)
        if lo1 < lo0:
            outputs(lo1, lo0)[...] = taps(j1, lo1, lo0)
        filled, ranges = lo1, ranges[2:]
    for j, lo, hi in ranges:
        if filled is None:
            outputs(lo, hi)[...] = taps(j, lo, hi)
        else:
            # outputs [lo, filled) get their first value, [filled, hi) one more
            if lo < filled:
                outputs(lo, filled)[...] = taps(j, lo, filled)
            if filled < hi:
                partial = outputs(filled, hi)
                # dtype: int64 + uint64 would run in float64; uint64 sums wrap into int64
                combine(partial, taps(j, filled, hi), out=partial, dtype=out.dtype,
                        casting="unsafe")
        filled = lo
    return out


def flat_all_fits(shape: tuple[int, ...], axes, geometry, combine: np.ufunc) -> bool:
    """Whether :func:`flat_all_pass` pools a band of ``shape`` exactly and fastest: the last
    spatial axis is the array's last (CHW, NCHW: the pick copies single cells), no window
    reaches padding, strides are small, at most two axes are pooled (a third full-size pass
    costs more than the separable passes save), and sums add in the same order as cell by
    cell."""
    return (max(axes) == len(shape) - 1
            and sum(g.window > 1 for g in geometry) <= FLAT_ALL_MAX_AXES
            and all(g.pad_begin == 0 and (g.out - 1) * g.stride + g.span <= g.length
                    and g.stride <= FLAT_ALL_MAX_STRIDE for g in geometry)
            and (combine is not np.add or all(g.window <= SAME_ORDER_MAX_WINDOW
                                              for g in geometry)))


def flat_all_pass(x, axes, geometry, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """Pool ``x`` (C-contiguous, of ``dtype``) along every axis of ``axes`` in that order,
    where :func:`flat_all_fits`.

    Each axis is one :func:`_windows` over the whole band, at every position: a window
    crossing a row's end (or reaching cells a previous axis left unset) gives garbage there,
    but no window that is picked does. The outputs are then picked, every stride-th position
    along every axis, in one copy.
    """
    pooled, picked = x, [slice(None)] * x.ndim
    for axis, g in zip(axes, geometry):
        picked[axis] = slice(0, (g.out - 1) * g.stride + 1, g.stride)
        if g.window > 1:
            windows = _windows(pooled, axis, g, combine)
            if pooled is not x:
                scratch.release(pooled)
            pooled = windows
    every = pooled[tuple(picked)]
    out = scratch.empty(every.shape, dtype) if out is None else out
    out[...] = every
    if pooled is not x:
        scratch.release(pooled)
    return out


def tiles(g: Axis) -> bool:
    """Windows that tile the axis exactly: no padding, no overlap, no remainder."""
    return (g.pad_begin == 0 and g.dilation == 1 and g.window <= g.stride
            and g.out * g.stride == g.length)


def tile_pass(x, axis: int, g: Axis, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """An axis followed by at most a pixel (the W of CHW or HWC), tiled by its windows.

    Rows hold a whole number of windows, so no window straddles two rows: for each cell of a
    pixel, each tap is one evenly strided slice of the flat band, and the whole band is pooled
    with ``window`` one-dimensional operations per cell, straight into the output.
    """
    cells = math.prod(x.shape[axis + 1:])
    out = _empty(x, axis, g.out, dtype, out)
    flat = x.reshape(-1)
    direct = out.flags.c_contiguous
    target = out.reshape(-1) if direct else np.empty(out.size, dtype)
    step = g.stride * cells
    for cell in range(cells):
        pooled = target[cell::cells]
        taps = [flat[j * cells + cell::step] for j in range(g.window)]
        if len(taps) == 1:
            pooled[...] = taps[0]
            continue
        combine(taps[0], taps[1], out=pooled, dtype=target.dtype, casting="unsafe")
        for tap in taps[2:]:
            combine(pooled, tap, out=pooled, dtype=target.dtype, casting="unsafe")
    if not direct:
        out[...] = target.reshape(out.shape)
    return out


def flat_pass(x, axis: int, g: Axis, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """A pass made of 1-D operations over the whole band (see :func:`_padded_flat_pass`).

    With stride 1 and an output as long as the input (a 3x3 window padded by 1, a 13x13 by
    6), the windows slide over the band itself straight into the output, and only the few
    outputs at each end of a row, whose windows reach padding, are pooled apart: no padded
    copy and no picking pass.
    """
    cells = math.prod(x.shape[axis + 1:])
    if (g.stride == 1 and g.out == g.length >= SAME_LENGTH_MIN_ROW * (g.span - 1)
            and x.dtype == dtype and x.flags.c_contiguous
            and (out is None or out.flags.c_contiguous)):
        out = _empty(x, axis, g.out, dtype, out)
        _same_length_pass(x, axis, g, combine, out, cells)
        return out
    return _padded_flat_pass(x, axis, g, combine, dtype, out)


def _same_length_pass(x, axis: int, g: Axis, combine: np.ufunc, out, cells: int) -> None:
    """Stride 1, ``out`` as long as ``x`` along ``axis``, both C-contiguous.

    Output i's window starts at input i - pad_begin, so the flat windows land in the flat
    output shifted by pad_begin steps of ``cells``. The outputs whose windows cross a row's
    end into the next row (the last pad_end of a row and the first pad_begin of the next) are
    then pooled again by :func:`_row_ends`.
    """
    flat, target = x.reshape(-1), out.reshape(-1)
    positions = flat.size - (g.span - 1) * cells
    start = g.pad_begin * cells
    sliding(flat, positions, g.window, g.dilation * cells, combine,
            target[start:start + positions])
    if g.pad_begin or g.pad_end:
        _row_ends(x, axis, g, combine, out)


def _row_ends(x, axis: int, g: Axis, combine: np.ufunc, out) -> None:
    """The outputs at both ends of ``axis`` whose windows reach padding, pooled at once.

    One buffer holds the padding before, the first ``reach`` cells, the last ``reach`` cells
    and the padding after: a window of a first output ends inside the first cells, one of a
    last output starts inside the last cells, so no window mixes the two, and each adds the
    same cells in the same order as the padded pass over the whole band (sums keep their bits).
    """
    reach, begin, end = g.span - 1, g.pad_begin, g.pad_end  # reach: the cells a window spans - 1
    shape = x.shape[:axis] + (begin + 2 * reach + end,) + x.shape[axis + 1:]
    buffer = scratch.empty(shape, out.dtype)
    fill = _fill(combine, out.dtype)
    along(buffer, axis, slice(0, begin))[...] = fill
    along(buffer, axis, slice(begin, begin + reach))[...] = along(x, axis, slice(0, reach))
    along(buffer, axis, slice(begin + reach, begin + 2 * reach))[...] = along(
        x, axis, slice(g.length - reach, None))
    along(buffer, axis, slice(begin + 2 * reach, None))[...] = fill
    every = _windows(buffer, axis, g, combine)
    scratch.release(buffer)
    along(out, axis, slice(0, begin))[...] = along(every, axis, slice(0, begin))
    along(out, axis, slice(g.out - end, None))[...] = along(
        every, axis, slice(begin + reach, begin + reach + end))
    scratch.release(every)


def _padded_flat_pass(x, axis: int, g: Axis, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """A pass made of 1-D operations over the whole band, padding included.

    The band is copied once into a buffer padded with a value that never counts (skipped
    when no padding is needed), every window position is combined by :func:`_windows` with
    long contiguous loops, whatever the axis, and every stride-th position is picked into the
    output. NumPy's loops over short rows (the W of CHW) and
    over short pixels (the W of HWC) cost more than these few extra passes.
    """
    cells = math.prod(x.shape[axis + 1:])
    needed = (g.out - 1) * g.stride + g.span
    if g.pad_begin == 0 and needed <= g.length and x.dtype == dtype and x.flags.c_contiguous:
        padded = x
    else:
        padded = _padded_copy(x, axis, g.pad_begin, needed, _fill(combine, np.dtype(dtype)),
                              dtype)
    every = _windows(padded, axis, g, combine)
    if padded is not x:
        scratch.release(padded)
    out = _empty(x, axis, g.out, dtype, out)
    if padded.shape[axis] == g.out * g.stride and out.flags.c_contiguous and cells <= PIXEL_MAX_CELLS:
        # every row is whole strides long: the picks are evenly spaced in the flat buffer, and
        # one strided copy per cell of a pixel beats copying 3-byte records (measured)
        picks = every.reshape(-1, g.stride * cells)
        target = out.reshape(-1, cells)
        for cell in range(cells):
            target[:, cell] = picks[:, cell]
    else:
        picked = slice(0, (g.out - 1) * g.stride + 1, g.stride)
        target, source = _pixels(out, axis, cells), _pixels(every, axis, cells)
        if target is None or source is None:
            out[...] = along(every, axis, picked)
        else:  # pixels as opaque records: one copy, not one per cell
            target[...] = along(source, axis, picked)
    scratch.release(every)
    return out


def _windows(a: np.ndarray, axis: int, g: Axis, combine: np.ufunc) -> np.ndarray:
    """Every window of ``g`` along ``axis`` of the C-contiguous ``a``, at every position, as a
    scratch array of ``a``'s shape and dtype: :func:`sliding` over ``a`` seen as one flat
    array, in which a step along ``axis`` is a shift by the cells that follow it. The last
    positions, whose windows would run past the end of ``a``, are left unset."""
    cells = math.prod(a.shape[axis + 1:])
    flat, windows = a.reshape(-1), scratch.empty(a.shape, a.dtype)
    positions = flat.size - (g.span - 1) * cells
    sliding(flat, positions, g.window, g.dilation * cells, combine,
            windows.reshape(-1)[:positions])
    return windows


def _pixels(a: np.ndarray, axis: int, cells: int) -> np.ndarray | None:
    """View the cells after ``axis`` as one opaque record per pixel, or None if they are not
    a pixel (one cell, or more than PIXEL_MAX_CELLS) or no view can."""
    if not 1 < cells <= PIXEL_MAX_CELLS or a.size == 0 or not _trailing_contiguous(a, axis):
        return None
    merged = a.reshape(a.shape[:axis] + (a.shape[axis], cells))
    if not np.shares_memory(merged, a):
        return None
    return merged.view(np.dtype((np.void, cells * a.itemsize)))[..., 0]


def sliding(flat: np.ndarray, positions: int, window: int, step: int, combine: np.ufunc,
            out: np.ndarray) -> None:
    """``out[q] = combine(flat[q], flat[q + step], ..., flat[q + (window-1)*step])``.

    Windows of 2, 4, 8, ... taps are built by doubling, so a window of k taps costs about
    log2(k) passes. Max and min cover the rest with two overlapping power-of-two windows
    (one more pass); sums add the power-of-two blocks of k's binary digits.
    """
    if window == 1:
        out[...] = flat[:positions]
        return
    idempotent = combine is not np.add
    blocks = {1: flat}
    width = 1
    while 2 * width <= window:
        previous = blocks[width]
        if 2 * width == window:  # the last doubling is the window: straight into out
            combine(previous[:positions], previous[width * step:width * step + positions],
                    out=out, dtype=out.dtype, casting="unsafe")
            scratch.release(*(blocks[size] for size in blocks if size > 1))
            return
        length = previous.size - width * step
        doubled = scratch.empty((length,), out.dtype)
        combine(previous[:length], previous[width * step:width * step + length], out=doubled,
                dtype=out.dtype, casting="unsafe")
        if idempotent and width > 1:  # max and min need only the widest block
            scratch.release(blocks.pop(width))
        width *= 2
        blocks[width] = doubled
    if idempotent:
        widest, rest = blocks[width], window - width
        combine(widest[:positions], widest[rest * step:rest * step + positions], out=out,
                dtype=out.dtype, casting="unsafe")
        scratch.release(widest)
        return
    offset, parts = 0, []
    for size in sorted(blocks, reverse=True):
        if window & size:
            parts.append(blocks[size][offset * step:offset * step + positions])
            offset += size
    combine(parts[0], parts[1], out=out, dtype=out.dtype, casting="unsafe")
    for part in parts[2:]:
        combine(out, part, out=out, dtype=out.dtype, casting="unsafe")
    scratch.release(*(blocks[size] for size in blocks if size > 1))


def _fill(combine: np.ufunc, dtype: np.dtype):
    """A padding value that never counts: nothing for sums, never winning for max and min."""
    if combine is np.add:
        return 0
    if combine in (np.fmax, np.fmin):
        return np.nan  # fmax and fmin skip NaN
    return _identity(combine, dtype)


def _identity(combine: np.ufunc, dtype: np.dtype):
    """A value that never wins: the lowest for max, the highest for min."""
    low = combine is np.maximum
    if dtype.kind == "f":
        return -np.inf if low else np.inf
    if dtype.kind == "b":
        return not low
    info = np.iinfo(dtype)
    return info.min if low else info.max


def _padded_copy(x, axis: int, pad_begin: int, length: int, fill, dtype) -> np.ndarray:
    """``x`` along ``axis`` placed at ``pad_begin`` in a buffer of ``length`` filled with ``fill``."""
    buffer = scratch.empty(x.shape[:axis] + (length,) + x.shape[axis + 1:], dtype)
    stop = min(pad_begin + x.shape[axis], length)
    along(buffer, axis, slice(0, pad_begin))[...] = fill
    along(buffer, axis, slice(pad_begin, stop))[...] = along(x, axis, slice(0, stop - pad_begin))
    along(buffer, axis, slice(stop, None))[...] = fill
    return buffer
