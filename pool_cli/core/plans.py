"""Plans: a pooling geometry resolved for one input shape, and how it splits into bands.

A plan knows its output shape, reduces an array with a combining ufunc, gives the divisor
of ``avg`` (:meth:`counts`), describes itself for reports, and splits into independent bands
(:meth:`split`) small enough to stay in cache, which threads share and which let an input
larger than memory be pooled piece by piece.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace
from functools import reduce as fold

import numpy as np

from . import scratch
from .geometry import Axis, adaptive_bounds, hash_once
from .kernels import choose_pass, direct_pass, flat_all_fits, flat_all_pass


# Rows shorter than this, read with a stride, are copied into cache before pooling (measured:
# it pays for rows of 2-4 KiB, and costs from 8 KiB on: benchmarks/README.md).
STAGED_ROW_BYTES = 8 * 1024
# A band split along the next axes too spans at least this many windows' reach along its
# own: its halo is then a small part of it (measured: one output row per band read a
# 13-cell window's columns 13 times over, 4.4x the time).
DEEPER_REACH = 8
# Global float sums add pieces of this many cells with SIMD, then the pieces pairwise.
SUM_ROW = 1024


@dataclass(frozen=True)
class Band:
    """One independent piece of a pooling: input index, output index, and its own plan
    (whose padding says where the band meets the real padding, so its divisors are right)."""

    source: tuple
    target: tuple
    plan: "Plan"


@hash_once
@dataclass(frozen=True)
class Plan:
    """What every plan shares: the layout, the spatial axes and the input shape."""

    layout: str
    axes: tuple[int, ...]
    in_shape: tuple[int, ...]

    # whether bands may cut the spatial axes (window pooling), or only the others
    splits_spatially = False

    def stages_spread_bands(self, combine: np.ufunc) -> bool:
        """Whether a band that is a strided view (of an input not in C order, split by its
        leading axes) is copied into C order first."""
        return False

    def stages_bands(self, itemsize: int, combine: np.ufunc) -> bool:
        """Whether a band is best copied into cache before it is pooled (see WindowPlan)."""
        return False

    def _out_shape(self, sizes) -> tuple[int, ...]:
        shape = list(self.in_shape)
        for axis, size in zip(self.axes, sizes):
            shape[axis] = size
        return tuple(shape)

    def peak_cells(self) -> int:
        """The most cells the input or a pass's result holds: passes go one axis at a time (in
        :meth:`_steps`' order), and one that widens an axis (padding, a larger output_size)
        may leave a result larger than both the input and the output."""
        shape = list(self.in_shape)
        peak = math.prod(shape)
        for axis, size in self._steps():
            shape[axis] = size
            peak = max(peak, math.prod(shape))
        return peak

    def _steps(self) -> list[tuple[int, int]]:
        """``(axis, output length)`` in the order the passes run: the spatial axes in turn."""
        out = self.out_shape
        return [(axis, out[axis]) for axis in self.axes]

    def counts(self, include_pad: bool) -> np.ndarray:
        """Cells in each window (inside the input, or the padded input): the divisor of avg."""
        return broadcast_product(self.axis_counts(include_pad), len(self.in_shape))

    def divisor(self, include_pad: bool) -> "Divisor":
        """:meth:`counts` as one scalar for the interior and exact arrays for the edges."""
        return _divisor(self, include_pad)

    def split(self, budget: int, itemsize: int, order: str = "C") -> tuple[Band, ...]:
        """Bands of about ``budget`` input bytes; the same split for any thread count.

        ``order="C"`` splits the first axis first (each band is a contiguous run of a C-ordered
        input), ``"F"`` the last axis first (a contiguous run of a Fortran-ordered one).
        """
        return _cached_split(self, budget, itemsize, order)

    def _split(self, axes: tuple[int, ...], source: tuple, target: tuple, budget: int,
               itemsize: int):
        """Bands along ``axes[0]``; an entry along it larger than ``budget`` is split along
        ``axes[1]``, and so on. ``source``, ``target``: the input's and the output's slices
        fixed so far."""
        if not axes:
            yield Band(source, target, self)
            return
        axis = axes[0]
        # the bytes under one index along axis (the axes already split hold the band's extent)
        entry = math.prod(n for a, n in enumerate(self.in_shape) if a != axis) * itemsize
        extent = self.in_shape[axis]
        if axis in self.axes:
            yield from self._split_spatial(axes, source, target, budget, itemsize, entry)
        elif entry * extent <= budget:
            yield Band(source, target, self)
        elif entry <= budget:
            step = max(1, budget // entry)
            for start in range(0, extent, step):
                part = slice(start, min(start + step, extent))
                yield Band(_at(source, axis, part), _at(target, axis, part),
                           self._with_shape(axis, min(step, extent - start)))
        else:
            sub = self._with_shape(axis, 1)
            for i in range(extent):
                part = slice(i, i + 1)
                yield from sub._split(axes[1:], _at(source, axis, part), _at(target, axis, part),
                                      budget, itemsize)

    def _split_spatial(self, axes, source, target, budget, itemsize, entry):
        yield Band(source, target, self)

    def _with_shape(self, axis: int, size: int) -> "Plan":
        shape = list(self.in_shape)
        shape[axis] = size
        return replace(self, in_shape=tuple(shape))


@hash_once
@dataclass(frozen=True)
class WindowPlan(Plan):
    """Sliding-window pooling: one :class:`~pool_cli.core.geometry.Axis` per spatial axis."""

    splits_spatially = True
    geometry: tuple[Axis, ...] = ()
    # a band's: the plan of the whole input, for which its passes are chosen (see _passes)
    whole: "WindowPlan | None" = None

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self._out_shape(g.out for g in self.geometry)

    @property
    def cells(self) -> int:
        """The most input cells one window can hold."""
        return math.prod(g.window for g in self.geometry)

    def _order(self) -> list[int]:
        """Spatial axes in pooling order: the largest stride (it shrinks most) first.

        Decided by strides alone, never by a band's lengths, so that every band of an input
        adds its sums in the same order: any band split gives the same bits.
        """
        return sorted(range(len(self.axes)), key=lambda i: -self.geometry[i].stride)

    def _steps(self) -> list[tuple[int, int]]:
        return [(self.axes[i], self.geometry[i].out) for i in self._order()]

    def reduce(self, x, combine, dtype, out=None) -> np.ndarray:
        """Pool ``x`` (of shape ``in_shape``) one spatial axis at a time, or all at once
        where :func:`~pool_cli.core.kernels.flat_all_fits`."""
        steps, flat_all = _passes(self, combine)
        if flat_all and x.flags.c_contiguous and x.dtype == dtype:
            axes, geometry = zip(*((axis, g) for axis, g, _ in steps))
            return flat_all_pass(x, axes, geometry, combine, dtype, out)
        for n, (axis, g, one_axis_pass) in enumerate(steps):
            last = out if n == len(steps) - 1 else None
            pooled = one_axis_pass(x, axis, g, combine, dtype, last)
            if n:  # an intermediate of this band, no longer needed
                scratch.release(x)
            x = pooled
        return x

    def stages_bands(self, itemsize: int, combine: np.ufunc) -> bool:
        """Copy each band into cache first when the first pass reads it in place with a stride,
        in rows too short for the hardware prefetcher (the H of CHW; measured: it helps there,
        and costs with stride 1 or long rows, benchmarks/README.md)."""
        steps, flat_all = _passes(self, combine)
        if flat_all:
            return False  # its passes read the band contiguously
        axis, g, first_pass = steps[0]
        row_bytes = math.prod(self.in_shape[axis + 1:]) * itemsize
        return g.stride > 1 and row_bytes < STAGED_ROW_BYTES and first_pass is direct_pass

    def axis_counts(self, include_pad: bool) -> list[tuple[int, np.ndarray]]:
        return [(a, g.counts(include_pad)) for a, g in zip(self.axes, self.geometry)]

    def describe(self) -> dict:
        g = self.geometry
        return {"window": [a.window for a in g], "stride": [a.stride for a in g],
                "padding": [[a.pad_begin, a.pad_end] for a in g],
                "dilation": [a.dilation for a in g]}

    def _split_spatial(self, axes, source, target, budget, itemsize, entry):
        """Bands of output rows along the spatial axis ``axes[0]``, each with the input rows
        it reaches; where even one output row reaches more than ``budget``, each is split
        further along ``axes[1:]``."""
        axis = axes[0]
        i = self.axes.index(axis)
        g = self.geometry[i]
        rows = max(1, budget // max(1, entry * g.stride))
        # one output row alone reaches more than the budget: each band is split further
        deeper = bool(axes[1:]) and min(g.span, g.length) * entry > budget
        if deeper:  # bands of many output rows, or overlapping windows read each cell again
            rows = max(rows, -(-DEEPER_REACH * g.span // g.stride))
        if rows >= g.out:
            if deeper:
                yield from self._split(axes[1:], source, target, budget, itemsize)
            else:
                yield Band(source, target, self)
            return
        for first in range(0, g.out, rows):
            last = min(first + rows, g.out)
            tap = first * g.stride - g.pad_begin
            start = max(tap, 0)
            stop = min((last - 1) * g.stride - g.pad_begin + g.span, g.length)
            pad_end = g.pad_end if stop == g.length else 0
            local = Axis(stop - start, g.window, g.stride, g.dilation, start - tap, pad_end,
                         last - first)
            geometry = self.geometry[:i] + (local,) + self.geometry[i + 1:]
            plan = replace(self._with_shape(axis, stop - start), geometry=geometry)
            band_source = _at(source, axis, slice(start, stop))
            band_target = _at(target, axis, slice(first, last))
            if deeper:
                yield from plan._split(axes[1:], band_source, band_target, budget, itemsize)
            else:
                yield Band(band_source, band_target, plan)


@hash_once
@dataclass(frozen=True)
class AdaptivePlan(Plan):
    """Adaptive pooling to a given output size."""

    sizes: tuple[int, ...] = ()

    def stages_spread_bands(self, combine: np.ufunc) -> bool:
        # its take()s along a band spread over memory ran 16x slower than a copy and the same
        # passes (measured: (17, 512, 512) to 7x7, 411 against 25 ms)
        return True

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self._out_shape(self.sizes)

    @property
    def cells(self) -> int:
        return int(np.prod([int(np.max(e - s)) for s, e in self._bounds()]))

    def _bounds(self):
        return [adaptive_bounds(self.in_shape[a], n) for a, n in zip(self.axes, self.sizes)]

    def reduce(self, x, combine, dtype, out=None) -> np.ndarray:
        for n, (axis, size) in enumerate(zip(self.axes, self.sizes)):
            last = out if n == len(self.axes) - 1 else None
            x = adaptive_pass(x, axis, size, combine, dtype, last)
        return x

    def axis_counts(self, include_pad: bool) -> list[tuple[int, np.ndarray]]:
        return [(a, e - s) for a, (s, e) in zip(self.axes, self._bounds())]

    def describe(self) -> dict:
        return {"window": None, "stride": None, "padding": [[0, 0]] * len(self.axes),
                "dilation": None, "output_size": list(self.sizes)}


@hash_once
@dataclass(frozen=True)
class GlobalPlan(Plan):
    """One window over each whole spatial extent."""

    # One streaming reduction per band needs no cache blocking: fewer, larger bands.
    BAND_FLOOR = 16 * 2**20

    def split(self, budget: int, itemsize: int, order: str = "C") -> tuple[Band, ...]:
        return super().split(max(budget, self.BAND_FLOOR), itemsize, order)

    def stages_spread_bands(self, combine: np.ufunc) -> bool:
        # sums: NumPy adds a spread band's cells one after another (float32 over a 512x512
        # plane: off by 1e-2), a copy in C order adds them in row sums (the C order's bits)
        return combine is np.add

    @property
    def out_shape(self) -> tuple[int, ...]:
        return self._out_shape(1 for _ in self.axes)

    @property
    def cells(self) -> int:
        return math.prod(self.in_shape[a] for a in self.axes)

    def reduce(self, x, combine, dtype, out=None) -> np.ndarray:
        """One reduction over the spatial axes. A C-ordered band whose spatial axes are
        adjacent is seen as ``(lead, cells, pixel)``: float sums over trailing ones (CHW) go
        in rows (see :func:`_row_sums`), channels-last ones (HWC) in columns (see
        :func:`_column_reduce`)."""
        first, end = self.axes[0], self.axes[-1] + 1
        if self.axes == tuple(range(first, end)) and x.flags.c_contiguous:
            lead, pixel = math.prod(x.shape[:first]), math.prod(x.shape[end:])
            if pixel > 1 and _columns_pay(combine, x.dtype, self.cells, pixel):
                totals = _column_reduce(x.reshape(lead, self.cells, pixel), combine, dtype)
                return _into(totals.reshape(self.out_shape), out)
            if (combine is np.add and x.dtype.kind == "f" and x.dtype == dtype
                    and self.cells % SUM_ROW == 0):
                totals = _row_sums(x.reshape(lead, self.cells))
                return _into(totals.reshape(self.out_shape), out)
        return combine.reduce(x, axis=self.axes, dtype=dtype, keepdims=True, out=out)

    def axis_counts(self, include_pad: bool) -> list[tuple[int, np.ndarray]]:
        return [(a, np.array([self.in_shape[a]])) for a in self.axes]

    def describe(self) -> dict:
        extent = [self.in_shape[a] for a in self.axes]
        return {"window": extent, "stride": extent, "padding": [[0, 0]] * len(extent),
                "dilation": [1] * len(extent)}


@dataclass(frozen=True)
class Divisor:
    """The divisor of avg: windows away from the padding all hold ``interior`` cells; along
    each ``(axis, index, exact)`` of ``edges``, the outputs at ``index`` divide by ``exact``
    (shaped to broadcast over those outputs)."""

    interior: int
    edges: tuple[tuple[int, np.ndarray, np.ndarray], ...]


@functools.lru_cache(maxsize=256)
def _divisor(plan: Plan, include_pad: bool) -> Divisor:
    # cached: every band of a plan asks again, and building it costs more than dividing a band
    counts = plan.axis_counts(include_pad)
    middle = [int(c[len(c) // 2]) for _, c in counts]
    edges = []
    for i, (axis, c) in enumerate(counts):
        index = np.flatnonzero(c != middle[i])
        if index.size:
            exact = counts[:i] + [(axis, c[index])] + counts[i + 1:]
            divisors = broadcast_product(exact, len(plan.in_shape))
            divisors.flags.writeable = False  # shared by every band and thread
            edges.append((axis, index, divisors))
    return Divisor(math.prod(middle), tuple(edges))


def _row_sums(x: np.ndarray) -> np.ndarray:
    """The sum of each row of a C-contiguous float array whose rows hold whole SUM_ROWs.

    ``einsum`` sums a short row with SIMD accumulators, about as fast as NumPy reads memory;
    ``np.add.reduce`` (pairwise, scalar loops) takes 1.2x its time with one thread (measured:
    benchmarks/README.md). Pieces of SUM_ROW cells keep the accuracy of the pairwise sum: each
    SIMD lane adds a few dozen cells in turn, and the pieces' sums are added pairwise.
    """
    pieces = np.einsum("ij->i", x.reshape(-1, SUM_ROW))
    return np.add.reduce(pieces.reshape(x.shape[0], -1), axis=1)


# Channels-last global pooling folds pixels of at most FOLD_MAX_PIXEL cells (NumPy's loops
# over wider ones are long enough already). Wider ones go through _column_reduce only for
# float sums over COLUMN_PAIRWISE_CELLS cells or more, for accuracy: over fewer (CNN feature
# maps, 7x7 to 56x56) its extra passes took 1.3-2.5x NumPy's running sum (measured), which
# is what PyTorch's channels-last average does too.
FOLD_MAX_PIXEL = SUM_ROW // 8
COLUMN_PAIRWISE_CELLS = 16384


def _columns_pay(combine: np.ufunc, dtype: np.dtype, cells: int, pixel: int) -> bool:
    if pixel <= FOLD_MAX_PIXEL:
        return True
    return combine is np.add and dtype.kind == "f" and cells >= COLUMN_PAIRWISE_CELLS


def _column_reduce(x: np.ndarray, combine: np.ufunc, dtype) -> np.ndarray:
    """``combine`` over axis 1 of a C-contiguous ``(lead, cells, pixel)`` array: the global
    pooling of a channels-last band (HWC: ``pixel`` is C), as ``(lead, pixel)``.

    NumPy would combine the ``pixel``-cell rows one after another: 3-cell loops for RGB,
    100x slower than the same image as CHW. Here ``k`` rows are folded into one of about
    SUM_ROW cells, the folded rows are combined with long contiguous loops, and the ``k``
    pixels of the result at the end. Float sums go pairwise (:func:`_pairwise_sum`): as
    accurate as CHW's row sums, where NumPy's running sum is not (float32 RGB, 24 megapixels:
    off by 1e-4 relative).
    """
    lead, cells, pixel = x.shape
    k = max(1, SUM_ROW // pixel)
    whole = cells - cells % k
    pairwise = combine is np.add and x.dtype.kind == "f"
    parts = []
    if whole:
        folded = x[:, :whole].reshape(lead, whole // k, k * pixel)
        if pairwise:
            parts.append(_halve(_pairwise_sum(folded, dtype).reshape(lead, k, pixel)))
        else:
            totals = combine.reduce(folded, axis=1, dtype=dtype).reshape(lead, k, pixel)
            parts.append(combine.reduce(totals, axis=1, dtype=dtype))
    if whole < cells:  # the last cells % k rows
        rest = x[:, whole:]
        parts.append(_halve(rest.astype(dtype)) if pairwise
                     else combine.reduce(rest, axis=1, dtype=dtype))
    return fold(lambda a, b: combine(a, b, dtype=dtype), parts)


# Column sums add this many rows in turn, then the leaves pairwise, COLUMN_CHUNK rows at a
# time (about 1 MiB of float32 folded rows: in cache).
COLUMN_LEAF = 8
COLUMN_CHUNK = 256


def _pairwise_sum(x: np.ndarray, dtype) -> np.ndarray:
    """The float sum over axis 1 of ``x`` ``(lead, rows, width)`` in ``dtype``, as ``(lead,
    width)``: within each chunk of COLUMN_CHUNK rows, leaves of COLUMN_LEAF rows added in
    turn, then the leaves pairwise (:func:`_halve`); then the chunks' sums pairwise."""
    lead, rows, width = x.shape
    sums = np.empty((lead, -(-rows // COLUMN_CHUNK), width), dtype)
    for i, start in enumerate(range(0, rows, COLUMN_CHUNK)):
        chunk = x[:, start:start + COLUMN_CHUNK]
        n = chunk.shape[1]
        full = n - n % COLUMN_LEAF
        leaves = scratch.empty((lead, -(-n // COLUMN_LEAF), width), dtype)
        np.add.reduce(chunk[:, :full].reshape(lead, -1, COLUMN_LEAF, width), axis=2,
                      dtype=dtype, out=leaves[:, :full // COLUMN_LEAF])
        if full < n:
            np.add.reduce(chunk[:, full:], axis=1, dtype=dtype, out=leaves[:, -1])
        sums[:, i] = _halve(leaves)
        scratch.release(leaves)
    return _halve(sums)


def _halve(x: np.ndarray) -> np.ndarray:
    """The sum over axis 1 of ``x`` ``(lead, rows, width)``, pairwise and in place (``x`` is
    overwritten): the second half of the rows is added onto the first until one is left, an
    odd last row onto the last pair's."""
    rows = x.shape[1]
    while rows > 1:
        half = rows // 2
        np.add(x[:, :half], x[:, half:2 * half], out=x[:, :half])
        if rows % 2:
            np.add(x[:, half - 1], x[:, rows - 1], out=x[:, half - 1])
        rows = half
    return x[:, 0]


def _into(result: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    if out is None:
        return result
    out[...] = result
    return out


@functools.lru_cache(maxsize=256)
def _passes(plan: WindowPlan, combine: np.ufunc) -> tuple[tuple, bool]:
    """The plan's one-axis passes in pooling order, ``(axis, geometry, pass)`` each, and
    whether :func:`flat_all_pass` may replace them (cached: every band asks again).

    A band's passes are chosen by the whole input's shape: a band that is narrower along a
    later axis (split last axis first, as for a Fortran-ordered input) could otherwise switch
    a sum between passes that add in different orders, and no longer give the same bits.
    """
    whole = plan.whole or plan
    shape, steps = list(whole.in_shape), []
    for i in plan._order():
        axis, g = plan.axes[i], plan.geometry[i]
        steps.append((axis, g, choose_pass(tuple(shape), axis, g, combine)))
        shape[axis] = whole.geometry[i].out
    return tuple(steps), flat_all_fits(plan.in_shape, plan.axes, plan.geometry, combine)


@functools.lru_cache(maxsize=64)
def _cached_split(plan: Plan, budget: int, itemsize: int, order: str) -> tuple[Band, ...]:
    # cached: a batch of same-sized inputs, or a repeated call, splits alike; and bands with
    # the same local geometry share one plan, so the kernels' own caches hit
    axes = tuple(range(len(plan.in_shape)))
    whole = (plan.whole or plan) if isinstance(plan, WindowPlan) else None
    shared: dict[Plan, Plan] = {}

    def local(part: Plan) -> Plan:
        if whole is not None and part is not plan:  # passes chosen for the whole input
            part = replace(part, whole=whole)
        return shared.setdefault(part, part)

    return tuple(replace(band, plan=local(band.plan)) for band in
                 plan._split(axes if order == "C" else axes[::-1], (), (), budget, itemsize))


def _at(index: tuple, axis: int, part: slice) -> tuple:
    """``index`` with ``part`` on ``axis`` (slices before it taken whole where not given)."""
    index = index + (slice(None),) * (axis + 1 - len(index))
    return index[:axis] + (part,) + index[axis + 1:]


def broadcast_product(per_axis: list[tuple[int, np.ndarray]], ndim: int) -> np.ndarray:
    """The product of per-axis 1-D arrays, each shaped to broadcast along its axis."""
    return fold(np.multiply, (values.reshape([-1 if i == axis else 1 for i in range(ndim)])
                              for axis, values in per_axis))


def adaptive_pass(x, axis: int, size: int, combine: np.ufunc, dtype, out=None) -> np.ndarray:
    """Adaptive pooling along one axis: window i spans floor(i*L/size) .. ceil((i+1)*L/size)."""
    length = x.shape[axis]
    starts, ends = adaptive_bounds(length, size)
    if out is None:
        out = np.empty(x.shape[:axis] + (size,) + x.shape[axis + 1:], dtype)
    out[...] = np.take(x, starts, axis=axis)
    widths = ends - starts
    for j in range(1, int(widths.max())):
        inside = (widths > j).reshape([-1 if i == axis else 1 for i in range(x.ndim)])
        taps = np.take(x, np.minimum(starts + j, length - 1), axis=axis)
        combine(out, taps, out=out, where=inside, dtype=out.dtype, casting="unsafe")
    return out
