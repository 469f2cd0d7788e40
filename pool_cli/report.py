"""Everything the user reads: tables, JSON lines, progress bars and error lines.

The only module that uses Rich, imported lazily so that ``poolcli --version`` stays instant.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import sys
from typing import Callable, Iterator, TextIO

from .core.errors import one_line


def error_line(message: str) -> None:
    """One plain line on standard error: ``poolcli: error: <input>: <problem>``."""
    _line(f"poolcli: error: {message}")


def warning_line(message: str) -> None:
    _line(f"poolcli: warning: {message}")


def _line(text: str) -> None:
    try:
        print(one_line(text), file=sys.stderr, flush=True)
    except BrokenPipeError:  # `2>&1 | head`: the exit code still says what was done
        _reader_gone(sys.stderr)


def json_lines(objects, stream: TextIO) -> None:
    """One compact JSON object per line; infinite or NaN numbers become null."""
    try:
        for obj in objects:
            stream.write(json.dumps(_finite(obj), separators=(", ", ": "), default=_jsonable,
                                    allow_nan=False) + "\n")
        stream.flush()
    except BrokenPipeError:
        _reader_gone(stream)


def _reader_gone(stream: TextIO) -> None:
    """The reader of a report went away (``poolcli ... | head``): the rest of the report goes
    nowhere, and the command's exit code still says whether every input was done (the
    work is over when the report is written)."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), stream.fileno())  # nor fails at exit
    except (OSError, ValueError, AttributeError):  # not a file (a test's buffer)
        pass


def _finite(value):
    if getattr(value, "ndim", None) == 0:  # a NumPy scalar: its Python value, NaN included
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def _console(stream: TextIO):
    is_tty = stream.isatty()
    # Off a terminal Rich would wrap at 80 columns; a log file is better with whole rows.
    return _console_class()(file=stream, width=None if is_tty else 160, highlight=False,
                            force_terminal=None if is_tty else False)


@functools.lru_cache(maxsize=1)
def _console_class():
    from rich.console import Console

    class Reporter(Console):
        def on_broken_pipe(self) -> None:  # Rich's own exits with 1, whatever was done
            self.quiet = True
            _reader_gone(self.file)

    return Reporter


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


def compare_table(rows: list[dict], stream: TextIO) -> None:
    """``poolcli compare``: one row per panel."""
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("mode", "window", "stride", "padding", "output shape", "pool ms"):
        table.add_column(name, justify="right" if name == "pool ms" else "left")
    for row in rows:
        padding = _sizes(row.get("padding")) + (", ceil mode" if row.get("ceil_mode") else "")
        table.add_row(row["mode"], _sizes(row.get("window")), _sizes(row.get("stride")),
                      padding, _shape(row["output_shape"]), f"{row['time_ms']:.2f}")
    _console(stream).print(table)


def analysis_table(rows: list[dict], stream: TextIO) -> None:
    """``poolcli analyze``: time and fidelity per mode and geometry; * marks the best trade-offs."""
    from rich.table import Table

    best = pareto_front(rows)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("", "mode", "geometry", "output", "reduction", "ms (min-max)", "MB/s",
                 "PSNR dB", "SSIM", "kept"):
        table.add_column(name, justify="left" if name in ("mode", "geometry", "output") else "right")
    for i, row in enumerate(rows):
        table.add_row("*" if i in best else "", row["mode"], row["label"], _shape(row["output_shape"]),
                      f"{row['reduction']:.1f}x",
                      f"{row['time_ms_median']:.2f} ({row['time_ms_min']:.2f}-{row['time_ms_max']:.2f})",
                      f"{row['mb_per_s']:.0f}", _db(row["psnr_db"]), f"{row['ssim']:.4f}",
                      f"{row['energy_kept']:.3f}")
    console = _console(stream)
    console.print(table)
    console.print("* best trade-off: no other row is both faster and closer to the input (PSNR)")


def pareto_front(rows: list[dict]) -> set[int]:
    """Rows that no other row beats on both time and PSNR (a NaN or -inf PSNR, an output that
    lost the input, ranks nowhere).

    >>> sorted(pareto_front([{"time_ms_median": 1, "psnr_db": 20}, {"time_ms_median": 2, "psnr_db": 10},
    ...                      {"time_ms_median": 3, "psnr_db": 30}, {"time_ms_median": 0, "psnr_db": float("nan")},
    ...                      {"time_ms_median": 0, "psnr_db": -float("inf")}]))
    [0, 2]
    """
    def beats(a, b):
        return (a["time_ms_median"] <= b["time_ms_median"] and a["psnr_db"] >= b["psnr_db"]
                and (a["time_ms_median"] < b["time_ms_median"] or a["psnr_db"] > b["psnr_db"]))

    ranked = [(i, row) for i, row in enumerate(rows) if row["psnr_db"] > -math.inf]
    return {i for i, row in ranked if not any(beats(other, row) for _, other in ranked)}


def bench_table(rows: list[dict], stream: TextIO, show_unsupported: bool = False,
                title: str | None = None) -> None:
    """The bench table: one section per workload (its description in poolcli's note), one line
    per implementation; rows of unsupported peers are left out unless ``show_unsupported``."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    threads = sorted({r["threads"] for r in rows if r["impl"] == "copy bound"}) or [1]
    hidden = 0 if show_unsupported else sum(r["status"] == "unsupported" for r in rows)
    caption = ("x copy, x read: median / the same run's copy-bound (np.copyto) or read-bound "
               "(np.max) median; x pool: median / poolcli's; MB/s of input (10^6 B) at the median; "
               f"threads: {', '.join(map(str, threads))}")
    if hidden:
        caption += f"; {hidden} unsupported peer/workload pairs not shown (see --json)"
    table = Table(title=title or "poolcli bench", caption=caption, caption_justify="left",
                  box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("id", style="bold", no_wrap=True)
    table.add_column("impl", no_wrap=True)
    for name in ("median ms", "min ms", "x copy", "x read", "x pool", "MB/s"):
        table.add_column(name, justify="right", no_wrap=True)
    table.add_column("note", overflow="fold", ratio=1)
    styles = {"poolcli": "bold cyan", "poolcli out=": "cyan", "copy bound": "green",
              "read bound": "green"}

    def num(v, fmt):
        return "-" if v is None else format(v, fmt)

    current = None
    for r in rows:
        if r["status"] == "unsupported" and not show_unsupported:
            continue
        first = r["workload"] != current
        if first and current is not None:
            table.add_section()
        current = r["workload"]
        note = Text()
        if first:
            note.append(r["description"], style="italic")
        status = r["status"] if r["status"] != "ok" else ""
        for part in (status, r.get("variant") or "", r["note"] or ""):
            if part:
                if note:
                    note.append("; ")
                note.append(part, style={"mismatch": "bold red", "error": "bold red",
                                         "unsupported": "dim"}.get(part, ""))
        table.add_row(r["workload"] if first else "",
                      Text(r["impl"], style=styles.get(r["impl"], "")),
                      num(r["time_ms_median"], ".2f"), num(r["time_ms_min"], ".2f"),
                      num(r["ratio_copy"], ".2f"), num(r["ratio_read"], ".2f"),
                      num(r["ratio_to_poolcli"], ".2f"), num(r["mb_per_s"], ".0f"), note)
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


def _sizes(values) -> str:
    if values is None:
        return "-"
    return ",".join(":".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v) for v in values)


def _db(value: float) -> str:
    return "inf" if value == float("inf") else f"{value:.2f}"


def _num(value) -> str:
    return "-" if value is None else f"{value:.6g}" if isinstance(value, float) else str(value)


def _jsonable(value):
    if hasattr(value, "tolist"):  # NumPy arrays: Python lists, NaN and inf as null
        return _finite(value.tolist())
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
