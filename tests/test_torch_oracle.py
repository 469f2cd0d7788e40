"""Compare ``pool_cli.pool`` with PyTorch, the reference the SPEC names.

Skipped when torch is not installed (normal CI).  To run it locally:

    python3 -m venv /work/torchvenv
    /work/torchvenv/bin/pip install torch==2.13.0 numpy hypothesis pytest
    PYTHONPATH=/work/main /work/torchvenv/bin/pytest tests/test_torch_oracle.py -p no:cacheprovider

Where PyTorch deliberately differs from the contract, the generated cases avoid it:
- torch accepts a window larger than the padded input under ceil_mode and returns -inf for a
  max window that covers no input cell; the SPEC makes both a PoolError (tested in test_core);
- torch requires padding <= kernel/2 and has no dilation for avg pooling; avg_pool3d also refuses
  a kernel larger than the unpadded input;
- lp_pool2d uses x**p (not |x|**p), has no padding, and rescales an avg_pool whose divisor shrinks
  under ceil_mode, so it is compared only with p=2, non-negative data and ceil_mode off.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch", exc_type=ImportError)
F = torch.nn.functional

from pool_cli import pool  # noqa: E402
from reference import RefGeometryError, out_len  # noqa: E402

torch.set_num_threads(1)

LAYOUT = {1: "NCW", 2: "NCHW", 3: "NCDHW"}
MAX = {1: F.max_pool1d, 2: F.max_pool2d, 3: F.max_pool3d}
AVG = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}
AMAX = {1: F.adaptive_max_pool1d, 2: F.adaptive_max_pool2d, 3: F.adaptive_max_pool3d}
AAVG = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}


def _covers_input(L, k, s, p, d, ceil_mode):
    """Every window holds at least one input cell (else the SPEC wants a PoolError)."""
    try:
        n = out_len(L, k, s, p, p, d, ceil_mode)
    except RefGeometryError:
        return False
    return all(any(0 <= o * s - p + j * d < L for j in range(k)) for o in range(n))


@st.composite
def geometries(draw, nsp, dilation=True, padding=True):
    ks, ss, ps, ds, Ls = [], [], [], [], []
    for _ in range(nsp):
        k = draw(st.integers(1, 3 if nsp == 3 else 4))
        s = draw(st.integers(1, 3))
        p = draw(st.integers(0, k // 2)) if padding else 0
        d = draw(st.integers(1, 3 if nsp < 3 else 2)) if dilation else 1
        lo = max(1, d * (k - 1) + 1 - 2 * p)
        L = draw(st.integers(lo, lo + (4 if nsp == 3 else 7)))
        ks.append(k), ss.append(s), ps.append(p), ds.append(d), Ls.append(L)
    return ks, ss, ps, ds, Ls


def _data(draw, Ls, dtype, nonneg=False):
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 3)), *Ls)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    x = rng.standard_normal(shape) * 5
    if nonneg:
        x = np.abs(x)
    return x.astype(dtype)


def _close(got, exp, dtype, x):
    assert got.dtype == np.dtype(dtype)
    assert got.shape == exp.shape, (got.shape, exp.shape)
    rtol = 1e-5 if dtype == "float32" else 1e-10
    atol = rtol * max(1.0, float(np.abs(x).max()))
    np.testing.assert_allclose(got, exp, rtol=rtol, atol=atol)


@pytest.mark.parametrize("nsp", [1, 2, 3])
@settings(max_examples=200, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["float32", "float64"]), ceil_mode=st.booleans())
def test_max_pool_matches_torch(nsp, data, dtype, ceil_mode):
    ks, ss, ps, ds, Ls = data.draw(geometries(nsp))
    if not all(_covers_input(L, k, s, p, d, ceil_mode) for L, k, s, p, d in zip(Ls, ks, ss, ps, ds)):
        return
    x = _data(data.draw, Ls, dtype)
    exp = MAX[nsp](torch.from_numpy(x), ks, ss, ps, ds, ceil_mode=ceil_mode).numpy()
    got = pool(x, "max", window=ks, stride=ss, padding=ps, dilation=ds, ceil_mode=ceil_mode,
               layout=LAYOUT[nsp])
    assert got.dtype == x.dtype
    assert np.array_equal(got, exp)
    got_min = pool(-x, "min", window=ks, stride=ss, padding=ps, dilation=ds, ceil_mode=ceil_mode,
                   layout=LAYOUT[nsp])
    assert np.array_equal(got_min, -exp)


@pytest.mark.parametrize("nsp", [1, 2, 3])
@settings(max_examples=200, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["float32", "float64"]), ceil_mode=st.booleans(),
       cip=st.booleans())
def test_avg_pool_matches_torch(nsp, data, dtype, ceil_mode, cip):
    ks, ss, ps, ds, Ls = data.draw(geometries(nsp, dilation=False))
    if not all(_covers_input(L, k, s, p, 1, ceil_mode) for L, k, s, p in zip(Ls, ks, ss, ps)):
        return
    if nsp == 3 and any(L < k for L, k in zip(Ls, ks)):
        return  # avg_pool3d refuses a kernel larger than the unpadded input; the SPEC allows it
    x = _data(data.draw, Ls, dtype)
    exp = AVG[nsp](torch.from_numpy(x), ks, ss, ps, ceil_mode=ceil_mode, count_include_pad=cip).numpy()
    got = pool(x, "avg", window=ks, stride=ss, padding=ps, ceil_mode=ceil_mode,
               count_include_pad=cip, layout=LAYOUT[nsp])
    _close(got, exp, dtype, x)
    # sum = avg * divisor; with cip off and no padding the divisor is k**n inside the input
    if not ceil_mode and not any(ps):
        got_sum = pool(x, "sum", window=ks, stride=ss, layout=LAYOUT[nsp])
        _close(got_sum, exp * float(np.prod(ks)), dtype, x * float(np.prod(ks)))


@settings(max_examples=200, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["float32", "float64"]))
def test_lp_pool2d_matches_torch(data, dtype):
    ks, ss, _, _, Ls = data.draw(geometries(2, dilation=False, padding=False))
    x = _data(data.draw, Ls, dtype, nonneg=True)
    exp = F.lp_pool2d(torch.from_numpy(x), 2, ks, ss).numpy()
    got = pool(x, "lp", window=ks, stride=ss, power=2)
    _close(got, exp, dtype, x)
    got_default = pool(x, "lp", window=ks, stride=ss)
    _close(got_default, exp, dtype, x)


@pytest.mark.parametrize("nsp", [1, 2, 3])
@settings(max_examples=150, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["float32", "float64"]))
def test_adaptive_matches_torch(nsp, data, dtype):
    Ls = [data.draw(st.integers(1, 6 if nsp == 3 else 12)) for _ in range(nsp)]
    out = [data.draw(st.integers(1, 2 * L + 1)) for L in Ls]  # larger than L too
    x = _data(data.draw, Ls, dtype)
    t = torch.from_numpy(x)
    exp_max = AMAX[nsp](t, out).numpy()
    exp_avg = AAVG[nsp](t, out).numpy()
    got_max = pool(x, "max", output_size=out, layout=LAYOUT[nsp])
    assert got_max.dtype == x.dtype and np.array_equal(got_max, exp_max)
    _close(pool(x, "avg", output_size=out, layout=LAYOUT[nsp]), exp_avg, dtype, x)


@pytest.mark.parametrize("nsp", [1, 2, 3])
@settings(max_examples=30, deadline=None)
@given(data=st.data(), dtype=st.sampled_from(["float32", "float64"]))
def test_global_matches_torch(nsp, data, dtype):
    Ls = [data.draw(st.integers(1, 5 if nsp == 3 else 10)) for _ in range(nsp)]
    x = _data(data.draw, Ls, dtype)
    t = torch.from_numpy(x)
    ones = [1] * nsp
    assert np.array_equal(pool(x, "max", global_pool=True, layout=LAYOUT[nsp]), AMAX[nsp](t, ones).numpy())
    _close(pool(x, "avg", global_pool=True, layout=LAYOUT[nsp]), AAVG[nsp](t, ones).numpy(), dtype, x)


@settings(max_examples=150, deadline=None)
@given(data=st.data(), ceil_mode=st.booleans())
def test_channels_last_matches_torch(data, ceil_mode):
    """NHWC / HWC layouts pool the same cells as torch on the NCHW transpose."""
    ks, ss, ps, ds, Ls = data.draw(geometries(2))
    if not all(_covers_input(L, k, s, p, d, ceil_mode) for L, k, s, p, d in zip(Ls, ks, ss, ps, ds)):
        return
    x = _data(data.draw, Ls, "float64")
    exp = F.max_pool2d(torch.from_numpy(x), ks, ss, ps, ds, ceil_mode=ceil_mode).numpy()
    nhwc = np.moveaxis(x, 1, -1)
    got = pool(nhwc, "max", window=ks, stride=ss, padding=ps, dilation=ds, ceil_mode=ceil_mode,
               layout="NHWC")
    assert np.array_equal(np.moveaxis(got, -1, 1), exp)
    got = pool(nhwc[0], "max", window=ks, stride=ss, padding=ps, dilation=ds, ceil_mode=ceil_mode,
               layout="HWC")
    assert np.array_equal(np.moveaxis(got, -1, 0), exp[0])
