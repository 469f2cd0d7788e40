"""Everything the user reads: tables, JSON lines, progress bars and error lines.

The only module that uses Rich, imported lazily so that ``poolcli --version`` stays instant.
"""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Callable, Iterator, TextIO


def error_line(message: str, stream: TextIO | None = None) -> None:
    """One plain line on standard error: ``poolcli: error: <input>: <problem>``."""
    print(f"poolcli: error: {message}", file=stream or sys.stderr, flush=True)


def warning_line(message: str, stream: TextIO | None = None) -> None:
    print(f"poolcli: warning: {message}", file=stream or sys.stderr, flush=True)


def json_lines(objects, stream: TextIO) -> None:
    """One compact JSON object per line."""
    for obj in objects:
        stream.write(json.dumps(obj, separators=(", ", ": "), default=_jsonable) + "\n")
    stream.flush()


def _console(stream: TextIO):
    from rich.console import Console

    is_tty = stream.isatty()
    # Off a terminal Rich would wrap at 80 columns; a log file is better with whole rows.
    return Console(file=stream, width=None if is_tty else 160, highlight=False,
                   force_terminal=None if is_tty else False)


def results_table(results, stream: TextIO, elapsed_s: float) -> None:
    """The human report: one row per input (array), then a summary line for batches."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (("input", "left"), ("output", "left"), ("mode", "left"),
                          ("shape", "left"), ("dtype", "left"), ("load ms", "right"),
                          ("pool ms", "right"), ("save ms", "right")):
        table.add_column(name, justify=justify, overflow="fold")
    for r in results:
        name = escape(r.input if r.key is None else f"{r.input}[{r.key}]")
        if not r.ok:
            table.add_row(name, "[red]failed[/]", r.mode, "", "", "", "", "", style="dim")
            continue
        table.add_row(name, escape(r.output), r.mode, f"{_shape(r.input_shape)} -> {_shape(r.output_shape)}",
                      r.input_dtype if r.input_dtype == r.output_dtype
                      else f"{r.input_dtype} -> {r.output_dtype}",
                      f"{r.load_ms:.1f}", f"{r.pool_ms:.1f}", f"{r.save_ms:.1f}")
    console = _console(stream)
    console.print(table)
    if len(results) > 1:
        console.print(summary(results, elapsed_s))


def summary(results, elapsed_s: float) -> str:
    """``3 done, 1 failed in 0.42 s, 12.3 MB/s`` (decoded input bytes over wall time)."""
    done = sum(r.ok for r in results)
    failed = len(results) - done
    megabytes = sum(r.input_bytes for r in results if r.ok) / 1e6
    rate = megabytes / elapsed_s if elapsed_s > 0 else 0.0
    return f"{done} done, {failed} failed in {elapsed_s:.2f} s, {rate:.1f} MB/s"


def info_table(rows: list[dict], stream: TextIO) -> None:
    """``poolcli info``: one row per array."""
    from rich.markup import escape
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("input", "format", "mode", "dtype", "shape", "layout", "range"):
        table.add_column(name, overflow="fold")
    for row in rows:
        name = escape(row["input"] if row["key"] is None else f"{row['input']}[{row['key']}]")
        table.add_row(name, row["format"], row["image_mode"] or "-", row["dtype"],
                      _shape(row["shape"]), row["layout"] or "-", f"{_num(row['min'])} .. {_num(row['max'])}")
    _console(stream).print(table)


@contextlib.contextmanager
def progress(total: int, enabled: bool) -> Iterator[Callable[[], None]]:
    """A Rich progress bar on standard error; yields the function that advances it."""
    if not enabled or total < 2 or not sys.stderr.isatty():
        yield lambda: None
        return
    from rich.progress import Progress

    with Progress(console=_console(sys.stderr), transient=True) as bar:
        task = bar.add_task("pooling", total=total)
        yield lambda: bar.advance(task)


def _shape(shape) -> str:
    return "x".join(str(n) for n in shape) if shape else "?"


def _num(value) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _jsonable(value):
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
