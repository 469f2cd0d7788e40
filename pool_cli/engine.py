"""One job and batches: load -> pool -> save, with timings and per-file errors.

A failure of one input never stops the batch: it becomes a :class:`Result` with ``ok`` False
and a one-line ``error`` naming the input.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import stat
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from . import io
from .core import PoolError, PoolSpec, check_dtype
from .core.errors import one_line
from .core.execute import split_order
from .core.geometry import DEFAULT_LAYOUTS


# A memory-mapped .npy is pooled in bands of this many input bytes (bounded memory).
STREAM_BYTES = 64 * 2**20


@dataclass(frozen=True)
class OutputOptions:
    """Where and how results are written."""

    output: str | None = None
    format: str | None = None
    overwrite: bool = False
    jpeg_quality: int = 95
    png_compression: int = 1


@dataclass(frozen=True)
class Source:
    """One input: its path, its folder relative to a recursive root (kept under -o DIR), and
    whether a folder's walk found it (rather than the command line naming it)."""

    path: str
    subdir: str = ""
    walked: bool = False


@dataclass
class Result:
    """What happened to one array of one input: the row of a report."""

    input: str
    mode: str
    output: str | None = None
    key: str | None = None
    input_shape: list[int] | None = None
    output_shape: list[int] | None = None
    input_dtype: str | None = None
    output_dtype: str | None = None
    layout: str | None = None
    geometry: dict = field(default_factory=dict)
    ceil_mode: bool = False
    load_ms: float | None = None  # None: not reached (a failed input)
    pool_ms: float | None = None
    save_ms: float | None = None
    input_bytes: int = 0
    ok: bool = True
    error: str | None = None
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        """The SPEC's JSON object for this row (``key`` only for .npz members)."""
        data = {"input": self.input, "output": self.output, "mode": self.mode,
                "input_shape": self.input_shape, "output_shape": self.output_shape,
                "input_dtype": self.input_dtype, "output_dtype": self.output_dtype,
                "layout": self.layout, "window": None, "stride": None, "padding": None,
                "dilation": None, **self.geometry, "ceil_mode": self.ceil_mode,
                **{name: None if ms is None else round(ms, 3) for name, ms in (
                    ("load_ms", self.load_ms), ("pool_ms", self.pool_ms),
                    ("save_ms", self.save_ms))}, "ok": self.ok}
        if self.key is not None:
            data["key"] = self.key
        if self.warnings:
            data["warnings"] = self.warnings
        if not self.ok:
            data["error"] = self.error
        return data


def find_sources(paths: list[str], recursive: bool) -> Iterator[Source | Result]:
    """Expand the command's inputs: files as given, folders walked when ``recursive``.

    A folder without ``recursive`` yields a failed :class:`Result` (the mode is filled in later).
    """
    for path in paths:
        if path == "-" or not os.path.isdir(path):
            yield Source(path)
        elif not recursive:
            yield Result(path, "", ok=False, error=f"{path}: is a folder (add -r to pool the files in it)")
        else:
            found, unlisted = False, []  # folders os.walk could not list: failed inputs too
            for folder, dirs, files in os.walk(path, onerror=unlisted.append):
                yield from _unlisted(unlisted)
                dirs.sort()
                subdir = os.path.relpath(folder, path)
                for name in sorted(files):
                    if io.is_input_name(name):
                        found = True
                        yield _walked(os.path.join(folder, name), "" if subdir == "." else subdir)
            failed = list(_unlisted(unlisted))
            yield from failed
            if not found and not failed:
                yield Result(path, "", ok=False, error=f"{path}: no images or arrays in this folder")


def _walked(path: str, subdir: str) -> Source | Result:
    """A file a folder's walk found; a named pipe, socket or device there fails (reading one
    could block the batch for ever: only one named on the command line is read)."""
    try:
        regular = stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # a broken link: reading it says what is wrong
        regular = True
    if regular:
        return Source(path, subdir, walked=True)
    return Result(path, "", ok=False,
                  error=f"{path}: not a regular file (a pipe or device found in a folder is not read)")


def _unlisted(errors: list[OSError]) -> Iterator[Result]:
    """Failed results for the folders in ``errors`` (emptied)."""
    while errors:
        error = errors.pop(0)
        reason = "permission denied" if isinstance(error, PermissionError) else (
            error.strerror or str(error)).lower()
        yield Result(error.filename, "", ok=False,
                     error=f"{error.filename}: cannot list this folder ({reason})")


def without_own_outputs(items: list, options: OutputOptions, mode: str) -> tuple[list, int]:
    """``items`` less the files a folder's walk found that are outputs this command would write
    for other inputs (an earlier run's ``cat_max.png`` beside ``cat.png``): pooling them again
    would pile ``cat_max_max.png`` on them and make ``cat.png``'s output an input. A file whose
    own output would be itself (``-o '{stem}{ext}'``) is an input all the same: it then fails
    as one that would be replaced. Returns the items kept and how many were left out."""
    def planned(source: Source) -> set[str]:
        named = options.format or named_format(options.output) or io.format_for_path(source.path)
        # a format poolcli does not write (PSD) goes to PNG or TIFF: either may be on disk
        return {os.path.realpath(destination(source, options, mode, fmt))
                for fmt in ([named] if named else ["png", "tiff"])}

    sources = [item for item in items if isinstance(item, Source) and item.path != "-"]
    real = {source.path: os.path.realpath(source.path) for source in sources}
    outputs = {source.path: planned(source) for source in sources}
    written_by_others = {path for source in sources for path in outputs[source.path]
                         if path != real[source.path]}
    kept = [item for item in items if not (
        isinstance(item, Source) and item.walked and real[item.path] in written_by_others
        and real[item.path] not in outputs[item.path])]
    return kept, len(items) - len(kept)


def destination(source: Source, options: OutputOptions, mode: str, fmt: str) -> str:
    """The path the output of ``source`` in format ``fmt`` goes to (:func:`output_path`,
    keeping the input's own extension when the format is its own)."""
    return output_path(source, options, mode, fmt,
                       keep_suffix=io.format_for_path(source.path) == fmt)


def output_path(source: Source, options: OutputOptions, mode: str, fmt: str,
                keep_suffix: bool = False) -> str:
    """Resolve ``-o`` (file, folder, template, ``-`` or nothing) for one input.

    ``{ext}`` is the format's usual extension, or the input's own (``.jpeg``, ``.pgm``) when
    ``keep_suffix`` says the output has the input's format.

    Examples
    --------
    >>> output_path(Source("a/cat.png"), OutputOptions(), "max", "png")
    'a/cat_max.png'
    >>> output_path(Source("cat.png"), OutputOptions("out/{stem}.{mode}{ext}"), "avg", "npy")
    'out/cat.avg.npy'
    >>> output_path(Source("cat.png"), OutputOptions("out/{stem}/"), "avg", "npy")
    'out/cat/cat_avg.npy'
    """
    out = options.output
    if out == "-" or (out is None and source.path == "-"):
        return "-"
    stem = "stdin" if source.path == "-" else Path(source.path).stem
    ext = Path(source.path).suffix if keep_suffix else io.extension_for_format(fmt)
    if out is None:
        return str(Path(source.path).with_name(f"{stem}_{mode}{ext}"))
    if is_template(out):
        out = out.format(stem=stem, mode=mode, ext=ext)
        if not out.endswith(("/", os.sep)):
            return out  # else a folder of this input's own
    if is_folder_output(out):
        return str(Path(out) / source.subdir / f"{stem}_{mode}{ext}")
    return out


def names_one_file(out: str | None) -> bool:
    """``-o`` is a plain file path: not a folder, a template or standard output."""
    return bool(out) and out != "-" and not is_template(out) and not is_folder_output(out)


def is_template(out: str | None) -> bool:
    """``-o`` is a template: it holds ``{`` and is not an existing folder (whose name may)."""
    return out is not None and "{" in out and not os.path.isdir(out)


def is_folder_output(out: str | None) -> bool:
    """``-o`` names a folder: it exists as one, or ends with a slash."""
    return out is not None and (out.endswith(("/", os.sep)) or os.path.isdir(out))


def named_format(out: str | None) -> str | None:
    """The format ``-o`` names by an extension of its own (a file, or a template ending in
    ``.npy``, say), or None (no extension, ``{ext}``, a folder, standard output).

    Examples
    --------
    >>> named_format("out/{stem}.{mode}.npy"), named_format("out/{stem}{ext}"), named_format("a.png")
    ('npy', None, 'png')
    """
    if not out or out == "-" or is_folder_output(out):
        return None
    extension = os.path.splitext(out)[1]
    return None if "{" in extension else io.format_for_path(out)


def output_format(options: OutputOptions, loaded: io.Loaded) -> str:
    """``--format``, else the format ``-o`` names, else the input's own format."""
    out = options.output
    if options.format:
        return options.format
    named = named_format(out)
    if named is None and names_one_file(out):
        raise PoolError(f"{out}: unknown output format (use an extension like .png or .npy, or --format)")
    return named or loaded.format


class Batch:
    """Pools many inputs with one spec; outputs are claimed once so no two inputs write the same file."""

    def __init__(self, spec: PoolSpec, options: OutputOptions, sources: list[Source],
                 threads: int | None = None):
        self.spec = spec
        self.options = options
        self.threads = threads
        self.inputs = {os.path.realpath(s.path) for s in sources if s.path != "-"}
        self.claimed: dict[str, Source] = {}
        self.lock = threading.Lock()
        # outputs are claimed in input order whatever -j does: the first mention of a file,
        # or the first of two inputs with one output, wins, as it does one at a time
        self.turn = threading.Condition(self.lock)
        self.next_turn, self.turns_passed = 0, set()

    def run(self, items: list[Source | Result], jobs: int = 1,
            on_done: Callable[[], None] | None = None,
            finished: list | None = None) -> list[Result]:
        """Process every item (``jobs`` at once); results come back in input order.

        ``finished`` (a list) receives ``(index, results)`` as each item ends, so that a caller
        stopped midway can still report the items done (:func:`in_input_order`).
        """
        finished = [] if finished is None else finished

        def one(index, item):
            try:
                results = self.pool_file(item, index) if isinstance(item, Source) else [
                    dataclasses.replace(item, mode=self.spec.mode.name,
                                        ceil_mode=self.spec.ceil_mode)]
            finally:  # failed before its claim, or never claiming: the next may go on
                self._pass_turn(index)
            finished.append((index, results))  # list.append is atomic: threads may share it
            if on_done:
                on_done()
            return results

        if jobs > 1 and len(items) > 1:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                started = []
                try:
                    for i, item in enumerate(items):
                        started.append(pool.submit(one, i, item))
                    batches = [done.result() for done in started]
                except BaseException:  # interrupted: files under way finish, no new one starts
                    for i, done in enumerate(started):
                        if done.cancel():  # never runs: a later item may wait for its turn
                            self._pass_turn(i)
                    raise
        else:
            batches = [one(i, item) for i, item in enumerate(items)]
        return [result for results in batches for result in results]

    def pool_file(self, source: Source, turn: int | None = None) -> list[Result]:
        """Load, pool and save one input; every failure becomes a failed row naming it, with
        what was known by then (the input's shape and dtype, the output's path). ``turn``: its
        place in the batch, in whose order outputs are claimed."""
        blank = Result(source.path, self.spec.mode.name, ceil_mode=self.spec.ceil_mode)
        try:
            return self._pool_file(source, blank, turn)
        except PoolError as error:
            return [self._failed(blank, str(error), source.path)]
        except MemoryError:
            return [self._failed(blank, "not enough memory", source.path)]
        except Exception as error:  # a batch must outlive one bad file, whatever went wrong
            return [self._failed(blank, f"{type(error).__name__}: {error}", source.path)]

    def _pool_file(self, source: Source, blank: Result, turn: int | None) -> list[Result]:
        start = time.perf_counter()
        loaded = io.read_input(source.path)
        blank.load_ms = load_ms = (time.perf_counter() - start) * 1e3
        if len(loaded.arrays) == 1:  # known from here on, should this input fail
            [array] = loaded.arrays.values()
            blank.input_shape, blank.input_dtype = list(array.shape), str(array.dtype)
        fmt = output_format(self.options, loaded)
        blank.output = dest = destination(source, self.options, self.spec.mode.name, fmt)
        self._claim(source, dest, turn)
        rows, outputs = [], {}
        for key, array in loaded.arrays.items():
            name = source.path if key is None else f"{source.path}[{key}]"
            try:
                check_dtype(array.dtype)
                spec = self._spec_for(loaded, array, fmt)
                plan = spec.plan(array.shape)
            except PoolError as error:
                if key is not None:  # the failed row names the member, as its row would
                    blank.key, blank.input_shape = key, list(array.shape)
                    blank.input_dtype = str(array.dtype)
                raise PoolError(f"{name}: {error}") from None
            if isinstance(array, np.memmap) and fmt == "npy" and dest != "-":
                return [self._stream(blank, source, loaded, array, spec, plan, dest, load_ms)]
            start = time.perf_counter()
            outputs[key] = spec.run(array, plan, self.threads)
            rows.append(self._row(blank, key, dest, fmt, loaded, array, plan,
                                  io.stored_dtype(fmt, loaded, outputs[key]),
                                  load_ms, (time.perf_counter() - start) * 1e3))
        blank.pool_ms = sum(row.pool_ms for row in rows)  # done, should the write fail
        start = time.perf_counter()
        warnings = io.write_output(dest, outputs, fmt=fmt, like=loaded, overwrite=self.options.overwrite,
                                   jpeg_quality=self.options.jpeg_quality,
                                   png_compression=self.options.png_compression)
        save_ms = (time.perf_counter() - start) * 1e3
        for row in rows:
            row.save_ms = save_ms
            row.warnings += warnings
        return rows

    def _spec_for(self, loaded: io.Loaded, array: np.ndarray, fmt: str) -> PoolSpec:
        """The spec for one array: an image's layout; an image's averages rounded back into it."""
        spec = self.spec
        if spec.layout is None and loaded.layout is not None:
            spec = dataclasses.replace(spec, layout=loaded.layout)
        if spec.mode.name == "avg" and loaded.image_mode and fmt not in ("npy", "npz") \
                and array.dtype.kind in "iu":
            spec = dataclasses.replace(spec, rounded=True)  # exact, and no float64 copy
        return spec

    @staticmethod
    def _row(blank, key, dest, fmt, loaded, array, plan, out_dtype, load_ms, pool_ms) -> Result:
        return dataclasses.replace(
            blank, key=key, output=dest, input_shape=list(array.shape),
            output_shape=list(plan.out_shape), input_dtype=str(array.dtype),
            output_dtype=str(out_dtype), layout=plan.layout, geometry=plan.describe(),
            load_ms=load_ms, pool_ms=pool_ms, input_bytes=array.nbytes,
            warnings=loaded.warnings + loaded.fallback_notes(fmt))

    def _stream(self, blank, source, loaded, array, spec, plan, dest, load_ms) -> Result:
        """Pool a memory-mapped .npy in bands straight into the output file: bounded memory.

        Bands are contiguous runs of the file: a Fortran-ordered input is split along its last
        axis first, and its output is written in Fortran order too.
        """
        pool_s = 0.0
        order = split_order(array, plan)

        def pooled_bands():
            nonlocal pool_s
            for band in plan.split(STREAM_BYTES, array.itemsize, order):
                part = array[band.source]
                start = time.perf_counter()
                yield spec.run(part, band.plan, self.threads)
                pool_s += time.perf_counter() - start
                io.release_pages(part)

        start = time.perf_counter()
        dtype = spec.output_dtype(array.dtype)
        io.write_npy_stream(dest, plan.out_shape, dtype, pooled_bands(),
                            overwrite=self.options.overwrite, fortran_order=order == "F")
        total_ms = (time.perf_counter() - start) * 1e3
        row = self._row(blank, None, dest, "npy", loaded, array, plan, dtype, load_ms,
                        pool_s * 1e3)
        row.save_ms = total_ms - pool_s * 1e3
        return row

    def _claim(self, source: Source, dest: str, turn: int | None = None) -> None:
        """Refuse an output that is an input, exists already, or another input's output
        (claimed once every earlier ``turn`` has claimed or failed)."""
        if turn is not None:
            with self.turn:
                self.turn.wait_for(lambda: self.next_turn >= turn)
        try:
            if dest != "-":
                self._claim_output(source, dest)
        finally:
            if turn is not None:
                self._pass_turn(turn)

    def _pass_turn(self, turn: int) -> None:
        with self.turn:
            if turn >= self.next_turn:
                self.turns_passed.add(turn)
            while self.next_turn in self.turns_passed:
                self.turns_passed.remove(self.next_turn)
                self.next_turn += 1
            self.turn.notify_all()

    def _claim_output(self, source: Source, dest: str) -> None:
        """``dest`` for ``source``, or a PoolError saying who has it or why it cannot be."""
        def claim(real: str) -> None:  # before the exists check: an earlier input wrote it
            with self.lock:
                other = self.claimed.setdefault(real, source)
            if other is not source:
                if os.path.realpath(other.path) == os.path.realpath(source.path):
                    raise PoolError(f"{source.path}: given more than once; only its first "
                                    f"mention is pooled")
                raise PoolError(f"{source.path}: output {dest} is also the output of {other.path}")

        check_output(source.path, dest, self.options.overwrite, self.inputs, claim)

    @staticmethod
    def _failed(blank: Result, message: str, path: str) -> Result:
        # one line whatever the OS said, with the input's name as it is (two spaces stay two)
        return dataclasses.replace(blank, ok=False,
                                   error=one_line(_named(path, message)))


def check_output(path: str, dest: str, overwrite: bool, inputs: set[str],
                 claim: Callable[[str], None] | None = None) -> str:
    """Refuse an output (of input ``path``) that would replace one of ``inputs`` (real paths),
    that ``claim`` (given its real path) refuses, or that exists already without
    ``overwrite``; return its real path."""
    real = os.path.realpath(dest)
    if real in inputs:
        raise PoolError(f"{path}: output {dest} would replace an input")
    if claim is not None:
        claim(real)
    if os.path.exists(dest) and not overwrite and not io.writes_in_place(dest):
        raise PoolError(f"{path}: output {dest} exists (use --overwrite to replace it)")
    return real


def in_input_order(finished: list) -> list[Result]:
    """The results of :meth:`Batch.run`'s ``finished`` list, in input order."""
    return [result for _, results in sorted(finished, key=lambda done: done[0])
            for result in results]


def _named(path: str, message: str) -> str:
    """``message`` led by the input's name, once."""
    return message if message.startswith((f"{path}:", f"{path}[")) else f"{path}: {message}"


@contextlib.contextmanager
def _picture_job(path: str):
    """Errors of one picture job name its input: PoolErrors, and the renderers' ValueErrors
    (an array they cannot draw: channels, page or layout that do not fit). NumPy's warnings
    about NaN-only maps or overflowing values stay quiet: the pictures and numbers show them."""
    try:
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            yield
    except (PoolError, ValueError) as error:
        raise PoolError(_named(path, str(error))) from None


def describe_file(path: str) -> list[dict]:
    """What ``poolcli info`` shows: format, mode or dtype, shape, layout and value range per array."""
    loaded = io.read_input(path)
    rows = []
    for key, array in loaded.arrays.items():
        warnings = loaded.warnings + loaded.fallback_notes(loaded.format)
        try:
            check_dtype(array.dtype)
            low, high = _value_range(array)
        except PoolError as refusal:  # described all the same, without a range
            low = high = None
            warnings.append(f"{path if key is None else f'{path}[{key}]'}: {refusal}")
        layout = loaded.layout or DEFAULT_LAYOUTS.get(array.ndim)
        rows.append({"input": path, "key": key, "format": loaded.read_as or loaded.format,
                     "image_mode": loaded.image_mode, "dtype": str(array.dtype),
                     "shape": list(array.shape), "layout": layout, "min": low, "max": high,
                     "bytes": loaded.nbytes, "warnings": warnings, "ok": True})
    return rows


def _value_range(array: np.ndarray) -> tuple:
    """The smallest and largest value (finite ones for floats), or None for none."""
    finite = array[np.isfinite(array)] if array.dtype.kind == "f" else array
    return (finite.min().item(), finite.max().item()) if finite.size else (None, None)


def load_array(path: str, layout: str | None) -> tuple[np.ndarray, str | None, str, str | None]:
    """One array to look at: an image or a .npy (an .npz with one array); its layout, stem and
    image mode."""
    loaded = io.read_input(path)
    if len(loaded.arrays) != 1:
        raise PoolError(f"{path}: holds {len(loaded.arrays)} arrays; give one image or .npy")
    array = next(iter(loaded.arrays.values()))
    check_dtype(array.dtype)
    stem = "stdin" if path == "-" else Path(path).stem
    return np.asarray(array), layout or loaded.layout, stem, loaded.image_mode


def picture_path(path: str, output: str | None, stem: str, what: str, overwrite: bool) -> str:
    """``-o``, or ``{stem}_{what}.png`` beside the input, checked by :func:`check_picture`."""
    dest = output or os.path.join("" if path == "-" else os.path.dirname(path), f"{stem}_{what}.png")
    check_picture(path, dest, overwrite)
    return dest


def check_picture(path: str, dest: str, overwrite: bool) -> None:
    """Before any work: a picture never replaces its input, nor an existing file without
    ``overwrite`` (``-`` is standard output)."""
    if dest != "-":
        check_output(path, dest, overwrite, set() if path == "-" else {os.path.realpath(path)})


def compare(path: str, modes: list[str], layout: str | None, options: dict, output: str | None,
            overwrite: bool, repeat: int) -> tuple[str, list[dict], list[str]]:
    """``poolcli compare``: the contact sheet of one input, written; returns path, rows, notes."""
    from .visual import compare_sheet

    with _picture_job(path):
        x, layout, stem, image_mode = load_array(path, layout)
        dest = picture_path(path, output, stem, "compare", overwrite)
        # an array from a file (2-D too) is a feature map; a decoded picture an image,
        # unless given a layout that is not one
        sheet = compare_sheet(x, modes, layout, kind="auto" if image_mode else "features",
                              title=os.path.basename(path), repeat=repeat,
                              cmyk=image_mode == "CMYK", **options)
        io.save_picture(dest, sheet.image, overwrite=overwrite)
    return dest, sheet.rows, sheet.notes


def show(path: str, layout: str | None, output: str | None, overwrite: bool, *, channels,
         normalize: str, cmap: str, page: int, before_after: PoolSpec | None) -> tuple[str, list[str]]:
    """``poolcli show``: a feature map as a grid of tiles (with its pooled version beside)."""
    from .visual import feature_grid
    from .visual.render import describe_geometry, mode_title

    with _picture_job(path):
        x, layout, stem, _ = load_array(path, layout)
        dest = picture_path(path, output, stem, "grid", overwrite)
        pair, title = None, os.path.basename(path)
        if before_after is not None:
            spec = dataclasses.replace(before_after, layout=layout) if layout else before_after
            plan = spec.plan(x.shape)
            pair = (spec.run(x, plan), plan)
            title += f": {mode_title(spec)}, {describe_geometry(plan)}" + (
                ", ceil mode" if spec.ceil_mode else "")
        image, notes = feature_grid(x, layout, channels=channels, normalize=normalize, cmap=cmap,
                                    before_after=pair, page=page, title=title)
        io.save_picture(dest, image, overwrite=overwrite)
    return dest, notes


def analyze(path: str, layout: str | None, modes, windows, strides, repeat: int,
            options: dict, plot: str | None, overwrite: bool):
    """``poolcli analyze``: time and fidelity per mode and geometry (and the plot, if asked).

    ``strides`` (None: the windows) pair one to one with ``windows``. A run where no geometry
    fits the input fails it.
    """
    from .visual import analyze as measure, points_from_rows, scatter_plot

    with _picture_job(path):
        x, layout, _, _ = load_array(path, layout)
        if plot:
            check_picture(path, plot, overwrite)
        rows = measure(x, layout, modes=modes, windows=windows, strides=strides, paired=True,
                       repeat=repeat, **options)
        if rows.skipped and not rows:
            more = f" (and {len(rows.skipped) - 1} more)" if len(rows.skipped) > 1 else ""
            raise PoolError(f"no geometry fits: {rows.skipped[0]}{more}")
        if plot:
            title = f"{os.path.basename(path)}: time against PSNR"
            io.save_picture(plot, scatter_plot(points_from_rows(rows), title=title), overwrite=overwrite)
    return rows
