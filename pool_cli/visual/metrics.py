"""How faithful is a pooled array? Upscaling back to the input's size, PSNR, SSIM, energy kept.

Everything is computed in float64 on the input's own scale (no conversion to [0, 1]).

Upscaling (:func:`upscale_nearest`)
    Nearest neighbour on the pooling grid: every input cell takes the value of the output
    whose window covers it, so pooled blocks stay visible at the input's scale. Along each
    spatial axis, input index ``i`` goes to output ``o = floor((i + pad_begin - (span - 1) / 2)
    / stride + 1/2)`` clipped to ``[0, out - 1]``: the window whose centre is nearest to ``i``
    (ties to the later window), where ``span = dilation * (window - 1) + 1``. When the stride
    equals the window (no dilation) this is exactly ``floor((i + pad_begin) / stride)``, the
    block holding ``i``, i.e. ``np.repeat`` by the stride; cells past the last window (a
    ``valid`` remainder) repeat the last output. For overlapping windows each cell takes the
    window centred on it; for gaps (stride > span) the nearest window. Adaptive pooling maps
    ``i`` to ``floor(i * out / L)`` (the first window holding ``i``), global pooling to 0.

PSNR (:func:`psnr`)
    ``10 * log10(L**2 / MSE)`` with the MSE over every element (all channels together, which
    is the mean of the per-channel MSEs); ``inf`` when the arrays are equal.

SSIM (:func:`ssim`)
    Wang, Bovik, Sheikh and Simoncelli, "Image quality assessment: from error visibility to
    structural similarity", IEEE TIP 13(4), 2004: Gaussian window 11 taps per axis,
    sigma 1.5, normalised to sum 1; ``C1 = (0.01 L)**2``, ``C2 = (0.03 L)**2``; local means,
    variances and covariance weighted by the window (no Bessel correction);
    ``SSIM = l * cs`` with luminance ``l = (2 mx my + C1) / (mx**2 + my**2 + C1)`` and
    contrast-structure ``cs = (2 sxy + C2) / (sx**2 + sy**2 + C2)``; the mean over the valid
    region (window entirely inside), computed per 2-D map (every N and C index) and averaged.
    Any number of spatial axes works (the window is separable); an axis shorter than 11 uses
    the longest odd window that fits (same sigma, renormalised).

Data range ``L`` (:func:`default_data_range`)
    255 for uint8, 65535 for uint16 (the dtype's span for int8 and int16, 1 for bool), and
    ``max - min`` of the reference for floats and wider integers (1 when the reference is
    constant; ``inf`` when the span is past float64's range, as from -1e308 to 1e308).

Large values
    PSNR, SSIM and energy kept do not change when the data (and ``L``) are multiplied by one
    number, and multiplying by a power of two is exact. So they are computed on the data
    times the power of two ``s <= 1`` that brings ``L`` (for energy kept, the largest
    magnitude of the reference) below 1: the same results, but squares that stay finite
    where ``L**2`` or a squared error would overflow float64 (values spread beyond about
    1e154). An infinite ``L`` that is the reference's span overflowing is measured on the
    halves of the values. An output that holds ``inf`` where the input is finite scores a
    PSNR of ``-inf``, an SSIM of NaN and an energy kept of 0.

Energy kept (:func:`energy_kept`)
    The share of the input's signal energy about its mean that the upscaled output keeps:
    ``1 - sum((x - u)**2) / sum((x - mean(x))**2)``, means taken per map (per N and C over
    the spatial axes), clipped to [0, 1] (the coefficient of determination R**2). 1 means an
    exact reconstruction; 0 means no better than each map's mean. For average pooling that
    tiles the input exactly it equals ``sum((u - mean)**2) / sum((x - mean)**2)``, the share of
    the variance the block means carry. A constant input gives 1 if reconstructed exactly,
    else 0.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np

from pool_cli.core.geometry import resolve_layout, spatial_axes

__all__ = ["default_data_range", "energy_kept", "gaussian_window", "nearest_indices", "psnr",
           "ssim", "ssim_maps", "ssim_scorer", "upscale_nearest"]

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def default_data_range(x) -> float:
    """The data range ``L`` used by PSNR and SSIM for an input array.

    Examples
    --------
    >>> default_data_range(np.zeros(3, np.uint8)), default_data_range(np.zeros(3, np.uint16))
    (255.0, 65535.0)
    >>> default_data_range(np.array([-0.5, 1.5]))
    2.0
    """
    x = np.asarray(x)
    if x.dtype == np.bool_:
        return 1.0
    if x.dtype.kind in "ui" and x.dtype.itemsize <= 2:
        info = np.iinfo(x.dtype)
        return float(info.max) - float(info.min)
    # floats, and integers too wide for their span to mean anything (a 32-bit image, ids)
    finite = x[np.isfinite(x)] if x.size else x
    if finite.size == 0:
        return 1.0
    span = float(np.max(finite)) - float(np.min(finite))
    return span if span > 0 else 1.0


def nearest_indices(plan, axis_index: int) -> np.ndarray:
    """For one spatial axis of a plan, the output index each input index is shown with.

    ``axis_index`` counts the plan's spatial axes (0 for the first). See the module
    docstring for the rule.

    Examples
    --------
    >>> from pool_cli import make_spec
    >>> nearest_indices(make_spec("max", window=2).plan((5,)), 0).tolist()
    [0, 0, 1, 1, 1]
    >>> nearest_indices(make_spec("max", window=3, stride=1, padding=1).plan((4,)), 0).tolist()
    [0, 1, 2, 3]
    """
    axis = plan.axes[axis_index]
    length = plan.in_shape[axis]
    out = plan.out_shape[axis]
    i = np.arange(length)
    geometry = getattr(plan, "geometry", None)
    if geometry:  # sliding windows
        g = geometry[axis_index]
        centre = (i + g.pad_begin - (g.span - 1) / 2) / g.stride
        index = np.floor(centre + 0.5).astype(np.intp)
    else:  # adaptive (and global, where out == 1)
        index = (i * out) // length
    return np.clip(index, 0, out - 1)


def upscale_nearest(pooled, in_shape, plan=None, layout: str | None = None) -> np.ndarray:
    """Scale a pooled array back up to the input's shape with nearest neighbour.

    Parameters
    ----------
    pooled : array_like
        The pooled output, of shape ``plan.out_shape``.
    in_shape : tuple of int
        The input's shape.
    plan : WindowPlan, AdaptivePlan or GlobalPlan, optional
        ``make_spec(...).plan(in_shape)``: puts each output over the input cells its window
        covers (see the module docstring). Without a plan, input index ``i`` of an axis of
        length ``L`` takes output ``floor(i * out / L)`` (proportional nearest neighbour).
    layout : str, optional
        Only without a plan: axis letters, by default from the number of dimensions.

    Returns
    -------
    numpy.ndarray
        Shape ``in_shape``, dtype of ``pooled``.

    Examples
    --------
    >>> from pool_cli import make_spec, pool
    >>> x = np.arange(20).reshape(4, 5)
    >>> plan = make_spec("max", window=2).plan(x.shape)
    >>> upscale_nearest(pool(x, "max", window=2), x.shape, plan)
    array([[ 6,  6,  8,  8,  8],
           [ 6,  6,  8,  8,  8],
           [16, 16, 18, 18, 18],
           [16, 16, 18, 18, 18]])
    """
    pooled = np.asarray(pooled)
    in_shape = tuple(int(n) for n in in_shape)
    if pooled.ndim != len(in_shape):
        raise ValueError(f"pooled array has {pooled.ndim} axes but the input shape {in_shape} "
                         f"has {len(in_shape)}")
    if plan is not None:
        if tuple(plan.in_shape) != in_shape:
            raise ValueError(f"plan is for shape {tuple(plan.in_shape)}, not {in_shape}")
        if tuple(plan.out_shape) != pooled.shape:
            raise ValueError(f"pooled shape {pooled.shape} differs from the plan's output "
                             f"shape {tuple(plan.out_shape)}")
        maps = {axis: nearest_indices(plan, k) for k, axis in enumerate(plan.axes)}
    else:
        axes = spatial_axes(resolve_layout(layout, len(in_shape)))
        maps = {axis: (np.arange(in_shape[axis]) * pooled.shape[axis]) // in_shape[axis]
                for axis in axes}
    for axis, n in enumerate(in_shape):
        if axis not in maps and pooled.shape[axis] != n:
            raise ValueError(f"pooled shape {pooled.shape} differs from {in_shape} on "
                             f"non-spatial axis {axis}")
    out = pooled
    for axis, index in maps.items():
        out = np.take(out, index, axis=axis)
    return out


def psnr(reference, test, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(L**2 / MSE)``, ``inf`` if equal.

    Parameters
    ----------
    reference, test : array_like
        Same shape; compared in float64.
    data_range : float, optional
        ``L``; by default :func:`default_data_range` of ``reference``.

    Examples
    --------
    >>> round(psnr(np.array([0, 0, 0, 0], np.uint8), np.array([0, 0, 0, 255], np.uint8)), 4)
    6.0206
    >>> psnr(np.ones(4), np.ones(4))
    inf
    """
    ref, tst = _pair(reference, test)
    L = default_data_range(reference) if data_range is None else float(data_range)
    L, s = _scaled_range(ref, L)
    mse = float(np.mean(np.square(_scaled(ref, s) - _scaled(tst, s))))
    if np.isnan(mse):
        return float("nan")
    if mse == 0:
        return float("inf")
    if math.isinf(mse):  # inf in the test where the reference is finite: nothing is right
        return -math.inf
    return float(10 * np.log10(L * L / mse))


def gaussian_window(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    """The 1-D Gaussian weights of SSIM: ``size`` taps centred on 0, summing to 1.

    Examples
    --------
    >>> w = gaussian_window()
    >>> w.size, round(float(w.sum()), 12), int(w.argmax())
    (11, 1.0, 5)
    """
    k = np.arange(size) - (size - 1) / 2
    w = np.exp(-k * k / (2 * sigma * sigma))
    return w / w.sum()


def _filter_valid(a: np.ndarray, axes: tuple[int, ...], windows: list[np.ndarray]) -> np.ndarray:
    """Separable weighted sum over each window position lying entirely inside ``a``."""
    for axis, w in zip(axes, windows):
        n = a.shape[axis] - w.size + 1
        acc = None
        lead = (slice(None),) * axis
        for j, weight in enumerate(w):
            part = a[lead + (slice(j, j + n),)]
            if acc is None:
                acc = weight * part
            else:
                acc += weight * part
        a = acc
    return a


def _ssim_windows(shape, axes) -> list[np.ndarray]:
    windows = []
    for axis in axes:
        size = min(SSIM_WINDOW, shape[axis])
        size -= 1 - size % 2  # odd
        windows.append(gaussian_window(max(size, 1), SSIM_SIGMA))
    return windows


def ssim_maps(reference, test, data_range: float | None = None,
              axes: tuple[int, ...] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The luminance and contrast-structure maps of SSIM over the valid region.

    Parameters
    ----------
    reference, test : array_like
        Same shape, compared in float64.
    data_range : float, optional
        ``L``; by default :func:`default_data_range` of ``reference``.
    axes : tuple of int, optional
        The axes the window slides over (default: all); others are kept as they are.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray)
        ``l = (2 mx my + C1) / (mx**2 + my**2 + C1)`` and
        ``cs = (2 sxy + C2) / (sx**2 + sy**2 + C2)``; SSIM is their product.

    Examples
    --------
    >>> x = np.full((11, 11), 100.0)
    >>> l, cs = ssim_maps(x, x + 10, data_range=255)
    >>> l.shape, bool(np.allclose(cs, 1)), round(float(l[0, 0]), 6)
    ((1, 1), True, 0.995476)
    """
    axes = tuple(range(np.ndim(reference))) if axes is None else tuple(axes)
    return _SsimReference(reference, data_range, axes).maps(test)


def ssim(reference, test, data_range: float | None = None, layout: str | None = None) -> float:
    """Mean structural similarity (Wang et al. 2004), averaged over channels.

    Parameters
    ----------
    reference, test : array_like
        Same shape. Compared in float64 on their own scale.
    data_range : float, optional
        ``L``; by default :func:`default_data_range` of ``reference``.
    layout : str, optional
        Axis letters (``'HW'``, ``'HWC'``, ``'CHW'``, ``'NCHW'``, ...), by default from the
        number of dimensions (2 ``HW``, 3 ``CHW``, 4 ``NCHW``). The window slides over D, H
        and W; each N and C index is scored on its own and the scores averaged.

    Returns
    -------
    float
        In [-1, 1]; 1 for identical inputs.

    Examples
    --------
    >>> x = np.arange(256.0).reshape(16, 16)
    >>> ssim(x, x)
    1.0
    >>> ssim(x, x + 8) == ssim(x + 8, x) < 1
    True
    """
    return ssim_scorer(reference, data_range, layout)(test)


def ssim_scorer(reference, data_range: float | None = None,
                layout: str | None = None) -> Callable[[np.ndarray], float]:
    """:func:`ssim` against one reference for many tests: the reference's local means and
    variances are filtered once, not once per test (the same result, bit for bit).

    Examples
    --------
    >>> x = np.arange(256.0).reshape(16, 16)
    >>> score = ssim_scorer(x, 255)
    >>> score(x + 8) == ssim(x, x + 8, 255), score(x)
    (True, 1.0)
    """
    axes = spatial_axes(resolve_layout(layout, np.ndim(reference)))
    prepared = _SsimReference(reference, data_range, axes)

    def score(test) -> float:
        lum, cs = prepared.maps(test)
        return float(np.mean(np.mean(lum * cs, axis=axes)))

    return score


class _SsimReference:
    """A reference filtered once: its valid-region local means and variances."""

    def __init__(self, reference, data_range: float | None, axes: tuple[int, ...]):
        x = np.asarray(reference, dtype=np.float64)
        L = default_data_range(reference) if data_range is None else float(data_range)
        L, self.scale = _scaled_range(x, L)  # L below 1: C1, C2 and the squares stay finite
        self.x = _scaled(x, self.scale)
        self.c1, self.c2 = (SSIM_K1 * L) ** 2, (SSIM_K2 * L) ** 2
        self.axes, self.windows = axes, _ssim_windows(self.x.shape, axes)
        self.mx = self._filter(self.x)
        self.sxx = self._filter(self.x * self.x) - self.mx * self.mx

    def _filter(self, a: np.ndarray) -> np.ndarray:
        return _filter_valid(a, self.axes, self.windows)

    def maps(self, test) -> tuple[np.ndarray, np.ndarray]:
        x, y = _pair(self.x, test)
        y = _scaled(y, self.scale)
        mx, my = self.mx, self._filter(y)
        syy = self._filter(y * y) - my * my
        sxy = self._filter(x * y) - mx * my
        with np.errstate(invalid="ignore", divide="ignore"):
            lum = (2 * mx * my + self.c1) / (mx * mx + my * my + self.c1)
            cs = (2 * sxy + self.c2) / (self.sxx + syy + self.c2)
        return lum, cs


def energy_kept(reference, test, layout: str | None = None) -> float:
    """Share of the input's energy about its mean kept by ``test``: clipped R**2.

    ``1 - sum((x - u)**2) / sum((x - mean(x))**2)`` with the mean per map (per N and C, over
    the spatial axes of ``layout``), clipped to [0, 1].

    Examples
    --------
    >>> x = np.array([[0.0, 2.0], [4.0, 6.0]])
    >>> energy_kept(x, x), energy_kept(x, np.full_like(x, 3.0))
    (1.0, 0.0)
    >>> energy_kept(x, np.array([[1.0, 1.0], [5.0, 5.0]]))
    0.8
    """
    x, u = _pair(reference, test)
    axes = spatial_axes(resolve_layout(layout, x.ndim))
    finite = np.abs(x[np.isfinite(x)])
    s = _scale_below_one(float(np.max(finite)) if finite.size else 0.0)
    x, u = _scaled(x, s), _scaled(u, s)  # |x| below 1: sums of squares stay finite
    residual = float(np.sum(np.square(x - u)))
    signal = float(np.sum(np.square(x - np.mean(x, axis=axes, keepdims=True))))
    if np.isnan(residual) or np.isnan(signal):
        return float("nan")
    if signal == 0:
        return 1.0 if residual == 0 else 0.0
    return float(min(1.0, max(0.0, 1.0 - residual / signal)))


def _scale_below_one(value: float) -> float:
    """The power of two ``s`` that brings ``value`` into [0.5, 1) when it is 1 or more; 1 for
    smaller values (never scaled up: tiny ranges of large values would overflow), inf, NaN.

    >>> _scale_below_one(255.0), _scale_below_one(0.3)
    (0.00390625, 1.0)
    """
    if not math.isfinite(value) or abs(value) < 1:
        return 1.0
    return math.ldexp(1.0, -math.frexp(value)[1])


def _scaled_range(reference: np.ndarray, L: float) -> tuple[float, float]:
    """``(L * s, s)``, ``s`` the power of two of :func:`_scale_below_one`: the data range
    and the factor PSNR and SSIM scale the data by (see "Large values" above).

    An infinite ``L`` may be the span of a reference past float64's range (1e308 - -1e308):
    it is then measured on the halves of the values, which fit.

    >>> _scaled_range(np.array([0.0, 1e200]), 1e200)[1] * 1e200 < 1
    True
    >>> L, s = _scaled_range(np.array([-1e308, 1e308]), float("inf"))
    >>> 0.5 <= L < 1, L == 1e308 * s * 2  # the span, 2e308, times s
    (True, True)
    """
    if L == math.inf:
        half = default_data_range(reference / 2)
        if math.isinf(2 * half):
            s = _scale_below_one(half)
            return half * s, s / 2
    s = _scale_below_one(L)
    return L * s, s


def _scaled(a: np.ndarray, s: float) -> np.ndarray:
    """``a * s`` (exact: ``s`` is a power of two), without a copy when ``s`` is 1."""
    return a if s == 1 else a * s


def empty_axes(shape, layout: str) -> str:
    """Why an array holds no values, for error messages.

    >>> empty_axes((0, 4, 4), "CHW"), empty_axes((0, 0, 4, 4), "NCHW")
    ('axis C has length 0 (shape (0, 4, 4))', 'axes N, C have length 0 (shape (0, 0, 4, 4))')
    """
    letters = [letter for letter, n in zip(layout, shape) if n == 0]
    which = f"axis {letters[0]} has" if len(letters) == 1 else f"axes {', '.join(letters)} have"
    return f"{which} length 0 (shape {tuple(int(n) for n in shape)})"


def _pair(reference, test) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    tst = np.asarray(test, dtype=np.float64)
    if ref.shape != tst.shape:
        raise ValueError(f"shapes differ: {ref.shape} and {tst.shape}")
    return ref, tst


def timed_run(spec, x: np.ndarray, plan, repeat: int) -> tuple[np.ndarray, list[float]]:
    """Pool ``x`` ``repeat`` times (at least once) along a resolved plan: the result and the
    times in seconds of the pooling alone (parsing and planning done before)."""
    times = []
    for _ in range(max(1, int(repeat))):
        start = time.perf_counter()
        pooled = spec.run(x, plan)
        times.append(time.perf_counter() - start)
    return pooled, times
