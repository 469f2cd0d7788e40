"""Geometry of pooling: layouts, parsed sizes and paddings, output lengths, window coverage.

Everything here follows PyTorch and ONNX: output length
``floor((L + pb + pe - d*(k-1) - 1) / s) + 1`` (ceil with ``ceil_mode``, dropping a last
window that would start at or beyond ``L + pb``), and ``same`` padding as ONNX's
``SAME_UPPER`` / ``SAME_LOWER``.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .errors import PoolError

SPATIAL_LETTERS = "DHW"
LAYOUT_LETTERS = "NCDHW"
DEFAULT_LAYOUTS = {1: "W", 2: "HW", 3: "CHW", 4: "NCHW", 5: "NCDHW"}
PADDING_WORDS = ("valid", "same", "same-lower")
# Sizes beyond this cannot fit any array and would overflow NumPy's int64 arithmetic.
MAX_SIZE = 2**62


def resolve_layout(layout: str | None, ndim: int) -> str:
    """Return the layout of an ``ndim``-dimensional array, checked.

    Examples
    --------
    >>> resolve_layout(None, 3)
    'CHW'
    >>> resolve_layout("hwc", 3)
    'HWC'
    """
    if layout is None:
        if ndim == 0:
            raise PoolError("a 0-D array (a single value) has no axes to pool")
        if ndim not in DEFAULT_LAYOUTS:  # 1-D to 5-D have one
            raise PoolError(f"a {ndim}-D array has more axes than the layout letters "
                            f"({', '.join(LAYOUT_LETTERS)}) can name")
        return DEFAULT_LAYOUTS[ndim]
    checked = check_layout(layout)
    if len(checked) != ndim:
        raise PoolError(f"layout {checked!r} names {len(checked)} axes but the array has {ndim}")
    return checked


def check_layout(layout: str) -> str:
    """Check a layout's letters without an array: known, unique, at least one spatial one."""
    if not isinstance(layout, str) or not layout:
        raise PoolError(f"layout must be a string of the letters {LAYOUT_LETTERS}, got {layout!r}")
    letters = layout.upper()
    unknown = sorted(set(letters) - set(LAYOUT_LETTERS))
    if unknown:
        raise PoolError(f"layout {layout!r} has unknown letters {''.join(unknown)} "
                        f"(use N, C, D, H, W)")
    if len(set(letters)) != len(letters):
        raise PoolError(f"layout {layout!r} repeats a letter")
    if not set(letters) & set(SPATIAL_LETTERS):
        raise PoolError(f"layout {layout!r} has no spatial axis (D, H or W)")
    return letters


def spatial_axes(layout: str) -> tuple[int, ...]:
    """Positions of the spatial letters of a layout, in layout order."""
    return tuple(i for i, letter in enumerate(layout) if letter in SPATIAL_LETTERS)


def parse_sizes(value, name: str) -> tuple[int, ...]:
    """Parse a size given as an int, a sequence, or a string ``'3'``, ``'3x2'``, ``'3,2'``.

    Returns one value (meaning every spatial axis) or one per axis; every value is at least 1.

    Examples
    --------
    >>> parse_sizes("3x2", "window")
    (3, 2)
    >>> parse_sizes(2, "stride")
    (2,)
    """
    if isinstance(value, str):
        parts = [p for p in re.split(r"[x,]", value.strip().lower())]
        try:
            values = tuple(int(p) for p in parts)
        except ValueError:
            raise PoolError(f"{name} must be whole numbers like 3, 3x2 or 3,2; got {value!r}") from None
    else:
        values = _int_tuple(value, name)
    if not values or min(values) < 1:
        raise PoolError(f"{name} must be at least 1 on every axis, got {_show(values)}")
    if max(values) > MAX_SIZE:
        raise PoolError(f"{name} must be at most 2**62, got {max(values)}")
    return values


def parse_padding(value) -> str | tuple[tuple[int, int], ...]:
    """Parse a padding: an int, per-axis ints, per-axis (begin, end) pairs, or a word.

    Strings take the CLI forms ``'1'``, ``'1,2'``, ``'1:2,0:1'`` and the words ``'valid'``,
    ``'same'``, ``'same-lower'``. Returns the word ``'same'``/``'same-lower'`` or per-axis pairs
    (one pair meaning every axis).

    Examples
    --------
    >>> parse_padding("1:2,0:1")
    ((1, 2), (0, 1))
    >>> parse_padding(1)
    ((1, 1),)
    >>> parse_padding("valid")
    ((0, 0),)
    """
    if isinstance(value, str):
        text = value.strip().lower()
        if text == "valid":
            return ((0, 0),)
        if text in PADDING_WORDS:
            return text
        try:
            pairs = tuple(_pair(part.split(":")) for part in text.split(","))
        except ValueError:
            raise PoolError(f"padding must be N, N1,N2, B1:E1,B2:E2, valid, same or same-lower; "
                            f"got {value!r}") from None
    elif isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pairs = ((int(value), int(value)),)
    else:
        try:
            if not isinstance(value, (tuple, list, np.ndarray)):  # a dict would give its keys
                raise TypeError(value)
            pairs = tuple(_pair(item if isinstance(item, (tuple, list)) else (item,))
                          for item in value)
        except (TypeError, ValueError):
            raise PoolError(f"padding must be an int, per-axis ints or (begin, end) pairs; "
                            f"got {value!r}") from None
    if not pairs:
        raise PoolError(f"padding must give at least one value, got {value!r}")
    if min(min(p) for p in pairs) < 0:
        raise PoolError(f"padding must not be negative, got {value!r}")
    if max(max(p) for p in pairs) > MAX_SIZE:
        raise PoolError(f"padding must be at most 2**62, got {max(max(p) for p in pairs)}")
    return pairs


def broadcast(values: tuple, naxes: int, name: str) -> tuple:
    """Stretch one value to ``naxes`` axes, or check that there is one value per axis."""
    if len(values) == 1:
        return values * naxes
    if len(values) != naxes:
        raise PoolError(f"{name} has {len(values)} values but the input has {naxes} spatial "
                        f"{'axis' if naxes == 1 else 'axes'}")
    return tuple(values)


def hash_once(cls):
    """Keep a frozen dataclass's first hash: the generated one hashes every field again at
    each cache lookup, and every band of a plan looks its plan and axes up several times."""
    fields_hash = cls.__hash__

    def __hash__(self):
        try:
            return self.__dict__["_hash"]
        except KeyError:
            self.__dict__["_hash"] = value = fields_hash(self)
            return value

    def __getstate__(self):  # string hashes differ between processes: never pickle one
        return {k: v for k, v in self.__dict__.items() if k != "_hash"}

    cls.__hash__, cls.__getstate__ = __hash__, __getstate__
    return cls


@hash_once
@dataclass(frozen=True)
class Axis:
    """How one spatial axis is pooled: input length, window, stride, dilation, padding.

    ``out`` is the output length; :meth:`offset_ranges` says which outputs each window
    offset reaches inside the input.
    """

    length: int
    window: int
    stride: int
    dilation: int
    pad_begin: int
    pad_end: int
    out: int

    @property
    def span(self) -> int:
        """Cells from the first to the last tap of a window (the effective window)."""
        return self.dilation * (self.window - 1) + 1

    def offset_ranges(self) -> tuple[tuple[int, int, int], ...]:
        """``(j, lo, hi)`` for each offset j of the window that reaches inside the input: the
        outputs ``[lo, hi)`` whose tap j is inside (not empty)."""
        return _offset_ranges(self)

    def counts(self, include_pad: bool = False) -> np.ndarray:
        """Cells each window covers inside the input (or inside the padded input)."""
        return _counts(self, include_pad)


def _taps_inside(g: Axis, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """Per output i, the first and last tap j inside ``[lo, hi)``: those with
    ``lo <= i*s - pad_begin + j*d < hi`` (none where last < first). Computed, not enumerated,
    so a window of 2**40 taps costs no more than one of 2."""
    start = np.arange(g.out, dtype=np.int64) * g.stride - g.pad_begin
    first = np.maximum(0, -((start - lo) // g.dilation))  # ceil((lo - start) / d)
    last = np.minimum(g.window - 1, (hi - 1 - start) // g.dilation)
    return first, last


@functools.lru_cache(maxsize=1024)
def _counts(g: Axis, include_pad: bool) -> np.ndarray:
    # cached (every band asks again), so handed out read-only
    lo, hi = (-g.pad_begin, g.length + g.pad_end) if include_pad else (0, g.length)
    first, last = _taps_inside(g, lo, hi)
    counts = np.maximum(last - first + 1, 0)
    counts.flags.writeable = False
    return counts


@functools.lru_cache(maxsize=1024)
def _offset_ranges(g: Axis) -> tuple[tuple[int, int, int], ...]:
    # cached: every band of a plan asks again. A window wider than the outputs are many (a
    # huge window, stride >= window) has its offsets found from the outputs' side: only those
    # that reach the input are visited, never all 2**40 of them
    offsets: Iterable[int] = range(g.window)
    if g.window > g.out:
        first, last = _taps_inside(g, 0, g.length)
        offsets = sorted(set().union(*(range(f, l + 1)
                                       for f, l in zip(first.tolist(), last.tolist()))))
    ranges = []
    for j in offsets:
        lo = max(0, _ceil_div(g.pad_begin - j * g.dilation, g.stride))
        hi = min(g.out, (g.length - 1 + g.pad_begin - j * g.dilation) // g.stride + 1)
        if lo < hi:
            ranges.append((j, lo, hi))
    return tuple(ranges)


def make_axis(length: int, window: int, stride: int, dilation: int,
              padding: tuple[int, int] | str, ceil_mode: bool) -> Axis:
    """Resolve one axis: 'same' padding, output length, and the input-dependent checks."""
    span = dilation * (window - 1) + 1
    if isinstance(padding, str):
        padding = same_padding(length, stride, span, lower=padding == "same-lower")
    pb, pe = padding
    padded = length + pb + pe
    if span > padded:
        what = f"window {window}" + (f" with dilation {dilation} (spans {span})" if dilation > 1 else "")
        raise PoolError(f"{what} is larger than the padded input ({length} + {pb + pe} padding)")
    if ceil_mode:
        out = _ceil_div(padded - span, stride) + 1
        if (out - 1) * stride >= length + pb:
            out -= 1
    else:
        out = (padded - span) // stride + 1
    if out * 32 > memory_bytes():  # the counts below take a few int64 arrays of out values
        raise PoolError(f"{out} outputs are more than this machine's memory can hold")
    axis = Axis(length, window, stride, dilation, pb, pe, out)
    empty = np.flatnonzero(axis.counts() == 0)
    if empty.size:
        raise PoolError(f"window {empty[0]} of an axis of length {length} covers no input cell "
                        f"(window {window}, stride {stride}, dilation {dilation}, padding {pb}:{pe})")
    return axis


@functools.lru_cache(maxsize=1)
def memory_bytes() -> int:
    """This machine's memory, in bytes (on systems that do not say: what no array can hold)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return sys.maxsize


def same_padding(length: int, stride: int, span: int, lower: bool = False) -> tuple[int, int]:
    """ONNX SAME_UPPER (odd cell at the end) or SAME_LOWER padding, so that out = ceil(L/s).

    Examples
    --------
    >>> same_padding(6, 1, 2), same_padding(6, 1, 2, lower=True)
    ((0, 1), (1, 0))
    """
    out = _ceil_div(length, stride)
    total = max((out - 1) * stride + span - length, 0)
    small, big = total // 2, total - total // 2
    return (big, small) if lower else (small, big)


def adaptive_bounds(length: int, out: int) -> tuple[np.ndarray, np.ndarray]:
    """Start and end (exclusive) of each adaptive window: floor(i*L/out) .. ceil((i+1)*L/out).

    Examples
    --------
    >>> [b.tolist() for b in adaptive_bounds(5, 3)]
    [[0, 1, 3], [2, 4, 5]]
    """
    i = np.arange(out)
    return (i * length) // out, -((-(i + 1) * length) // out)


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _pair(parts) -> tuple[int, int]:
    values = [int(p) if isinstance(p, str) else _whole(p) for p in parts]
    if len(values) == 1:
        return values[0], values[0]
    if len(values) == 2:
        return values[0], values[1]
    raise ValueError(parts)


def _whole(value) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(value)
    return int(value)


def _int_tuple(value, name: str) -> tuple[int, ...]:
    if isinstance(value, np.ndarray):
        value = value.tolist()  # a 0-d array gives its number
    items = value if isinstance(value, (tuple, list)) else (value,)
    try:
        return tuple(_whole(v) for v in items)
    except ValueError:
        raise PoolError(f"{name} must be whole numbers, got {value!r}") from None


def _show(values: tuple) -> str:
    return "x".join(str(v) for v in values) if values else "nothing"


def check_padding_fits(pads, windows, dilations) -> None:
    """Padding on either side must be smaller than the effective window (input-independent)."""
    if isinstance(pads, str):
        return
    n = max(len(pads), len(windows), len(dilations))
    for pad, k, d in zip(*(broadcast(v, n, name) for v, name in
                           ((pads, "padding"), (windows, "window"), (dilations, "dilation")))):
        span = d * (k - 1) + 1
        if max(pad) >= span:
            raise PoolError(f"padding {pad[0]}:{pad[1]} is not smaller than the window "
                            f"({span} cells) on its side")


__all__ = [
    "Axis", "DEFAULT_LAYOUTS", "PADDING_WORDS", "adaptive_bounds", "broadcast", "check_layout",
    "check_padding_fits", "make_axis", "parse_padding", "parse_sizes", "resolve_layout",
    "same_padding", "spatial_axes",
]
