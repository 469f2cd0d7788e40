"""Measure pooling: time, throughput, size reduction and fidelity for each mode and geometry.

Fidelity compares the input with the pooled output scaled back up to the input's size with
nearest neighbour (:func:`pool_cli.visual.metrics.upscale_nearest`, the same upscaling as the
contact sheets), in float64 on the input's own scale: PSNR, SSIM (per channel averaged) and
the share of signal energy kept. See :mod:`pool_cli.visual.metrics` for the formulas.
"""

from __future__ import annotations

import itertools

import numpy as np

from pool_cli.core import PoolError, make_spec
from pool_cli.core.modes import split_options
from pool_cli.core.geometry import resolve_layout
from .metrics import (
    default_data_range, empty_axes, energy_kept, psnr, ssim_scorer, timed_run, upscale_nearest,
)

__all__ = ["Analysis", "UPSCALING", "analyze", "geometry_label"]

#: How outputs are scaled back up before they are compared with the input.
UPSCALING = ("nearest neighbour: each input cell takes the output whose window covers it "
             "(the window centred nearest to it where windows overlap)")



class Analysis(list):
    """The rows of :func:`analyze` (a list of dicts), with what was left out.

    Attributes
    ----------
    skipped : list of str
        One line per mode and geometry that does not fit the input (the reason included).
    notes : list of str
        Remarks for the reader (outputs not on the input's scale, for instance).
    data_range : float
        The ``L`` of PSNR and SSIM.
    upscaling : str
        How outputs were scaled back up (:data:`UPSCALING`).
    """

    upscaling = UPSCALING

    def __init__(self, data_range=float("nan")):
        super().__init__()
        self.skipped: list[str] = []
        self.notes: list[str] = []
        self.data_range = data_range


def _compact(values) -> str:
    if values is None:
        return "-"
    return str(values[0]) if len(set(values)) == 1 else "x".join(str(v) for v in values)


def geometry_label(window, stride) -> str:
    """Short name of a geometry for tables and plots: ``'2x2 s2'``, ``'3x2 s1'``.

    Examples
    --------
    >>> geometry_label([2, 2], [2, 2]), geometry_label([3, 2], [1, 1])
    ('2x2 s2', '3x2 s1')
    """
    return f"{'x'.join(str(v) for v in window)} s{_compact(stride)}"


def analyze(x, layout: str | None = None, modes=("max", "avg", "min", "lp"), windows=(2, 3, 4),
            strides=None, repeat: int = 5, data_range: float | None = None,
            match_scale: bool = True, paired: bool = False, **pool_options) -> Analysis:
    """Time each mode and geometry and measure how much of the input survives.

    Parameters
    ----------
    x : array_like
        The input (an image ``HW``/``HWC`` or any array with a layout).
    layout : str, optional
        Axis letters; by default from the number of dimensions (``HW``, ``CHW``,
        ``NCHW``...): pass ``'HWC'`` for a colour image.
    modes : sequence of str
        Pooling modes.
    windows : sequence
        Window sizes, each an int or per-axis (``3``, ``'3x2'``, ``(3, 2)``).
    strides : sequence, optional
        Strides to try with every window (with ``paired``, one per window); ``None`` (the
        default, or an entry ``None``) means a stride equal to the window.
    repeat : int
        Timed runs of :func:`pool_cli.pool` per row (``time.perf_counter`` around the call
        only); the row gives their median, min and max.
    data_range : float, optional
        ``L`` of PSNR and SSIM; by default 255 for uint8, 65535 for uint16, ``max - min`` of
        the input for floats (:func:`pool_cli.visual.metrics.default_data_range`).
    match_scale : bool
        ``sum`` and ``lp`` outputs are not on the input's scale (a 2x2 sum of uint8 reaches
        1020). With ``match_scale`` (the default) their fidelity is measured on the input's
        scale: ``sum / n`` (the window mean) and ``lp / n**(1/p)`` (the power mean
        ``(mean |x|**p)**(1/p)``), ``n`` the input cells of each window; the row's
        ``compared_as`` says so. Without it the raw output is compared.
    paired : bool
        ``strides[i]`` goes with ``windows[i]`` only (as many strides as windows), instead of
        every stride with every window.
    **pool_options
        More options for every call: padding, dilation, ceil_mode, ignore_nan, and the
        mode-specific power (lp) and count_include_pad (avg), passed only to the modes that
        take them.

    Returns
    -------
    Analysis
        A list with one dict per mode and geometry that fits, in the order modes x windows x
        strides (modes x windows when ``paired``), with keys ``mode``, ``label``
        (:func:`geometry_label`), ``window``, ``stride``, ``padding``, ``dilation`` (per-axis
        lists), ``input_shape``, ``output_shape``, ``output_dtype``, ``reduction`` (input
        elements / output elements),
        ``time_ms_median``, ``time_ms_min``, ``time_ms_max``, ``mb_per_s`` (input megabytes,
        10**6 bytes, per second at the median time), ``psnr_db`` (``inf`` when lossless,
        NaN when undefined: NaN in the data), ``lossless`` (the scaled-back output equals the
        input, NaN where NaN),
        ``ssim``, ``energy_kept`` and ``compared_as`` (``'output'``, or how a sum or lp
        output was brought to the input's scale). Geometries that do not fit the input are listed in
        ``.skipped``.

    Raises
    ------
    pool_cli.PoolError
        For mistakes whatever the input (an unknown mode, a window below 1...), then for an
        input without values (an axis of length 0).

    Examples
    --------
    >>> flat = np.full((16, 16), 7, np.uint8)
    >>> rows = analyze(flat, modes=["max", "avg"], windows=[2, 4], repeat=1)
    >>> for r in rows:
    ...     print(r["mode"], r["label"], r["psnr_db"], r["ssim"], r["energy_kept"])
    max 2x2 s2 inf 1.0 1.0
    max 4x4 s4 inf 1.0 1.0
    avg 2x2 s2 inf 1.0 1.0
    avg 4x4 s4 inf 1.0 1.0
    """
    a = np.asarray(x)
    layout = resolve_layout(layout, a.ndim)
    L = default_data_range(a) if data_range is None else float(data_range)
    if strides is None:
        geometries = [(window, None) for window in windows]
    elif paired:
        if len(strides) != len(windows):
            raise PoolError(f"{len(strides)} strides for {len(windows)} windows: give one per window")
        geometries = list(zip(windows, strides))
    else:
        geometries = list(itertools.product(windows, strides))
    jobs = []
    for mode, (window, stride) in itertools.product(modes, geometries):
        shared, own = split_options(mode, pool_options)
        options = dict(window=window, stride=stride, layout=layout, **shared, **own)
        jobs.append((mode, make_spec(mode, **options)))  # usage errors raise here
    if a.size == 0:  # nothing to time or compare, and no output size to divide by
        raise PoolError(f"no values to analyze: {empty_axes(a.shape, layout)}")

    reference = a.astype(np.float64)
    ssim_of = ssim_scorer(reference, L, layout)  # the reference filtered once for every row
    result = Analysis(data_range=L)
    off_scale, rescaled = [], []
    for mode, spec in jobs:
        try:
            plan = spec.plan(a.shape)
        except PoolError as error:
            result.skipped.append(f"{mode} window {_compact(spec.window)} stride "
                                  f"{_compact(spec.stride or spec.window)}: {error}")
            continue
        y, times = timed_run(spec, a, plan, repeat)  # parsed and planned once, above
        median = float(np.median(times))
        compared, compared_as = _on_input_scale(y, spec, plan, match_scale)
        native = upscale_nearest(compared, a.shape, plan)
        # in the input's own dtype: float64 would call int64s past 2^53 equal; NaN where NaN
        lossless = bool(np.array_equal(a, native, equal_nan=a.dtype.kind == "f"))
        up = native.astype(np.float64)
        described = plan.describe()
        if compared_as == "output" and y.size and np.nanmax(y) > np.nanmax(a) \
                and mode not in off_scale:
            off_scale.append(mode)
        result.append({
            "mode": mode,
            "label": geometry_label(described["window"], described["stride"]),
            **described,
            "input_shape": list(a.shape),
            "output_shape": list(y.shape),
            "output_dtype": str(y.dtype),
            "reduction": a.size / y.size,
            "time_ms_median": median * 1e3,
            "time_ms_min": min(times) * 1e3,
            "time_ms_max": max(times) * 1e3,
            "mb_per_s": a.nbytes / 1e6 / median if median > 0 else float("inf"),
            "psnr_db": float("inf") if lossless else psnr(reference, up, L),
            "lossless": lossless,
            "ssim": 1.0 if lossless else ssim_of(up),
            "energy_kept": 1.0 if lossless else energy_kept(reference, up, layout),
            "compared_as": compared_as,
        })
        if compared_as != "output" and mode not in rescaled:
            rescaled.append(mode)
    if rescaled:
        result.notes.append(f"{', '.join(rescaled)}: fidelity measured on the input's scale "
                            f"(sum / n, lp / n^(1/p), n the cells of each window)")
    if off_scale:
        result.notes.append(f"{', '.join(off_scale)}: outputs exceed the input's range, so "
                            f"their fidelity also measures the change of scale")
    return result


def _on_input_scale(y, spec, plan, match_scale):
    """The output brought to the input's scale for comparison, and how."""
    if not match_scale or spec.mode.name not in ("sum", "lp"):
        return y, "output"
    n = np.asarray(plan.counts(False), dtype=np.float64)
    if spec.mode.name == "sum":
        return y / n, "sum / n (window mean)"
    p = spec.power
    return y / n ** (1.0 / p), f"lp / n^(1/p) (power mean, p={p:g})"
