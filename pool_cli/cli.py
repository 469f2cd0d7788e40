"""The ``poolcli`` command: thin Click commands over the engine.

Options are defined once and shared; this is the one place where errors become messages
and exit codes: 0 every input done, 1 some input failed, 2 usage error (nothing written).
"""

from __future__ import annotations

import errno
import os
import signal
import stat
import sys
import time

import click

from . import __version__
from .core.errors import PoolError
from .core.modes import MODES, Mode, owner_of, split_options

from .formats import FORMATS, format_for_path


def _geometry_options(mode: Mode | None = None):
    """The geometry options of SPEC.md, with the mode-specific ones only where they belong."""
    options = [
        click.option("-w", "--window", metavar="K", help="Window size: 3, 3x2 or 3,2.  [default: 2]"),
        click.option("-s", "--stride", metavar="S", help="Stride, same forms.  [default: the window]"),
        click.option("-p", "--padding", metavar="P",
                     help="N, N1,N2, B1:E1,B2:E2, valid, same or same-lower.  [default: valid]"),
        click.option("-d", "--dilation", metavar="D", help="Dilation, same forms as window.  [default: 1]"),
        click.option("--ceil-mode", is_flag=True, help="Keep the last partial window."),
        click.option("--global", "global_pool", is_flag=True,
                     help="One window over each whole spatial extent (spatial axes stay, size 1)."),
        click.option("--output-size", metavar="N", help="Adaptive pooling to this size per spatial axis."),
        click.option("--ignore-nan", is_flag=True, help="Skip NaN instead of propagating it."),
        click.option("--layout", metavar="AXES", help="Array axis letters, e.g. HWC, NCHW.  [default: by ndim]"),
    ]
    if mode is None or "count_include_pad" in mode.options:
        options.append(click.option("--count-include-pad", is_flag=True,
                                    help="avg: padded cells count (as zeros) in the divisor."))
    if mode is None or "power" in mode.options:
        options.append(click.option("--power", type=float, metavar="P",
                                    help="lp: the p of (sum |x|^p)^(1/p), > 0.  [default: 2]"))
    return options


_OUTPUT_OPTIONS = [
    click.option("-o", "--output", metavar="PATH",
                 help="A file, a folder (made if missing), a template like out/{stem}.{mode}{ext}, "
                      "or - for standard output.  [default: {stem}_{mode}{ext} beside the input]"),
    click.option("--format", "fmt", type=click.Choice(FORMATS), help="Output format (by default the "
                 "output's extension, else the input's format)."),
    click.option("--overwrite", is_flag=True, help="Replace existing outputs (never an input)."),
    click.option("-r", "--recursive", is_flag=True, help="Pool the files inside folders, keeping sub-folders."),
    click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
                 help="Files processed at once."),
    click.option("--jpeg-quality", type=click.IntRange(1, 100), default=95, show_default=True,
                 help="Quality of JPEG and WebP outputs."),
    click.option("--png-compression", type=click.IntRange(0, 9), default=1, show_default=True,
                 help="zlib level of PNG outputs (1 is fast; 9 is small and slow)."),
    click.option("--threads", type=click.IntRange(min=1), metavar="N",
                 help="Threads pooling each array.  [default: every core]"),
]

def _report_options(rows: str = "input") -> list:
    """``--json`` (one object per ``rows``) and ``--quiet``."""
    return [click.option("--json", "as_json", is_flag=True,
                         help=f"One JSON object per {rows} instead of the table."),
            click.option("-q", "--quiet", is_flag=True, help="No report: errors only.")]


def _apply(options):
    def decorate(function):
        for option in reversed(options):
            function = option(function)
        return function
    return decorate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="poolcli")
def cli():
    """Pool images and feature maps: max, min, avg, sum and Lp, exactly as PyTorch and ONNX do.

    \b
      poolcli max photo.png --window 2 --stride 2
      poolcli avg maps.npy -w 3 -s 1 -p same -o out/ --json
    """


def _mode_command(mode: Mode) -> click.Command:
    @click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
    @_apply(_geometry_options(mode) + _OUTPUT_OPTIONS + _report_options())
    def command(inputs, output, fmt, overwrite, recursive, jobs, jpeg_quality, png_compression,
                threads, as_json, quiet, **geometry):
        spec = _spec(mode.name, geometry)
        _pool_files(spec, inputs, output, fmt, overwrite, recursive, jobs, jpeg_quality,
                    png_compression, threads, as_json, quiet)

    command.__doc__ = (f"Pool each INPUT: {mode.summary}.\n\n"
                       "INPUT is an image, a .npy or .npz file, a folder (with -r) or - for standard input.")
    return click.command(mode.name)(command)


def _spec(mode: str, geometry: dict):
    """Every rule that holds whatever the input is checked here: a mistake is a usage error."""
    _refuse_replaced(geometry)
    from .core import make_spec

    try:
        return make_spec(mode, **geometry)
    except PoolError as error:
        raise click.UsageError(str(error)) from None


def _refuse_replaced(geometry: dict) -> None:
    """``--global`` and ``--output-size`` replace the window geometry: options of it given with
    other than their defaults would be ignored, so they are a usage error (as in the API)."""
    if geometry.get("global_pool") and geometry.get("output_size") is not None:
        raise click.UsageError("--global and --output-size exclude each other")
    if geometry.get("global_pool") or geometry.get("output_size") is not None:
        from .core.pooling import replaced_message, replaced_options

        names = ("window", "stride", "padding", "dilation", "ceil_mode", "count_include_pad")
        try:
            given = replaced_options(**{name: geometry.get(name) for name in names})
        except PoolError as error:
            raise click.UsageError(str(error)) from None
        if given:
            raise click.UsageError(replaced_message(
                "--global" if geometry.get("global_pool") else "--output-size",
                ["--" + name.replace("_", "-") for name in given]))


def _modes_options(modes: str, geometry: dict,
                   windows=((None, None),)) -> tuple[list[str], dict]:
    """``--modes max,avg,lp`` and the geometry for all of them, checked for each mode and each
    (window, stride) of ``windows`` (None: the geometry's own).

    ``--power`` goes to lp and ``--count-include-pad`` to avg; either without its mode listed
    is a usage error.
    """
    names = [m.strip() for m in modes.split(",") if m.strip()]
    if not names:
        raise click.UsageError("--modes names no mode (give e.g. max,avg)")
    options = _given(geometry)
    for option in ("power", "count_include_pad"):
        owner = owner_of(option)
        if option in options and owner not in names:
            raise click.UsageError(f"--{option.replace('_', '-')} is an option of {owner}, "
                                   f"which --modes does not include")
    for name in names:
        for window, stride in windows:
            sized = {} if window is None else {"window": window, "stride": stride}
            _spec(name, {**_options_for(name, options), **sized})
    return names, options


def _given(options: dict) -> dict:
    """The options given: not None, and flags that are on (0 and 0.0 are given values)."""
    return {k: v for k, v in options.items() if v is not None and v is not False}


def _options_for(mode: str, options: dict) -> dict:
    """The options that ``mode`` takes: the shared ones, and its own mode-specific ones."""
    shared, own = split_options(mode, options)
    return {**shared, **own}


def _pool_files(spec, inputs, output, fmt, overwrite, recursive, jobs, jpeg_quality,
                png_compression, threads, as_json, quiet):
    from . import engine, report

    items = list(engine.find_sources(list(inputs), recursive))
    output = _stdout_target(output)
    _check_outputs(output, fmt, items)
    options = engine.OutputOptions(output, fmt, overwrite, jpeg_quality, png_compression)
    items, skipped = engine.without_own_outputs(items, options, spec.mode.name)
    if skipped and not quiet:
        report.warning_line(f"left out {skipped} file(s) found in the folders that are outputs "
                            f"of this command for other inputs (an earlier run's)")
    sources = [item for item in items if isinstance(item, engine.Source)]
    batch = engine.Batch(spec, options, sources, threads)
    data_on_stdout = (output is None and "-" in inputs) or _carries_data(output)
    start, finished = time.perf_counter(), []
    try:
        with report.progress(len(items), enabled=not quiet) as advance:
            results = batch.run(items, jobs=jobs, on_done=advance, finished=finished)
    except Interrupted:  # report the inputs done before the stop, then stop
        _report(engine.in_input_order(finished), time.perf_counter() - start, data_on_stdout,
                as_json, quiet)
        if not quiet:
            report.warning_line(f"{len(items) - len(finished)} of {len(items)} input(s) not done")
        raise
    _finish(results, time.perf_counter() - start, data_on_stdout, as_json, quiet)


def _check_outputs(output: str | None, fmt: str | None, items) -> None:
    from .engine import is_folder_output, is_template, named_format, names_one_file

    named = named_format(output)
    if fmt and named and named != fmt:
        raise click.UsageError(f"-o {output} names a {named} file but --format is {fmt}")
    extension = os.path.splitext(output or "")[1]
    literal = is_template(output) and extension and "{" not in extension  # {stem}.xyz
    if (names_one_file(output) or literal) and not named and not fmt:
        raise click.UsageError(f"-o {output}: unknown output format "
                               "(use an extension like .png or .npy, or --format)")
    if output is None or len(items) < 2 or is_template(output) or is_folder_output(output):
        if is_template(output):
            try:
                output.format(stem="x", mode="max", ext=".png")
            except (KeyError, IndexError, ValueError) as error:
                raise click.UsageError(f"output template {output!r}: unknown field {error} "
                                       "(use {stem}, {mode}, {ext})") from None
        return
    what = "standard output" if output == "-" else f"one file ({output})"
    raise click.UsageError(f"-o names {what} but there are {len(items)} inputs: "
                           "give a folder or a template like out/{stem}_{mode}{ext}")


def _carries_data(output: str | None) -> bool:
    """Whether ``-o`` sends the data to standard output: ``-``, or ``/dev/stdout`` and the
    like, the file standard output writes to (the report then goes to standard error)."""
    if output == "-":
        return True
    try:
        return (output is not None
                and os.path.samestat(os.stat(output), os.fstat(sys.stdout.fileno()))
                and not os.path.samefile(output, os.devnull))  # both /dev/null: no data shown
    except (OSError, ValueError, AttributeError):  # no such file; no real or no stdout at all
        return False


def _stdout_target(output: str | None) -> str | None:
    """``-`` for ``/dev/stdout`` (and the like) when standard output is a regular file (``>
    out.png``): written into as it is, where the path would be an existing file to refuse
    without ``--overwrite``, then to replace by another (no longer the shell's)."""
    try:
        to_file = stat.S_ISREG(os.fstat(sys.stdout.fileno()).st_mode)
    except (OSError, ValueError, AttributeError):  # no real standard output
        return output
    return "-" if output not in (None, "-") and to_file and _carries_data(output) else output


def _finish(results, elapsed: float, data_on_stdout: bool, as_json: bool, quiet: bool) -> None:
    """Errors to stderr, the report where it belongs, and the exit code."""
    _report(results, elapsed, data_on_stdout, as_json, quiet)
    if not all(r.ok for r in results):
        sys.exit(1)


def _report(results, elapsed: float, data_on_stdout: bool, as_json: bool, quiet: bool) -> None:
    from . import report

    stream = sys.stderr if data_on_stdout else sys.stdout
    seen = set()
    for r in results:
        for message in ([r.error] if not r.ok else []) + ([] if quiet else r.warnings):
            if message not in seen:
                seen.add(message)
                (report.error_line if message == r.error else report.warning_line)(message)
    if quiet:
        pass
    elif as_json:
        report.json_lines((r.to_json() for r in results), stream)
    else:
        report.results_table(results, stream, elapsed)


for _mode in MODES.values():
    cli.add_command(_mode_command(_mode))


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-r", "--recursive", is_flag=True, help="Describe the files inside folders.")
@_apply(_report_options("array")[:1])
def info(inputs, recursive, as_json):
    """Describe each INPUT: format, mode or dtype, shape, layout and value range."""
    from . import engine, report

    rows = []
    for item in engine.find_sources(list(inputs), recursive):
        try:
            if isinstance(item, engine.Result):
                raise PoolError(item.error)
            described = engine.describe_file(item.path)
            for line in dict.fromkeys(w for row in described for w in row["warnings"]):
                report.warning_line(line)
            rows += described
        except PoolError as error:
            report.error_line(str(error))
            path = item.input if isinstance(item, engine.Result) else item.path
            rows.append({"input": path, "ok": False, "error": str(error)})
    if as_json:  # failures too, as the pooling commands report them
        report.json_lines(rows, sys.stdout)
    else:
        report.info_table([row for row in rows if row["ok"]], sys.stdout)
    sys.exit(0 if all(row["ok"] for row in rows) else 1)


@cli.command()
@click.option("--quick", is_flag=True, help="Smaller inputs and 3 runs (about 10 s).")
@click.option("--threads", type=click.IntRange(min=1), metavar="N",
              help="Threads for poolcli, the bounds, PyTorch and OpenCV.  [default: every core]")
@click.option("--repeat", type=click.IntRange(min=1), metavar="N",
              help="Timed runs per implementation.  [default: 7, with --quick 3]")
@click.option("--workloads", metavar="IDS", help="Comma list of workload ids: W1,...,W8 (W5, W7: groups).")
@_apply(_report_options("row")[:1])
def bench(quick, threads, repeat, workloads, as_json):
    """Time poolcli against the memory bound (copy, read) and every installed peer library.

    Each result is checked equal to poolcli's before it is timed. Peers (PyTorch, OpenCV,
    scikit-image, SciPy, Pillow) are optional: pip install "poolcli[bench]" for the light ones.
    """
    from . import bench as benchmarks, report
    from .core.execute import default_threads

    try:
        chosen = benchmarks.select_workloads(workloads)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--workloads") from None
    threads = threads or default_threads()
    start = time.perf_counter()
    with report.progress(len(chosen) + 1, enabled=True) as advance:
        rows = benchmarks.run_bench(quick=quick, threads=threads, repeat=repeat, workloads=chosen,
                                    progress=lambda step, total, label: advance())
    if as_json:
        report.json_lines(benchmarks.json_rows(rows), sys.stdout)
    else:
        took = time.perf_counter() - start
        report.bench_table(rows, sys.stdout, title=f"poolcli bench ({'quick' if quick else 'full'}, "
                                                   f"{threads} threads, {took:.0f} s)")


def _parsed_channels(ctx, param, value: str | None) -> str | None:
    """A malformed selection is a usage error, before any file is read."""
    if value is not None:
        from .visual.render import parse_channels
        try:
            parse_channels(value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return value


_CHANNELS = click.option("--channels", metavar="SEL", callback=_parsed_channels,
                         help="Channels of a feature map to draw: 0:16, 3 or 0,2,5.  "
                              "[default: all (show: paged; compare: the first 16)]")

_PICTURE_OPTIONS = [
    click.option("-o", "--output", metavar="PNG", help="The picture: a .png, or - for standard output.  [default: beside the input]"),
    click.option("--overwrite", is_flag=True, help="Replace an existing picture."),
]


def _picture_output(option: str, dest: str | None) -> str | None:
    """``dest`` checked: pictures are PNG files, or go to standard output (another name is a
    usage error); see :func:`_stdout_target`."""
    if dest and not _picture_stream(dest) and format_for_path(dest) != "png":
        raise click.UsageError(f"{option} {dest}: pictures are written as PNG; "
                               "give a name ending in .png (or - for standard output)")
    return _stdout_target(dest)


def _picture_stream(dest: str) -> bool:
    """``-``, ``/dev/stdout`` and the like (as the pooling commands tell them), or another
    device or pipe (``/dev/null``, a named pipe, or /dev/stdout when that is /dev/null): the
    PNG is written into it as it is, and it has no extension to get wrong."""
    from .io import writes_in_place

    return _carries_data(dest) or writes_in_place(dest)


def _run_picture(job):
    """Run one picture job; its PoolError is the input's failure (exit 1)."""
    from . import report

    try:
        return job()
    except PoolError as error:
        report.error_line(str(error))
        sys.exit(1)


@cli.command()
@click.argument("source", metavar="INPUT")
@click.option("--modes", default="max,avg,min,lp", show_default=True, help="Modes, one panel each.")
@click.option("--repeat", type=click.IntRange(min=1), default=1, show_default=True,
              help="Pooling runs per panel; the label shows the median time.")
@_CHANNELS
@_apply(_geometry_options() + _PICTURE_OPTIONS + _report_options("mode"))
def compare(source, modes, repeat, channels, output, overwrite, as_json, quiet, **geometry):
    """Contact sheet: INPUT, then one panel per mode, scaled back up to the input's size.

    Pooled blocks show at the input's scale (nearest neighbour); each panel is labelled with
    mode, window/stride/padding, output shape and pooling time. Feature maps (.npy) are drawn
    as grids of colour-mapped channels.
    """
    from . import engine, report

    names, options = _modes_options(modes, geometry)
    output = _picture_output("-o", output)
    layout = options.pop("layout", None)
    dest, rows, notes = _run_picture(lambda: engine.compare(
        source, names, layout, {**options, "channels": channels}, output, overwrite, repeat))
    _picture_report(dest, notes, quiet)
    stream = sys.stderr if _carries_data(dest) else sys.stdout
    if quiet:
        pass
    elif as_json:
        report.json_lines(({"input": source, "output": dest, **row} for row in rows), stream)
    else:
        report.compare_table(rows, stream)


@cli.command()
@click.argument("source", metavar="ARRAY")
@_CHANNELS
@click.option("--page", type=click.IntRange(min=1), default=1, show_default=True,
              help="Which page of 64 tiles, when there are more.")
@click.option("--normalize", type=click.Choice(["channel", "global"]), default="channel",
              show_default=True, help="Colour scale per channel or one for all.")
@click.option("--cmap", type=click.Choice(["viridis", "gray", "coolwarm", "viridis_r", "gray_r",
                                           "coolwarm_r"]), default="viridis", show_default=True)
@click.option("--before-after", is_flag=True, help="Each channel before and after pooling, side by side.")
@click.option("--mode", type=click.Choice(list(MODES)),
              help="The pooling of --before-after.  [default: max]")
@_apply(_geometry_options() + _PICTURE_OPTIONS + _report_options()[1:])
def show(source, channels, page, normalize, cmap, before_after, mode, output, overwrite, quiet,
         **geometry):
    """Render a feature map as a grid of channels through a colour map, each with its range."""
    from . import engine

    layout = geometry.pop("layout")
    given = _given(geometry)
    if (given or mode) and not before_after:
        raise click.UsageError("pooling options need --before-after")
    # checked with the layout even without --before-after: wrong letters or lists are usage
    # errors, as for pooling
    spec = _spec(mode or "max", {**given, "layout": layout})
    output = _picture_output("-o", output)
    dest, notes = _run_picture(lambda: engine.show(
        source, layout, output, overwrite, channels=channels, normalize=normalize, cmap=cmap,
        page=page - 1, before_after=spec if before_after else None))
    _picture_report(dest, notes, quiet)


@cli.command()
@click.argument("source", metavar="INPUT")
@click.option("--modes", default="max,avg,min,lp", show_default=True, help="Modes to measure.")
@click.option("--windows", default="2,3,4", show_default=True, help="Window sizes, one geometry each.")
@click.option("--strides", help="Strides, one per window.  [default: the windows]")
@click.option("--repeat", type=click.IntRange(min=1), default=5, show_default=True,
              help="Timed runs per row (median, min and max reported).")
@click.option("--plot", metavar="PNG", help="Also draw pooling time against PSNR.")
@click.option("--overwrite", is_flag=True, help="Replace an existing plot.")
@click.option("-p", "--padding", metavar="P", help="Padding for every geometry.  [default: valid]")
@click.option("--layout", metavar="AXES", help="Array axis letters.  [default: by ndim]")
@click.option("--power", type=float, metavar="P", help="lp: the p of the norm.  [default: 2]")
@_apply(_report_options("row"))
def analyze(source, modes, windows, strides, repeat, plot, overwrite, padding, layout, power,
            as_json, quiet):
    """The speed/accuracy trade-off of pooling, measured on INPUT.

    For each mode and window: time (median of --repeat runs), throughput, output shape and
    reduction, and fidelity of the output scaled back up to the input's size: PSNR, SSIM and
    the share of the signal's variance kept. * marks the best trade-offs.
    """
    from . import engine, report

    try:
        sizes = [int(w) for w in windows.split(",")]
        steps = None if strides is None else [int(s) for s in strides.split(",")]
    except ValueError:
        raise click.UsageError("--windows and --strides take whole numbers like 2,3,4") from None
    if steps is not None and len(steps) != len(sizes):
        raise click.UsageError("--strides needs one value per window")
    names, options = _modes_options(modes, {"padding": padding, "power": power, "layout": layout},
                                    windows=list(zip(sizes, steps or sizes)))
    options.pop("layout", None)  # checked with the geometry; engine.analyze takes it apart
    plot = _picture_output("--plot", plot)
    rows = _run_picture(lambda: engine.analyze(source, layout, names, sizes, steps, repeat,
                                               options, plot, overwrite))
    for line in rows.skipped + ([] if quiet else rows.notes):
        report.warning_line(line)
    if quiet:
        return
    stream = sys.stderr if _carries_data(plot) else sys.stdout
    if as_json:
        report.json_lines(({"input": source, **row} for row in rows), stream)
    else:
        report.analysis_table(rows, stream)
        print(f"fidelity: the output scaled back up ({rows.upscaling}) against the input; "
              f"PSNR and SSIM with data range {rows.data_range:g}" + (f"; plot: {plot}" if plot else ""),
              file=stream)


def _picture_report(dest: str, notes: list[str], quiet: bool) -> None:
    from . import report

    if not quiet:
        for note in notes:
            report.warning_line(note)
        print(f"wrote {'standard output' if dest == '-' else dest}", file=sys.stderr)


class Interrupted(BaseException):
    """SIGINT or SIGTERM (``args[0]``): unwinds like Ctrl-C, so that temporary files are
    removed and started outputs finished, and nothing else is started."""


def _interrupt(signum, frame):
    # Once: a second signal (Ctrl-C twice, or `timeout` signalling the whole process group)
    # must not cut the unwinding short, which finishes or removes the files under way
    for other in (signal.SIGINT, signal.SIGTERM):
        signal.signal(other, signal.SIG_IGN)
    raise Interrupted(signum)


class _ShutStream:
    """A standard stream the shell closed (``>&-``, Python's ``None``): every write fails as
    into a pipe whose reader went away, which the reports and the outputs already handle."""

    buffer = property(lambda self: self)

    def write(self, data):
        raise BrokenPipeError(errno.EPIPE, "closed by the shell")

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def fileno(self) -> int:
        raise OSError(errno.EBADF, "closed by the shell")


def main() -> None:
    """Entry point of the ``poolcli`` console script."""
    for name in ("stdout", "stderr"):
        if getattr(sys, name) is None:
            setattr(sys, name, _ShutStream())
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}
    for signum, handler in previous.items():
        if handler is not signal.SIG_IGN:  # kept ignored (a background job)
            signal.signal(signum, _interrupt)
    try:
        _run_cli()
    finally:  # as they were (after a stop they ignore signals, for the unwinding)
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_cli() -> None:
    # a reader gone (`poolcli ... | head`) is handled where each report or output is written:
    # Click's own handler would exit 1 whatever was done
    try:
        cli(prog_name="poolcli")
    except Interrupted as stop:  # the shell's convention: 128 + the signal's number
        print(f"poolcli: interrupted by {signal.Signals(stop.args[0]).name}", file=sys.stderr)
        sys.exit(128 + stop.args[0])
