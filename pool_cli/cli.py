"""The ``poolcli`` command: thin Click commands over the engine.

Options are defined once and shared; this is the one place where errors become messages
and exit codes: 0 every input done, 1 some input failed, 2 usage error (nothing written).
"""

from __future__ import annotations

import sys
import time

import click

from . import __version__
from .core import MODES, PoolError, make_spec
from .core.modes import Mode

from .io import FORMATS


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

_REPORT_OPTIONS = [
    click.option("--json", "as_json", is_flag=True, help="One JSON object per input instead of the table."),
    click.option("-q", "--quiet", is_flag=True, help="No report: errors only."),
]


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
    @_apply(_geometry_options(mode) + _OUTPUT_OPTIONS + _REPORT_OPTIONS)
    def command(inputs, output, fmt, overwrite, recursive, jobs, jpeg_quality, png_compression,
                threads, as_json, quiet, **geometry):
        spec = _spec(mode.name, geometry, quiet)
        _pool_files(spec, inputs, output, fmt, overwrite, recursive, jobs, jpeg_quality,
                    png_compression, threads, as_json, quiet)

    command.__doc__ = (f"Pool each INPUT: {mode.summary}.\n\n"
                       "INPUT is an image, a .npy or .npz file, a folder (with -r) or - for standard input.")
    return click.command(mode.name)(command)


REPLACED_BY_GLOBAL = ("window", "stride", "padding", "dilation", "ceil_mode")


def _spec(mode: str, geometry: dict, quiet: bool = False):
    """Every rule that holds whatever the input is checked here: a mistake is a usage error.

    ``--global`` and ``--output-size`` replace the window geometry: options of it given too
    (a harness may always pass them) are dropped with a warning rather than refused.
    """
    if geometry["global_pool"] or geometry["output_size"] is not None:
        given = [name for name in REPLACED_BY_GLOBAL if geometry.pop(name)]
        if given and not quiet:
            from .report import warning_line

            what = "--global" if geometry["global_pool"] else "--output-size"
            warning_line(f"{what} replaces " + ", ".join(
                "--" + name.replace("_", "-") for name in given) + ": ignored")
    try:
        return make_spec(mode, **geometry)
    except PoolError as error:
        raise click.UsageError(str(error)) from None


def _pool_files(spec, inputs, output, fmt, overwrite, recursive, jobs, jpeg_quality,
                png_compression, threads, as_json, quiet):
    from . import engine, report

    items = list(engine.find_sources(list(inputs), recursive))
    _check_outputs(output, fmt, items)
    options = engine.OutputOptions(output, fmt, overwrite, jpeg_quality, png_compression)
    sources = [item for item in items if isinstance(item, engine.Source)]
    batch = engine.Batch(spec, options, sources, threads)
    start = time.perf_counter()
    with report.progress(len(items), enabled=not quiet) as advance:
        results = batch.run(items, jobs=jobs, on_done=advance)
    elapsed = time.perf_counter() - start
    _finish(results, elapsed, output == "-" or (output is None and "-" in inputs), as_json, quiet)


def _check_outputs(output: str | None, fmt: str | None, items) -> None:
    from .engine import is_folder_output
    from .io import format_for_path

    named = format_for_path(output) if output and "{" not in output else None
    if fmt and named and named != fmt and not is_folder_output(output):
        raise click.UsageError(f"-o {output} names a {named} file but --format is {fmt}")
    if output is None or len(items) < 2 or "{" in output or is_folder_output(output):
        if output and "{" in output:
            try:
                output.format(stem="x", mode="max", ext=".png")
            except (KeyError, IndexError, ValueError) as error:
                raise click.UsageError(f"output template {output!r}: unknown field {error} "
                                       "(use {stem}, {mode}, {ext})") from None
        return
    what = "standard output" if output == "-" else f"one file ({output})"
    raise click.UsageError(f"-o names {what} but there are {len(items)} inputs: "
                           "give a folder or a template like out/{stem}_{mode}{ext}")


def _finish(results, elapsed: float, data_on_stdout: bool, as_json: bool, quiet: bool) -> None:
    """Errors to stderr, the report where it belongs, and the exit code."""
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
    if not all(r.ok for r in results):
        sys.exit(1)


for _mode in MODES.values():
    cli.add_command(_mode_command(_mode))


@cli.command()
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-r", "--recursive", is_flag=True, help="Describe the files inside folders.")
@_apply(_REPORT_OPTIONS[:1])
def info(inputs, recursive, as_json):
    """Describe each INPUT: format, mode or dtype, shape, layout and value range."""
    from . import engine, report

    rows, failed = [], False
    for item in engine.find_sources(list(inputs), recursive):
        try:
            if isinstance(item, engine.Result):
                raise PoolError(item.error)
            rows += engine.describe_file(item.path)
        except PoolError as error:
            report.error_line(str(error))
            failed = True
    if as_json:
        report.json_lines(rows, sys.stdout)
    else:
        report.info_table(rows, sys.stdout)
    sys.exit(1 if failed else 0)


def main() -> None:
    """Entry point of the ``poolcli`` console script."""
    try:
        cli(prog_name="poolcli")
    except BrokenPipeError:
        # The reader went away (`poolcli ... | head`): not an error of ours.
        sys.stderr.close()
        sys.exit(0)
