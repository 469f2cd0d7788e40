"""Every algorithm path of the core against the plain-loop reference.

pool() picks a pass per axis (direct, tile, flat, same-length), cuts the input into
bands and shares them between threads. Here each pass is forced, band budgets are made tiny
so that bands never divide the input evenly, and thread counts 1 and 3 must agree bit for bit.
"""

import functools
import itertools
import math
import os
import signal
import threading
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from pool_cli import PoolError, make_spec, pool
from pool_cli.core import execute, kernels, plans, scratch
from pool_cli.core.geometry import make_axis
from reference import ref_adaptive, ref_global, ref_pool

PASSES = {"direct": kernels.direct_pass, "flat": kernels.flat_pass}
COMBINE = {"max": np.maximum, "min": np.minimum, "sum": np.add, "fmax": np.fmax}


@st.composite
def axis_cases(draw, dilated=True):
    """One axis: length, window, stride, dilation, padding within the rules, ceil_mode."""
    length = draw(st.integers(1, 40))
    window = draw(st.integers(1, 15))
    dilation = draw(st.integers(1, 3)) if dilated else 1
    span = dilation * (window - 1) + 1
    pads = (draw(st.integers(0, span - 1)), draw(st.integers(0, span - 1)))
    ceil_mode = draw(st.booleans())
    try:
        g = make_axis(length, window, draw(st.integers(1, 6)), dilation, pads, ceil_mode)
    except PoolError:
        assume(False)
    return g, ceil_mode


def one_axis_reference(x, g, mode, ceil_mode):
    """The reference pooling along axis 1 of a (rows, L, cells) array."""
    return ref_pool(x.reshape(x.shape[0], 1, g.length, -1), mode, (g.window, 1), (g.stride, 1),
                    ((g.pad_begin, g.pad_end), (0, 0)), (g.dilation, 1), ceil_mode=ceil_mode,
                    layout="NCHW")


PASS_MODES = [(name, mode) for name in PASSES for mode in COMBINE]


def test_direct_pass_on_every_small_geometry():
    """Every geometry of short axes, one by one: later taps that reach only outputs below
    the earlier ones, only outputs above, or the same ones."""
    rng = np.random.default_rng(4)
    checked = 0
    for length, window, stride, dilation, ceil_mode in itertools.product(
            range(1, 9), range(1, 5), range(1, 4), range(1, 4), (False, True)):
        span = dilation * (window - 1) + 1
        for pads in itertools.product(range(span), repeat=2):
            try:
                g = make_axis(length, window, stride, dilation, pads, ceil_mode)
            except PoolError:
                continue
            x = rng.integers(-50, 50, size=(1, length, 2))
            for mode in ("max", "sum"):
                with scratch.band():
                    got = kernels.direct_pass(x, 1, g, COMBINE[mode], x.dtype).copy()
                want = one_axis_reference(x, g, mode, ceil_mode).reshape(got.shape)
                assert np.array_equal(got, want), (g, mode)
                checked += 1
    assert checked > 10000


@pytest.mark.parametrize("name,mode", PASS_MODES)
@settings(max_examples=60)
@given(case=axis_cases(), cells=st.integers(1, 4), data=st.data())
def test_each_pass_matches_reference(name, mode, case, cells, data):
    g, ceil_mode = case
    dtype = data.draw(st.sampled_from([np.int16, np.float32, np.float64]))
    if mode == "fmax":
        dtype = np.float64
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.integers(-50, 50, size=(2, g.length, cells)).astype(dtype)
    if mode == "fmax":  # NaN is skipped; a window of NaN and padding only stays NaN
        x[rng.random(x.shape) < 0.3] = np.nan
    work = np.dtype(np.int64) if mode == "sum" and dtype == np.int16 else np.dtype(dtype)
    with scratch.band():
        got = PASSES[name](x, 1, g, COMBINE[mode], work).copy()
    if mode == "fmax":
        want = ref_pool(x.reshape(2, 1, g.length, -1), "max", (g.window, 1), (g.stride, 1),
                        ((g.pad_begin, g.pad_end), (0, 0)), (g.dilation, 1), ceil_mode=ceil_mode,
                        layout="NCHW", ignore_nan=True).reshape(got.shape)
    else:
        want = one_axis_reference(x, g, mode, ceil_mode).reshape(got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    if mode != "sum":
        assert np.array_equal(got, want, equal_nan=True)


@settings(max_examples=60)
@given(case=axis_cases(), data=st.data())
def test_direct_pass_with_dilation_matches_reference(case, data):
    g, ceil_mode = case
    x = np.random.default_rng(data.draw(st.integers(0, 999))).standard_normal((3, g.length, 1))
    got = kernels.direct_pass(x, 1, g, np.maximum, x.dtype)
    assert np.array_equal(got, one_axis_reference(x, g, "max", ceil_mode).reshape(got.shape))


@pytest.mark.parametrize("mode", ["max", "min", "sum"])
@settings(max_examples=40)
@given(out=st.integers(1, 12), stride=st.integers(1, 5), cells=st.integers(1, 4), data=st.data())
def test_tile_pass_matches_reference(mode, out, stride, cells, data):
    window = data.draw(st.integers(1, stride))
    g = make_axis(out * stride, window, stride, 1, (0, 0), False)
    assert kernels.tiles(g)
    x = np.random.default_rng(out * 7 + stride).integers(-50, 50, size=(3, out * stride, cells))
    x = x.astype(data.draw(st.sampled_from([np.uint8, np.int16, np.float32])))
    work = np.dtype(np.int64) if mode == "sum" and x.dtype.kind != "f" else x.dtype
    got = kernels.tile_pass(x, 1, g, COMBINE[mode], work)
    want = one_axis_reference(x, g, mode, False).reshape(got.shape)
    assert np.array_equal(got, want)


@pytest.mark.parametrize("kwargs", [dict(global_pool=True), dict(window=(4095, 4097))])
def test_uint8_sums_of_the_most_cells_summed_in_uint32_neither_overflow_nor_round_over(kwargs):
    """Up to 2**24 - 1 cells, uint8 windows are summed in uint32: 255 in every cell, and
    the half added to round, still fit."""
    x = np.full((4095, 4097), 255, np.uint8)
    assert x.size == 2**24 - 1
    assert make_spec("avg", **kwargs)._work_dtype(x.dtype, x.size) == np.uint32
    assert make_spec("avg", **kwargs)._work_dtype(x.dtype, x.size + 1) == np.float64
    assert pool(x, "sum", **kwargs).reshape(-1).tolist() == [255 * (2**24 - 1)]
    assert pool(x, "avg", rounded=True, **kwargs).reshape(-1).tolist() == [255]
    assert pool(x, "avg", **kwargs).reshape(-1).tolist() == [255.0]


@pytest.mark.parametrize("mode,want", [("max", [[0, 3], [8, 11]]), ("min", [[0, 1], [4, 5]])])
def test_extremes_of_windows_far_wider_than_the_input_visit_only_its_cells(mode, want):
    """A 2**40-cell window and padding: a flat pass would pad the input to 3 * 2**40 cells."""
    x = np.arange(12.0).reshape(3, 4)
    k = 2**40
    assert pool(x, mode, window=k, stride=k, padding=k - 1).tolist() == want
    g = make_axis(4, k, k, 1, (k - 1, k - 1), False)
    assert kernels.choose_pass((3, 4), 1, g, COMBINE[mode]) is kernels.direct_pass


@pytest.mark.parametrize("length,window,stride,pad", [
    (512, 2049, 1, 1024), (20000, 100001, 1, 50000), (600000, 2100001, 100000, 1050000)])
def test_wide_windows_over_a_long_axis_keep_the_flat_pass(length, window, stride, pad):
    """One direct operation per window offset (a Python call each) would cost far more there
    than the padded flat pass (measured, before this rule: 94 ms against 20, 10 s against
    0.01, 2 s against 0.03)."""
    g = make_axis(length, window, stride, 1, (pad, pad), False)
    assert not kernels.direct_is_cheaper(g)
    assert kernels.choose_pass((4, length), 1, g, np.maximum) is kernels.flat_pass


def test_a_window_far_wider_than_a_long_input_visits_only_its_cells():
    x = np.random.default_rng(4).standard_normal((40, 1000))
    k = 2**40  # window 0 holds row (column) 0 only, window 1 every other one
    got = pool(x, "max", window=k, stride=k, padding=k - 1)
    want = [[x[0, 0], x[0, 1:].max()], [x[1:, 0].max(), x[1:, 1:].max()]]
    assert got.tolist() == want


@pytest.mark.parametrize("mode", ["max", "min", "sum"])
@pytest.mark.parametrize("window,stride,dilation,pad", [(300, 200, 1, 299), (90, 150, 3, 200),
                                                        (64, 64, 1, 63)])
def test_windows_wider_than_the_input_match_the_reference(mode, window, stride, dilation, pad):
    x = np.random.default_rng(window).integers(-99, 99, (2, 37, 29)).astype(np.float32)
    g = make_axis(37, window, stride, dilation, (pad, pad), False)
    if kernels.direct_is_cheaper(g):
        assert kernels.choose_pass(x.shape, 1, g, COMBINE[mode]) is kernels.direct_pass
    got = pool(x, mode, window=window, stride=stride, dilation=dilation, padding=pad)
    want = ref_pool(x, mode, (window,) * 2, (stride,) * 2, ((pad, pad),) * 2, (dilation,) * 2)
    assert np.array_equal(got, want)


def test_flat_pass_lets_padding_never_win_for_integers_and_bool():
    x = np.full((1, 9), np.iinfo(np.int8).min, np.int8)
    g = make_axis(9, 7, 1, 1, (6, 6), False)
    assert (kernels.flat_pass(x, 1, g, np.maximum, x.dtype) == -128).all()
    y = np.full((1, 9), True)
    assert kernels.flat_pass(y, 1, g, np.minimum, y.dtype).all()
    z = np.full((1, 9), np.iinfo(np.uint16).max, np.uint16)
    assert (kernels.flat_pass(z, 1, g, np.minimum, z.dtype) == 65535).all()


@pytest.mark.parametrize("mode", ["max", "min", "sum", "fmax"])
@settings(max_examples=50)
@given(window=st.integers(2, 14), dilation=st.integers(1, 3), cells=st.integers(1, 5),
       data=st.data())
def test_same_length_pass_matches_reference_and_the_padded_pass_bit_for_bit(
        mode, window, dilation, cells, data):
    """Stride 1 and out == length: windows slide over the band itself, ends pooled apart."""
    span = dilation * (window - 1) + 1
    pad_begin = data.draw(st.integers(0, span - 1))
    length = data.draw(st.integers(1, 3)) * kernels.SAME_LENGTH_MIN_ROW * (span - 1)
    g = make_axis(length, window, 1, dilation, (pad_begin, span - 1 - pad_begin), False)
    assert g.out == g.length
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    x = rng.standard_normal((3, length, cells)).astype(np.float32)
    if mode == "fmax":
        x[rng.random(x.shape) < 0.3] = np.nan
    slid = []
    with scratch.band(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(kernels, "sliding", lambda *a: slid.append(a) or SLIDING(*a))
        got = kernels.flat_pass(x, 1, g, COMBINE[mode], x.dtype).copy()
        assert len(slid) == 1 + bool(g.pad_begin or g.pad_end)  # the band, then both ends
    with scratch.band():
        padded = kernels._padded_flat_pass(x, 1, g, COMBINE[mode], x.dtype)
    assert np.array_equal(got, padded, equal_nan=True)  # sums too: the same additions
    want = ref_pool(x.reshape(3, 1, length, -1), "max" if mode == "fmax" else mode,
                    (window, 1), (1, 1), ((g.pad_begin, g.pad_end), (0, 0)), (dilation, 1),
                    layout="NCHW", ignore_nan=mode == "fmax").reshape(got.shape)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    if mode != "sum":
        assert np.array_equal(got, want, equal_nan=True)


SLIDING = kernels.sliding


@pytest.mark.parametrize("window", [1, 2, 3, 4, 5, 7, 8, 13, 16, 31])
@pytest.mark.parametrize("combine", [np.maximum, np.minimum, np.add])
def test_sliding_doubling_equals_every_tap(window, combine):
    flat = np.random.default_rng(window).integers(-99, 99, size=200)
    for step in (1, 3):
        positions = flat.size - (window - 1) * step
        out = np.empty(positions, flat.dtype)
        with scratch.band():
            kernels.sliding(flat, positions, window, step, combine, out)
        want = combine.reduce([flat[j * step:j * step + positions] for j in range(window)])
        assert np.array_equal(out, want)


def test_choose_pass_picks_each_kernel():
    wide = make_axis(64, 13, 1, 1, (6, 6), False)
    small = make_axis(64, 2, 2, 1, (0, 0), False)
    rows = np.zeros((4, 64, 64), np.float32)
    pixels = np.zeros((64, 64, 3), np.uint8)
    add = np.add
    assert kernels.choose_pass(rows.shape, 1, wide, add) is kernels.flat_pass
    assert kernels.choose_pass(rows.shape, 2, small, add) is kernels.tile_pass  # tiled last axis
    odd = make_axis(65, 2, 2, 1, (0, 0), False)
    assert kernels.choose_pass((4, 64, 65), 2, odd, add) is kernels.flat_pass
    assert kernels.choose_pass((64, 64, 64), 1, small, add) is kernels.direct_pass
    assert kernels.choose_pass(pixels.shape, 1, small, add) is kernels.tile_pass
    strided = make_axis(64, 3, 2, 1, (1, 1), False)
    assert kernels.choose_pass(pixels.shape, 1, strided, add) is kernels.flat_pass
    assert kernels.choose_pass(pixels.shape, 0, small, add) is kernels.direct_pass
    # max/min: NumPy's strided compare loops are slow, one flat pass and a pick win
    assert kernels.choose_pass(rows.shape, 2, small, np.maximum) is kernels.flat_pass
    assert kernels.choose_pass(pixels.shape, 1, small, np.fmin) is kernels.flat_pass
    assert kernels.choose_pass(pixels.shape, 1, small, np.add) is kernels.tile_pass
    # sums over windows with gaps: tile or direct in every band, never flat (order of adds)
    gaps = make_axis(64, 4, 5, 1, (0, 0), False)
    assert kernels.choose_pass(rows.shape, 2, gaps, np.add) is kernels.direct_pass


def separable_passes_only(monkeypatch) -> None:
    """No flat_all_pass: plans pool one axis at a time (with a fresh cache of their passes,
    the process's own left as it was)."""
    monkeypatch.setattr(kernels, "FLAT_ALL_MAX_STRIDE", 0)
    monkeypatch.setattr(plans, "_passes", functools.lru_cache(plans._passes.__wrapped__))


def test_max_takes_the_flat_pass_and_sums_the_tile_pass(monkeypatch):
    separable_passes_only(monkeypatch)
    taken = []
    for name in ("tile_pass", "flat_pass"):
        original = getattr(kernels, name)
        monkeypatch.setattr(kernels, name, lambda *a, _f=original, _n=name: taken.append(_n) or _f(*a))
    x = np.random.default_rng(1).standard_normal((2, 8, 64), dtype=np.float32)  # H: direct
    n = (x * 100).astype(np.int16)
    x[0, 3, 5] = np.nan

    def ref(a, mode):
        return ref_pool(a, mode, (2, 2), (2, 2), ((0, 0), (0, 0)), (1, 1), layout="CHW")

    assert np.array_equal(pool(x, "max", 2), ref(x, "max"), equal_nan=True)
    assert np.allclose(pool(x, "sum", 2), ref(x, "sum"), equal_nan=True)
    assert np.array_equal(pool(n, "max", 2), ref(n, "max"))
    assert taken == ["flat_pass", "tile_pass", "flat_pass"]


def _spy_flat_all(monkeypatch) -> list:
    taken = []
    original = kernels.flat_all_pass
    monkeypatch.setattr(plans, "flat_all_pass", lambda *a: taken.append(1) or original(*a))
    return taken


@pytest.mark.parametrize("mode", ["max", "min", "sum", "avg", "fmax"])
@settings(max_examples=25, deadline=None)
@given(layout=st.sampled_from(["W", "HW", "CHW", "NCHW"]), window=st.integers(1, 3),
       window2=st.integers(1, 3), stride=st.integers(1, 2), stride2=st.integers(1, 2),
       dilation=st.integers(1, 2), lengths=st.tuples(st.integers(5, 30), st.integers(5, 30)),
       dtype=st.sampled_from([np.float32, np.float64, np.int32]), data=st.data())
def test_flat_all_pass_matches_reference_and_the_separable_passes_bit_for_bit(
        mode, layout, window, window2, stride, stride2, dilation, lengths, dtype,
        data):
    nspatial = sum(c in "HW" for c in layout)
    shape = {"W": lengths[:1], "HW": lengths, "CHW": (3,) + lengths,
             "NCHW": (2, 2) + lengths}[layout]
    x = data.draw(st.sampled_from([1, 100])) * np.random.default_rng(len(shape)).standard_normal(
        shape)
    x = x.astype(dtype)
    if dtype != np.int32:  # values that must keep their meaning through garbage positions
        flat = x.reshape(-1)
        flat[::7], flat[3::11], flat[5::13] = np.inf, -np.inf, np.nan
    windows, strides = (window, window2)[:nspatial], (stride, stride2)[:nspatial]
    kwargs = dict(window=windows, stride=strides, dilation=dilation, layout=layout,
                  ignore_nan=mode == "fmax")
    name = "max" if mode == "fmax" else mode
    try:
        spec = make_spec(name, **kwargs)
        spec.plan(x.shape)
    except PoolError:
        assume(False)
    with pytest.MonkeyPatch.context() as monkeypatch:
        taken = _spy_flat_all(monkeypatch)
        got = pool(x, name, **kwargs)
    if name in ("max", "min") or x.dtype.kind == "f":  # int sums widen: not this path
        assert taken, "flat_all_pass was not taken"
    want = ref_pool(x, name, windows, strides, ((0, 0),) * nspatial, (dilation,) * nspatial,
                    layout=layout, ignore_nan=mode == "fmax")
    if name in ("max", "min"):
        assert np.array_equal(got, want, equal_nan=True)
    else:
        scale = np.abs(x[np.isfinite(x)]).max()  # float32 sums cancel: error ~ eps * inputs
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale, equal_nan=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        separable_passes_only(monkeypatch)
        assert same_bits_but_nan_sign(pool(x, name, **kwargs), got)
    with pytest.MonkeyPatch.context() as monkeypatch:  # bands that do not divide the input
        monkeypatch.setattr(execute, "BAND_BYTES", 150)
        banded = pool(x, name, threads=1, **kwargs)
        assert pool(x, name, threads=3, **kwargs).tobytes() == banded.tobytes()
    assert same_bits_but_nan_sign(banded, got)


def same_bits_but_nan_sign(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit, except the sign of NaN: NumPy's SIMD and scalar loops give inf + -inf
    NaNs of either sign, so where an element falls in a loop decides it."""
    if a.dtype.kind != "f":
        return a.tobytes() == b.tobytes()
    nan = np.isnan(a)
    return bool((nan == np.isnan(b)).all()) and a[~nan].tobytes() == b[~nan].tobytes()


def test_flat_all_pass_is_left_to_the_separable_passes_where_they_win():
    def fits(shape, layout, mode, **kwargs):
        plan = make_spec(mode, layout=layout, **kwargs).plan(shape)
        combine = np.maximum if mode == "max" else np.add
        return kernels.flat_all_fits(shape, plan.axes, plan.geometry, combine)

    assert fits((4, 64, 64), "CHW", "max", window=2)
    assert fits((4, 64, 64), "CHW", "sum", window=3, stride=2)
    assert not fits((64, 64, 4), "HWC", "max", window=2)  # pixels: the pick copies records
    assert not fits((4, 64, 64), "CHW", "max", window=3)  # stride 3
    assert not fits((4, 64, 64), "CHW", "max", window=3, stride=2, padding=1)
    assert not fits((4, 64, 64), "CHW", "sum", window=4, stride=2)  # adds in another order
    assert not fits((2, 8, 8, 8), "CDHW", "max", window=2)  # a third full-size pass


GEOMETRIES = [
    dict(window=2),
    dict(window=3, stride=2, padding=1),
    dict(window=3, stride=1, padding=1),
    dict(window=9, stride=1, padding=4),
    dict(window=(4, 3), stride=(3, 2), padding=((1, 2), (0, 1)), ceil_mode=True),
    dict(window=3, stride=2, dilation=2, padding=2),
]


@pytest.mark.parametrize("layout,shape", [("CHW", (3, 37, 29)), ("HWC", (37, 29, 3)),
                                          ("NCHW", (2, 2, 23, 19)), ("HW", (41, 33))])
@pytest.mark.parametrize("geometry", GEOMETRIES)
@pytest.mark.parametrize("mode", ["max", "min", "avg", "sum", "lp"])
def test_tiny_bands_and_threads_match_reference(monkeypatch, layout, shape, geometry, mode):
    rng = np.random.default_rng(7)
    x = rng.integers(0, 256, size=shape).astype(np.uint8 if mode != "lp" else np.float64)
    kwargs = dict(geometry, layout=layout)
    if mode == "avg":
        kwargs["count_include_pad"] = True
    pads = kwargs.get("padding", 0)
    nspatial = sum(c in "DHW" for c in layout)

    def per_axis(value):
        return tuple(value) if isinstance(value, tuple) else (value,) * nspatial

    pairs = tuple(p if isinstance(p, tuple) else (p, p) for p in per_axis(pads))
    want = ref_pool(x, mode, per_axis(kwargs["window"]),
                    per_axis(kwargs.get("stride", kwargs["window"])), pairs,
                    per_axis(kwargs.get("dilation", 1)), ceil_mode=kwargs.get("ceil_mode", False),
                    count_include_pad=mode == "avg", layout=layout)
    results = []
    for budget in (100, 1000, 1 << 20):
        monkeypatch.setattr(execute, "BAND_BYTES", budget)
        for threads in (1, 3):
            results.append(pool(x, mode, threads=threads, **kwargs))
    for got in results:
        assert got.dtype == want.dtype
        np.testing.assert_allclose(got, want, rtol=1e-9)
    # the same bits for every thread count and every band budget
    for other in results[1:]:
        assert np.array_equal(results[0], other)


@pytest.mark.parametrize("layout,shape", [("CHW", (3, 37, 70)), ("HWC", (37, 70, 3)),
                                          ("NCHW", (2, 2, 23, 80)), ("HW", (41, 90))])
@pytest.mark.parametrize("geometry", GEOMETRIES + [dict(window=5, stride=1, padding=2)])
@pytest.mark.parametrize("mode", ["max", "sum", "avg"])
def test_bands_split_last_axis_first_give_the_whole_inputs_bits(layout, shape, geometry, mode):
    """As a Fortran-ordered .npy is streamed: bands narrower along the last axes, whose passes
    are still chosen for the whole input (a 5-cell sum adds in another order flat or direct)."""
    x = np.asfortranarray(np.random.default_rng(5).standard_normal(shape).astype(np.float32))
    spec = make_spec(mode, layout=layout, **geometry)
    plan = spec.plan(x.shape)
    whole = spec.run(x, plan, threads=1)
    assert all(x[band.source].flags.f_contiguous  # contiguous runs of the input
               for band in plan.split(20_000, x.itemsize, "F"))
    for budget in (3000, 8000):
        bands = plan.split(budget, x.itemsize, "F")
        assert len(bands) > 1
        out = np.full(plan.out_shape, np.nan, np.float32)
        for band in bands:
            out[band.target] = spec.run(x[band.source], band.plan, threads=2)
        assert out.tobytes() == whole.tobytes()


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("shape,layout,window", [((4096, 8), "HW", 8), ((4096, 8), "HW", 2),
                                                 ((8, 4096), "HW", 8), ((3, 2000, 6), "CHW", 6),
                                                 ((2000, 6, 3), "HWC", 5)])
@pytest.mark.parametrize("mode", ["max", "sum"])
def test_bands_stay_within_the_budget_when_one_axis_is_short(order, shape, layout, window, mode):
    """An axis with few outputs, each reaching far along the others, is split further along
    them: no band holds much more than the budget, and the bits are the whole input's."""
    x = np.random.default_rng(9).standard_normal(shape).astype(np.float32)
    x = np.asfortranarray(x) if order == "F" else x
    spec = make_spec(mode, window=window, stride=1, layout=layout)
    plan = spec.plan(x.shape)
    budget = 4000
    bands = plan.split(budget, x.itemsize, order)
    assert max(x[band.source].nbytes for band in bands) <= 2 * budget
    out = np.full(plan.out_shape, np.nan, np.float32)
    for band in bands:
        out[band.target] = spec.run(x[band.source], band.plan, threads=1)
    assert out.tobytes() == spec.run(x, plan, threads=1).tobytes()


@pytest.mark.parametrize("geometry", [dict(window=2), dict(window=3, stride=1, padding=1),
                                      dict(window=5, stride=1, padding=2), dict(output_size=7),
                                      dict(output_size=(5, 9)), dict(global_pool=True)])
@pytest.mark.parametrize("mode", ["max", "sum", "avg"])
def test_a_fortran_ordered_input_pools_to_the_c_ordered_bits(monkeypatch, geometry, mode):
    """Split along its last axis first (window pooling) or copied band by band into C order
    (adaptive pooling, global sums): the same bits as the same values in C order."""
    monkeypatch.setattr(execute, "BAND_BYTES", 6000)
    monkeypatch.setattr(plans.GlobalPlan, "BAND_FLOOR", 6000)
    x = np.random.default_rng(4).standard_normal((5, 61, 90)).astype(np.float32)
    want = pool(x, mode, threads=1, **geometry)
    for threads in (1, 3):
        assert pool(np.asfortranarray(x), mode, threads=threads, **geometry).tobytes() == \
            want.tobytes()
    # as a memory-mapped Fortran file is streamed by global and adaptive pooling: in slices
    # spread over it, and in any other strided view
    fortran = np.asfortranarray(x)
    parts = [pool(fortran[c:c + 2], mode, threads=2, **geometry) for c in range(0, 5, 2)]
    assert np.concatenate(parts).tobytes() == want.tobytes()
    wide = np.zeros((5, 61, 180), np.float32)
    wide[:, :, ::2] = x
    assert pool(wide[:, :, ::2], mode, threads=2, **geometry).tobytes() == want.tobytes()


def test_a_slice_pools_to_the_same_bits_as_the_whole():
    """Bands (and streamed .npy files) are slices: their sums must add in the same order."""
    x = np.random.default_rng(0).standard_normal((3, 37, 41)).astype(np.float32)
    for mode in ("avg", "sum", "lp"):
        assert np.array_equal(pool(x[:, :6], mode, window=2), pool(x, mode, window=2)[:, :3])


@pytest.mark.parametrize("shape,layout", [((37, 29, 3), "HWC"), ((3, 37, 29), "CHW")])
@pytest.mark.parametrize("window,padding", [(2, 0), (3, 1), (5, 2)])
def test_rounded_average_is_floor_of_mean_plus_half(monkeypatch, shape, layout, window, padding):
    monkeypatch.setattr(execute, "BAND_BYTES", 500)
    x = np.random.default_rng(3).integers(0, 256, size=shape).astype(np.uint8)
    exact = pool(x, "avg", window=window, padding=padding, layout=layout)
    rounded = pool(x, "avg", window=window, padding=padding, layout=layout, rounded=True)
    assert rounded.dtype == np.uint8
    assert np.array_equal(rounded, np.floor(exact + 0.5).astype(np.uint8))


def test_rounded_average_equals_pillow_reduce():
    from PIL import Image

    x = np.random.default_rng(4).integers(0, 256, size=(64, 48, 3)).astype(np.uint8)
    reduced = np.asarray(Image.fromarray(x).reduce(2))
    assert np.array_equal(pool(x, "avg", layout="HWC", rounded=True), reduced)


def test_wide_windows_are_exact_on_realistic_sizes():
    x = np.random.default_rng(5).standard_normal((3, 70, 65)).astype(np.float32)
    for mode in ("max", "min"):
        got = pool(x, mode, window=13, stride=1, padding=6)
        want = ref_pool(x, mode, (13, 13), (1, 1), ((6, 6), (6, 6)), (1, 1))
        assert np.array_equal(got, want)
    got = pool(x, "avg", window=13, stride=1, padding=6)
    want = ref_pool(x, "avg", (13, 13), (1, 1), ((6, 6), (6, 6)), (1, 1))
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("shape,layout", [((3, 40, 70), "CHW"), ((40, 37, 3), "HWC")])
@pytest.mark.parametrize("mode", ["max", "avg", "sum"])
def test_bands_staged_into_cache_give_the_same_bits(monkeypatch, shape, layout, mode):
    x = np.random.default_rng(9).standard_normal(shape).astype(np.float32)
    kwargs = dict(window=3, stride=2, padding=1, layout=layout)
    plain = pool(x, mode, **kwargs)
    monkeypatch.setattr(execute, "STAGE_MIN_BYTES", 0)
    monkeypatch.setattr(execute, "BAND_BYTES", 1000)
    assert pool(x, mode, **kwargs).tobytes() == plain.tobytes()
    combine = np.maximum if mode == "max" else np.add
    assert make_spec(mode, **kwargs).plan(x.shape).stages_bands(x.itemsize, combine)  # it ran


def test_released_scratch_is_reused_within_a_band_and_foreign_arrays_are_left_alone(
        monkeypatch):
    monkeypatch.setattr(scratch._POOL, "free", [])  # none kept from earlier tests' bands
    mine = np.zeros(4096, np.uint8)
    with scratch.band():
        first = scratch.empty((100,), np.float32)
        scratch.release(first[10:].reshape(9, 10))  # found through the view's bases
        scratch.release(mine, mine[8:])  # not scratch: ignored, never handed out
        again = scratch.empty((50,), np.float64)
        assert np.shares_memory(first, again)
        other = scratch.empty((100,), np.float32)  # first's buffer is taken: a new one
        assert not np.shares_memory(again, other)
        big = scratch.empty((4000,), np.uint8)
        assert not np.shares_memory(big, mine)
    assert (mine == 0).all()


def test_buffers_too_large_to_keep_are_dropped_when_the_band_ends(monkeypatch):
    monkeypatch.setattr(scratch._POOL, "free", [])
    monkeypatch.setattr(scratch, "KEEP_BYTES", 1000)
    with scratch.band():
        small, large = scratch.empty((100,), np.uint8), scratch.empty((2000,), np.uint8)
        scratch.release(small, large)  # both reusable within the band
        assert len(scratch._POOL.free) == 2
    assert [b.size for b in scratch._POOL.free] == [100]
    with scratch.band():
        again = scratch.empty((50,), np.uint8)
        scratch.release(again)
    assert [b.size for b in scratch._POOL.free] == [100]  # the same buffer, back in place


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # fork with threads, Python 3.12+
def test_a_forked_child_pools_with_threads_of_its_own():
    """The kept worker pool's threads do not exist in a child made by fork."""
    x = np.random.default_rng(0).standard_normal((16, 256, 256), dtype=np.float32)
    assert len(make_spec("max", 2).plan(x.shape).split(execute.BAND_BYTES, 4)) > 1
    want = pool(x, "max", 2, threads=2)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child's result is its exit status
        signal.alarm(20)  # a deadlock ends the child instead of the suite
        os._exit(0 if np.array_equal(pool(x, "max", 2, threads=2), want) else 3)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_helper_threads_error_reaches_the_caller_and_the_pool_still_works():
    x = np.random.default_rng(2).standard_normal((12, 64, 64), dtype=np.float32)
    plan = make_spec("max", 2).plan(x.shape)
    out = np.empty(plan.out_shape, x.dtype)

    def pool_band(part, band, target):
        if threading.current_thread().name.startswith("poolcli"):  # a helper's band
            raise ValueError("band failed")
        time.sleep(0.05)  # the caller's band: the helpers meet theirs meanwhile
        band.plan.reduce(part, np.maximum, x.dtype, out=target)

    with pytest.raises(ValueError, match="band failed"):
        execute.run_bands(pool_band, x, plan, out, 3, np.maximum, band_bytes=64 * 64 * 4)
    assert np.array_equal(pool(x, "max", 2, threads=3), pool(x, "max", 2, threads=1))


def test_concurrent_calls_do_not_wait_for_each_others_bands():
    """A call's helper queued behind another call's work is cancelled, not waited for."""
    slow = np.zeros((12, 64, 64), np.float32)
    plan = make_spec("max", 2).plan(slow.shape)
    started = threading.Event()

    def slow_band(part, band, target):
        started.set()
        time.sleep(0.05)

    other = threading.Thread(target=execute.run_bands, args=(
        slow_band, slow, plan, np.empty(plan.out_shape, slow.dtype), 2, np.maximum, 64 * 64 * 4))
    other.start()
    started.wait()
    begin = time.perf_counter()
    execute.run_bands(lambda *a: None, slow, plan, np.empty(plan.out_shape, slow.dtype), 2,
                      np.maximum, 64 * 64 * 4)
    waited = time.perf_counter() - begin
    other.join()
    assert waited < 0.15  # the other call's 12 bands of 50 ms take 0.3 s or more


def test_nested_calls_from_a_helper_thread_finish():
    x = np.zeros((12, 64, 64), np.float32)
    plan = make_spec("max", 2).plan(x.shape)
    inner = []

    def pool_band(part, band, target):
        inner.append(execute.run_bands(lambda *a: None, x, plan, np.empty(plan.out_shape, x.dtype),
                                       2, np.maximum, 64 * 64 * 4))

    outer = threading.Thread(target=execute.run_bands, daemon=True, args=(
        pool_band, x, plan, np.empty(plan.out_shape, x.dtype), 2, np.maximum, 64 * 64 * 4))
    outer.start()
    outer.join(20)  # a deadlock fails the test instead of hanging the suite
    assert not outer.is_alive() and len(inner) == 12


def test_sums_over_windows_with_gaps_keep_their_bits_whatever_the_bands(monkeypatch):
    """Inner bands of an axis that tiles do not tile; both must add in the same order."""
    x = np.random.default_rng(3).standard_normal(100_000, dtype=np.float32)
    whole = pool(x, "sum", 4, stride=5, threads=1)
    monkeypatch.setattr(execute, "BAND_BYTES", 4000)
    assert np.array_equal(pool(x, "sum", 4, stride=5, threads=2), whole)


def test_empty_inputs_give_empty_outputs():
    for shape, layout in (((50, 50, 0), "HWC"), ((0, 8, 8), "CHW"), ((49, 49, 0), "HWC")):
        for mode in ("max", "sum", "avg"):
            got = pool(np.zeros(shape, np.float32), mode, 2, layout=layout,
                       padding=((1, 0), (1, 0)))
            assert got.size == 0


def test_after_a_band_fails_nothing_writes_the_output_any_more():
    x = np.zeros((12, 64, 64), np.float32)
    plan = make_spec("max", 2).plan(x.shape)
    out = np.zeros(plan.out_shape, x.dtype)
    bands = plan.split(64 * 64 * 4, 4)

    def pool_band(part, band, target):
        if band is bands[0]:
            raise ValueError("band failed")
        time.sleep(0.02)
        target[...] = 1

    with pytest.raises(ValueError):
        execute.run_bands(pool_band, x, plan, out, 3, np.maximum, band_bytes=64 * 64 * 4)
    written = out.copy()
    time.sleep(0.1)
    assert np.array_equal(out, written)
    # the caller failed at once; each helper finished the band it had, then found none left
    assert (written == 1).all(axis=(1, 2)).sum() <= 2


def test_a_thread_keeps_at_most_keep_total_bytes_of_scratch(monkeypatch):
    monkeypatch.setattr(scratch, "KEEP_TOTAL", 10_000)
    for size in (3000, 4000, 5000, 6000):
        with scratch.band():
            scratch.empty((size,), np.uint8)
            scratch.empty((size,), np.uint8)
    kept = [b.size for b in scratch._POOL.free]
    assert sum(kept) <= 10_000 and max(kept) == 6000
    with scratch.band():  # the pool stays usable
        assert scratch.empty((6000,), np.uint8).size == 6000


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("mode", ["sum", "avg", "lp"])
@pytest.mark.parametrize("layout,shape", [("CHW", (5, 32, 64)), ("NCHW", (2, 3, 64, 48)),
                                          ("W", (3072,)), ("HW", (96, 32))])
def test_global_float_sums_in_rows_match_reference_whatever_the_bands(
        monkeypatch, dtype, mode, layout, shape):
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(shape) * 100 + 7).astype(dtype)
    spatial = tuple(i for i, c in enumerate(layout) if c in "HW")
    assert math.prod(shape[i] for i in spatial) % plans.SUM_ROW == 0  # the row sums' path
    rows = []
    original = plans._row_sums
    monkeypatch.setattr(plans, "_row_sums", lambda a: rows.append(a.shape) or original(a))
    want = ref_global(x, mode, layout=layout)
    results = []
    for budget in (1000, 1 << 20):
        monkeypatch.setattr(execute, "BAND_BYTES", budget)
        monkeypatch.setattr(plans.GlobalPlan, "BAND_FLOOR", budget)
        for threads in (1, 3):
            results.append(pool(x, mode, global_pool=True, layout=layout, threads=threads))
    assert rows
    for got in results:
        np.testing.assert_allclose(got, want, rtol=1e-6 if dtype == np.float32 else 1e-12)
        assert got.tobytes() == results[0].tobytes()


def test_global_float_sums_in_rows_keep_nan_and_inf():
    x = np.ones((3, 32, 32), np.float32)
    x[0, 5, 7], x[1, 0, 0], x[2, 1, 1], x[2, 2, 2] = np.nan, np.inf, np.inf, -np.inf
    got = pool(x, "sum", global_pool=True).reshape(-1)
    assert np.isnan(got[0]) and got[1] == np.inf and np.isnan(got[2])


CHANNELS_LAST_CASES = [("HWC", (37, 41, 3)),  # RGB: rows of 3 cells, a few left over
                       ("HWC", (3, 2, 5)),  # fewer pixels than one folded row
                       ("NHWC", (3, 20, 17, 4)),  # bands of N
                       ("NDHWC", (2, 3, 11, 7, 6)),
                       ("HWC", (5, 3, 40)),  # a pixel wider than a folded row
                       ("HCW", (9, 2, 8))]  # spatial axes apart: NumPy's reduction


@pytest.mark.parametrize("mode,dtype,ignore_nan", [
    ("max", np.float32, False), ("max", np.uint8, False), ("min", np.float64, True),
    ("max", np.bool_, False), ("sum", np.float32, False), ("sum", np.int32, False),
    ("sum", np.bool_, False), ("avg", np.float16, False), ("avg", np.float32, True),
    ("avg", np.float64, False), ("avg", np.uint8, False), ("lp", np.float32, False)])
@pytest.mark.parametrize("layout,shape", CHANNELS_LAST_CASES)
def test_global_channels_last_matches_reference_whatever_the_bands(
        monkeypatch, mode, dtype, ignore_nan, layout, shape):
    """Channels-last global pooling folds rows of pixels into long rows, and sums floats
    pairwise in leaves and chunks: small folds, leaves and chunks here, so that every
    remainder (rows left over from a fold, a part leaf, a part chunk, an odd halving) shows."""
    rng = np.random.default_rng(5)
    if np.dtype(dtype).kind == "f":
        x = (rng.standard_normal(shape) * 50 + 3).astype(dtype)
        x[rng.random(shape) < 0.05] = np.nan if ignore_nan else 0
    else:
        x = rng.integers(0, 2 if dtype == np.bool_ else 200, shape).astype(dtype)
    monkeypatch.setattr(plans, "SUM_ROW", 16)
    monkeypatch.setattr(plans, "COLUMN_LEAF", 3)
    monkeypatch.setattr(plans, "COLUMN_CHUNK", 7)
    folds = []
    original = plans._column_reduce
    monkeypatch.setattr(plans, "_column_reduce", lambda a, *rest: folds.append(a.shape)
                        or original(a, *rest))
    want = ref_global(x, mode, layout=layout, ignore_nan=ignore_nan)
    results = []
    for budget in (300, 1 << 20):
        monkeypatch.setattr(execute, "BAND_BYTES", budget)
        monkeypatch.setattr(plans.GlobalPlan, "BAND_FLOOR", budget)
        for threads in (1, 3):
            results.append(pool(x, mode, global_pool=True, layout=layout, threads=threads,
                                ignore_nan=ignore_nan))
    assert bool(folds) == (layout != "HCW")
    for got in results:
        assert got.dtype == want.dtype and got.shape == want.shape
        if mode in ("max", "min") or want.dtype.kind in "biu":
            assert np.array_equal(got, want, equal_nan=want.dtype.kind == "f")
        else:
            rtol = {np.float16: 2e-3, np.float32: 2e-6}.get(dtype, 1e-12)
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * 50)
        assert got.tobytes() == results[0].tobytes()


@pytest.mark.parametrize("mode", ["max", "avg", "sum"])
@pytest.mark.parametrize("pairwise_from", [16384, 16])
def test_global_pooling_of_wide_pixels_folds_only_float_sums_of_many_cells(
        monkeypatch, mode, pairwise_from):
    """Pixels of more than FOLD_MAX_PIXEL cells (CNN feature maps) are reduced by NumPy, whose
    loops are long there; float sums go pairwise from COLUMN_PAIRWISE_CELLS cells on."""
    x = np.random.default_rng(1).standard_normal((2, 7, 5, 300)).astype(np.float32)
    monkeypatch.setattr(plans, "COLUMN_PAIRWISE_CELLS", pairwise_from)
    folds = []
    original = plans._column_reduce
    monkeypatch.setattr(plans, "_column_reduce", lambda a, *rest: folds.append(a.shape)
                        or original(a, *rest))
    got = pool(x, mode, global_pool=True, layout="NHWC")
    assert bool(folds) == (mode != "max" and pairwise_from == 16)
    want = ref_global(x, mode, layout="NHWC")
    if mode == "max":
        assert np.array_equal(got, want)
    else:
        np.testing.assert_allclose(got, want, rtol=2e-6, atol=1e-4)


@pytest.mark.parametrize("layout,shape", [("HWC", (512, 512, 4)), ("NHWC", (2, 300, 700, 3))])
def test_global_float32_sums_of_channels_last_are_pairwise_accurate(layout, shape):
    """NumPy's reduction over H and W of HWC keeps one running float32 sum per channel:
    off by 9e-6 relative for a 512x512 RGBA mean of values in [0, 1); CHW's row sums are
    within 1e-7."""
    x = np.random.default_rng(2).random(shape, dtype=np.float32)
    want = x.astype(np.float64).mean(axis=tuple(i for i, c in enumerate(layout) if c in "HW"))
    got = pool(x, "avg", global_pool=True, layout=layout)
    assert np.abs(got.reshape(want.shape) / want - 1).max() < 5e-7


@pytest.mark.parametrize("kwargs", [
    dict(window=3), dict(window=3, stride=1, padding=1), dict(window=9, stride=1),
    dict(window=5, stride=5), dict(window=3, dilation=2), dict(window=2, stride=3),
    dict(output_size=2), dict(global_pool=True)])
@pytest.mark.parametrize("layout", ["W", "HWC"])
def test_uint64_sums_are_exact_integers_above_float64_precision(kwargs, layout):
    """int64 + uint64 runs in float64 unless told otherwise: every pass adds in int64."""
    values = [2**62, 1, 1, 3, 5, 7, 9, 11, 13, 15, 17, 2**61 + 1]
    x = np.array(values, np.uint64)
    geometry = {"window": 2, "stride": None, "padding": 0, "dilation": 1, **kwargs}
    geometry["stride"] = geometry["stride"] or geometry["window"]
    if layout == "HWC":  # the W of HWC: tile passes (by pixel) and flat passes; H untouched
        x = np.stack([x, x[::-1]], axis=-1)[None]
        geometry = {name: (1 if name != "padding" else 0, value)
                    for name, value in geometry.items()}
    per_axis = {name: value if isinstance(value, tuple) else (value,)
                for name, value in geometry.items()}
    if "global_pool" in kwargs:
        got, want = pool(x, "sum", layout=layout, global_pool=True), ref_global(x, "sum", layout)
    elif "output_size" in kwargs:
        got = pool(x, "sum", layout=layout, output_size=per_axis["output_size"])
        want = ref_adaptive(x, "sum", per_axis["output_size"], layout=layout)
    else:
        got = pool(x, "sum", layout=layout, **{k: v for k, v in geometry.items()})
        want = ref_pool(x, "sum", per_axis["window"], per_axis["stride"],
                        tuple((p, p) for p in per_axis["padding"]), per_axis["dilation"],
                        layout=layout)
    assert got.dtype == np.int64
    assert got.tolist() == want.tolist()
