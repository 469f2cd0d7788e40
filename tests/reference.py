"""A slow, obviously-correct reference implementation of the pooling semantics.

This module is the independent test oracle for ``pool_cli.pool``.  It was written
from the contract in SPEC.md only, without looking at the implementation, and it
is deliberately naive: plain Python loops over every output position and every
window offset, arithmetic on Python floats/ints (float64 precision, or exact
integers), and a final cast to the documented output dtype.  Keep inputs tiny.

Every function takes *normalised* geometry: one value per spatial axis, in the
order the spatial letters (D, H, W) appear in the layout, and padding as one
``(begin, end)`` pair per spatial axis.  Parsing of user-facing forms ("3x2",
"same", ...) is the job of the code under test, not of the oracle; the only
string helpers here are :func:`same_pads` and :func:`out_len`, written straight
from the formulas in the SPEC.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

SPATIAL = "DHW"
DEFAULT_LAYOUTS = {1: "W", 2: "HW", 3: "CHW", 4: "NCHW", 5: "NCDHW"}
MODES = ("max", "min", "avg", "sum", "lp")


class RefGeometryError(ValueError):
    """The reference found a geometry the SPEC says is a user error."""


# ----------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------

def out_dtype(mode, dtype):
    """The documented output dtype of ``mode`` for an input of ``dtype``."""
    dtype = np.dtype(dtype)
    kind = dtype.kind
    if kind not in "biuf":
        raise RefGeometryError(f"unsupported dtype {dtype}")
    if mode in ("max", "min"):
        return dtype
    if mode == "sum":
        return np.dtype(np.int64) if kind in "biu" else dtype
    if mode in ("avg", "lp"):
        return np.dtype(np.float64) if kind in "biu" else dtype
    raise RefGeometryError(f"unknown mode {mode!r}")


# ----------------------------------------------------------------------------
# 1-D geometry, straight from the formulas
# ----------------------------------------------------------------------------

def eff_window(k, d):
    return d * (k - 1) + 1


def out_len(L, k, s, pb, pe, d, ceil_mode):
    """Output length along one axis (PyTorch / ONNX rule).

    floor((L + pb + pe - d*(k-1) - 1) / s) + 1; with ceil_mode, ceil instead of
    floor, then the last window is dropped if it starts at or beyond L + pb
    (in padded coordinates, i.e. at or beyond the end of the real input).
    """
    num = L + pb + pe - eff_window(k, d)
    if num < 0:
        raise RefGeometryError("window larger than the padded input")
    if ceil_mode:
        n = -(-num // s) + 1
        if (n - 1) * s >= L + pb:
            n -= 1
    else:
        n = num // s + 1
    return n


def same_pads(L, k, s, d, lower=False):
    """(begin, end) padding of 'same' / 'same-lower' along one axis."""
    out = -(-L // s)  # ceil(L / s)
    total = max((out - 1) * s + eff_window(k, d) - L, 0)
    small = total // 2
    big = total - small
    return (big, small) if lower else (small, big)


def check_axis(L, k, s, pb, pe, d):
    """The static rules of the SPEC for one axis; raises RefGeometryError."""
    for v in (k, s, d):
        if v < 1:
            raise RefGeometryError("size below 1")
    if pb < 0 or pe < 0:
        raise RefGeometryError("negative padding")
    eff = eff_window(k, d)
    if pb >= eff or pe >= eff:
        raise RefGeometryError("padding not smaller than the effective window")
    if eff > L + pb + pe:
        raise RefGeometryError("window larger than the padded input")


def axis_windows(L, k, s, pb, pe, d, ceil_mode):
    """For each output index: list of (position, kind) for the k window cells.

    kind is 'real' (0 <= p < L), 'pad' (inside the padded input [-pb, L+pe)) or
    'out' (past the padded input, only reachable through ceil_mode).
    """
    check_axis(L, k, s, pb, pe, d)
    n = out_len(L, k, s, pb, pe, d, ceil_mode)
    windows = []
    for o in range(n):
        start = o * s - pb
        cells = []
        for j in range(k):
            p = start + j * d
            if 0 <= p < L:
                kind = "real"
            elif -pb <= p < L + pe:
                kind = "pad"
            else:
                kind = "out"
            cells.append((p, kind))
        windows.append(cells)
    return windows


# ----------------------------------------------------------------------------
# layouts
# ----------------------------------------------------------------------------

def resolve_layout(ndim, layout=None):
    if layout is None:
        if ndim not in DEFAULT_LAYOUTS:
            raise RefGeometryError(f"no default layout for ndim {ndim}")
        layout = DEFAULT_LAYOUTS[ndim]
    if len(layout) != ndim or len(set(layout)) != len(layout) or set(layout) - set("NCDHW"):
        raise RefGeometryError(f"bad layout {layout!r} for ndim {ndim}")
    spatial_axes = [i for i, ch in enumerate(layout) if ch in SPATIAL]
    if not spatial_axes:
        raise RefGeometryError("layout without a spatial axis")
    other_axes = [i for i, ch in enumerate(layout) if ch not in SPATIAL]
    return layout, spatial_axes, other_axes


# ----------------------------------------------------------------------------
# the per-window reduction
# ----------------------------------------------------------------------------

def _is_nan(v):
    return isinstance(v, float) and v != v


def reduce_window(mode, vals, n_counted, power, ignore_nan, is_float):
    """Reduce the list of *real* cell values of one window.

    ``vals`` are Python floats (float input), Python ints (integer input) or
    Python bools.  ``n_counted`` is the avg divisor when count_include_pad is on
    (real cells + padded cells inside the padded input), else None.
    Returns a Python number (NaN possible).
    """
    if not vals:
        raise RefGeometryError("a window covers no input cell")
    n_nan = sum(1 for v in vals if _is_nan(v))
    if n_nan:
        if not ignore_nan:
            return math.nan
        vals = [v for v in vals if not _is_nan(v)]
        if not vals:
            if mode == "avg" and n_counted is not None and n_counted > n_nan:
                # count_include_pad: the padded cells are zeros of the padded
                # input, so the window is not "only NaN": nanmean = 0.
                return 0.0
            return math.nan
    if mode == "max":
        return max(vals)
    if mode == "min":
        return min(vals)
    if mode == "sum":
        if is_float:
            return _fsum(vals)
        return sum(int(v) for v in vals)
    if mode == "avg":
        total = _fsum([float(v) for v in vals])
        divisor = len(vals) if n_counted is None else n_counted - n_nan
        return total / divisor
    if mode == "lp":
        p = 2.0 if power is None else float(power)
        total = _fsum([abs(float(v)) ** p for v in vals])
        return total ** (1.0 / p)
    raise RefGeometryError(f"unknown mode {mode!r}")


def _fsum(vals):
    vals = [float(v) for v in vals]
    if any(math.isinf(v) for v in vals):
        return sum(vals)  # inf - inf -> nan, like numpy
    return math.fsum(vals)


def _py(v, is_float):
    """A numpy scalar as a Python value (float for float dtypes)."""
    if is_float:
        return float(v)
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    return int(v)


def _store(out, idx, value, mode, in_dtype, is_float):
    """Write a reduced value, cast to the output dtype."""
    if mode in ("max", "min") and is_float and not _is_nan(value):
        # max/min return an input element: round-tripping through float64 and
        # back is exact for float16/32/64, so this is bit for bit.
        out[idx] = np.asarray(value, dtype=np.float64).astype(in_dtype)
    else:
        out[idx] = value


# ----------------------------------------------------------------------------
# public reference functions
# ----------------------------------------------------------------------------

def _check_mode_args(mode, x, power, count_include_pad):
    if mode not in MODES:
        raise RefGeometryError(f"unknown mode {mode!r}")
    if x.dtype.kind not in "biuf":
        raise RefGeometryError(f"unsupported dtype {x.dtype}")
    if power is not None and mode != "lp":
        raise RefGeometryError("power only with lp")
    if mode == "lp" and power is not None and not power > 0:
        raise RefGeometryError("p <= 0")
    if count_include_pad and mode != "avg":
        raise RefGeometryError("count_include_pad only with avg")


def _run(x, mode, layout, per_axis_windows, counted_fn, power, ignore_nan):
    """Generic driver: per_axis_windows[a] = list over outputs of list of (pos, kind)."""
    x = np.asarray(x)
    layout, spatial_axes, other_axes = resolve_layout(x.ndim, layout)
    is_float = x.dtype.kind == "f"
    odt = out_dtype(mode, x.dtype)
    out_shape = list(x.shape)
    for a, wins in zip(spatial_axes, per_axis_windows):
        out_shape[a] = len(wins)
    out = np.zeros(out_shape, dtype=odt)

    for other_idx in itertools.product(*[range(x.shape[a]) for a in other_axes]):
        for out_idx in itertools.product(*[range(len(w)) for w in per_axis_windows]):
            axis_cells = [per_axis_windows[a][o] for a, o in enumerate(out_idx)]
            vals = []
            n_counted = 0
            for combo in itertools.product(*axis_cells):
                kinds = [kind for _, kind in combo]
                if all(kind == "real" for kind in kinds):
                    full = [0] * x.ndim
                    for a, oi in zip(other_axes, other_idx):
                        full[a] = oi
                    for a, (p, _) in zip(spatial_axes, combo):
                        full[a] = p
                    vals.append(_py(x[tuple(full)], is_float))
                if "out" not in kinds:
                    n_counted += 1
            value = reduce_window(mode, vals, counted_fn(n_counted), power,
                                  ignore_nan, is_float)
            dest = [0] * x.ndim
            for a, oi in zip(other_axes, other_idx):
                dest[a] = oi
            for a, o in zip(spatial_axes, out_idx):
                dest[a] = o
            _store(out, tuple(dest), value, mode, x.dtype, is_float)
    return out


def ref_pool(x, mode, window, stride, padding_pairs, dilation, ceil_mode=False,
             count_include_pad=False, layout=None, power=None, ignore_nan=False):
    """Reference windowed pooling.

    window, stride, dilation: tuples, one per spatial axis (layout order);
    padding_pairs: tuple of (begin, end) per spatial axis.
    Raises RefGeometryError wherever the SPEC demands a PoolError.
    """
    x = np.asarray(x)
    _check_mode_args(mode, x, power, count_include_pad)
    layout, spatial_axes, _ = resolve_layout(x.ndim, layout)
    n = len(spatial_axes)
    if not (len(window) == len(stride) == len(dilation) == len(padding_pairs) == n):
        raise RefGeometryError("wrong number of per-axis values")
    per_axis = []
    for a, k, s, (pb, pe), d in zip(spatial_axes, window, stride, padding_pairs, dilation):
        per_axis.append(axis_windows(x.shape[a], k, s, pb, pe, d, ceil_mode))
    counted = (lambda c: c) if count_include_pad else (lambda c: None)
    return _run(x, mode, layout, per_axis, counted, power, ignore_nan)


def adaptive_bounds(L, out):
    """[start, end) of each adaptive window: floor(i*L/out) .. ceil((i+1)*L/out)."""
    if out < 1:
        raise RefGeometryError("output_size must be >= 1")
    return [((i * L) // out, -(-((i + 1) * L) // out)) for i in range(out)]


def ref_adaptive(x, mode, output_size, layout=None, power=None, ignore_nan=False):
    """Reference adaptive pooling; output_size: tuple, one per spatial axis."""
    x = np.asarray(x)
    _check_mode_args(mode, x, power, False)
    layout, spatial_axes, _ = resolve_layout(x.ndim, layout)
    if len(output_size) != len(spatial_axes):
        raise RefGeometryError("wrong number of per-axis values")
    per_axis = []
    for a, o in zip(spatial_axes, output_size):
        per_axis.append([[(p, "real") for p in range(b, e)]
                         for b, e in adaptive_bounds(x.shape[a], o)])
    return _run(x, mode, layout, per_axis, lambda c: None, power, ignore_nan)


def ref_global(x, mode, layout=None, power=None, ignore_nan=False):
    """Reference global pooling: one window per whole spatial extent, size-1 axes kept."""
    x = np.asarray(x)
    _check_mode_args(mode, x, power, False)
    layout, spatial_axes, _ = resolve_layout(x.ndim, layout)
    per_axis = [[[(p, "real") for p in range(x.shape[a])]] for a in spatial_axes]
    return _run(x, mode, layout, per_axis, lambda c: None, power, ignore_nan)
