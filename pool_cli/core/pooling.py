""":func:`pool`, the one entry point, and :class:`PoolSpec`, its checked parameters.

Pooling is separable: a window over several axes is a window over each axis in turn, for the
extremes exactly and for sums up to the order of additions (see ``kernels``). The input is cut
into cache-sized bands that threads pool into one output (see ``plans`` and ``execute``).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from . import scratch
from .errors import PoolError
from .execute import run_bands
from .geometry import (
    broadcast, check_layout, check_padding_fits, make_axis, memory_bytes, parse_padding,
    parse_sizes, resolve_layout, spatial_axes,
)
from .modes import MODES, Mode, owner_of
from .plans import AdaptivePlan, GlobalPlan, WindowPlan

POOLABLE_KINDS = "biuf"  # bool, integers, floats; what the others are called in errors:
REFUSED_KINDS = {"c": "complex", "O": "object", "U": "string", "T": "string", "S": "bytes",
                 "V": "structured", "M": "datetime", "m": "timedelta"}


def pool(x, mode: str, window=2, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
         count_include_pad: bool = False, layout: str | None = None, power: float = 2.0,
         ignore_nan: bool = False, output_size=None, global_pool: bool = False,
         rounded: bool = False, threads: int | None = None,
         out: np.ndarray | None = None) -> np.ndarray:
    """Pool an array over its spatial axes, exactly as PyTorch and ONNX do.

    Parameters
    ----------
    x : array_like
        Input of dtype bool, integer or float. Complex, object and string arrays are refused.
    mode : {'max', 'min', 'avg', 'sum', 'lp'}
        The reduction (see ``pool_cli.core.modes.MODES``).
    window, stride, dilation : int, sequence of int or str, optional
        One value for every spatial axis or one per axis (``3``, ``(3, 2)``, ``'3x2'``).
        ``window`` defaults to 2, ``stride`` to the window, ``dilation`` to 1.
    padding : int, sequence or str, optional
        ``N``, per-axis ``N``, per-axis ``(begin, end)`` pairs, ``'valid'``, ``'same'`` (odd cell
        at the end) or ``'same-lower'``. Padded cells never win a max or min and add nothing to
        sums; for ``avg`` they are left out of the divisor unless ``count_include_pad``.
    ceil_mode : bool, optional
        Keep a last partial window, unless it would start at or beyond the end padding.
    count_include_pad : bool, optional
        ``avg`` only: padded cells count as zeros in the divisor (cells past the padded input,
        reached through ``ceil_mode``, never count).
    layout : str, optional
        Axis letters ``N``, ``C``, ``D``, ``H``, ``W``; defaults by ndim: ``W``, ``HW``, ``CHW``,
        ``NCHW``, ``NCDHW``. Pooling runs over D, H and W, per N and C independently.
    power : float, optional
        ``lp`` only: the p of ``(sum |x|^p)^(1/p)``, > 0 (default 2).
    ignore_nan : bool, optional
        Skip NaN instead of propagating it; a window holding only NaN gives NaN.
    output_size : int or sequence of int, optional
        Adaptive pooling to this size: window ``i`` spans ``floor(i*L/out)`` to
        ``ceil((i+1)*L/out)``. Replaces window, stride, padding and dilation.
    global_pool : bool, optional
        One window over each whole spatial extent; spatial axes stay, with size 1.
    rounded : bool, optional
        ``avg`` only: integer inputs give their own dtype, rounded to nearest with ties up
        (how images are written back; a 2x2 average of an even-sized image equals Pillow's
        ``Image.reduce(2)``).
    threads : int, optional
        Threads sharing the work (default: every core). The result is the same for any count.
    out : numpy.ndarray, optional
        Write the result here instead of a new array (a stream of frames can reuse one
        buffer; a new output's first touch of fresh memory costs time). Its shape and dtype
        must be the result's, it must be writable and must not overlap ``x``.

    Returns
    -------
    numpy.ndarray
        ``out``, or a new array: max/min keep the dtype; sum widens integers to int64; avg and
        lp keep float dtypes (float16 computed in float32) and give float64 for integers.

    Raises
    ------
    PoolError
        For every user mistake, with a one-line message.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[1, 2, 3, 4], [5, 6, 7, 8], [9, 10, 11, 12]])
    >>> pool(x, "max", window=2)
    array([[6, 8]])
    >>> pool(x, "avg", window=2, ceil_mode=True)
    array([[ 3.5,  5.5],
           [ 9.5, 11.5]])
    >>> pool(x, "max", window=3, stride=1, padding=1)[0]
    array([6, 7, 8, 8])
    >>> pool(x, "sum", global_pool=True)
    array([[78]])
    >>> pool(np.arange(5.0), "avg", output_size=3)
    array([0.5, 2. , 3.5])
    """
    options = (("mode", mode), ("window", window), ("stride", stride), ("padding", padding),
               ("dilation", dilation), ("ceil_mode", ceil_mode),
               ("count_include_pad", count_include_pad), ("layout", layout), ("power", power),
               ("ignore_nan", ignore_nan), ("output_size", output_size),
               ("global_pool", global_pool), ("rounded", rounded))
    key = tuple((name, _types(value), value) for name, value in options)
    try:
        hash(key)
    except TypeError:  # an option that cannot be a key (a list, an array): checked every call
        return make_spec(**dict(options)).apply(x, threads, out)
    return _remembered_spec(key).apply(x, threads, out)


@functools.lru_cache(maxsize=256)
def _remembered_spec(options: tuple) -> "PoolSpec":
    """:func:`make_spec` once per set of options, and each spec's plans once per shape (see
    :meth:`PoolSpec.apply`): a stream of small frames pays for its checks once (3x64x64, 2x2
    max: 64 to 36 us a call), and a call after a large array has swept the caches no longer
    runs that much Python cold (W7 of ``poolcli bench``: 3-4% faster)."""
    return make_spec(**{name: value for name, _, value in options})


@functools.lru_cache(maxsize=256)
def _remembered_plan(spec: "PoolSpec", shape: tuple[int, ...]):
    return spec.plan(shape)


def _types(value):
    # 2, 2.0 and True are equal keys, but not the same option (in a named tuple neither)
    if isinstance(value, tuple):
        return (type(value), *map(_types, value))
    return type(value)


@dataclass(frozen=True)
class PoolSpec:
    """Pooling parameters, checked as far as they can be without an input.

    Make one with :func:`make_spec`; :meth:`plan` resolves it for an input shape and
    :meth:`apply` pools an array.
    """

    mode: Mode
    window: tuple[int, ...] = (2,)
    stride: tuple[int, ...] | None = None
    padding: str | tuple[tuple[int, int], ...] = ((0, 0),)
    dilation: tuple[int, ...] = (1,)
    ceil_mode: bool = False
    count_include_pad: bool = False
    layout: str | None = None
    power: float = 2.0
    ignore_nan: bool = False
    output_size: tuple[int, ...] | None = None
    global_pool: bool = False
    rounded: bool = False

    def plan(self, shape: tuple[int, ...]) -> "WindowPlan | AdaptivePlan | GlobalPlan":
        """Resolve the geometry for an input of this shape (raises PoolError if it does not fit)."""
        layout = resolve_layout(self.layout, len(shape))
        axes = spatial_axes(layout)
        lengths = [shape[a] for a in axes]
        for letter, length in zip((layout[a] for a in axes), lengths):
            if length == 0:
                raise PoolError(f"spatial axis {letter} has length 0")
        if self.global_pool:
            return GlobalPlan(layout, axes, tuple(shape))
        if self.output_size is not None:
            sizes = broadcast(self.output_size, len(axes), "output_size")
            return AdaptivePlan(layout, axes, tuple(shape), sizes)
        per_axis = [broadcast(v, len(axes), name) for v, name in (
            (self.window, "window"), (self.stride or self.window, "stride"),
            (self.dilation, "dilation"))]
        pads = self.padding if isinstance(self.padding, str) else broadcast(
            self.padding, len(axes), "padding")
        geometry = []
        for i, (axis, k, s, d) in enumerate(zip(axes, *per_axis)):
            pad = pads if isinstance(pads, str) else pads[i]
            try:
                geometry.append(make_axis(shape[axis], k, s, d, pad, self.ceil_mode))
            except PoolError as error:
                raise PoolError(f"axis {layout[axis]}: {error}") from None
        return WindowPlan(layout, axes, tuple(shape), tuple(geometry))

    def apply(self, x, threads: int | None = None, out: np.ndarray | None = None) -> np.ndarray:
        """Pool ``x`` (any array-like) with these parameters, into ``out`` if given."""
        if threads is not None and (isinstance(threads, bool) or not hasattr(threads, "__index__")
                                    or threads < 1):
            raise PoolError(f"threads must be a whole number >= 1, got {threads!r}")
        if isinstance(x, np.ma.MaskedArray):  # np.asarray would drop the mask unseen
            raise PoolError("masked arrays are refused (their mask would be ignored): pass "
                            "x.filled(np.nan) with ignore_nan=True, or x.filled(value)")
        try:
            x = np.asarray(x)
        except (TypeError, ValueError) as error:  # ragged or mixed sequences
            raise PoolError(f"x is not an array of numbers ({str(error).splitlines()[0]})") \
                from None
        check_dtype(x.dtype)
        plan = _remembered_plan(self, x.shape)
        if out is not None:
            _check_out(out, plan.out_shape, self.output_dtype(x.dtype), x)
        else:
            _check_fits(plan, self.output_dtype(x.dtype))
        return self.run(x, plan, threads, out)

    def output_dtype(self, dtype: np.dtype) -> np.dtype:
        """The dtype :meth:`run` gives for an input of ``dtype`` (in the machine's byte order)."""
        dtype = np.dtype(dtype).newbyteorder("=")
        if self.rounded and dtype.kind in "iu":
            return dtype
        return self.mode.output_dtype(dtype)

    def run(self, x: np.ndarray, plan, threads: int | None = None,
            out: np.ndarray | None = None) -> np.ndarray:
        """Pool ``x`` along a resolved plan into ``out`` (made if not given), band by band."""
        if not x.dtype.isnative:  # ufuncs take the machine's byte order only: a converted copy
            x = x.astype(x.dtype.newbyteorder("="))
        if out is None:
            out = np.empty(plan.out_shape, self.output_dtype(x.dtype))
        skip_nan = self.ignore_nan and x.dtype.kind == "f"
        if self.mode.is_extreme:
            combine = self.mode.skip_nan_combine if skip_nan else self.mode.combine
            return run_bands(lambda part, band, target: band.plan.reduce(
                part, combine, x.dtype, out=target), x, plan, out, threads, combine)
        work = self._work_dtype(x.dtype, plan.cells)
        return run_bands(lambda part, band, target: self._sum_band(
            part, band.plan, target, work, skip_nan), x, plan, out, threads, np.add)

    def _work_dtype(self, dtype: np.dtype, cells: int) -> np.dtype:
        """Sums of small integers in the narrowest type that cannot overflow, nor round half
        up (``sum + cells // 2``): 8-bit sums in uint32 up to 2**24 - 1 cells, twice as fast
        as int64 or float64 (measured: a global sum of 3 x 24M uint8, 12 against 21-26 ms)."""
        if self.mode.name in ("sum", "avg") and dtype.kind in "bu" and dtype.itemsize <= 2:
            if dtype.itemsize == 1 and cells <= 256:
                return np.dtype(np.uint16)
            if cells <= (2**24 - 1 if dtype.itemsize == 1 else 65536):
                return np.dtype(np.uint32)
        if self.rounded and dtype.kind in "iu" and dtype.itemsize == 4 and cells < 2**31:
            return np.dtype(np.int64)  # float64 sums of 32-bit values lose bits past 2^53
        return self.mode.work_dtype(dtype)

    def _sum_band(self, x: np.ndarray, plan, out: np.ndarray, work: np.dtype,
                  skip_nan: bool) -> None:
        """sum, avg or lp of one band into its slice of the output."""
        name = self.mode.name
        if name == "avg" and self.rounded and x.dtype.kind in "iu" and x.dtype.itemsize == 8:
            _rounded_mean_64(x, plan, plan.counts(self.count_include_pad), out)
            return
        src = _abs_power(x, self.power, work) if name == "lp" else x
        if skip_nan:
            present = ~np.isnan(src)
            src = np.where(present, src, 0)
            n_present = plan.reduce(present, np.add, np.int64)
        # sums land in the output itself when it holds the working type (one pass fewer)
        total = plan.reduce(src, np.add, work, out=out if out.dtype == work else None)
        if name == "avg" and skip_nan:
            divisor = n_present + (plan.counts(self.count_include_pad) - plan.counts(False))
            _quotient(total, divisor, out)
            return
        if name == "avg":
            _divide_by_counts(total, plan.divisor(self.count_include_pad), out)
            return
        if skip_nan:
            total[n_present == 0] = np.nan
        if name == "lp":
            _root(total, self.power)
        if total is not out:
            out[...] = total


def _rounded_mean_64(x: np.ndarray, plan, counts: np.ndarray, out: np.ndarray) -> None:
    """avg of 64-bit integers rounded half up into their own dtype, exactly (float64 holds
    53 bits, and int64 sums overflow): each value is split into 32-bit halves, whose window
    sums fit in int64, and the quotient is put together from theirs."""
    if plan.cells >= 2**30:
        raise PoolError(f"windows of {plan.cells} cells are too large for an exact rounded "
                        "average of 64-bit integers")
    high = plan.reduce((x >> 32).astype(np.int64), np.add, np.int64)  # floor(x / 2^32)
    low = plan.reduce((x & 0xFFFFFFFF).astype(np.int64), np.add, np.int64)
    counts = counts.astype(np.int64)
    # sum = high * 2^32 + low, so floor((sum + n//2) / n) = q * 2^32 + floor((r * 2^32 + low
    # + n//2) / n) with high = q*n + r: every term fits in int64 for windows under 2^30 cells
    q, r = np.divmod(high, counts)
    rest = (r << 32) + low + counts // 2
    rest //= counts
    # the mean lies within the inputs' range; int64 arithmetic wraps, so the parts may not
    np.add(q.astype(out.dtype) << np.array(32, out.dtype), rest.astype(out.dtype), out=out)


def _check_fits(plan, dtype: np.dtype) -> None:
    """Refuse a pooling that would outgrow this machine's memory (a huge padding or
    output_size on a small input): a PoolError now, rather than a MemoryError halfway or the
    kernel's out-of-memory killer. By a low estimate: the output, or the largest result of a
    pass (:meth:`~pool_cli.core.plans.Plan.peak_cells`) in 8-byte sums where it outgrows the
    input; one within a few times of memory may still fail as it runs."""
    needs = math.prod(plan.out_shape) * dtype.itemsize
    peak = plan.peak_cells()
    if peak > math.prod(plan.in_shape):
        needs = max(needs, peak * 8)
    if needs > memory_bytes():
        raise PoolError(f"pooling to shape {plan.out_shape} would need {_gib(needs)} of memory, "
                        f"more than this machine's {_gib(memory_bytes())}")


def _gib(nbytes: int) -> str:
    return f"{nbytes / 2**30:.3g} GiB"


def _check_out(out, shape: tuple[int, ...], dtype: np.dtype, x: np.ndarray) -> None:
    if not isinstance(out, np.ndarray):
        raise PoolError(f"out must be a numpy array, got {type(out).__name__}")
    if out.shape != shape or out.dtype != dtype:
        raise PoolError(f"out must have shape {shape} and dtype {dtype} for this input, got "
                        f"{out.shape} {out.dtype}")
    if not out.flags.writeable:
        raise PoolError("out is read-only")
    if np.may_share_memory(out, x):
        raise PoolError("out may overlap the input")


def check_dtype(dtype: np.dtype) -> None:
    """Refuse dtypes that cannot be pooled: complex, object, string and the like."""
    if dtype.kind not in POOLABLE_KINDS:
        raise PoolError(f"{REFUSED_KINDS.get(dtype.kind, 'these')} arrays ({dtype}) cannot be "
                        f"pooled")


def make_spec(mode: str, window=2, stride=None, padding=0, dilation=1, ceil_mode=False,
              count_include_pad=False, layout=None, power=2.0, ignore_nan=False,
              output_size=None, global_pool=False, rounded=False) -> PoolSpec:
    """Check every rule that holds whatever the input, and return a :class:`PoolSpec`.

    Examples
    --------
    >>> make_spec("avg", window="3x3", stride=1, padding=1).window
    (3, 3)
    >>> make_spec("max", power=3)
    Traceback (most recent call last):
    ...
    pool_cli.core.errors.PoolError: power is an option of lp only, not of max
    """
    if not isinstance(mode, str) or mode not in MODES:
        raise PoolError(f"unknown mode {mode!r} (choose from {', '.join(MODES)})")
    chosen = MODES[mode]
    power = 2.0 if power is None else _check_power(power)
    # power=2.0 is the default in every mode's signature (SPEC), so passing it is no mistake
    given_power = power != 2
    for option, given in (("power", given_power), ("count_include_pad", count_include_pad),
                          ("rounded", rounded)):
        if given and option not in chosen.options:
            owner = owner_of(option)
            raise PoolError(f"{option} is an option of {owner} only, not of {mode}")
    padding = 0 if padding is None else padding
    dilation = 1 if dilation is None else dilation
    layout = None if layout is None else check_layout(layout)
    if global_pool or output_size is not None:
        unused = replaced_options(window, stride, padding, dilation, ceil_mode, count_include_pad)
        if unused:
            raise PoolError(replaced_message(
                "global pooling" if global_pool else "output_size", unused))
        spec = _adaptive_or_global_spec(chosen, layout, power, ignore_nan, output_size,
                                        global_pool)
        return replace(spec, rounded=bool(rounded))
    window = parse_sizes(2 if window is None else window, "window")
    stride = None if stride is None else parse_sizes(stride, "stride")
    dilation = parse_sizes(dilation, "dilation")
    padding = parse_padding(padding)
    lists = {"window": window, "stride": stride or (), "dilation": dilation,
             "padding": () if isinstance(padding, str) else padding}
    _check_axis_counts(lists, layout)
    check_padding_fits(padding, window, dilation)
    return PoolSpec(chosen, window, stride, padding, dilation, bool(ceil_mode),
                    bool(count_include_pad), layout, power, bool(ignore_nan), rounded=bool(rounded))


def replaced_options(window=None, stride=None, padding=0, dilation=1, ceil_mode=False,
                     count_include_pad=False) -> list[str]:
    """The window-geometry options given with other than their default values: global and
    adaptive pooling replace them, so they would be ignored (the defaults, window 2, no
    stride, padding 0, dilation 1, are no mistake: a harness may always pass them).

    Examples
    --------
    >>> replaced_options(window="2x2", padding="valid", dilation=1), replaced_options(stride=2)
    ([], ['stride'])
    """
    checks = (("window", window is not None and set(parse_sizes(window, "window")) != {2}),
              ("stride", stride is not None),
              ("padding", padding is not None
               and set(parse_padding(padding)) != {(0, 0)}),
              ("dilation", dilation is not None and set(parse_sizes(dilation, "dilation")) != {1}),
              ("ceil_mode", bool(ceil_mode)), ("count_include_pad", bool(count_include_pad)))
    return [name for name, given in checks if given]


def replaced_message(what: str, names: list[str]) -> str:
    """The error for :func:`replaced_options` ``names`` given beside ``what``.

    >>> replaced_message("--global", ["--window", "--stride"])
    '--global replaces --window, --stride: leave them out'
    """
    return f"{what} replaces {', '.join(names)}: leave {'it' if len(names) == 1 else 'them'} out"


def _adaptive_or_global_spec(mode, layout, power, ignore_nan, output_size,
                             global_pool) -> PoolSpec:
    if global_pool and output_size is not None:
        raise PoolError("global pooling and output_size exclude each other")
    sizes = None
    if output_size is not None:
        sizes = parse_sizes(output_size, "output_size")
        _check_axis_counts({"output_size": sizes}, layout)
    return PoolSpec(mode, layout=layout, power=power, ignore_nan=bool(ignore_nan),
                    output_size=sizes, global_pool=bool(global_pool))


def _check_axis_counts(lists: dict[str, tuple], layout: str | None) -> None:
    """Per-axis lists must agree with each other and with an explicit layout."""
    per_axis = {name: len(v) for name, v in lists.items() if len(v) > 1}
    if layout is not None:
        naxes = len(spatial_axes(layout))
        for name, n in per_axis.items():
            if n != naxes:
                raise PoolError(f"{name} has {n} values but layout {layout} has {naxes} spatial "
                                f"{'axis' if naxes == 1 else 'axes'}")
    if len(set(per_axis.values())) > 1:
        raise PoolError("per-axis values disagree in length: " +
                        ", ".join(f"{name} has {n}" for name, n in per_axis.items()))


def _check_power(power) -> float:
    try:
        if isinstance(power, (bool, np.bool_)):  # True is 1 to float(), not a power meant
            raise TypeError(power)
        p = float(power)
    except (TypeError, ValueError):
        raise PoolError(f"power must be a number > 0, got {power!r}") from None
    if not (p > 0 and np.isfinite(p)):
        raise PoolError(f"power must be a finite number > 0, got {power!r}")
    return p


def _divide_by_counts(total: np.ndarray, divisor, out: np.ndarray) -> None:
    """``total`` over a plan's :class:`~pool_cli.core.plans.Divisor`, into ``out``: the
    interior by one scalar, only the edge slices where a count differs by exact arrays."""
    # the edges are taken before the division, which may happen in place (out is total)
    edges = [(axis, index, np.take(total, index, axis=axis), exact)
             for axis, index, exact in divisor.edges]
    _quotient(total, divisor.interior, out)
    for axis, index, part, exact in edges:
        quotient = np.empty(part.shape, out.dtype)
        _quotient(part, exact, quotient)
        out[(slice(None),) * axis + (index,)] = quotient


def _quotient(total: np.ndarray, divisor, out: np.ndarray) -> None:
    """``total / divisor`` into ``out``; into an integer ``out``, rounded half up exactly."""
    if isinstance(divisor, np.ndarray):  # narrow, so no int64 or float64 temporaries
        divisor = divisor.astype(total.dtype)
    power_of_two = isinstance(divisor, int) and divisor > 0 and divisor & (divisor - 1) == 0
    if out.dtype.kind in "iu":  # floor(sum / n + 1/2) == (sum + n // 2) // n for whole n
        halfway = scratch.empty(total.shape, total.dtype)
        np.add(total, divisor // 2, out=halfway, casting="unsafe")
        if power_of_two and total.dtype.kind in "iu":
            np.right_shift(halfway, divisor.bit_length() - 1, out=out, casting="unsafe")
        else:
            np.floor_divide(halfway, divisor, out=out, casting="unsafe")
    elif power_of_two:  # 1/n is exact, so the product is the quotient, bit for bit, and cheaper
        np.multiply(total, 1 / divisor, out=out, casting="same_kind")
    else:
        np.divide(total, divisor, out=out, casting="same_kind")


def _abs_power(x: np.ndarray, p: float, dtype: np.dtype) -> np.ndarray:
    magnitude = np.abs(x.astype(dtype))
    if p == 2:
        return np.square(magnitude, out=magnitude)
    return magnitude if p == 1 else np.power(magnitude, dtype.type(p), out=magnitude)


def _root(total: np.ndarray, p: float) -> None:
    if p == 2:
        np.sqrt(total, out=total)
    elif p != 1:
        np.power(total, total.dtype.type(1 / p), out=total)
