"""``poolcli bench``: time :func:`pool_cli.pool` against the memory bound and other libraries.

Every workload (see :data:`WORKLOADS`) is run by

* ``poolcli`` -- :func:`pool_cli.pool` with ``threads=`` (W6b with ``rounded=True``: the uint8
  average written back as an image);
* ``poolcli out=`` -- the same into a preallocated output, as the copy bound writes: a fresh
  output of 32 MiB or more is new memory each call (glibc maps it anew), whose pages the
  kernel faults in and zeroes at first touch;
* ``copy bound`` -- ``np.copyto(dst, x)`` into a preallocated array of the input's shape and
  dtype: one full read and one full write, what a pooling pass can hardly beat;
* ``read bound`` -- ``np.max(x)``: a full read with a tiny output.  It is the fastest full read
  NumPy does for every dtype here (SIMD, no widening: ``x.sum()`` on uint8 widens to uint64 and
  is about 9x slower; ``np.add.reduce`` on float32 is a little slower than ``np.max``);
* every installed peer: PyTorch, OpenCV, scikit-image, SciPy, Pillow (all optional; a peer that
  does not import is left out, no row).

With ``threads=N`` (N > 1) the two bounds split the input into N blocks along its leading axis
and run them in a thread pool; poolcli gets ``threads=N``; PyTorch and OpenCV get
``torch.set_num_threads(N)`` / ``cv2.setNumThreads(N)`` (restored afterwards), and PyTorch's
OpenMP threads wait passively (``OMP_WAIT_POLICY=PASSIVE`` unless set, set before PyTorch
is first imported, as OpenMP reads it once when PyTorch loads; a process that imported
PyTorch before keeps its policy) so that they do not spin on the cores after each call while
the next implementation is timed.  SciPy,
scikit-image and Pillow are single-threaded.  ``threads=None`` means 1 thread for everyone,
so that the ratios compare like with like.

Timing: one untimed run first (for a peer this run is also the correctness check), then
``repeat`` timed runs (default 7, quick 3) with ``time.perf_counter`` and the garbage collector
off; in every round all implementations of the workload run once, in a new shuffled order
(fixed seed), so that noise, and whatever the previous call left behind, hits them alike.
Reported: median and min per implementation, ``ratio_copy`` = median / copy-bound median of the same workload in the
same run, ``ratio_read`` likewise, ``ratio_to_poolcli`` = median / poolcli median, and MB/s of
*input* (10**6 bytes per MB) at the median.  A peer too slow for the budget is timed fewer runs
(said in its note, ``runs`` gives the number).

Correctness: a peer's first result is compared with poolcli's before it is timed: max/min
exactly, float averages with ``rtol=atol=1e-5``, uint8 averages (both sides rounded half up to
uint8) exactly.  A peer that differs is reported ``mismatch`` and not timed; one that raises is
``error``; one whose semantics cannot express the workload is ``unsupported`` (with the reason).

Per-peer semantics (what is run, and what is not timed):

* PyTorch -- ``F.max_pool2d`` / ``F.avg_pool2d(count_include_pad=False)`` on ``torch.from_numpy``
  viewed as NCHW (zero copy: a CHW input is an NCHW tensor, an HWC input a channels_last one:
  variant "... view").  The other layout is also tried converted inside the timed call
  ("... converted in the call"); the faster is reported, the other's median is in the note,
  as is the kernel alone on a copy converted before the timing ("... kernel only"), which is
  never reported as PyTorch's time: the workload's input is not in that layout, and poolcli
  pools it as it is.
  avg_pool2d has no uint8 kernel: W6b converts to float32 and rounds inside the timed call.
  Global: ``mean``/``amax`` over H, W and ``adaptive_*_pool2d(1)``, the faster reported.
* OpenCV -- max: ``cv2.dilate`` with a k x k rectangle, ``anchor=(pad, pad)`` and the default
  border (never wins a max), then strided slicing: a full-resolution filter, then every s-th
  value.  avg with window == stride: ``cv2.resize(INTER_AREA)`` (rounds uint8 half up like
  poolcli).  avg stride 1: ``cv2.boxFilter(normalize=False, BORDER_CONSTANT)`` divided by the
  window's count of in-range cells (padding excluded; the count map is built once, untimed).
  Global: ``cv2.minMaxLoc`` / ``cv2.mean`` per plane.  CHW runs plane by plane; HWC in one call.
* scikit-image -- ``skimage.measure.block_reduce(x, block, np.max | np.mean)``: only where
  window == stride, no padding and the sizes divide (block_reduce pads the end with ``cval=0``
  instead of dropping the partial window); also global (block = whole plane).  uint8 averages
  are float64 means rounded half up (timed).
* SciPy -- ``ndimage.maximum_filter(mode='nearest')`` (replicated edge cells never change a max)
  and ``ndimage.uniform_filter(mode='constant', cval=0)`` then strided slicing from
  ``k//2 - pad``; with padding, the mean is rescaled by k*k / count of in-range cells (the factor
  map is built once, untimed) to exclude padding.  uint8 means are computed in float32 (exact for
  these windows) and rounded half up.  No global pooling.
* Pillow -- ``Image.reduce(k)`` for window == stride averages (uint8 images, and float32 planes
  as mode ``F``); ``ImageFilter.MaxFilter(k)`` for odd k with pad = k//2 (edge-replicating, so
  exact), k <= 5 only (an O(k^2) rank filter: 13x13 takes ~0.4 s per 512^2 plane), then strided
  slicing; ``getextrema`` for a global max.  Input images are built once, untimed; the timed call
  includes ``np.asarray`` of the result.

API: :func:`run_bench` -> rows (dicts with the keys of :data:`ROW_KEYS`) and
:func:`json_rows` for ``--json``; the table is ``pool_cli.report.bench_table`` and the
command ``poolcli bench`` lives in ``pool_cli.cli``.
"""

from __future__ import annotations

import gc
import importlib
import os
import random
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np

from . import __version__, pool
from .core.geometry import spatial_axes

# --------------------------------------------------------------------------------------------
# Workloads
# --------------------------------------------------------------------------------------------

FULL, QUICK, TINY = "full", "quick", "tiny"

CHW64 = {FULL: (64, 512, 512), QUICK: (16, 512, 512), TINY: (2, 16, 16)}
CHW32 = {FULL: (32, 512, 512), QUICK: (4, 512, 512), TINY: (2, 16, 16)}
RGB = {FULL: (4000, 6000, 3), QUICK: (1000, 1500, 3), TINY: (12, 18, 3)}
HWC64 = {FULL: (512, 512, 64), QUICK: (256, 256, 64), TINY: (16, 16, 4)}


@dataclass(frozen=True)
class Workload:
    """One benchmark case: an input (by size class) and one square pooling geometry."""

    id: str
    shapes: dict  # size class ('full', 'quick', 'tiny') -> shape
    dtype: str
    layout: str  # 'CHW' or 'HWC'
    mode: str  # 'max' or 'avg'
    window: int = 2
    stride: int = 2
    padding: int = 0
    global_pool: bool = False
    round_uint8: bool = False  # avg rounded half up to uint8, as an image is written
    group: str | None = None  # selecting the group id selects this workload too
    compare_to: str | None = None  # report this workload's time / compare_to's time

    def shape(self, size: str) -> tuple[int, ...]:
        return tuple(self.shapes.get(size) or next(iter(self.shapes.values())))

    def describe(self, size: str) -> str:
        shape = "(" + ",".join(map(str, self.shape(size))) + ")"
        if self.global_pool:
            what = f"global {self.mode}"
        else:
            k = self.window
            what = f"{self.mode} {k}x{k} s{self.stride}"
            what += f" pad {self.padding}" if self.padding else ""
        if self.round_uint8:
            what += " -> uint8"
        return f"{self.dtype} {shape} {self.layout}, {what}"

    def pool_kwargs(self) -> dict:
        if self.global_pool:
            return {"global_pool": True, "layout": self.layout}
        return {"window": self.window, "stride": self.stride, "padding": self.padding,
                "layout": self.layout}


WORKLOADS: tuple[Workload, ...] = (
    Workload("W1", CHW64, "float32", "CHW", "max", 2, 2),
    Workload("W2", CHW64, "float32", "CHW", "avg", 2, 2),
    Workload("W3", CHW64, "float32", "CHW", "max", 3, 2, 1),
    Workload("W4", CHW64, "float32", "CHW", "avg", 3, 1, 1),
    Workload("W5", CHW32, "float32", "CHW", "max", 13, 1, 6, compare_to="W5-5x5"),
    Workload("W5-5x5", CHW32, "float32", "CHW", "max", 5, 1, 2, group="W5"),
    Workload("W6", RGB, "uint8", "HWC", "max", 2, 2),
    Workload("W6b", RGB, "uint8", "HWC", "avg", 2, 2, round_uint8=True),
    Workload("W7-avg", CHW64, "float32", "CHW", "avg", global_pool=True, group="W7"),
    Workload("W7-max", CHW64, "float32", "CHW", "max", global_pool=True, group="W7"),
    Workload("W8", HWC64, "float32", "HWC", "max", 2, 2),
)


def select_workloads(ids: str | Sequence | None) -> list[Workload]:
    """Workloads by id (a comma list or a sequence; a group id such as ``W7`` selects its
    members; :class:`Workload` objects pass through).  Raises ValueError on an unknown id."""
    if ids is None:
        return list(WORKLOADS)
    if isinstance(ids, str):
        ids = [part for part in ids.split(",") if part.strip()]
    if not ids:
        raise ValueError("no workload named (choose e.g. W1,W6b)")
    chosen: list[Workload] = []
    for item in ids:
        if isinstance(item, Workload):
            matches = [item]
        else:
            key = str(item).strip().lower()
            matches = [w for w in WORKLOADS if key in (w.id.lower(), (w.group or "").lower())]
            if not matches:
                known = ", ".join(dict.fromkeys([w.id for w in WORKLOADS]
                                                + [w.group for w in WORKLOADS if w.group]))
                raise ValueError(f"unknown workload {item!r} (choose from {known})")
        chosen.extend(w for w in matches if w not in chosen)
    return chosen


def make_input(shape, dtype) -> np.ndarray:
    """Random input with a fixed seed: the same data whatever else is selected."""
    rng = np.random.default_rng(0)
    if np.dtype(dtype).kind == "f":
        return rng.standard_normal(shape, dtype=np.dtype(dtype))
    return rng.integers(0, 256, shape, dtype=np.dtype(dtype))


def round_half_up_uint8(avg: np.ndarray) -> np.ndarray:
    """An average written as an 8-bit image: rounded to nearest, ties up, clipped to 0..255."""
    rounded = np.floor(avg + 0.5)
    np.clip(rounded, 0, 255, out=rounded)
    return rounded.astype(np.uint8)


# --------------------------------------------------------------------------------------------
# poolcli and the bounds
# --------------------------------------------------------------------------------------------

def poolcli_call(w: Workload, x: np.ndarray, threads: int,
                 out: np.ndarray | None = None) -> tuple[Callable[[], np.ndarray], str]:
    """The timed poolcli call for a workload (into ``out`` if given), and how it rounds (for
    the note)."""
    kwargs = dict(w.pool_kwargs(), threads=threads, out=out)
    if not w.round_uint8:
        return (lambda: pool(x, w.mode, **kwargs)), ""
    return (lambda: pool(x, w.mode, rounded=True, **kwargs)), "pool(rounded=True)"


def _blocks(n: int, parts: int) -> list[slice]:
    edges = np.linspace(0, n, min(parts, n) + 1).astype(int)
    return [slice(a, b) for a, b in zip(edges[:-1], edges[1:])]


def bound_calls(x: np.ndarray, dst: np.ndarray, threads: int,
                executor) -> tuple[Callable, Callable]:
    """The copy bound and the read bound, split over ``threads`` leading-axis blocks."""
    if threads <= 1 or executor is None:
        return (lambda: np.copyto(dst, x)), (lambda: np.max(x))
    blocks = _blocks(x.shape[0], threads)

    def copy():
        list(executor.map(lambda b: np.copyto(dst[b], x[b]), blocks))

    def read():
        return max(executor.map(lambda b: np.max(x[b]), blocks))

    return copy, read


# --------------------------------------------------------------------------------------------
# Peers: one function each, (workload, input, output shape) -> variants, or Unsupported
# --------------------------------------------------------------------------------------------

class Unsupported(Exception):
    """The peer's semantics cannot express this workload (the message says why)."""


@dataclass
class Variant:
    """One way a peer runs a workload: ``run`` is timed, ``to_array`` (untimed) turns its
    result into an array comparable with poolcli's."""

    label: str
    run: Callable[[], object]
    to_array: Callable[[object], np.ndarray] = np.asarray
    # timed on an input prepared before the timing (a layout the workload's input is not in):
    # its time is noted, never reported as the peer's, as poolcli pays for no such step
    kernel_only: bool = False


@dataclass(frozen=True)
class Peer:
    name: str
    module: str | None  # imported to decide whether the peer is installed; None: always
    variants: Callable[[Workload, np.ndarray, tuple], list[Variant]]

    def version(self) -> str | None:
        if self.module is None:
            return None
        return getattr(importlib.import_module(self.module), "__version__", None)


def _installed(module: str | None) -> bool:
    if module is None:
        return True
    try:
        importlib.import_module(module)
    except Exception:  # ImportError, or a broken binary install
        return False
    return True


def _counts(length: int, out: int, k: int, s: int, p: int) -> np.ndarray:
    """In-range cells of each window along one axis (the avg divisor, padding excluded)."""
    starts = np.arange(out) * s - p
    return np.minimum(starts + k, length) - np.maximum(starts, 0)


def _count_map(w: Workload, x: np.ndarray, out_shape: tuple) -> np.ndarray:
    """Count of in-range cells per output, shaped to broadcast against the output."""
    ha, wa = spatial_axes(w.layout)
    ch = _counts(x.shape[ha], out_shape[ha], w.window, w.stride, w.padding)
    cw = _counts(x.shape[wa], out_shape[wa], w.window, w.stride, w.padding)
    counts = np.outer(ch, cw).astype(np.float32)
    return counts[:, :, None] if w.layout == "HWC" else counts


def _strided(w: Workload, out_shape: tuple, start: int) -> tuple:
    """Index picking every stride-th window start of a full-resolution filter output."""
    ha, wa = spatial_axes(w.layout)
    index = [slice(None)] * len(out_shape)
    for axis in (ha, wa):
        index[axis] = slice(start, start + w.stride * out_shape[axis], w.stride)
    return tuple(index)


def torch_variants(w: Workload, x: np.ndarray, out_shape: tuple) -> list[Variant]:
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x)
    native, other = ("NCHW", "channels_last") if w.layout == "CHW" else ("channels_last", "NCHW")
    # NCHW over the array as it lies: HWC gives channels_last strides (N's stride H*W*C, so
    # that PyTorch takes its channels_last kernel)
    view = t.unsqueeze(0) if w.layout == "CHW" else t.unsqueeze(0).permute(0, 3, 1, 2)
    if w.layout == "CHW":
        def back(o):
            return o[0].numpy()
    else:
        def back(o):
            return o[0].permute(1, 2, 0).numpy()
    if w.global_pool:
        reduce = (lambda v: v.mean(dim=(2, 3), keepdim=True)) if w.mode == "avg" else (
            lambda v: v.amax(dim=(2, 3), keepdim=True))
        adaptive = F.adaptive_avg_pool2d if w.mode == "avg" else F.adaptive_max_pool2d
        name = "mean" if w.mode == "avg" else "amax"
        return [Variant(f"{native}, {name}", lambda: reduce(view), back),
                Variant(f"{native}, adaptive pool", lambda: adaptive(view, 1), back)]
    k, s, p = w.window, w.stride, w.padding
    if w.mode == "max":
        def op(v):
            return F.max_pool2d(v, k, s, p)
    elif w.round_uint8:
        def op(v):  # avg_pool2d has no uint8 kernel: float32 inside the timed call
            o = F.avg_pool2d(v.float(), k, s, p, count_include_pad=False)
            return o.add_(0.5).floor_().clamp_(0, 255).to(torch.uint8)
    else:
        def op(v):
            return F.avg_pool2d(v, k, s, p, count_include_pad=False)
    fmt = torch.channels_last if other == "channels_last" else torch.contiguous_format
    copy = view.contiguous(memory_format=fmt)  # the other layout, converted once, untimed
    return [Variant(f"{native} view", lambda: op(view), back),
            Variant(f"{other} converted in the call",
                    lambda: op(view.contiguous(memory_format=fmt)), back),
            Variant(f"{other} kernel only", lambda: op(copy), back, kernel_only=True)]


def opencv_variants(w: Workload, x: np.ndarray, out_shape: tuple) -> list[Variant]:
    import cv2

    ha, wa = spatial_axes(w.layout)
    planes = list(x) if w.layout == "CHW" else [x]  # CHW: plane by plane; HWC: one call

    def per_plane(fn):
        def run():
            if w.layout == "HWC":
                return fn(x)
            out = np.empty(out_shape, x.dtype)
            for c, plane in enumerate(planes):
                out[c] = fn(plane)
            return out
        return run

    if w.global_pool:
        if w.layout != "CHW":
            raise Unsupported("global pooling is run per plane of a CHW input only")
        if w.mode == "max":
            fn = per_plane(lambda pl: cv2.minMaxLoc(pl)[1])
            return [Variant("minMaxLoc per plane", fn)]
        return [Variant("cv2.mean per plane", per_plane(lambda pl: cv2.mean(pl)[0]))]
    k, s, p = w.window, w.stride, w.padding
    if w.mode == "max":
        kernel = np.ones((k, k), np.uint8)
        # output o's window starts at o*s - p: the dilate anchored at (p, p) at position o*s
        index = (slice(0, s * out_shape[ha], s), slice(0, s * out_shape[wa], s))

        def dilate(a):
            return np.ascontiguousarray(cv2.dilate(a, kernel, anchor=(p, p))[index])
        return [Variant(f"dilate {k}x{k}" + (f" + [::{s}]" if s > 1 else ""), per_plane(dilate))]
    if k == s and p == 0:
        h, wd = x.shape[ha], x.shape[wa]
        if h % k or wd % k:
            raise Unsupported("INTER_AREA averages whole blocks only: sizes must divide")
        size = (wd // k, h // k)
        return [Variant("resize INTER_AREA",
                        per_plane(lambda a: cv2.resize(a, size, interpolation=cv2.INTER_AREA)))]
    if s == 1 and p == k // 2 and k % 2 == 1 and not w.round_uint8:
        counts = _count_map(w, x, out_shape)

        def box(a):
            total = cv2.boxFilter(a, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
            return np.divide(total.reshape(a.shape), counts, out=total.reshape(a.shape))
        return [Variant("boxFilter(normalize=False, BORDER_CONSTANT) / counts", per_plane(box))]
    raise Unsupported("no OpenCV call for this average geometry")


def skimage_variants(w: Workload, x: np.ndarray, out_shape: tuple) -> list[Variant]:
    from skimage.measure import block_reduce

    ha, wa = spatial_axes(w.layout)
    block = [1] * x.ndim
    if w.global_pool:
        block[ha], block[wa] = x.shape[ha], x.shape[wa]
    elif w.window == w.stride and w.padding == 0 and not (
            x.shape[ha] % w.window or x.shape[wa] % w.window):
        block[ha] = block[wa] = w.window
    else:
        raise Unsupported("block_reduce needs window == stride, no padding and sizes the "
                          "window divides (it pads the end with cval=0)")
    func = np.max if w.mode == "max" else np.mean
    if w.round_uint8:
        return [Variant(f"block_reduce np.mean {tuple(block)} + rounding",
                        lambda: round_half_up_uint8(block_reduce(x, tuple(block), func)))]
    return [Variant(f"block_reduce {func.__name__} {tuple(block)}",
                    lambda: block_reduce(x, tuple(block), func))]


def scipy_variants(w: Workload, x: np.ndarray, out_shape: tuple) -> list[Variant]:
    from scipy import ndimage

    if w.global_pool:
        raise Unsupported("scipy.ndimage filters have no global pooling")
    ha, wa = spatial_axes(w.layout)
    k, s, p = w.window, w.stride, w.padding
    if p > k // 2:
        raise Unsupported("padding beyond the filter's centre")
    size = [1] * x.ndim
    size[ha] = size[wa] = k
    index = _strided(w, out_shape, k // 2 - p)
    if w.mode == "max":
        def maximum():
            return np.ascontiguousarray(ndimage.maximum_filter(x, size, mode="nearest")[index])
        return [Variant(f"maximum_filter {k}x{k} mode=nearest" + (f" + [::{s}]" if s > 1 else ""),
                        maximum)]
    work = np.float32 if x.dtype.kind in "ui" else x.dtype
    factor = None if p == 0 else (k * k) / _count_map(w, x, out_shape)

    def avg():
        out = ndimage.uniform_filter(x, size, output=work, mode="constant", cval=0)[index]
        out = out * factor if factor is not None else np.ascontiguousarray(out)
        return round_half_up_uint8(out) if w.round_uint8 else out
    label = f"uniform_filter {k}x{k} mode=constant" + (f" + [::{s}]" if s > 1 else "")
    return [Variant(label + (" x k*k/count" if p else ""), avg)]


PILLOW_MAX_FILTER_LIMIT = 5


def pillow_variants(w: Workload, x: np.ndarray, out_shape: tuple) -> list[Variant]:
    from PIL import Image, ImageFilter

    k, s, p = w.window, w.stride, w.padding
    planes = w.layout == "CHW" and x.dtype == np.float32
    if planes:
        images = [Image.fromarray(plane) for plane in x]  # mode F, built once, untimed
    elif w.layout == "HWC" and x.dtype == np.uint8 and x.shape[2] in (1, 3, 4):
        images = [Image.fromarray(x if x.shape[2] > 1 else x[:, :, 0])]  # L, RGB or RGBA
    else:
        raise Unsupported("Pillow images: uint8 L/RGB/RGBA (HWC) or float32 planes (mode F)")

    def per_image(fn):
        def run():
            if planes:
                return np.stack([fn(im) for im in images])
            out = fn(images[0])
            return out.reshape(out.shape[0], out.shape[1], -1)
        return run

    if w.global_pool:
        if w.mode != "max" or not planes:
            raise Unsupported("getextrema gives only a global max of float planes here")
        return [Variant("getextrema per plane",
                        per_image(lambda im: np.array([[im.getextrema()[1]]], np.float32)))]
    if w.mode == "avg" and k == s and p == 0:
        return [Variant(f"Image.reduce({k})", per_image(lambda im: np.asarray(im.reduce(k))))]
    if w.mode == "max" and k % 2 == 1 and p == k // 2:
        if k > PILLOW_MAX_FILTER_LIMIT:
            raise Unsupported(f"MaxFilter is an O(k^2) rank filter: {k}x{k} skipped as too slow")
        flt = ImageFilter.MaxFilter(k)
        return [Variant(f"MaxFilter({k})" + (f" + [::{s}]" if s > 1 else ""),
                        per_image(lambda im: np.asarray(im.filter(flt))[::s, ::s]))]
    raise Unsupported("Image.reduce needs window == stride; MaxFilter an odd window centred "
                      "(pad = window // 2)")


PEERS: tuple[Peer, ...] = (
    Peer("PyTorch", "torch", torch_variants),
    Peer("OpenCV", "cv2", opencv_variants),
    Peer("scikit-image", "skimage", skimage_variants),
    Peer("SciPy", "scipy", scipy_variants),
    Peer("Pillow", "PIL", pillow_variants),
)


class _PeerThreads:
    """Set PyTorch's and OpenCV's thread counts for the run, and restore them after
    (and PyTorch's OpenMP wait policy, for good: see the module docstring)."""

    def __init__(self, threads: int, peers: Sequence[Peer]):
        self.threads = threads
        self.modules = {p.module for p in peers}
        self.restore: list[Callable] = []

    def __enter__(self):
        if "torch" in self.modules:
            import torch
            old = torch.get_num_threads()
            torch.set_num_threads(self.threads)
            self.restore.append(lambda: torch.set_num_threads(old))
        if "cv2" in self.modules:
            import cv2
            old_cv = cv2.getNumThreads()
            cv2.setNumThreads(self.threads)
            self.restore.append(lambda: cv2.setNumThreads(old_cv))
        return self

    def __exit__(self, *exc):
        for undo in self.restore:
            undo()


# --------------------------------------------------------------------------------------------
# Checking and timing
# --------------------------------------------------------------------------------------------

AVG_RTOL = AVG_ATOL = 1e-5


def compare(w: Workload, ref: np.ndarray, got) -> str | None:
    """None when ``got`` equals poolcli's ``ref`` (see the module docstring), else why not."""
    got = np.asarray(got)
    if got.shape != ref.shape:
        return f"shape {got.shape} instead of {ref.shape}"
    if w.mode == "avg" and not w.round_uint8:
        bad = ~np.isclose(got, ref, rtol=AVG_RTOL, atol=AVG_ATOL)
    else:
        bad = got != ref
    if not bad.any():
        return None
    diff = np.abs(got.astype(np.float64) - ref.astype(np.float64)).max()
    return f"{int(bad.sum())} of {ref.size} values differ (max |diff| {diff:.3g})"


@dataclass
class _Timed:
    """One implementation in the timing loop."""

    impl: str
    run: Callable[[], object]
    runs: int
    variant: str | None = None
    kernel_only: bool = False  # see Variant
    times: list[float] = field(default_factory=list)
    error: str | None = None  # raised in a timed run: timed no more, reported as an error


def _time_round_robin(timed: list[_Timed], repeat: int) -> None:
    """``repeat`` rounds; each round runs every implementation once, in a new order (shuffled
    with a fixed seed), so that each follows every other about equally often: what runs just
    before a call can slow it (a peer's large temporaries given back, threads still winding
    down), and a fixed order, even one rotated each round, puts the same peer before it every
    time (measured: W7's average, the same work with or without ``out=``, took 2.8-2.9 ms as
    the call always timed after scikit-image and 2.3-2.5 ms as the one after poolcli)."""
    order = random.Random(0)
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeat):
            for item in order.sample(timed, len(timed)):
                if i < item.runs and item.error is None:
                    t0 = time.perf_counter()
                    try:
                        item.run()
                    except Exception as error:  # noqa: BLE001 -- one row, not the whole run
                        item.error = _first_line(error)
                        continue
                    item.times.append(time.perf_counter() - t0)
    finally:
        if enabled:
            gc.enable()


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:160]


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------

ROW_KEYS = ("workload", "description", "impl", "variant", "status", "time_ms_median", "time_ms_min",
            "ratio_copy", "ratio_read", "ratio_to_poolcli", "mb_per_s", "window_ratio", "runs",
            "threads", "shape", "dtype", "version", "note")


def run_bench(quick: bool = False, threads: int | None = None, repeat: int | None = None,
              workloads=None, progress: Callable[[int, int, str], None] | None = None,
              shapes: str | None = None, peers: Sequence[Peer] | None = None,
              slow_budget_s: float | None = None) -> list[dict]:
    """Run the benchmark and return one row (a dict with :data:`ROW_KEYS`) per workload and
    implementation: poolcli, poolcli out=, copy bound, read bound, then each installed peer.

    quick: smaller shapes (``shapes='quick'``) and 3 timed runs.  threads: see the module
    docstring (None = 1).  repeat: timed runs after the untimed first one (default 7, quick 3).
    workloads: ids (``'W1,W6b'`` or a list; ``W5``/``W7`` select their group) or
    :class:`Workload` objects.  progress(step, total, label) is called before every workload
    and once at the end with step == total.  shapes: ``'full'``, ``'quick'`` or ``'tiny'``.
    peers: the peers to try (default :data:`PEERS`; those that do not import are left out).
    slow_budget_s: a peer variant whose first run takes longer than budget/repeat is timed
    fewer runs (default 10 s, quick 1.5 s).
    """
    if "torch" not in sys.modules:
        # PyTorch's OpenMP threads otherwise spin for milliseconds after each call, taking the
        # cores from whatever is timed next (measured: poolcli 6.1 -> 9.5 ms on W1). OpenMP
        # reads this once, when torch loads: before the peers are imported below.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    threads = max(1, int(threads or 1))
    repeat = int(repeat or (3 if quick else 7))
    size = shapes or (QUICK if quick else FULL)
    budget = slow_budget_s if slow_budget_s is not None else (1.5 if quick else 10.0)
    chosen = select_workloads(workloads)
    peers = [p for p in (PEERS if peers is None else peers) if _installed(p.module)]
    versions = {p.name: p.version() for p in peers}
    versions.update({"poolcli": __version__, "poolcli out=": __version__,
                     "copy bound": np.__version__, "read bound": np.__version__})

    rows: list[dict] = []
    inputs: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}
    executor = ThreadPoolExecutor(threads) if threads > 1 else None
    try:
        with _PeerThreads(threads, peers):
            for step, w in enumerate(chosen):
                if progress:
                    progress(step, len(chosen), w.id)
                key = (w.shape(size), np.dtype(w.dtype).str)
                if key not in inputs:
                    x = make_input(*key)
                    inputs[key] = (x, np.empty_like(x))
                x, dst = inputs[key]
                rows += _run_workload(w, size, x, dst, threads, repeat, budget,
                                      peers, versions, executor)
                later = {(v.shape(size), np.dtype(v.dtype).str) for v in chosen[step + 1:]}
                for old in [k for k in inputs if k not in later]:
                    del inputs[old]
    finally:
        if executor is not None:
            executor.shutdown()
    _window_ratios(rows, chosen)
    if progress:
        progress(len(chosen), len(chosen), "done")
    return rows


BOUNDS = ("copy bound", "read bound")


def _run_workload(w, size, x, dst, threads, repeat, budget, peers, versions,
                  executor) -> list[dict]:
    base = {"workload": w.id, "description": w.describe(size), "shape": list(x.shape),
            "dtype": str(x.dtype)}

    def row(impl, status, note="", variant=None, times=(), runs=0, used_threads=threads):
        r = dict.fromkeys(ROW_KEYS)
        r.update(base, impl=impl, status=status, note=note, variant=variant, runs=runs,
                 threads=used_threads, version=versions.get(impl))
        if times:
            r["time_ms_median"] = statistics.median(times) * 1e3
            r["time_ms_min"] = min(times) * 1e3
        return r

    run_pool, pool_note = poolcli_call(w, x, threads)
    try:
        ref = run_pool()  # the untimed first run, and the reference for every peer
    except Exception as error:  # noqa: BLE001 -- reported, not raised
        return [row("poolcli", "error", _first_line(error), used_threads=threads)]
    run_into, _ = poolcli_call(w, x, threads, np.empty_like(ref))
    into_differs = None if np.array_equal(run_into(), ref, equal_nan=True) else (
        "differs from poolcli's own result")  # checked like every implementation
    copy, read = bound_calls(x, dst, threads, executor)
    copy(), read()
    timed = [_Timed("poolcli", run_pool, repeat), _Timed("poolcli out=", run_into, repeat),
             _Timed("copy bound", copy, repeat), _Timed("read bound", read, repeat)]
    own = len(timed)  # poolcli's rows and the bounds; the peers' variants follow
    into = "into a preallocated output"
    notes = {"poolcli": pool_note, "poolcli out=": f"{pool_note}, {into}" if pool_note else into,
             "copy bound": "np.copyto", "read bound": "np.max"}
    if threads > 1:
        split = f" over {len(_blocks(x.shape[0], threads))} leading-axis blocks"
        notes["copy bound"] += split
        notes["read bound"] += split
    peer_rows: dict[str, dict] = {}
    for peer in peers:
        peer_rows[peer.name], found = _check_peer(peer, w, x, ref, repeat, budget, row,
                                                  threads)
        timed += found
    del ref
    _time_round_robin(timed, repeat)

    rows = [row(t.impl, "ok", notes[t.impl], times=t.times, runs=len(t.times))
            if t.error is None else row(t.impl, "error", t.error) for t in timed[:own]]
    if into_differs:
        rows = [row(r["impl"], "mismatch", into_differs) if r["impl"] == "poolcli out=" else r
                for r in rows]
    for peer in peers:
        tried = [t for t in timed[own:] if t.impl == peer.name]
        candidates = [t for t in tried if t.error is None and not t.kernel_only]
        r = peer_rows[peer.name]
        failed = [f"{t.variant}: {t.error}" for t in tried if t.error is not None]
        if candidates:
            best = min(candidates, key=lambda t: statistics.median(t.times))
            others = [f"{t.variant}: {statistics.median(t.times) * 1e3:.1f} ms"
                      for t in tried if t.error is None and t is not best]
            extra = [r["note"]] if r["note"] else []
            extra += ["also " + "; ".join(others)] if others else []
            extra += failed
            if best.runs < repeat:
                extra.insert(0, f"slow: timed {best.runs} of {repeat} runs")
            r = row(peer.name, "ok", "; ".join(extra), best.variant, best.times, best.runs,
                    _threads_of(peer, threads))
            r["_variants"] = {t.variant: statistics.median(t.times) * 1e3 for t in candidates}
        elif failed:
            r = row(peer.name, "error", "; ".join(failed), used_threads=_threads_of(peer, threads))
        rows.append(r)
    _ratios(rows)
    return rows


def _threads_of(peer: Peer, threads: int) -> int:
    """The threads a peer runs with: PyTorch and OpenCV take the run's, the others run on one."""
    return threads if peer.module in ("torch", "cv2") else 1


def _check_peer(peer, w, x, ref, repeat, budget, make_row,
                threads) -> tuple[dict, list[_Timed]]:
    """Build a peer's variants, run each once and compare it with poolcli's result.
    Returns the row to report when nothing passes (or a note to keep) and the variants to time."""
    def row(impl, status, note):
        return make_row(impl, status, note, used_threads=_threads_of(peer, threads))
    try:
        variants = peer.variants(w, x, ref.shape)
    except Unsupported as why:
        return row(peer.name, "unsupported", str(why)), []
    except Exception as error:  # noqa: BLE001
        return row(peer.name, "error", _first_line(error)), []
    passed, problems, statuses = [], [], set()
    for v in variants:
        try:
            t0 = time.perf_counter()
            result = v.run()
            first = time.perf_counter() - t0
            why = compare(w, ref, v.to_array(result))
        except Exception as error:  # noqa: BLE001
            statuses.add("error")
            problems.append(f"{v.label}: {_first_line(error)}")
            continue
        del result
        if why:
            statuses.add("mismatch")
            problems.append(f"{v.label}: {why}")
            continue
        runs = max(1, min(repeat, int(budget / max(first, 1e-9))))
        passed.append(_Timed(peer.name, v.run, runs, v.label, v.kernel_only))
    if any(not t.kernel_only for t in passed):
        return row(peer.name, "ok", "; ".join(problems)), passed
    status = "mismatch" if "mismatch" in statuses else "error"
    return row(peer.name, status, "; ".join(problems)), []


def _ratios(rows: list[dict]) -> None:
    medians = {r["impl"]: r["time_ms_median"] for r in rows if r["status"] == "ok"}
    for r in rows:
        m = r["time_ms_median"]
        if r["status"] != "ok" or m is None:
            continue
        for key, impl in (("ratio_copy", "copy bound"), ("ratio_read", "read bound"),
                          ("ratio_to_poolcli", "poolcli")):
            if medians.get(impl):
                r[key] = m / medians[impl]
        nbytes = int(np.prod(r["shape"])) * np.dtype(r["dtype"]).itemsize
        r["mb_per_s"] = nbytes / 1e6 / (m / 1e3) if m > 0 else None


def _median_of(row: dict, variant: str | None) -> float | None:
    """A row's median for ``variant``: a peer's best variant may differ between workloads, and
    its other variants' medians are kept (``_variants``, not written out)."""
    if variant == row["variant"]:
        return row["time_ms_median"]
    return row.get("_variants", {}).get(variant)


def _window_ratios(rows: list[dict], chosen: list[Workload]) -> None:
    """For a workload with ``compare_to`` (W5): each implementation's median over its median on
    the companion workload (W5-5x5), as ``window_ratio`` and in the note."""
    for w in chosen:
        if not w.compare_to:
            continue
        other = {r["impl"]: r for r in rows
                 if r["workload"] == w.compare_to and r["status"] == "ok"}
        for r in rows:
            if r["workload"] != w.id or r["status"] != "ok" or r["impl"] in BOUNDS \
                    or r["impl"] not in other:
                continue
            companion = _median_of(other[r["impl"]], r["variant"])  # like by like
            if companion:
                r["window_ratio"] = r["time_ms_median"] / companion
                text = f"x{r['window_ratio']:.2f} the time of {w.compare_to}"
                r["note"] = f"{text}; {r['note']}" if r["note"] else text


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def json_rows(rows: list[dict]) -> list[dict]:
    """``--json``: the rows with exactly the keys of :data:`ROW_KEYS`, in that order, floats
    rounded to 4 decimals (written one per line by ``pool_cli.report.json_lines``)."""
    def clean(v):
        return round(v, 4) if isinstance(v, float) else v
    return [{k: clean(r.get(k)) for k in ROW_KEYS} for r in rows]
