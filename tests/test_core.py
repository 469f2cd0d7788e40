"""Tests of the pooling core (``pool_cli.pool``) against the reference oracle.

The oracle (tests/reference.py) was written from SPEC.md alone.  Every test here
either compares ``pool`` to the oracle on hypothesis-generated inputs, checks a
value computed by hand, or checks a rule of the contract (errors, dtypes, input
immutability).
"""

from __future__ import annotations

import collections
import os
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pool_cli import PoolError, pool
from reference import (
    DEFAULT_LAYOUTS,
    RefGeometryError,
    adaptive_bounds,
    eff_window,
    out_dtype,
    out_len,
    ref_adaptive,
    ref_global,
    ref_pool,
    same_pads,
)

MODES = ("max", "min", "avg", "sum", "lp")
DTYPES = ("uint8", "int16", "int32", "float16", "float32", "float64", "bool")
LAYOUTS = ("HW", "HWC", "CHW", "NCHW", "W", "NCW", "NCDHW", "NHWC", "DHW")
# POOLCLI_EXAMPLES=10 multiplies every hypothesis example count (for a long local soak).
SCALE = float(os.environ.get("POOLCLI_EXAMPLES", "1"))


def examples(n):
    return max(1, int(n * SCALE))


RTOL = {np.dtype("float16"): 2e-3, np.dtype("float32"): 1e-5, np.dtype("float64"): 1e-6}


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

def make_data(shape, dtype, seed, nan_frac=0.0, full_range=True):
    """Small deterministic data: negatives, ties and (for floats) NaNs."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    if dtype.kind == "b":
        return rng.random(shape) < 0.5
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        if full_range and rng.random() < 0.3:  # sometimes the full range, extremes included
            x = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
            flat = x.reshape(-1)
            if flat.size:
                flat[rng.integers(0, flat.size)] = info.min
                flat[rng.integers(0, flat.size)] = info.max
            return x
        lo = max(info.min, -20)
        return rng.integers(lo, 21, size=shape).astype(dtype)
    x = rng.standard_normal(shape) * 10.0
    if rng.random() < 0.5:  # ties
        x = np.round(x * 2.0) / 2.0
    if rng.random() < 0.2:  # all negative
        x = -np.abs(x) - 1.0
    x = x.astype(dtype)
    if nan_frac:
        x[rng.random(shape) < nan_frac] = np.nan
    if x.size and rng.random() < 0.15:  # a few infinities (they must not leak into other windows)
        flat = x.reshape(-1)
        for _ in range(int(rng.integers(1, 3))):
            flat[rng.integers(0, flat.size)] = rng.choice([np.inf, -np.inf])
    x[x == 0] = 0  # no -0.0: max(-0.0, +0.0) has no bit-exact answer
    return x


def spatial_letters(layout):
    return [c for c in layout if c in "DHW"]


def assert_matches(got, exp, mode, x):
    """got (from pool) equals exp (from the oracle) to the documented precision."""
    assert isinstance(got, np.ndarray), type(got)
    assert got.dtype == exp.dtype, (got.dtype, exp.dtype)
    assert got.shape == exp.shape, (got.shape, exp.shape)
    if exp.dtype.kind == "f":
        assert np.array_equal(np.isnan(got), np.isnan(exp)), (got, exp)
    if mode in ("max", "min") or exp.dtype.kind in "biu":
        assert np.array_equal(got, exp, equal_nan=exp.dtype.kind == "f"), (got, exp)
        if exp.dtype.kind == "f":  # bit for bit where not NaN
            ok = ~np.isnan(exp)
            uint = np.dtype(f"u{exp.dtype.itemsize}")
            assert np.array_equal(got[ok].view(uint), exp[ok].view(uint)), (got, exp)
        return
    rtol = RTOL[exp.dtype]
    xf = np.asarray(x, dtype=np.float64)
    finite = xf[np.isfinite(xf)]
    scale = float(np.max(np.abs(finite))) if finite.size else 1.0
    # sums/averages may cancel: an absolute tolerance relative to the data size
    atol = rtol * max(scale, 1.0) * (8.0 if mode in ("sum", "avg") else 1.0)
    np.testing.assert_allclose(got.astype(np.float64), exp.astype(np.float64),
                               rtol=rtol, atol=atol, equal_nan=True)


def fmt_sizes(draw, vals):
    """One of the accepted user-facing forms of a per-axis size list."""
    vals = list(vals)
    forms = ["list", "tuple", "x", "comma"]
    if len(set(vals)) == 1:
        forms += ["int", "int", "str1"]
    form = draw(st.sampled_from(forms))
    if form == "int":
        return vals[0]
    if form == "str1":
        return str(vals[0])
    if form == "list":
        return vals
    if form == "tuple":
        return tuple(vals)
    if form == "x":
        return "x".join(map(str, vals))
    return ",".join(map(str, vals))


def fmt_padding(draw, pairs):
    pairs = [tuple(p) for p in pairs]
    forms = ["pairs", "pairs_str", "pairs_lists"]
    if all(b == e for b, e in pairs):
        forms += ["ints", "ints_str"]
        if len({b for b, _ in pairs}) == 1:
            forms += ["int", "int_str"]
            if pairs[0][0] == 0:
                forms += ["valid"]
    form = draw(st.sampled_from(forms))
    if form == "pairs":
        return pairs
    if form == "pairs_lists":
        return [list(p) for p in pairs]
    if form == "pairs_str":
        return ",".join(f"{b}:{e}" for b, e in pairs)
    if form == "ints":
        return [b for b, _ in pairs]
    if form == "ints_str":
        return ",".join(str(b) for b, _ in pairs)
    if form == "int":
        return pairs[0][0]
    if form == "int_str":
        return str(pairs[0][0])
    return "valid"


def draw_layout_shape(draw, layout, spatial_lengths):
    shape = []
    it = iter(spatial_lengths)
    for ch in layout:
        if ch == "N":
            shape.append(draw(st.integers(1, 2)))
        elif ch == "C":
            shape.append(draw(st.integers(1, 3)))
        else:
            shape.append(next(it))
    return tuple(shape)


def draw_layout_arg(draw, layout, ndim):
    """Pass the layout explicitly, or rely on the default when it matches."""
    if DEFAULT_LAYOUTS.get(ndim) == layout and draw(st.booleans()):
        return None
    return layout


@st.composite
def pool_cases(draw, mode, big=False):
    layout = draw(st.sampled_from(("NCHW", "HWC", "NCW", "HW") if big else LAYOUTS))
    dtype = draw(st.sampled_from(DTYPES))
    nsp = len(spatial_letters(layout))
    small = nsp == 3
    ceil_mode = draw(st.booleans())
    pad_style = draw(st.sampled_from(["explicit", "explicit", "explicit", "same", "same-lower", "none"]))
    windows, strides, dilations, pairs, lengths = [], [], [], [], []
    for _ in range(nsp):
        k = draw(st.integers(1, 3 if small else 4))
        d = draw(st.sampled_from([1, 1, 2] if small else [1, 1, 1, 2, 3]))
        s = draw(st.integers(1, 3))
        eff = eff_window(k, d)
        if pad_style == "explicit":
            pb = draw(st.integers(0, eff - 1))
            pe = draw(st.integers(0, eff - 1))
        else:
            pb = pe = 0
        lo = max(1, eff - pb - pe)
        if big:  # large enough for the core to split the work into bands/threads
            L = draw(st.integers(lo + 20, lo + (200 if nsp == 1 else 60)))
        else:
            L = draw(st.integers(lo, lo + (3 if small else 5)))
        if pad_style in ("same", "same-lower"):
            pb, pe = same_pads(L, k, s, d, lower=pad_style == "same-lower")
        windows.append(k)
        strides.append(s)
        dilations.append(d)
        pairs.append((pb, pe))
        lengths.append(L)
    shape = draw_layout_shape(draw, layout, lengths)
    is_float = np.dtype(dtype).kind == "f"
    nan_frac = draw(st.sampled_from([0.0, 0.0, 0.15, 0.6])) if is_float else 0.0
    x = make_data(shape, dtype, draw(st.integers(0, 2**32 - 1)), nan_frac)

    kwargs = {"window": fmt_sizes(draw, windows)}
    if strides != windows or draw(st.booleans()):
        kwargs["stride"] = fmt_sizes(draw, strides)
    if pad_style in ("same", "same-lower"):
        kwargs["padding"] = pad_style
    elif pad_style == "explicit" or draw(st.booleans()):
        kwargs["padding"] = fmt_padding(draw, pairs)
    if dilations != [1] * nsp or draw(st.booleans()):
        kwargs["dilation"] = fmt_sizes(draw, dilations)
    if ceil_mode or draw(st.booleans()):
        kwargs["ceil_mode"] = ceil_mode
    cip = False
    if mode == "avg":
        cip = draw(st.booleans())
        kwargs["count_include_pad"] = cip
    power = None
    if mode == "lp":
        power = draw(st.sampled_from([None, 1, 2, 2.0, 3, 0.5, 1.5]))
        if power is not None:
            kwargs["power"] = power
    ignore_nan = draw(st.booleans())
    if ignore_nan or draw(st.booleans()):
        kwargs["ignore_nan"] = ignore_nan
    layout_arg = draw_layout_arg(draw, layout, x.ndim)
    if layout_arg is not None:
        kwargs["layout"] = layout_arg
    ref_args = dict(window=tuple(windows), stride=tuple(strides), padding_pairs=tuple(pairs),
                    dilation=tuple(dilations), ceil_mode=ceil_mode, count_include_pad=cip,
                    layout=layout, power=power, ignore_nan=ignore_nan)
    return x, kwargs, ref_args


def reference_or_refusal(x, mode, kwargs, ref_args):
    """The reference result, or None after checking pool() refuses what the reference refuses."""
    try:
        return ref_pool(x, mode, **ref_args)
    except RefGeometryError:
        with pytest.raises(PoolError):
            pool(x, mode, **kwargs)
        return None


# ----------------------------------------------------------------------------
# hypothesis comparisons with the oracle
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=examples(300), deadline=None)
@given(data=st.data())
def test_pool_matches_reference(mode, data):
    x, kwargs, ref_args = data.draw(pool_cases(mode))
    x_before = x.copy()
    expected = reference_or_refusal(x, mode, kwargs, ref_args)
    if expected is None:
        return
    got = pool(x, mode, **kwargs)
    assert_matches(got, expected, mode, x)
    assert np.array_equal(x, x_before, equal_nan=x.dtype.kind == "f")


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=examples(15), deadline=None)
@given(data=st.data())
def test_larger_arrays_match_reference_with_threads(mode, data):
    """Inputs big enough to be split across threads: band edges must not show."""
    x, kwargs, ref_args = data.draw(pool_cases(mode, big=True))
    expected = reference_or_refusal(x, mode, kwargs, ref_args)
    if expected is None:
        return
    for threads in (None, 1, 2, 3):
        got = pool(x, mode, threads=threads, **kwargs)
        assert_matches(got, expected, mode, x)


@st.composite
def whole_cases(draw, mode):
    """Inputs for adaptive/global pooling: (x, layout, layout_arg, kwargs-extra)."""
    layout = draw(st.sampled_from(LAYOUTS))
    dtype = draw(st.sampled_from(DTYPES))
    nsp = len(spatial_letters(layout))
    lengths = [draw(st.integers(1, 4 if nsp == 3 else 9)) for _ in range(nsp)]
    shape = draw_layout_shape(draw, layout, lengths)
    is_float = np.dtype(dtype).kind == "f"
    nan_frac = draw(st.sampled_from([0.0, 0.0, 0.15, 0.6])) if is_float else 0.0
    x = make_data(shape, dtype, draw(st.integers(0, 2**32 - 1)), nan_frac)
    kwargs = {}
    power = None
    if mode == "lp":
        power = draw(st.sampled_from([None, 1, 2.0, 3, 0.5]))
        if power is not None:
            kwargs["power"] = power
    ignore_nan = draw(st.booleans())
    if ignore_nan:
        kwargs["ignore_nan"] = True
    layout_arg = draw_layout_arg(draw, layout, x.ndim)
    if layout_arg is not None:
        kwargs["layout"] = layout_arg
    return x, layout, lengths, kwargs, power, ignore_nan


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=examples(100), deadline=None)
@given(data=st.data())
def test_adaptive_matches_reference(mode, data):
    x, layout, lengths, kwargs, power, ignore_nan = data.draw(whole_cases(mode))
    out = [data.draw(st.integers(1, 2 * L + 1)) for L in lengths]  # larger than L: windows overlap
    if len(set(out)) == 1 and data.draw(st.booleans()):
        kwargs["output_size"] = out[0]
    else:
        kwargs["output_size"] = data.draw(st.sampled_from([list, tuple]))(out)
    expected = ref_adaptive(x, mode, tuple(out), layout=layout, power=power, ignore_nan=ignore_nan)
    got = pool(x, mode, **kwargs)
    assert_matches(got, expected, mode, x)


@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=examples(60), deadline=None)
@given(data=st.data())
def test_global_matches_reference(mode, data):
    x, layout, lengths, kwargs, power, ignore_nan = data.draw(whole_cases(mode))
    expected = ref_global(x, mode, layout=layout, power=power, ignore_nan=ignore_nan)
    got = pool(x, mode, global_pool=True, **kwargs)
    assert_matches(got, expected, mode, x)
    # spatial axes are kept, with size 1
    assert got.ndim == x.ndim
    for i, ch in enumerate(layout):
        assert got.shape[i] == (1 if ch in "DHW" else x.shape[i])


# ----------------------------------------------------------------------------
# the oracle's own formulas, checked by hand (so the oracle is trustworthy)
# ----------------------------------------------------------------------------

@pytest.mark.parametrize(
    "L,k,s,pb,pe,d,ceil,expected",
    [
        (5, 2, 2, 1, 1, 1, True, 3),   # ceil gives 4, the 4th starts at 6 >= L+pb: dropped
        (5, 2, 2, 1, 1, 1, False, 3),
        (6, 1, 2, 0, 0, 1, True, 3),   # ceil gives 4, the 4th starts at 6 >= 6: dropped
        (6, 1, 2, 0, 0, 1, False, 3),
        (7, 2, 3, 0, 0, 1, True, 3),
        (7, 2, 3, 0, 0, 1, False, 2),
        (6, 3, 2, 1, 1, 1, True, 4),   # the 4th window starts at 6 < L+pb=7: kept
        (6, 3, 2, 1, 1, 1, False, 3),
        (10, 3, 1, 0, 0, 2, False, 6),
        (4, 4, 4, 0, 0, 1, True, 1),
    ],
)
def test_oracle_out_len(L, k, s, pb, pe, d, ceil, expected):
    assert out_len(L, k, s, pb, pe, d, ceil) == expected


def test_oracle_same_pads_and_adaptive_bounds():
    assert same_pads(4, 2, 1, 1) == (0, 1)
    assert same_pads(4, 2, 1, 1, lower=True) == (1, 0)
    assert same_pads(5, 3, 2, 1) == (1, 1)
    assert same_pads(5, 4, 1, 1) == (1, 2)
    assert same_pads(5, 4, 1, 1, lower=True) == (2, 1)
    assert same_pads(5, 1, 3, 1) == (0, 0)
    assert adaptive_bounds(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert adaptive_bounds(4, 2) == [(0, 2), (2, 4)]
    assert adaptive_bounds(7, 1) == [(0, 7)]


# ----------------------------------------------------------------------------
# hand-computed cases
# ----------------------------------------------------------------------------

X34 = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]], dtype=np.float64)


def test_hand_3x4_floor():
    assert np.array_equal(pool(X34, "max", window=2, stride=2), [[6, 8]])
    assert np.array_equal(pool(X34, "avg", window=2, stride=2), [[3.5, 5.5]])
    assert np.array_equal(pool(X34, "min", window=2, stride=2), [[1, 3]])
    assert np.array_equal(pool(X34, "sum", window=2, stride=2), [[14, 22]])


def test_hand_3x4_ceil():
    assert np.array_equal(pool(X34, "max", window=2, stride=2, ceil_mode=True), [[6, 8], [10, 12]])
    assert np.array_equal(pool(X34, "avg", window=2, stride=2, ceil_mode=True),
                          [[3.5, 5.5], [9.5, 11.5]])
    assert np.array_equal(pool(X34, "sum", window=2, stride=2, ceil_mode=True),
                          [[14, 22], [19, 23]])


def test_hand_defaults_window2_stride_window():
    assert np.array_equal(pool(X34, "max"), [[6, 8]])
    assert np.array_equal(pool(X34, "max", window=3), [[11]])  # stride defaults to 3
    assert np.array_equal(pool(X34, "max", window=(2, 2), stride=None), [[6, 8]])


def test_hand_all_negative_padding_max():
    x = -np.arange(1, 10, dtype=np.float64).reshape(3, 3)  # -1 .. -9
    got = pool(x, "max", window=2, stride=2, padding=1)
    # windows: {-1}, {-2,-3}, {-4,-7}, {-5,-6,-8,-9}
    assert np.array_equal(got, [[-1, -2], [-4, -5]])
    assert (got < 0).all()
    xi = (-np.arange(1, 10).reshape(3, 3)).astype(np.int16)
    assert np.array_equal(pool(xi, "max", window=3, stride=1, padding=1),
                          [[-1, -1, -2], [-1, -1, -2], [-4, -4, -5]])
    xinf = np.full((2, 2), -np.inf)
    assert np.array_equal(pool(xinf, "max", window=2, stride=1, padding=1), np.full((3, 3), -np.inf))


def test_hand_all_positive_padding_min():
    x = np.arange(1, 10, dtype=np.float32).reshape(3, 3)
    got = pool(x, "min", window=2, stride=2, padding=1)
    assert got.dtype == np.float32
    assert np.array_equal(got, [[1, 2], [4, 5]])
    xu = np.full((3, 3), 200, dtype=np.uint8)
    got = pool(xu, "min", window=3, stride=1, padding="same")
    assert got.dtype == np.uint8 and np.array_equal(got, xu)


def test_hand_uint8_no_overflow():
    x = np.full((4, 4), 255, dtype=np.uint8)
    a = pool(x, "avg", window=2)
    assert a.dtype == np.float64 and np.array_equal(a, np.full((2, 2), 255.0))
    s = pool(x, "sum", window=2)
    assert s.dtype == np.int64 and np.array_equal(s, np.full((2, 2), 1020))
    s = pool(x, "sum", window=4)
    assert np.array_equal(s, [[255 * 16]])
    lp = pool(x, "lp", window=2, power=1)
    assert lp.dtype == np.float64 and np.array_equal(lp, np.full((2, 2), 1020.0))
    xi = np.full((2, 2), np.iinfo(np.int32).min, dtype=np.int32)
    assert pool(xi, "sum", window=2)[0, 0] == 4 * np.iinfo(np.int32).min
    assert pool(xi, "avg", window=2)[0, 0] == float(np.iinfo(np.int32).min)
    assert np.isclose(pool(xi, "lp", window=2, power=1)[0, 0], 4 * 2.0**31, rtol=1e-12)


def test_hand_ceil_rule_counts():
    got = pool(np.arange(5.0), "max", window=2, stride=2, padding=1, ceil_mode=True)
    assert np.array_equal(got, [0, 2, 4])  # windows [-1,1) [1,3) [3,5)
    got = pool(np.arange(6.0), "max", window=1, stride=2, ceil_mode=True)
    assert np.array_equal(got, [0, 2, 4])
    got = pool(np.arange(6.0), "max", window=1, stride=2)
    assert np.array_equal(got, [0, 2, 4])


def test_hand_7x7_ceil_avg_last_48():
    x = np.arange(49, dtype=np.float64).reshape(7, 7)
    got = pool(x, "avg", window=2, stride=3, ceil_mode=True)
    assert got.shape == (3, 3)
    assert got[-1, -1] == 48.0
    assert got[0, 0] == (0 + 1 + 7 + 8) / 4
    assert got[0, -1] == (6 + 13) / 2
    assert pool(x, "avg", window=2, stride=3).shape == (2, 2)


def test_hand_same_vs_same_lower_even_window():
    x = np.array([1.0, 2.0, 3.0, 4.0])
    # L=4, k=2, s=1: out=4, total pad 1; 'same' puts it at the end, 'same-lower' at the start
    assert np.array_equal(pool(x, "max", window=2, stride=1, padding="same"), [2, 3, 4, 4])
    assert np.array_equal(pool(x, "max", window=2, stride=1, padding="same-lower"), [1, 2, 3, 4])
    assert np.array_equal(pool(x, "avg", window=2, stride=1, padding="same"), [1.5, 2.5, 3.5, 4])
    assert np.array_equal(pool(x, "avg", window=2, stride=1, padding="same-lower"), [1, 1.5, 2.5, 3.5])
    assert np.array_equal(pool(x, "avg", window=2, stride=1, padding="same", count_include_pad=True),
                          [1.5, 2.5, 3.5, 2])
    assert np.array_equal(pool(x, "avg", window=2, stride=1, padding="same-lower",
                               count_include_pad=True), [0.5, 1.5, 2.5, 3.5])
    assert np.array_equal(pool(x, "sum", window=2, stride=1, padding="same-lower"), [1, 3, 5, 7])
    # 'same' equals the explicit pads
    assert np.array_equal(pool(x, "max", window=2, stride=1, padding="same"),
                          pool(x, "max", window=2, stride=1, padding=[(0, 1)]))
    assert np.array_equal(pool(x, "max", window=2, stride=1, padding="same-lower"),
                          pool(x, "max", window=2, stride=1, padding="1:0"))
    # stride 2: out = ceil(5/2) = 3, total pad = 2*2 + 3 - 5 = 2 -> (1, 1)
    y = np.arange(1.0, 6.0)
    assert np.array_equal(pool(y, "max", window=3, stride=2, padding="same"), [2, 4, 5])
    assert pool(np.zeros((5, 7)), "max", window=3, stride=2, padding="same").shape == (3, 4)
    assert pool(np.zeros((5, 7)), "max", window=3, stride=1, padding="same").shape == (5, 7)


def test_hand_count_include_pad_ceil_overhang():
    x = np.arange(1.0, 7.0)  # L = 6
    # k=3, s=2, p=1, ceil: 4 windows, cells (real coords) [-1,0,1] [1,2,3] [3,4,5] [5,6,7];
    # padded input is [-1, 7): cell 6 is padding (counts as zero), cell 7 is past it (never counts)
    got = pool(x, "avg", window=3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)
    assert np.allclose(got, [(0 + 1 + 2) / 3, (2 + 3 + 4) / 3, (4 + 5 + 6) / 3, (6 + 0) / 2])
    got = pool(x, "avg", window=3, stride=2, padding=1, ceil_mode=True)
    assert np.allclose(got, [1.5, 3, 5, 6])
    # 2-D: divisor is the product of the per-axis counts
    x2 = np.ones((6, 6))
    got = pool(x2, "avg", window=3, stride=2, padding=1, ceil_mode=True, count_include_pad=True)
    # per axis: real cells [2, 3, 3, 1] over counted cells [3, 3, 3, 2]
    c = np.array([2 / 3, 1, 1, 1 / 2])
    assert np.allclose(got, np.outer(c, c))
    assert np.allclose(got[0, 0], 4 / 9) and np.allclose(got[-1, -1], 1 / 4) and np.allclose(got[0, -1], 2 / 6)


def test_hand_lp():
    x = np.array([[3.0, -4.0], [0.0, 0.0]])
    assert np.allclose(pool(x, "lp", window=2), [[5.0]])
    assert np.allclose(pool(x, "lp", window=2, power=2), [[5.0]])
    assert np.allclose(pool(x, "lp", window=2, power=1), [[7.0]])
    assert np.allclose(pool(x, "lp", window=2, power=3), [[(27 + 64) ** (1 / 3)]])
    y = np.array([1.0, -2.0, 2.0, 4.0])
    assert np.allclose(pool(y, "lp", window=2, power=1), [3, 6])
    assert np.allclose(pool(y, "lp", window=2, power=2), [5**0.5, 20**0.5])
    # padding adds nothing
    assert np.allclose(pool(y, "lp", window=2, padding=1, power=2), [1, 8**0.5, 4])
    assert np.allclose(pool(y, "sum", window=2, padding=1), [1, 0, 4])


def test_hand_global():
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, -6.0]])
    for mode, val in [("max", 5), ("min", -6), ("sum", 9), ("avg", 1.5), ("lp", 91**0.5)]:
        got = pool(x, mode, global_pool=True)
        assert got.shape == (1, 1)
        assert np.allclose(got, [[val]])
    c = np.stack([x, -x])  # CHW
    got = pool(c, "max", global_pool=True)
    assert got.shape == (2, 1, 1) and np.array_equal(got[:, 0, 0], [5, 6])
    got = pool(np.moveaxis(c, 0, -1), "avg", global_pool=True, layout="HWC")
    assert got.shape == (1, 1, 2) and np.allclose(got[0, 0], [1.5, -1.5])


def test_hand_adaptive():
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # windows [0,2) [1,4) [3,5)
    assert np.array_equal(pool(x, "max", output_size=3), [2, 4, 5])
    assert np.array_equal(pool(x, "min", output_size=3), [1, 2, 4])
    assert np.allclose(pool(x, "avg", output_size=3), [1.5, 3, 4.5])
    assert np.array_equal(pool(x, "sum", output_size=3), [3, 9, 9])
    assert np.array_equal(pool(x, "max", output_size=[5]), x)
    assert np.array_equal(pool(x, "max", output_size=1), [5])
    # more outputs than cells (PyTorch allows it): L=2, out=5 gives windows
    # [0,1) [0,1) [0,2) [1,2) [1,2)
    assert np.array_equal(pool(np.array([1.0, 3.0]), "avg", output_size=5), [1, 1, 2, 3, 3])
    x2 = np.arange(20.0).reshape(4, 5)
    got = pool(x2, "max", output_size=(2, 3))
    assert np.array_equal(got, [[6, 8, 9], [16, 18, 19]])


def test_hand_dilation():
    x = np.arange(10.0)
    # k=3, d=2: effective window 5, cells i, i+2, i+4
    assert np.array_equal(pool(x, "max", window=3, stride=1, dilation=2), [4, 5, 6, 7, 8, 9])
    assert np.array_equal(pool(x, "sum", window=3, stride=3, dilation=2), [6, 15])
    assert np.array_equal(pool(x, "min", window=2, stride=4, dilation=3, padding=2),
                          [1, 2, 6])  # cells {-2,1} {2,5} {6,9}


def test_hand_layouts():
    rng = np.random.default_rng(0)
    hw = rng.standard_normal((6, 4))
    base = pool(hw, "max", window=(3, 2), stride=(2, 1))
    assert base.shape == (2, 3)
    hwc = np.stack([hw, 2 * hw], axis=-1)
    got = pool(hwc, "max", window=(3, 2), stride=(2, 1), layout="HWC")
    assert got.shape == (2, 3, 2) and np.array_equal(got[..., 0], base)
    assert np.array_equal(pool(hwc, "max", window="3x2", stride="2,1", layout="HWC")[..., 0], base)
    nchw = hw[None, None]
    assert np.array_equal(pool(nchw, "max", window=(3, 2), stride=(2, 1))[0, 0], base)
    nhwc = hw[None, :, :, None]
    assert np.array_equal(pool(nhwc, "max", window=(3, 2), stride=(2, 1), layout="NHWC")[0, :, :, 0], base)
    wh = np.ascontiguousarray(hw.T)
    assert np.array_equal(pool(wh, "max", window=(2, 3), stride=(1, 2), layout="WH").T, base)
    ncw = hw[None]  # treat rows as channels: pooling over W only
    got = pool(ncw, "max", window=2, stride=1, layout="NCW")
    assert np.array_equal(got[0], np.maximum(hw[:, :-1], hw[:, 1:]))


def test_hand_nan():
    x = np.array([1.0, np.nan, 3.0, 4.0, np.nan, np.nan])
    for mode in MODES:
        got = pool(x, mode, window=2)
        assert np.isnan(got[0]) and np.isnan(got[2]) and not np.isnan(got[1]), mode
    assert np.array_equal(pool(x, "max", window=2, ignore_nan=True), [1, 4, np.nan], equal_nan=True)
    assert np.array_equal(pool(x, "min", window=2, ignore_nan=True), [1, 3, np.nan], equal_nan=True)
    assert np.array_equal(pool(x, "avg", window=2, ignore_nan=True), [1, 3.5, np.nan], equal_nan=True)
    assert np.array_equal(pool(x, "sum", window=2, ignore_nan=True), [1, 7, np.nan], equal_nan=True)
    assert np.allclose(pool(x, "lp", window=2, ignore_nan=True, power=1), [1, 7, np.nan], equal_nan=True)
    # a NaN in the first position of a window still propagates (naive max misses this)
    y = np.array([np.nan, 1.0, 2.0, np.nan])
    assert np.isnan(pool(y, "max", window=2)).all()
    assert np.isnan(pool(y, "min", window=2)).all()
    assert np.isnan(pool(y.astype(np.float16), "max", window=2)).all()


def test_hand_inf_stays_in_its_windows():
    # a running-sum (cumsum) implementation would turn every later window into NaN
    x = np.array([np.inf, 1.0, 2.0, 3.0, -np.inf, 5.0, 6.0])
    assert np.array_equal(pool(x, "avg", window=2, stride=1), [np.inf, 1.5, 2.5, -np.inf, -np.inf, 5.5])
    assert np.array_equal(pool(x, "sum", window=2, stride=1), [np.inf, 3, 5, -np.inf, -np.inf, 11])
    assert np.array_equal(pool(x, "max", window=2, stride=1), [np.inf, 2, 3, 3, 5, 6])
    assert np.array_equal(pool(x, "min", window=2, stride=1), [1, 1, 2, -np.inf, -np.inf, 5])
    assert np.array_equal(pool(x, "lp", window=2, stride=1, power=1), [np.inf, 3, 5, np.inf, np.inf, 11])
    y = np.array([np.inf, -np.inf, 1.0, 2.0])
    got = pool(y, "avg", window=2, stride=1)
    assert np.isnan(got[0]) and np.array_equal(got[1:], [-np.inf, 1.5])


@pytest.mark.parametrize("dtype", ["int8", "uint8", "int16", "uint16", "int32", "uint32"])
@pytest.mark.parametrize("mode", MODES)
def test_integer_extremes(mode, dtype):
    info = np.iinfo(dtype)
    x = np.array([[info.min, info.max, info.min, info.min],
                  [info.max, info.max, info.min, info.min],
                  [info.min, 0, 1, info.max]], dtype=dtype)
    geo = dict(window=(2, 3), stride=1, padding=[(1, 0), (0, 2)], ceil_mode=True)
    exp = ref_pool(x, mode, (2, 3), (1, 1), ((1, 0), (0, 2)), (1, 1), ceil_mode=True)
    assert_matches(pool(x, mode, **geo), exp, mode, x)


def test_hand_bool():
    x = np.array([[True, False, False, False], [True, True, False, True]])
    got = pool(x, "max", window=2)
    assert got.dtype == np.bool_ and np.array_equal(got, [[True, True]])
    got = pool(x, "min", window=2)
    assert got.dtype == np.bool_ and np.array_equal(got, [[False, False]])
    got = pool(x, "min", window=(2, 1), stride=1)
    assert np.array_equal(got, [[True, False, False, False]])
    got = pool(x, "sum", window=2)
    assert got.dtype == np.int64 and np.array_equal(got, [[3, 1]])
    got = pool(x, "avg", window=2)
    assert got.dtype == np.float64 and np.array_equal(got, [[0.75, 0.25]])
    # padded cells never win: all-True input with padding stays True under min
    t = np.ones((3, 3), dtype=bool)
    assert pool(t, "min", window=2, padding=1).all()
    assert not pool(~t, "max", window=2, padding=1).any()


def test_hand_float16_computed_in_float32():
    x = np.full((4, 4), 60000, dtype=np.float16)  # the float16 sum would overflow
    a = pool(x, "avg", window=4)
    assert a.dtype == np.float16 and a[0, 0] == np.float16(60000)
    lp = pool(np.full((2, 2), 300, dtype=np.float16), "lp", window=2)  # 300**2 > 65504
    assert lp.dtype == np.float16 and np.isclose(float(lp[0, 0]), 600, rtol=2e-3)


def test_threads_do_not_change_results():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 40, 33)).astype(np.float32)
    for mode in MODES:
        a = pool(x, mode, window=3, stride=2, padding=1, threads=1)
        b = pool(x, mode, window=3, stride=2, padding=1, threads=2)
        assert a.dtype == b.dtype and np.allclose(a, b, rtol=1e-6, atol=1e-6), mode


# ----------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------

X2 = np.arange(12.0).reshape(3, 4)
X1 = np.arange(5.0)

ERROR_CASES = [
    # sizes below 1
    ("window0", X2, "max", dict(window=0)),
    ("window_neg", X2, "max", dict(window=-1)),
    ("window_axis0", X2, "max", dict(window=(2, 0))),
    ("stride0", X2, "max", dict(window=2, stride=0)),
    ("stride_str0", X2, "max", dict(window=2, stride="1x0")),
    ("dilation0", X2, "max", dict(window=2, dilation=0)),
    ("padding_neg", X2, "max", dict(window=2, padding=-1)),
    ("window_float", X2, "max", dict(window=2.5)),
    # wrong number of per-axis values
    ("window_3vals", X2, "max", dict(window=(2, 2, 2))),
    ("window_4vals", X2, "max", dict(window=[2, 2, 2, 2])),
    ("window_str_3vals", X2, "max", dict(window="2x2x2")),
    ("stride_3vals", X2, "max", dict(window=2, stride=(1, 1, 1))),
    ("dilation_3vals", X2, "max", dict(window=2, dilation="1,1,1")),
    ("padding_3vals", X2, "max", dict(window=2, padding=(1, 1, 1))),
    ("padding_3pairs", X2, "max", dict(window=2, padding=[(0, 1), (0, 1), (0, 1)])),
    ("padding_str_3pairs", X2, "max", dict(window=2, padding="0:1,0:1,0:1")),
    ("output_size_3vals", X2, "max", dict(output_size=(1, 1, 1))),
    # malformed strings
    ("window_garbage", X2, "max", dict(window="abc")),
    ("window_trailing_x", X2, "max", dict(window="3x")),
    ("padding_garbage", X2, "max", dict(window=2, padding="bogus")),
    ("padding_bad_pair", X2, "max", dict(window=2, padding="1:2:3")),
    # layouts
    ("layout_too_long", X2, "max", dict(layout="NCHW")),
    ("layout_too_short", X2, "max", dict(layout="W")),
    ("layout_unknown_letter", X2, "max", dict(layout="HX")),
    ("layout_duplicate", X2, "max", dict(layout="HH")),
    ("layout_no_spatial", X2, "max", dict(layout="NC")),
    ("ndim0", np.float64(3.0), "max", dict()),
    ("ndim6_no_layout", np.zeros((1, 1, 1, 1, 2, 2)), "max", dict()),
    # window larger than the padded input
    ("window_too_big", X2, "max", dict(window=4)),
    ("window_too_big_padded", X2, "max", dict(window=6, padding=1)),
    ("dilated_too_big", X1, "max", dict(window=3, dilation=3)),
    # padding not smaller than the effective window
    ("pad_eq_window", X2, "max", dict(window=2, padding=2)),
    ("pad_end_eq_window", X2, "max", dict(window=2, padding=[(0, 2), (0, 0)])),
    ("pad_eq_dilated_window", np.zeros((9, 9)), "max", dict(window=2, dilation=2, padding=3)),
    ("pad_str_eq_window", X2, "max", dict(window=2, padding="0:0,2:0")),
    # a window that covers no input cell (dilation): cells -2 and 1 of a length-1 axis
    ("empty_window", np.ones(1), "max", dict(window=2, dilation=3, padding=[(2, 1)])),
    ("empty_window_2d", np.ones((4, 1)), "avg", dict(window=2, dilation=(1, 3), padding=[(0, 0), (2, 1)])),
    # mode and mode-specific options
    ("unknown_mode", X2, "median", dict()),
    ("power_zero", X2, "lp", dict(power=0)),
    ("power_negative", X2, "lp", dict(power=-1.5)),
    ("power_on_max", X2, "max", dict(power=3.0)),
    ("power_on_avg", X2, "avg", dict(power=3)),
    ("cip_on_max", X2, "max", dict(count_include_pad=True)),
    ("cip_on_sum", X2, "sum", dict(count_include_pad=True)),
    ("cip_on_lp", X2, "lp", dict(count_include_pad=True)),
    ("cip_on_min", X2, "min", dict(count_include_pad=True)),
    # adaptive / global
    ("output_size_zero", X2, "max", dict(output_size=0)),
    ("output_size_axis_zero", X2, "max", dict(output_size=(1, 0))),
    ("output_size_with_window", X2, "max", dict(output_size=2, window=3)),
    ("output_size_with_stride", X2, "max", dict(output_size=2, stride=1)),
    ("output_size_with_padding", X2, "max", dict(output_size=2, padding=1)),
    ("output_size_with_dilation", X2, "max", dict(output_size=2, dilation=2)),
    ("output_size_with_ceil", X2, "max", dict(output_size=2, ceil_mode=True)),
    ("global_with_window", X2, "max", dict(global_pool=True, window=3)),
    ("global_with_stride", X2, "max", dict(global_pool=True, stride=2)),
    ("global_with_padding", X2, "max", dict(global_pool=True, padding=1)),
    ("global_with_dilation", X2, "max", dict(global_pool=True, dilation=2)),
    ("global_with_ceil", X2, "max", dict(global_pool=True, ceil_mode=True)),
    # dtypes
    ("complex", X2.astype(np.complex128), "max", dict()),
    ("complex_avg", X2.astype(np.complex64), "avg", dict()),
    ("object", X2.astype(object), "max", dict()),
    ("string", np.array([["a", "b"], ["c", "d"]]), "max", dict()),
    ("bytes", np.array([[b"a", b"b"], [b"c", b"d"]]), "sum", dict()),
    ("string_dtype", np.array(["a", "b"], dtype=np.dtypes.StringDType()), "max", dict()),
    ("masked", np.ma.masked_array([1.0, 9.0], mask=[False, True]), "max", dict()),
    # arguments of the wrong kind, or beyond any array
    ("mode_list", X2, ["max"], dict()),
    ("power_array", X2, "lp", dict(power=np.array([2, 3]))),
    ("stride_huge", X2, "max", dict(stride=10**19)),
    ("dilation_huge", X2, "max", dict(window=1, dilation=10**19)),
    ("padding_huge", X2, "max", dict(padding=10**19)),
    ("padding_dict", X2, "max", dict(padding={1: 2})),
    ("padding_empty", X2, "max", dict(padding=[])),
    ("power_bool", X2, "lp", dict(power=True)),
    # outputs or passes beyond this machine's memory: a PoolError, not a MemoryError
    ("output_size_beyond_memory", np.zeros((3, 4)), "max", dict(output_size=2**40)),
    ("output_rows_beyond_memory", np.zeros((3, 4)), "max", dict(output_size=[2**31, 1])),
    ("dilated_outputs_beyond_memory", np.zeros((3, 4)), "max",
     dict(window=2, dilation=2**62, padding=2**62 - 1)),
    ("padded_outputs_beyond_memory", np.zeros((3, 4)), "avg",
     dict(window=2**31, stride=1, padding=2**31 - 1)),
]


_Pair = collections.namedtuple("_Pair", "h w")


@pytest.mark.parametrize("valid,invalid", [
    (dict(window=2), dict(window=2.0)), (dict(window=2), dict(window=True)),
    (dict(window=(2, 2)), dict(window=(2.0, 2))), (dict(stride=1), dict(stride=True)),
    (dict(padding=(1, 0)), dict(padding=(1.0, 0))), (dict(window=3, padding=1), dict(window=3, padding=True)),
    (dict(window=_Pair(2, 2)), dict(window=_Pair(2.0, 2.0))), (dict(mode="lp", power=1), dict(mode="lp", power=np.True_))])
def test_remembered_options_equal_as_keys_are_still_checked_each(valid, invalid):
    """pool() remembers checked options; 2 == 2.0 == True, but only 2 is a window."""
    x = np.arange(36.0).reshape(6, 6)
    mode = valid.pop("mode", "max")
    invalid.pop("mode", None)
    want = pool(x, mode, **valid)
    for _ in range(2):  # before and after the invalid one was tried
        with pytest.raises(PoolError):
            pool(x, mode, **invalid)
        assert np.array_equal(pool(x, mode, **valid), want)


def test_a_pass_that_widens_one_axis_after_another_shrank_is_not_refused():
    # passes go one axis at a time: (200000, 8) -> (8, 8) -> (8, 200000), never 200000^2
    x = np.random.default_rng(0).random((200000, 8), dtype=np.float32)
    got = pool(x, "avg", output_size=(8, 200000))
    assert got.shape == (8, 200000)
    assert np.allclose(got[:, ::25000], x.reshape(8, 25000, 8).mean(axis=1)[:, :8], rtol=1e-5)


@pytest.mark.parametrize("x,mode,kwargs", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_user_errors_raise_pool_error(x, mode, kwargs):
    x_before = np.array(x, copy=True)
    with pytest.raises(PoolError) as info:
        pool(x, mode, **kwargs)
    msg = str(info.value)
    assert msg.strip(), "empty error message"
    assert "\n" not in msg, msg
    assert "Traceback" not in msg
    if x_before.dtype != object:
        assert np.array_equal(np.asarray(x), x_before)


def test_pool_error_is_value_error():
    assert issubclass(PoolError, ValueError)


@pytest.mark.parametrize(
    "x,mode,kwargs",
    [
        (X2, "max", dict(window=2, padding=1)),                      # padding < window
        (X2, "max", dict(window=4, padding=1)),                      # 4 <= 3+2
        (np.zeros((9, 9)), "max", dict(window=2, dilation=2, padding=2)),
        (X2, "max", dict(window=(3, 4))),                            # window == input
        (X2, "max", dict(output_size=(3, 4))),                       # output_size == input
        (X2, "lp", dict(power=0.5)),
        (X2, "avg", dict(window=2, padding=1, count_include_pad=True)),
        (X2, "max", dict(window=1)),
        (np.zeros((1, 1)), "max", dict(window=1)),
        (np.zeros((2, 3, 4, 5, 6)), "max", dict(window=2, layout="NCDHW")),
        (np.zeros((2, 3, 4)), "max", dict(window=2, layout="DHW")),
    ],
)
def test_boundary_geometries_are_accepted(x, mode, kwargs):
    pool(x, mode, **kwargs)


# ----------------------------------------------------------------------------
# dtypes
# ----------------------------------------------------------------------------

ALL_DTYPES = ("bool", "uint8", "int8", "uint16", "int16", "uint32", "int32", "uint64", "int64",
              "float16", "float32", "float64")
EXPECTED_DTYPE = {
    "max": {d: d for d in ALL_DTYPES},
    "min": {d: d for d in ALL_DTYPES},
    "sum": {d: ("int64" if d not in ("float16", "float32", "float64") else d) for d in ALL_DTYPES},
    "avg": {d: ("float64" if d not in ("float16", "float32", "float64") else d) for d in ALL_DTYPES},
    "lp": {d: ("float64" if d not in ("float16", "float32", "float64") else d) for d in ALL_DTYPES},
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ALL_DTYPES)
def test_output_dtype_table(mode, dtype):
    x = make_data((4, 6), dtype, seed=3, full_range=False)
    expected = np.dtype(EXPECTED_DTYPE[mode][dtype])
    assert out_dtype(mode, dtype) == expected  # the oracle agrees with the table
    for kwargs in (dict(window=2), dict(output_size=(3, 2)), dict(global_pool=True)):
        got = pool(x, mode, **kwargs)
        assert got.dtype == expected, (mode, dtype, kwargs, got.dtype)
    ref = ref_pool(x, mode, (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1))
    assert_matches(pool(x, mode, window=2), ref, mode, x)


# ----------------------------------------------------------------------------
# inputs are never modified, results are new arrays, memory layouts do not matter
# ----------------------------------------------------------------------------

CALLS = [
    ("max", dict(window=1)),  # identity geometry: a lazy core might hand back x itself
    ("min", dict(window=1, stride=1)),
    ("max", dict(window=2, stride=1, padding=1)),
    ("min", dict(window=3, stride=2, padding="same", ceil_mode=True)),
    ("avg", dict(window=3, stride=2, padding=1, count_include_pad=True, ceil_mode=True)),
    ("avg", dict(window=2, dilation=2)),
    ("sum", dict(window=(2, 3), stride=1)),
    ("lp", dict(window=2, power=3)),
    ("max", dict(global_pool=True)),
    ("avg", dict(output_size=(5, 6))),  # output size == input size
    ("sum", dict(output_size=(2, 4))),
]


@pytest.mark.parametrize("mode,kwargs", CALLS)
@pytest.mark.parametrize("dtype", ["float64", "float32", "uint8", "bool"])
def test_input_untouched_and_result_is_new(mode, kwargs, dtype):
    x = make_data((5, 6), dtype, seed=7, nan_frac=0.1)
    before = x.copy()
    got = pool(x, mode, **kwargs)
    assert np.array_equal(x, before, equal_nan=x.dtype.kind == "f")
    assert isinstance(got, np.ndarray) and type(got) is np.ndarray
    assert not np.shares_memory(got, x)
    got[...] = 0  # the result is ours to write
    assert np.array_equal(x, before, equal_nan=x.dtype.kind == "f")
    # read-only inputs are fine
    ro = before.copy()
    ro.flags.writeable = False
    assert_matches(pool(ro, mode, **kwargs), pool(before.copy(), mode, **kwargs), mode, before)


def _same_result(view, mode, kwargs, tmp=None):
    contiguous = np.ascontiguousarray(view)
    got = pool(view, mode, **kwargs)
    exp = pool(contiguous, mode, **kwargs)
    assert got.dtype == exp.dtype and got.shape == exp.shape
    if mode in ("max", "min") or exp.dtype.kind in "biu":
        assert np.array_equal(got, exp, equal_nan=exp.dtype.kind == "f")
    else:
        np.testing.assert_allclose(got, exp, rtol=1e-6 if exp.dtype == np.float32 else 1e-12,
                                   atol=1e-6, equal_nan=True)


@pytest.mark.parametrize("mode,kwargs", CALLS)
def test_non_contiguous_inputs(mode, kwargs, tmp_path):
    base = make_data((6, 5), "float64", seed=11, nan_frac=0.1)
    _same_result(base.T, mode, kwargs)                           # transposed (F-order)
    big = make_data((10, 14), "float32", seed=12)
    _same_result(big[::-2, ::-2][:5, :6], mode, kwargs)                # strided, both axes
    _same_result(big[::-1, ::-1][:5, :6], mode, kwargs)          # negative strides
    _same_result(big[1:6, 2:14:2], mode, kwargs)                 # strided slice
    u8 = make_data((8, 9), "uint8", seed=13)
    _same_result(u8[::-1][:5, ::-1][:, :6], mode, kwargs)
    # memmaps (np.load with mmap_mode, and np.memmap)
    path = tmp_path / "x.npy"
    np.save(path, make_data((5, 6), "float32", seed=14))
    mm = np.load(path, mmap_mode="r")
    _same_result(mm, mode, kwargs)
    got = pool(mm, mode, **kwargs)
    assert type(got) is np.ndarray and not isinstance(got, np.memmap)
    raw = np.memmap(tmp_path / "raw.bin", dtype=np.float64, mode="w+", shape=(5, 6))
    raw[:] = make_data((5, 6), "float64", seed=15)
    raw.flush()
    _same_result(raw, mode, kwargs)
    # a channel-last view of a channel-first array, pooled with layout HWC
    chw = make_data((3, 5, 6), "float64", seed=16)
    hwc_view = np.moveaxis(chw, 0, -1)
    got = pool(hwc_view, mode, layout="HWC", **kwargs)
    exp = pool(chw, mode, layout="CHW", **kwargs)
    assert np.allclose(np.moveaxis(got, -1, 0), exp, equal_nan=True, rtol=1e-12, atol=0)


def test_the_signature_default_power_is_accepted_by_every_mode():
    """SPEC's signature gives power=2.0 to every mode: passing that default is no mistake."""
    x = np.arange(16.0).reshape(4, 4)
    for mode in ("max", "min", "avg", "sum"):
        assert np.array_equal(pool(x, mode, power=2.0), pool(x, mode))


def test_global_and_adaptive_accept_the_signature_defaults():
    x = np.arange(48.0).reshape(3, 4, 4)
    assert np.array_equal(pool(x, "max", window=2, padding=0, dilation=1, global_pool=True),
                          pool(x, "max", global_pool=True))
    with pytest.raises(PoolError, match="replaces window"):
        pool(x, "max", window=3, global_pool=True)
    assert np.array_equal(pool(x, "avg", window="2x2", padding="valid", output_size=2),
                          pool(x, "avg", output_size=2))
    # no padding to count: it would be ignored, so it is refused too
    with pytest.raises(PoolError, match="replaces count_include_pad"):
        pool(x, "avg", count_include_pad=True, global_pool=True)
    with pytest.raises(PoolError, match="replaces padding, ceil_mode: leave them out"):
        pool(x, "max", padding="same", ceil_mode=True, output_size=2)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("divisor", [2, 4, 8, 16, 3, 9])
def test_avg_divides_exactly_as_division_does(dtype, divisor):
    """Power-of-two divisors are applied as products by 1/n: the same bits as the quotient,
    subnormals, huge values and NaN included."""
    from pool_cli.core.pooling import _quotient

    work = np.float32 if dtype == np.float16 else dtype
    info = np.finfo(work)
    rng = np.random.default_rng(divisor)
    total = np.concatenate([rng.standard_normal(500) * 10.0 ** rng.integers(-40, 38, 500),
                            [info.tiny * 3, info.tiny / 7, info.max, -info.max, np.inf, np.nan,
                             0.0, -0.0]]).astype(work)
    out = np.empty(total.shape, dtype)
    with np.errstate(all="ignore"):
        _quotient(total, divisor, out)
        want = np.divide(total, work(divisor)).astype(dtype)
    assert np.array_equal(out.view(np.uint8), want.view(np.uint8))


@pytest.mark.parametrize("mode,kwargs", [("max", {}), ("avg", dict(window=3, stride=1, padding=1)),
                                         ("sum", dict(window=(2, 3))), ("lp", {}),
                                         ("avg", dict(global_pool=True)),
                                         ("max", dict(output_size=(3, 5)))])
def test_out_receives_the_same_result_as_a_new_array(mode, kwargs):
    x = np.random.default_rng(4).standard_normal((3, 40, 50)).astype(np.float32)
    want = pool(x, mode, **kwargs, threads=1)
    buffer = np.full(want.shape, np.nan, want.dtype)
    for threads in (1, 3):
        got = pool(x, mode, **kwargs, threads=threads, out=buffer)
        assert got is buffer
        assert np.array_equal(buffer, want)
    strided = np.full(want.shape[:-1] + (want.shape[-1] * 2,), np.nan, want.dtype)[..., ::2]
    pool(x, mode, **kwargs, out=strided)
    assert np.array_equal(strided, want)


def test_out_that_cannot_hold_the_result_is_refused_and_left_untouched():
    x = np.arange(64, dtype=np.uint8).reshape(8, 8)
    cases = {
        "shape (4, 4) and dtype uint8": np.zeros((4, 5), np.uint8),
        "dtype": np.zeros((4, 4), np.float32),
        "read-only": np.zeros((4, 4), np.uint8),
        "may overlap": x[:4, :4],
        "numpy array": [[0] * 4] * 4,
    }
    cases["read-only"].flags.writeable = False
    for words, out in cases.items():
        before = np.array(out, copy=True)
        with pytest.raises(PoolError, match=re.escape(words)):
            pool(x, "max", out=out)
        assert np.array_equal(np.asarray(out), before)


@pytest.mark.parametrize("threads", [0, -1, 2.5, "2", True])
def test_threads_must_be_a_whole_number_of_at_least_one(threads):
    with pytest.raises(PoolError, match="threads must be"):
        pool(np.zeros((4, 4)), "max", threads=threads)
    assert pool(np.zeros((4, 4)), "max", threads=np.int64(2)).shape == (2, 2)


# ----------------------------------------------------------------------------
# rounded avg of 64-bit integers: exact (float64 holds 53 bits, int64 sums overflow)
# ----------------------------------------------------------------------------

def _rounded_mean_by_hand(x, k, s, p, include_pad):
    """Python integers, window by window over a 2-D array: floor(sum / n + 1/2)."""
    rows, cols = x.shape
    out_rows, out_cols = (rows + 2 * p - k) // s + 1, (cols + 2 * p - k) // s + 1
    out = np.empty((out_rows, out_cols), x.dtype)
    for i in range(out_rows):
        for j in range(out_cols):
            cells = [int(x[r, c]) for r in range(i * s - p, i * s - p + k)
                     for c in range(j * s - p, j * s - p + k) if 0 <= r < rows and 0 <= c < cols]
            n = k * k if include_pad else len(cells)
            out[i, j] = (2 * sum(cells) + n) // (2 * n)
    return out


@pytest.mark.parametrize("dtype", [np.int64, np.uint64])
@settings(max_examples=examples(60), deadline=None)
@given(data=st.data())
def test_rounded_avg_of_64_bit_integers_is_exact(dtype, data):
    info = np.iinfo(dtype)
    k = data.draw(st.integers(1, 4))
    s, p = data.draw(st.integers(1, 3)), data.draw(st.integers(0, k - 1))
    shape = (data.draw(st.integers(k, 7)), data.draw(st.integers(k, 7)))
    near = data.draw(st.sampled_from([info.min, info.max, 0, 2**53]))  # the hard places
    values = data.draw(st.lists(st.integers(max(info.min, near - 2**40), min(info.max, near + 2**40)),
                                min_size=shape[0] * shape[1], max_size=shape[0] * shape[1]))
    x = np.array(values, dtype).reshape(shape)
    include_pad = data.draw(st.booleans())
    got = pool(x, "avg", k, s, p, count_include_pad=include_pad, rounded=True,
               threads=data.draw(st.integers(1, 3)))
    assert got.dtype == x.dtype
    assert np.array_equal(got, _rounded_mean_by_hand(x, k, s, p, include_pad))


def test_rounded_avg_of_64_bit_integers_by_hand():
    top, bottom = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    assert pool(np.array([top, top]), "avg", 2, rounded=True).tolist() == [top]
    assert pool(np.array([bottom, bottom + 1]), "avg", 2, rounded=True).tolist() == [bottom + 1]
    assert pool(np.array([2**64 - 1] * 2, np.uint64), "avg", 2, rounded=True).tolist() == [2**64 - 1]
    assert pool(np.array([2**53 + 1]), "avg", 1, rounded=True).tolist() == [2**53 + 1]
    assert pool(np.array([2**53 + 1, 2**53 + 2]), "avg", 2, rounded=True).tolist() == [2**53 + 2]
    assert pool(np.array([-3, -2, 5, -8]), "avg", 2, rounded=True).tolist() == [-2, -1]  # ties up


# ----------------------------------------------------------------------------
# arrays in the other byte order (a big-endian .npy): pooled as the same values
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["max", "min", "avg", "sum", "lp"])
@pytest.mark.parametrize("dtype", [">f4", ">f8", ">i2", ">u2", ">i8"])
@pytest.mark.parametrize("geometry", [dict(window=2), dict(window=3, stride=1, padding=1),
                                      dict(global_pool=True), dict(output_size=3),
                                      dict(window=2, layout="HWC")])
def test_other_byte_order_gives_the_native_result(mode, dtype, geometry):
    x = np.random.default_rng(0).integers(-50, 50, (4, 6, 5)).astype(dtype)
    native = x.astype(x.dtype.newbyteorder("="))
    expected = pool(native, mode, **geometry)
    got = pool(x, mode, **geometry)
    assert got.dtype == expected.dtype and got.dtype.isnative
    assert np.array_equal(got, expected, equal_nan=True)
    out = np.empty_like(expected)
    assert pool(x, mode, **geometry, out=out) is out and np.array_equal(out, expected)


def test_plans_and_axes_hash_as_equal_values_and_pickle_without_their_hash():
    import pickle

    from pool_cli import make_spec

    plan = make_spec("max", 3, 2, padding=1).plan((2, 9, 9))
    twin = make_spec("max", 3, 2, padding=1).plan((2, 9, 9))
    assert plan == twin and hash(plan) == hash(twin) and hash(plan) == hash(plan)
    assert hash(plan.geometry[0]) == hash(twin.geometry[0])
    copied = pickle.loads(pickle.dumps(plan))  # another process hashes strings otherwise
    assert "_hash" in plan.__dict__ and "_hash" not in copied.__dict__
    assert copied == plan and hash(copied) == hash(plan)


def test_ragged_sequences_raise_pool_error():
    with pytest.raises(PoolError, match="not an array of numbers"):
        pool([[1, 2], [3]], "max")


def test_zero_dimensional_arrays_serve_as_sizes():
    x = np.arange(16.0).reshape(4, 4)
    assert pool(x, "max", window=np.array(2)).tolist() == pool(x, "max", window=2).tolist()
    assert pool(x, "max", output_size=np.array(1)).tolist() == [[15.0]]


@pytest.mark.parametrize("dtype", [np.uint32, np.int32])
def test_rounded_average_of_32_bit_integers_is_exact_past_float64_precision(dtype):
    """2^22 cells near 2^32 sum past 2^53: a float64 sum rounds, the int64 one does not."""
    top = np.iinfo(dtype).max
    x = np.full((2048, 2048), top - 1, dtype)
    x.flat[:x.size // 2 - 1] = top  # mean = top - 1 + (n/2 - 1)/n: just under the halfway
    for kwargs in (dict(global_pool=True), dict(output_size=1), dict(window=2048)):
        assert pool(x, "avg", rounded=True, **kwargs).item() == top - 1


def test_window_counts_take_memory_by_outputs_not_by_window_cells():
    import tracemalloc

    x = np.zeros(100_000, np.float32)
    tracemalloc.start()
    try:
        pool(x, "avg", window=255, stride=1, padding=127, threads=1)  # counts: 100000 x 255
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 30 * 2**20, peak  # an outputs x window table would be 204 MB


def test_a_window_of_2_to_the_40_visits_only_the_offsets_that_reach_the_input():
    x = np.arange(48.0).reshape(4, 12)
    got = pool(x, "sum", window=2**40, stride=2**40, padding=2**40 - 1)  # at once, not hours
    assert got.tolist() == [[0.0, 66.0], [72.0, 990.0]]
    assert pool(np.arange(8.0), "avg", window=2**40, padding=2**40 - 1).tolist() == [0.0, 4.0]


@pytest.mark.parametrize("kwargs", [dict(stride="99999999999999999999"), dict(window="2x9" + "9" * 20),
                                    dict(output_size="9" * 20), dict(dilation=2**63)])
def test_sizes_beyond_2_to_the_62_raise_pool_error_whatever_their_form(kwargs):
    with pytest.raises(PoolError, match="at most 2\\*\\*62"):
        pool(np.ones((4, 4)), "max", **kwargs)
