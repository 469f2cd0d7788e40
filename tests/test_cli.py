"""The ``poolcli`` command, driven as a user drives it.

Most tests use Click's ``CliRunner`` (in-process, fast); the ``TestSubprocess`` class at the end
runs the installed entry point (``python -m pool_cli``) for real, with pipes.

Every invocation goes through :func:`run`, which checks the exit code and that no traceback
reaches the user.  Values are compared with :func:`pool_cli.pool` on the same data: the CLI is
a thin layer over it, so ``.npy`` outputs must match bit for bit.

Tests marked ``xfail(strict=True, reason="bug: ...")`` show a bug in ``pool_cli``; remove the
mark when it is fixed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import shlex
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pool_cli import __version__, pool
from clitools import SPEC_FIELDS, error_lines, run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
MODES = ("max", "min", "avg", "sum", "lp")


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own empty folder, with relative paths as a user types them."""
    monkeypatch.chdir(tmp_path)


def json_rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def snapshot(folder=".") -> dict[str, str]:
    """Every file under ``folder`` (hidden ones included) with a hash of its bytes."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def no_temp_files(folder=".") -> bool:
    return not [p for p in Path(folder).rglob("*") if p.name.endswith(".tmp")]


def rng(seed=0):
    return np.random.default_rng(seed)


def save_image(path, array_or_image, **params) -> Path:
    im = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(path, **params)
    return Path(path)


def rgb(path="a.png", shape=(6, 8, 3), seed=0) -> np.ndarray:
    """Write a small random RGB (or L for a 2-D shape) PNG; return its pixels."""
    arr = rng(seed).integers(0, 256, shape, dtype=np.uint8)
    save_image(path, arr)
    return arr


def npy(path="x.npy", shape=(2, 3, 9, 10), dtype=np.float64, seed=0) -> np.ndarray:
    arr = make_array(shape, dtype, seed)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    return arr


def make_array(shape, dtype, seed=0) -> np.ndarray:
    dtype = np.dtype(dtype)
    g = rng(seed)
    if dtype == bool:
        return g.random(shape) < 0.4
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return g.integers(max(info.min, -1000), min(info.max, 1000), shape, endpoint=True).astype(dtype)
    return (g.standard_normal(shape) * 10).astype(dtype)


def read_image(path) -> tuple[str, np.ndarray]:
    with Image.open(path) as im:
        im.load()
        return im.mode, np.asarray(im)


def as_image_values(y: np.ndarray, dtype) -> np.ndarray:
    """What SPEC says an image result is written as: rounded half up, clipped, in the image dtype."""
    dtype = np.dtype(dtype)
    if y.dtype == dtype:
        return y
    if dtype.kind == "f":
        return y.astype(dtype)
    low, high = (0, 1) if dtype == bool else (np.iinfo(dtype).min, np.iinfo(dtype).max)
    values = np.floor(y + 0.5) if y.dtype.kind == "f" else y
    return np.clip(values, low, high).astype(dtype)


def layout_of(arr: np.ndarray) -> str:
    return "HW" if arr.ndim == 2 else "HWC"


def same(a: np.ndarray, b: np.ndarray) -> bool:
    """Same dtype, shape and values (NaN equal to NaN)."""
    return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(
        a, b, equal_nan=a.dtype.kind == "f")


# ----------------------------------------------------------------------------
# --version, --help
# ----------------------------------------------------------------------------

def test_version():
    result = run("--version")
    assert __version__ in result.stdout and "poolcli" in result.stdout


def test_group_help_lists_every_mode_and_info():
    result = run("--help")
    for word in (*MODES, "info"):
        assert word in result.stdout


@pytest.mark.parametrize("mode", MODES)
def test_mode_help_mentions_its_options(mode):
    out = run(mode, "--help").stdout
    for option in ("--window", "--stride", "--padding", "--dilation", "--ceil-mode", "--global",
                   "--output-size", "--ignore-nan", "--layout", "--output", "--format",
                   "--overwrite", "--recursive", "--jobs", "--json", "--quiet", "-w", "-s", "-p",
                   "-d", "-o", "-r"):
        assert option in out, option
    assert ("--power" in out) == (mode == "lp")
    assert ("--count-include-pad" in out) == (mode == "avg")


def test_short_help_option():
    assert "--window" in run("avg", "-h").stdout


def test_info_help():
    assert "--json" in run("info", "--help").stdout


def test_no_input_is_a_usage_error():
    result = run("max", code=2)
    assert "INPUT" in result.stderr


def test_unknown_mode_is_a_usage_error():
    npy()
    run("median", "x.npy", code=2)
    assert sorted(snapshot()) == ["x.npy"]


# ----------------------------------------------------------------------------
# geometry options: each one reaches pool() with the same meaning
# ----------------------------------------------------------------------------

GEOMETRY_CASES = [
    ("max", [], {}),
    ("avg", [], {}),
    ("max", ["-w", "3"], dict(window=3)),
    ("max", ["--window", "3x2"], dict(window=(3, 2))),
    ("min", ["--window", "3,2"], dict(window=(3, 2))),
    ("avg", ["-w", "3", "-s", "1"], dict(window=3, stride=1)),
    ("avg", ["-w", "3", "--stride", "2x1"], dict(window=3, stride=(2, 1))),
    ("sum", ["-w", "3", "--stride", "1,2"], dict(window=3, stride=(1, 2))),
    ("sum", ["-w", "3", "-p", "1"], dict(window=3, padding=1)),
    ("max", ["-w", "3", "--padding", "1,0"], dict(window=3, padding=(1, 0))),
    ("avg", ["-w", "3,2", "--padding", "1:0,0:1"], dict(window=(3, 2), padding=((1, 0), (0, 1)))),
    ("min", ["-w", "3", "-p", "valid"], dict(window=3, padding=0)),
    ("avg", ["-w", "3", "-s", "2", "-p", "same"], dict(window=3, stride=2, padding="same")),
    ("max", ["-w", "4", "-s", "1", "-p", "same-lower"], dict(window=4, stride=1, padding="same-lower")),
    ("max", ["-w", "2", "-d", "2"], dict(window=2, dilation=2)),
    ("lp", ["-w", "3", "-s", "1", "--dilation", "2x1"], dict(window=3, stride=1, dilation=(2, 1))),
    ("avg", ["-w", "3", "-s", "2", "--ceil-mode"], dict(window=3, stride=2, ceil_mode=True)),
    ("max", ["-w", "2", "-s", "2", "-p", "1", "--ceil-mode"],
     dict(window=2, stride=2, padding=1, ceil_mode=True)),
    ("avg", ["-w", "3", "-s", "2", "-p", "1", "--count-include-pad"],
     dict(window=3, stride=2, padding=1, count_include_pad=True)),
    ("avg", ["-w", "3", "-s", "2", "-p", "1", "--count-include-pad", "--ceil-mode"],
     dict(window=3, stride=2, padding=1, count_include_pad=True, ceil_mode=True)),
    ("lp", ["--power", "3"], dict(power=3)),
    ("lp", ["--power", "1.5", "-w", "3", "-p", "1"], dict(power=1.5, window=3, padding=1)),
    ("lp", ["--power", "1"], dict(power=1)),
    ("max", ["--global"], dict(global_pool=True)),
    ("avg", ["--global"], dict(global_pool=True)),
    ("avg", ["--output-size", "3"], dict(output_size=3)),
    ("sum", ["--output-size", "4x3"], dict(output_size=(4, 3))),
    ("max", ["--output-size", "5,1"], dict(output_size=(5, 1))),
    ("max", ["--layout", "NHWC", "-w", "3"], dict(layout="NHWC", window=3)),
    ("avg", ["--layout", "NDHW"], dict(layout="NDHW")),
    ("sum", ["--layout", "nchw", "-w", "2,3"], dict(layout="NCHW", window=(2, 3))),
    ("min", ["--layout", "NHWC", "--global"], dict(layout="NHWC", global_pool=True)),
]


@pytest.mark.parametrize("mode,args,kwargs", GEOMETRY_CASES,
                         ids=[f"{m}{''.join(a)}" for m, a, _ in GEOMETRY_CASES])
def test_geometry_option_reaches_pool(mode, args, kwargs):
    x = npy()
    run(mode, "x.npy", "-o", "y.npy", *args, "--quiet")
    assert same(np.load("y.npy"), pool(x, mode, **kwargs))


@pytest.mark.parametrize("mode,args,kwargs", [
    ("max", ["--ignore-nan"], dict(ignore_nan=True)),
    ("min", ["--ignore-nan", "-w", "3", "-p", "1"], dict(ignore_nan=True, window=3, padding=1)),
    ("avg", ["--ignore-nan", "-w", "3", "-s", "1", "-p", "1", "--count-include-pad"],
     dict(ignore_nan=True, window=3, stride=1, padding=1, count_include_pad=True)),
    ("max", [], {}),
    ("avg", [], {}),
    ("sum", [], {}),
    ("lp", [], {}),
])
def test_nan_propagates_unless_ignore_nan(mode, args, kwargs):
    x = make_array((1, 2, 8, 8), np.float32)
    x[0, 0, 1, 1] = x[0, 1, 4:6, 4:6] = np.nan
    np.save("x.npy", x)
    run(mode, "x.npy", "-o", "y.npy", *args, "-q")
    y = np.load("y.npy")
    assert same(y, pool(x, mode, **kwargs))
    if "-w" not in args:  # 2x2 windows
        assert np.isnan(y[0, 1, 2, 2])  # a window of NaN only is NaN either way
        assert np.isnan(y[0, 0, 0, 0]) != bool(kwargs.get("ignore_nan"))


# ----------------------------------------------------------------------------
# usage errors: exit 2, said before any work, nothing written
# ----------------------------------------------------------------------------

USAGE_ERRORS = [
    ("max", ["--power", "3"]),
    ("min", ["--power", "2"]),
    ("avg", ["--power", "2"]),
    ("sum", ["--power", "1"]),
    ("max", ["--count-include-pad"]),
    ("sum", ["--count-include-pad"]),
    ("lp", ["--count-include-pad"]),
    ("max", ["--global", "--output-size", "3"]),
    ("max", ["-w", "0"]),
    ("max", ["--window", "2x0"]),
    ("max", ["-w", "3,0"]),
    ("avg", ["-s", "0"]),
    ("avg", ["-d", "0"]),
    ("avg", ["--output-size", "0"]),
    ("max", ["-w", "-2"]),
    ("lp", ["--power", "0"]),
    ("lp", ["--power", "-1"]),
    ("lp", ["--power", "nan"]),
    ("lp", ["--power", "inf"]),
    ("lp", ["--power", "two"]),
    ("max", ["-w", "2", "-p", "2"]),          # padding == window
    ("max", ["-w", "3", "-p", "3"]),
    ("avg", ["-w", "2", "-p", "0:2"]),        # end side
    ("avg", ["-w", "3,2", "-p", "1,2"]),      # second axis
    ("max", ["-w", "2", "-d", "2", "-p", "3"]),  # effective window 3
    ("max", ["-w", "3", "-p", "-1"]),
    ("max", ["-w", "three"]),
    ("max", ["-p", "wide"]),
    ("max", ["--layout", "NCHW", "-w", "3,3,3"]),
    ("max", ["--layout", "NCHW", "-s", "1,1,1"]),
    ("max", ["--layout", "NCHW", "-d", "1,1,1"]),
    ("max", ["--layout", "NCHW", "-p", "1,1,1", "-w", "3"]),
    ("max", ["--layout", "HWC", "-p", "1:0,0:1,0:0", "-w", "3"]),
    ("max", ["--layout", "NCDHW", "-w", "2,2"]),
    ("avg", ["--layout", "NCHW", "--output-size", "2,2,2"]),
    ("max", ["-w", "3,2", "-s", "1,1,1"]),    # per-axis lists disagree
    ("max", ["--layout", "XYZ"]),
    ("max", ["--layout", "HH"]),
    ("max", ["--layout", "NC"]),
    ("max", ["-o", "out/{name}{ext}"]),       # unknown template field
    ("max", ["-o", "out/{stem}.xyz"]),        # a template's own extension names no format
    ("max", ["--format", "xcf"]),
    ("max", ["--jobs", "0"]),
    ("max", ["--jpeg-quality", "0"]),
    ("max", ["--png-compression", "10"]),
    ("max", ["--no-such-option"]),
]


REPLACED_GEOMETRY = [
    ("max", ["--global", "--window", "3"], "--global replaces --window: leave it out"),
    ("max", ["--global", "-w", "0"], "window must be at least 1"),  # wrong whatever the input
    ("avg", ["--global", "-w", "2", "-s", "2", "-p", "1", "-d", "1"],
     "--global replaces --stride, --padding: leave them out"),
    ("avg", ["--global", "--ceil-mode"], "--global replaces --ceil-mode"),
    ("avg", ["--global", "--count-include-pad"], "--global replaces --count-include-pad"),
    ("max", ["--output-size", "3", "--window", "3"], "--output-size replaces --window"),
    ("avg", ["--output-size", "2", "--stride", "1", "--ceil-mode"],
     "--output-size replaces --stride, --ceil-mode"),
]


@pytest.mark.parametrize("args, kwargs", [
    (["--global", "-d", "1"], dict(global_pool=True)),
    (["--global", "-w", "2", "-p", "valid"], dict(global_pool=True)),
    (["--output-size", "3", "-w", "2x2", "-p", "0", "-d", "1,1"], dict(output_size=3)),
])
def test_default_geometry_beside_global_or_output_size_is_accepted(args, kwargs):
    # a harness may always pass the defaults: they change nothing, as in the API
    x = npy()
    run("avg", "x.npy", *args, "-o", "out.npy", "-q")
    assert same(np.load("out.npy"), pool(x, "avg", **kwargs))


@pytest.mark.parametrize("mode,args,words", REPLACED_GEOMETRY)
def test_geometry_beside_global_or_output_size_is_a_usage_error(mode, args, words):
    # it would be ignored: refused, as the API refuses it (no option accepted and ignored)
    npy()
    before = snapshot()
    for extra in ([], ["--quiet"]):
        result = run(mode, "x.npy", *args, *extra, "-o", "out.npy", code=2)
        assert words in result.stderr and result.stdout == ""
    assert snapshot() == before
    for command in (["compare", "x.npy", "--modes", "max,avg"], ["show", "x.npy", "--before-after"]):
        result = run(*command, *args, code=2)
        assert words in result.stderr
    assert snapshot() == before


@pytest.mark.parametrize("mode,args", USAGE_ERRORS, ids=[f"{m}{' '.join(a)}" for m, a in USAGE_ERRORS])
def test_usage_error_exits_2_and_writes_nothing(mode, args):
    npy()
    rgb("a.png")
    before = snapshot()
    result = run(mode, "x.npy", "a.png", *args, code=2)
    assert snapshot() == before
    assert "Error" in result.stderr and result.stdout == ""


def test_one_output_file_for_several_inputs_is_a_usage_error():
    npy()
    rgb("a.png")
    before = snapshot()
    result = run("max", "x.npy", "a.png", "-o", "out.npy", code=2)
    assert "out.npy" in result.stderr
    assert snapshot() == before
    run("max", "x.npy", "a.png", "-o", "-", "--format", "npy", code=2)
    assert snapshot() == before


def test_usage_error_is_reported_before_any_input_is_read():
    """A usage error wins even over a missing input: nothing is tried."""
    result = run("max", "missing.png", "-w", "0", code=2)
    assert "missing.png" not in result.stderr


# ----------------------------------------------------------------------------
# geometry that does not fit one input: that input fails, the others go on
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("args,words", [
    (["-w", "9"], "larger"),                      # window larger than the 6x8 image
    (["-w", "4", "-d", "3"], "larger"),           # effective window 10
    (["-w", "3,2,2"], "3 values"),                # three values for two spatial axes
])
def test_geometry_that_does_not_fit_fails_that_input(args, words):
    rgb("small.png", (6, 8, 3))
    x = npy("big.npy", (1, 1, 12, 12, 12))  # NCDHW: three spatial axes
    result = run("max", "small.png", "big.npy", *args, code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: small.png:") and words in line
    assert not Path("small_max.png").exists()
    assert same(np.load("big_max.npy"), pool(x, "max", **_kwargs(args)))


def _kwargs(args):
    names = {"-w": "window", "-d": "dilation", "--output-size": "output_size"}
    return {names[k]: v for k, v in zip(args[::2], args[1::2])}


def test_window_covering_no_cell_fails_that_input():
    # Length 1, window 2 dilated by 3 (taps 3 apart), padding 2 (< the effective window 4):
    # the first window's taps are cells -2 and 1, both outside the input.
    np.save("x.npy", np.arange(1.0))
    x = npy("ok.npy", (5, 5))
    result = run("max", "x.npy", "ok.npy", "-w", "2", "-d", "3", "-p", "2", "-s", "1", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: x.npy:") and "covers no" in line
    assert same(np.load("ok_max.npy"), pool(x, "max", window=2, dilation=3, padding=2, stride=1))


# ----------------------------------------------------------------------------
# outputs
# ----------------------------------------------------------------------------

def test_default_output_is_stem_mode_ext_beside_the_input():
    arr = rgb("photos/cat.png")
    x = npy("maps/f.npy", (3, 4, 4))
    result = run("avg", "photos/cat.png", "maps/f.npy", "--json")
    rows = json_rows(result.stdout)
    assert [r["output"] for r in rows] == [os.path.join("photos", "cat_avg.png"),
                                          os.path.join("maps", "f_avg.npy")]
    mode, values = read_image("photos/cat_avg.png")
    assert mode == "RGB"
    assert same(values, as_image_values(pool(arr, "avg", layout="HWC"), np.uint8))
    assert same(np.load("maps/f_avg.npy"), pool(x, "avg"))


@pytest.mark.parametrize("mode", MODES)
def test_default_output_name_per_mode(mode):
    npy()
    run(mode, "x.npy", "-q")
    assert Path(f"x_{mode}.npy").exists()


def test_output_file():
    x = npy()
    run("max", "x.npy", "-o", "result.npy")
    assert same(np.load("result.npy"), pool(x, "max"))
    assert sorted(snapshot()) == ["result.npy", "x.npy"]


def test_output_file_in_missing_folder_is_created():
    x = npy()
    run("max", "x.npy", "-o", "deep/er/result.npy", "-q")
    assert same(np.load("deep/er/result.npy"), pool(x, "max"))


def test_npy_output_from_an_image_keeps_full_precision():
    arr = rgb("a.png", (7, 9, 3))
    run("avg", "a.png", "-o", "a.npy", "-w", "3", "-s", "2", "-p", "1")
    y = np.load("a.npy")
    assert same(y, pool(arr, "avg", window=3, stride=2, padding=1, layout="HWC"))
    assert y.dtype == np.float64 and not np.array_equal(y, np.round(y))


def test_format_option_picks_the_default_extension():
    arr = rgb("a.png")
    run("lp", "a.png", "--format", "npy", "-q")
    assert same(np.load("a_lp.npy"), pool(arr, "lp", layout="HWC"))
    run("max", "a.png", "--format", "tiff", "-q")
    assert same(read_image("a_max.tif")[1], pool(arr, "max", layout="HWC"))


@pytest.mark.parametrize("target", ["out/", "out" + os.sep + os.sep])
def test_output_folder_with_slash_is_created(target):
    arr = rgb("a.png")
    x = npy()
    run("max", "a.png", "x.npy", "-o", target, "-q")
    assert same(read_image("out/a_max.png")[1], pool(arr, "max", layout="HWC"))
    assert same(np.load("out/x_max.npy"), pool(x, "max"))


def test_output_folder_with_slash_for_one_input():
    x = npy()
    run("sum", "x.npy", "-o", "new/", "-q")
    assert same(np.load("new/x_sum.npy"), pool(x, "sum"))


def test_existing_output_folder_without_slash():
    rgb("a.png")
    x = npy()
    os.mkdir("results")
    run("min", "x.npy", "-o", "results", "-q")
    assert same(np.load("results/x_min.npy"), pool(x, "min"))
    run("min", "x.npy", "a.png", "-o", "results", "--overwrite", "-q")
    assert Path("results/a_min.png").exists()


def test_template_output_creates_missing_parents():
    arr = rgb("a.png")
    x = npy()
    result = run("avg", "a.png", "x.npy", "-o", "out/{mode}/{stem}.{mode}{ext}", "--json")
    assert [r["output"] for r in json_rows(result.stdout)] == ["out/avg/a.avg.png", "out/avg/x.avg.npy"]
    assert same(read_image("out/avg/a.avg.png")[1],
                as_image_values(pool(arr, "avg", layout="HWC"), np.uint8))
    assert same(np.load("out/avg/x.avg.npy"), pool(x, "avg"))


def test_template_ending_with_a_slash_is_a_folder_per_input():
    rgb("a.png")
    rgb("d/b.png", seed=1)
    run("max", "a.png", "d", "-r", "-o", "out/{stem}/")
    assert sorted(str(p) for p in Path("out").rglob("*.png")) == [
        os.path.join("out", "a", "a_max.png"), os.path.join("out", "b", "b_max.png")]


def test_template_with_format():
    x = npy("x.npy", (4, 6))
    run("max", "x.npy", "-o", "{stem}-pooled{ext}", "--format", "npz", "-q")
    with np.load("x-pooled.npz") as z:
        [member] = z.files
        assert same(z[member], pool(x, "max"))


@pytest.mark.parametrize("fmt", ["png", "npy", None])
def test_output_to_stdout(fmt):
    arr = rgb("a.png")
    args = ["--format", fmt] if fmt else []
    result = run("max", "a.png", "-o", "-", *args)
    want = pool(arr, "max", layout="HWC")
    if fmt == "npy":
        got = np.load(io.BytesIO(result.stdout_bytes))
    else:
        assert result.stdout_bytes.startswith(b"\x89PNG")
        got = np.asarray(Image.open(io.BytesIO(result.stdout_bytes)))
    assert same(got, want)
    # The report moved to standard error; nothing but the data is on standard output.
    assert "a.png" in result.stderr and "6x8x3 -> 3x4x3" in result.stderr
    assert sorted(snapshot()) == ["a.png"]


def test_output_to_stdout_json_report_goes_to_stderr():
    x = npy()
    result = run("avg", "x.npy", "-o", "-", "--format", "npy", "--json")
    assert same(np.load(io.BytesIO(result.stdout_bytes)), pool(x, "avg"))
    [row] = json_rows(result.stderr)
    assert row["output"] == "-" and row["ok"] is True


def test_output_to_stdout_quiet_keeps_stderr_empty():
    x = npy()
    result = run("sum", "x.npy", "-o", "-", "--format", "npy", "-q")
    assert same(np.load(io.BytesIO(result.stdout_bytes)), pool(x, "sum"))
    assert result.stderr == ""


def test_stdin_to_stdout():
    arr = rgb("a.png")
    data = Path("a.png").read_bytes()
    result = run("max", "-", "-o", "-", "--format", "png", input=data)
    assert same(np.asarray(Image.open(io.BytesIO(result.stdout_bytes))), pool(arr, "max", layout="HWC"))


def test_stdin_defaults_to_stdout_in_its_own_format():
    x = npy()
    buffer = io.BytesIO()
    np.save(buffer, x)
    result = run("avg", "-", "-q", input=buffer.getvalue())
    assert same(np.load(io.BytesIO(result.stdout_bytes)), pool(x, "avg"))
    assert sorted(snapshot()) == ["x.npy"]


def test_stdin_to_a_folder_is_named_stdin():
    x = npy()
    result = run("max", "-", "-o", "out/", "--json", input=Path("x.npy").read_bytes())
    [row] = json_rows(result.stdout)
    assert row["input"] == "-" and row["output"] == os.path.join("out", "stdin_max.npy")
    assert same(np.load("out/stdin_max.npy"), pool(x, "max"))


def test_existing_output_is_kept_without_overwrite():
    npy()
    Path("x_max.npy").write_bytes(b"precious")
    result = run("max", "x.npy", code=1)
    [line] = error_lines(result)
    assert "x.npy" in line and "x_max.npy" in line and "--overwrite" in line
    assert Path("x_max.npy").read_bytes() == b"precious"
    assert no_temp_files()


def test_existing_output_file_is_kept_without_overwrite_json():
    npy()
    Path("y.npy").write_bytes(b"precious")
    result = run("max", "x.npy", "-o", "y.npy", "--json", code=1)
    [row] = json_rows(result.stdout)
    assert row["ok"] is False and row["input"] == "x.npy" and "y.npy" in row["error"]
    assert Path("y.npy").read_bytes() == b"precious"


def test_failed_rows_give_null_for_the_timings_never_reached():
    npy()
    missing, misfit = json_rows(run("max", "missing.npy", "x.npy", "-w", "999", "--json",
                                    code=1).stdout)
    assert (missing["load_ms"], missing["pool_ms"], missing["save_ms"]) == (None, None, None)
    assert misfit["load_ms"] > 0 and (misfit["pool_ms"], misfit["save_ms"]) == (None, None)


def test_a_failed_write_keeps_the_pooling_time_and_nulls_the_save():
    npy()
    os.makedirs("taken")
    Path("taken/x.npy").write_bytes(b"")
    [row] = json_rows(run("max", "x.npy", "-o", "taken/x.npy/y.npy", "--json", code=1).stdout)
    assert row["load_ms"] > 0 and row["pool_ms"] >= 0 and row["save_ms"] is None


def test_an_input_given_twice_is_pooled_once_and_said_so():
    npy()
    result = run("max", "x.npy", "x.npy", "./x.npy", "-o", "out/", code=1)
    assert error_lines(result) == [
        f"poolcli: error: {name}: given more than once; only its first mention is pooled"
        for name in ("x.npy", "./x.npy")]
    assert os.listdir("out") == ["x_max.npy"]


@pytest.mark.parametrize("option", ["-w", "-s", "-d", "--output-size"])
def test_sizes_too_large_for_any_array_are_usage_errors(option):
    npy()
    assert "at most 2**62" in run("max", "x.npy", option, "9" * 23, code=2).stderr


@pytest.mark.parametrize("ndim,message", [
    (0, "a 0-D array (a single value) has no axes to pool"),
    (6, "a 6-D array has more axes than the layout letters (N, C, D, H, W) can name")])
def test_arrays_no_layout_can_name_say_why(ndim, message):
    np.save("odd.npy", np.zeros((1,) * ndim, np.float32))
    assert error_lines(run("max", "odd.npy", code=1)) == [f"poolcli: error: odd.npy: {message}"]


def test_global_and_output_size_together_are_a_usage_error_in_flag_names():
    npy()
    result = run("max", "x.npy", "--global", "--output-size", "2", code=2)
    assert "--global and --output-size exclude each other" in result.stderr


@pytest.mark.parametrize("command,rows", [(["max"], "input"), (["info"], "array"),
                                          (["compare"], "mode"), (["analyze"], "row"),
                                          (["bench"], "row")])
def test_json_help_says_what_one_object_stands_for(command, rows):
    help_text = " ".join(run(*command, "--help").stdout.split())
    assert f"One JSON object per {rows} instead of the table." in help_text


@pytest.mark.parametrize("args", [["--global"], ["-w", "2"], ["-w", "3", "-s", "1", "-p", "1"]])
def test_big_endian_npy_is_pooled_as_its_values(args):
    x = np.arange(2 * 6 * 8, dtype=">f4").reshape(2, 6, 8) - 40
    np.save("be.npy", x)
    for mode in ("max", "avg", "lp"):
        run(mode, "be.npy", *args, "-o", f"be_{mode}.npy", "-q")
        kwargs = dict(global_pool=True) if args == ["--global"] else dict(
            window=int(args[1]), stride=int(args[3]) if len(args) > 2 else None,
            padding=int(args[5]) if len(args) > 2 else 0)
        assert same(np.load(f"be_{mode}.npy"), pool(x.astype("<f4"), mode, **kwargs))


def test_a_failed_row_keeps_what_was_known():
    npy()
    Path("x_max.npy").write_bytes(b"precious")
    rgb("small.png", (3, 3, 3))
    exists, small = json_rows(run("max", "x.npy", "small.png", "-w", "4", "--json", code=1).stdout)
    assert exists["ok"] is False and "exists" in exists["error"]
    assert exists["output"] == "x_max.npy"
    assert exists["input_shape"] == [2, 3, 9, 10] and exists["input_dtype"] == "float64"
    assert small["ok"] is False and small["output"] == "small_max.png"
    assert small["input_shape"] == [3, 3, 3] and small["output_shape"] is None
    Path("bad.npy").write_bytes(b"junk")
    [bad] = json_rows(run("max", "bad.npy", "--json", code=1).stdout)
    assert bad["output"] is None and bad["input_shape"] is None  # failed before either


def test_overwrite_replaces_an_existing_output():
    x = npy()
    Path("x_max.npy").write_bytes(b"stale")
    run("max", "x.npy", "--overwrite", "-q")
    assert same(np.load("x_max.npy"), pool(x, "max"))
    assert no_temp_files()


@pytest.mark.parametrize("out", ["a.png", "./a.png", "{stem}{ext}", "{stem}.png", "sub/../a.png"])
@pytest.mark.parametrize("overwrite", [False, True])
def test_an_input_is_never_replaced(out, overwrite):
    rgb("a.png")
    os.makedirs("sub")
    before = snapshot()
    result = run("max", "a.png", "-o", out, *(["--overwrite"] if overwrite else []), code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: a.png:") and "input" in line
    assert snapshot() == before


def test_an_input_is_never_replaced_by_another_inputs_output():
    """``a.png`` pools to ``a_max.png``, which is also an input of the same run."""
    rgb("a.png")
    rgb("a_max.png", seed=1)
    before = snapshot()
    result = run("max", "a.png", "a_max.png", "--overwrite", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: a.png:")
    assert snapshot()["a_max.png"] == before["a_max.png"]
    assert Path("a_max_max.png").exists()


@pytest.mark.parametrize("overwrite", [False, True])
def test_two_inputs_with_the_same_output_the_second_fails(overwrite):
    first = rgb("one/a.png", seed=1)
    rgb("two/a.png", seed=2)
    result = run("max", "one/a.png", "two/a.png", "-o", "out/",
                 *(["--overwrite"] if overwrite else []), "--json", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: two/a.png:")
    rows = json_rows(result.stdout)
    assert [r["ok"] for r in rows] == [True, False]
    assert same(read_image("out/a_max.png")[1], pool(first, "max", layout="HWC"))


def test_two_inputs_with_the_same_output_through_a_template():
    first = npy("a.npy", seed=1)
    npy("b.npy", seed=2)
    result = run("max", "a.npy", "b.npy", "-o", "out/{mode}{ext}", "--overwrite", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: b.npy:")
    assert same(np.load("out/max.npy"), pool(first, "max"))


def test_write_error_names_the_input_even_if_the_output_starts_with_its_name():
    rgb("a.png", (6, 8, 4))  # RGBA: JPEG cannot hold it
    result = run("max", "a.png", "-o", "a.png.jpg", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: a.png: ")


def test_write_error_is_one_line_naming_input_and_output():
    rgb("a.png", (6, 8, 4))
    result = run("max", "a.png", "-o", "out.jpg", "--json", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: a.png: ") and "out.jpg" in line and "JPEG" in line
    [row] = json_rows(result.stdout)
    assert row["ok"] is False and row["error"] == line.removeprefix("poolcli: error: ")
    assert sorted(snapshot()) == ["a.png"]


def test_output_below_a_file_fails_cleanly():
    rgb("a.png")
    Path("file").write_text("")
    result = run("max", "a.png", "-o", "file/x.png", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: a.png: ") and "file/x.png" in line


def test_not_an_image_error_is_plain():
    Path("text.png").write_text("hello\n")
    [line] = error_lines(run("max", "text.png", code=1))
    assert "<_io." not in line and "BufferedReader" not in line


def test_default_output_keeps_the_input_extension():
    Image.fromarray(rng().integers(0, 256, (6, 8), dtype=np.uint8)).save("scan.pgm")
    [row] = json_rows(run("max", "scan.pgm", "--json").stdout)
    assert row["output"] == "scan_max.pgm"


def test_unknown_output_extension_is_a_usage_error():
    npy()
    result = run("max", "x.npy", "-o", "result.bin", code=2)
    assert "result.bin" in result.stderr and "unknown output format" in result.stderr
    assert sorted(snapshot()) == ["x.npy"]
    run("max", "x.npy", "-o", "result.bin", "--format", "npy")  # --format says it
    assert np.array_equal(np.load("result.bin"), pool(np.load("x.npy"), "max"))


def test_a_template_with_its_own_extension_writes_that_format():
    rgb("a.png", (6, 8, 3))
    run("avg", "a.png", "-o", "t/{stem}.{mode}.npy", "-q")
    got = np.load("t/a.avg.npy")  # full precision, not PNG bytes under a .npy name
    assert got.dtype == np.float64
    assert np.array_equal(got, pool(np.asarray(Image.open("a.png")), "avg", layout="HWC"))
    run("avg", "a.png", "-o", "t/{stem}.npy", "--format", "png", code=2)


def test_integer_arrays_are_not_rounded_silently_into_images():
    np.save("u8.npy", np.arange(16, dtype=np.uint8).reshape(4, 4))
    result = run("avg", "u8.npy", "-o", "u8.png", code=1)
    assert "use .npy" in result.stderr or ".npy" in error_lines(result)[0]


def test_result_that_an_image_format_cannot_hold_fails_cleanly():
    npy("x.npy", (4, 4, 4, 4))
    result = run("max", "x.npy", "-o", "x.png", code=1)
    [line] = error_lines(result)
    assert "x.npy" in line and ".npy" in line
    assert sorted(snapshot()) == ["x.npy"]


# ----------------------------------------------------------------------------
# batches
# ----------------------------------------------------------------------------

def _bad_inputs() -> dict[str, str]:
    """Write one input of each bad kind; return {name: a word its error should contain}."""
    good_png = Path("good.png")
    rgb(good_png, (8, 8, 3), seed=9)
    data = good_png.read_bytes()
    Path("corrupt.png").write_bytes(data[:16] + bytes(range(256)) * 4)
    Path("truncated.png").write_bytes(data[: len(data) // 2])
    Path("text.png").write_text("this is not an image\n")
    Path("empty.png").write_bytes(b"")
    np.save("pickled.npy", np.array([{"a": 1}, None], dtype=object), allow_pickle=True)
    Path("raw_pickle.npy").write_bytes(pickle.dumps({"a": [1, 2, 3]}))
    Path("truncated.npy").write_bytes(_npy_bytes(make_array((10, 10), np.float64))[:150])
    np.save("complex.npy", np.ones((4, 4), np.complex64))
    np.save("strings.npy", np.array([["a", "b"], ["c", "d"]]))
    rgb("tiny.png", (1, 1, 3))
    os.remove("good.png")
    return {"missing.png": "no such file", "corrupt.png": "corrupt", "truncated.png": "truncated",
            "text.png": "image", "empty.png": "empty", "pickled.npy": "object",
            "raw_pickle.npy": "object", "truncated.npy": "truncated", "complex.npy": "complex",
            "strings.npy": "string", "tiny.png": "larger"}


def _npy_bytes(arr) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, arr)
    return buffer.getvalue()


BAD_KINDS = ["missing.png", "corrupt.png", "truncated.png", "text.png", "empty.png",
             "pickled.npy", "raw_pickle.npy", "truncated.npy", "complex.npy", "strings.npy",
             "tiny.png"]


@pytest.mark.parametrize("bad", BAD_KINDS)
def test_one_bad_input_fails_alone(bad):
    words = _bad_inputs()
    first = rgb("first.png", seed=1)
    last = npy("last.npy", (3, 6, 6))
    before = snapshot()
    result = run("max", "first.png", bad, "last.npy", "--json", code=1)
    [line] = error_lines(result)
    assert line.startswith(f"poolcli: error: {bad}:") and words[bad] in line.lower(), line
    rows = json_rows(result.stdout)
    assert [r["input"] for r in rows] == ["first.png", bad, "last.npy"]
    assert [r["ok"] for r in rows] == [True, False, True]
    assert rows[1]["error"] == line.removeprefix("poolcli: error: ")
    assert same(read_image("first_max.png")[1], pool(first, "max", layout="HWC"))
    assert same(np.load("last_max.npy"), pool(last, "max"))
    assert set(snapshot()) == set(before) | {"first_max.png", "last_max.npy"}


def test_a_batch_with_every_kind_of_bad_input():
    words = _bad_inputs()
    arr = rgb("ok.png")
    x = npy("ok.npy")
    before = snapshot()
    names = ["ok.png", *BAD_KINDS, "ok.npy"]
    result = run("avg", *names, code=1)
    lines = error_lines(result)
    assert len(lines) == len(BAD_KINDS)
    for bad, line in zip(BAD_KINDS, lines):
        assert line.startswith(f"poolcli: error: {bad}:") and words[bad] in line.lower(), line
    # Nothing but the error lines on standard error (one line per error).
    assert result.stderr.splitlines() == lines
    assert set(snapshot()) == set(before) | {"ok_avg.png", "ok_avg.npy"}
    assert same(read_image("ok_avg.png")[1], as_image_values(pool(arr, "avg", layout="HWC"), np.uint8))
    assert same(np.load("ok_avg.npy"), pool(x, "avg"))
    assert no_temp_files()
    # The table has a row for every input, failed ones included.
    for name in names:
        assert name in result.stdout


def test_folder_without_recursive_fails_that_input():
    rgb("photos/a.png")
    x = npy()
    result = run("max", "photos", "x.npy", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: photos:") and "-r" in line
    assert same(np.load("x_max.npy"), pool(x, "max"))
    assert not Path("photos/a_max.png").exists()


def _tree():
    arrays = {"tree/b.png": rgb("tree/b.png", seed=1), "tree/a.png": rgb("tree/a.png", seed=2),
              "tree/sub/c.png": rgb("tree/sub/c.png", seed=3),
              "tree/sub/deeper/d.npy": npy("tree/sub/deeper/d.npy", (2, 4, 4), seed=4),
              "tree/other/e.png": rgb("tree/other/e.png", seed=5)}
    Path("tree/notes.txt").write_text("not an input")
    Path("tree/sub/data.csv").write_text("1,2\n")
    return arrays


def test_recursive_keeps_sub_folders_under_the_output_folder():
    arrays = _tree()
    result = run("max", "tree", "-r", "-o", "out/", "--json")
    rows = json_rows(result.stdout)
    # Sorted, folder by folder.
    assert [r["input"] for r in rows] == [os.path.join(*p.split("/")) for p in (
        "tree/a.png", "tree/b.png", "tree/other/e.png", "tree/sub/c.png", "tree/sub/deeper/d.npy")]
    expect = {"out/a_max.png": "tree/a.png", "out/b_max.png": "tree/b.png",
              "out/other/e_max.png": "tree/other/e.png", "out/sub/c_max.png": "tree/sub/c.png",
              "out/sub/deeper/d_max.npy": "tree/sub/deeper/d.npy"}
    assert sorted(r["output"] for r in rows) == sorted(os.path.join(*p.split("/")) for p in expect)
    assert sorted(str(p.relative_to("out")) for p in Path("out").rglob("*") if p.is_file()) == sorted(
        os.path.relpath(p, "out") for p in expect)
    for out, src in expect.items():
        got = np.load(out) if out.endswith(".npy") else read_image(out)[1]
        layout = None if src.endswith(".npy") else "HWC"
        assert same(got, pool(arrays[src], "max", layout=layout))


@pytest.mark.parametrize("out", [None, "tree/pooled/"])
def test_recursive_run_again_leaves_out_its_own_earlier_outputs(out):
    _tree()
    first = ["max", "tree", "-r", "--json", *(["-o", out] if out else [])]
    rows = json_rows(run(*first).stdout)
    assert len(rows) == 5 and all(r["ok"] for r in rows)
    before = snapshot()
    # the outputs now sit in the walked folders: they are not pooled again (no c_max_max.png),
    # and each input's output exists, which says so (exit 1), or is replaced with --overwrite
    again = run(*first, code=1)
    rows = json_rows(again.stdout)
    assert len(rows) == 5 and all("exists" in r["error"] for r in rows)
    assert "left out 5 file(s)" in again.stderr
    assert snapshot() == before
    rows = json_rows(run(*first, "--overwrite").stdout)
    assert len(rows) == 5 and all(r["ok"] for r in rows)
    assert not list(Path("tree").rglob("*_max_max*"))
    # named on the command line, an output is an input like any other
    result = run("max", os.path.join("tree", "a_max.png") if out is None else
                 os.path.join("tree", "pooled", "a_max.png"), "-q")
    assert result.exit_code == 0


def test_recursive_never_leaves_out_or_replaces_a_genuine_input():
    os.makedirs("d")
    rgb("d/a.png", (4, 4, 3), seed=1)
    Image.fromarray(rng(2).integers(0, 256, (4, 4, 3), dtype=np.uint8)).save("d/a.jpg")
    before = snapshot()
    # a.jpg's output would be a.png, an input: both fail, nothing is left out or replaced
    result = run("max", "d", "-r", "-o", "d/{stem}.png", "--overwrite", code=1)
    assert "left out" not in result.stderr
    assert len(error_lines(result)) == 2 and all("would replace an input" in line
                                                 for line in error_lines(result))
    assert snapshot() == before
    # every input's output would be itself: each fails as one that would be replaced
    result = run("max", "d", "-r", "-o", "d/{stem}{ext}", code=1)
    assert "left out" not in result.stderr and len(error_lines(result)) == 2
    assert snapshot() == before


def test_recursive_run_again_leaves_out_outputs_of_formats_it_does_not_write():
    os.makedirs("d")
    Image.fromarray(rng(3).random((4, 8)) < 0.5).save("d/pic.msp", format="MSP")
    run("max", "d", "-r", "-q")
    assert sorted(os.listdir("d")) == ["pic.msp", "pic_max.png"]  # MSP is read, written as PNG
    result = run("max", "d", "-r", "--overwrite")
    assert "left out 1 file(s)" in result.stderr
    assert sorted(os.listdir("d")) == ["pic.msp", "pic_max.png"]


def test_recursive_folder_without_inputs_is_reported():
    Path("empty/sub").mkdir(parents=True)
    Path("empty/notes.txt").write_text("no images here")
    result = run("max", "empty", "-r", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: empty:")


def test_recursive_without_output_writes_beside_each_input():
    _tree()
    run("avg", "tree", "-r", "-q")
    assert Path("tree/sub/deeper/d_avg.npy").exists() and Path("tree/other/e_avg.png").exists()
    assert not Path("tree/notes_avg.txt").exists()


def test_recursive_mixed_with_plain_files():
    _tree()
    x = npy()
    result = run("min", "x.npy", "tree/sub", "-r", "-o", "out/", "--json")
    assert [r["output"] for r in json_rows(result.stdout)] == [
        os.path.join("out", "x_min.npy"), os.path.join("out", "c_min.png"),
        os.path.join("out", "deeper", "d_min.npy")]
    assert same(np.load("out/x_min.npy"), pool(x, "min"))


def test_jobs_give_the_same_outputs_and_report_order():
    names = []
    for i in range(6):
        if i % 2:
            names.append(f"in{i}.npy")
            npy(names[-1], (2, 12, 10), seed=i)
        else:
            names.append(f"in{i}.png")
            rgb(names[-1], (10, 12, 3), seed=i)
    names.insert(3, "missing.png")
    serial = run("avg", *names, "-w", "3", "-s", "2", "-o", "serial/", "--json", code=1)
    parallel = run("avg", *names, "-w", "3", "-s", "2", "-o", "parallel/", "--json", "--jobs", "3",
                   code=1)
    rows_s, rows_p = json_rows(serial.stdout), json_rows(parallel.stdout)
    assert [r["input"] for r in rows_p] == names == [r["input"] for r in rows_s]
    assert [r["ok"] for r in rows_p] == [name != "missing.png" for name in names]
    assert error_lines(parallel) == error_lines(serial)
    assert snapshot("serial") == snapshot("parallel")
    table = run("avg", *names, "-w", "3", "-s", "2", "-o", "table/", "-j", "3", code=1).stdout
    positions = [table.index(name) for name in names]
    assert positions == sorted(positions)


# ----------------------------------------------------------------------------
# reports
# ----------------------------------------------------------------------------

def test_table_has_a_row_per_input_with_shapes_dtypes_and_timings():
    rgb("a.png", (6, 8, 3))
    npy("x.npy", (3, 5, 4), dtype=np.int16)
    result = run("avg", "a.png", "x.npy", "missing.png", code=1)
    out = result.stdout
    for header in ("input", "output", "mode", "shape", "dtype", "load ms", "pool ms", "save ms"):
        assert header in out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "a_avg.png" in rows["a.png"] and "6x8x3 -> 3x4x3" in rows["a.png"]
    assert "x_avg.npy" in rows["x.npy"] and "3x5x4 -> 3x2x2" in rows["x.npy"]
    assert "int16 -> float64" in rows["x.npy"]
    assert "failed" in rows["missing.png"]
    # load, pool and save are numbers (ms)
    assert all(float(cell) >= 0 for cell in rows["a.png"].split()[-3:])
    assert "2 done, 1 failed" in out


def test_json_has_every_spec_field():
    rgb("a.png", (6, 8, 3))
    npy("x.npy", (2, 3, 9, 10), dtype=np.int32)
    result = run("avg", "a.png", "x.npy", "missing.png", "--json", "-w", "3,2", "-s", "2,1",
                 "-p", "1:0,0:1", "-d", "1,2", "--ceil-mode", code=1)
    a, b, c = json_rows(result.stdout)
    for row in (a, b, c):
        assert SPEC_FIELDS <= set(row), SPEC_FIELDS - set(row)
        assert row["mode"] == "avg"
    assert a["input"] == "a.png" and a["output"] == "a_avg.png" and a["ok"] is True
    assert a["input_shape"] == [6, 8, 3] and a["input_dtype"] == "uint8"
    assert a["output_shape"] == list(pool(np.zeros((6, 8, 3)), "avg", window=(3, 2), stride=(2, 1),
                                          padding=((1, 0), (0, 1)), dilation=(1, 2), ceil_mode=True,
                                          layout="HWC").shape)
    assert a["window"] == [3, 2] and a["stride"] == [2, 1] and a["dilation"] == [1, 2]
    assert a["padding"] == [[1, 0], [0, 1]] and a["ceil_mode"] is True
    assert "error" not in a and "key" not in a
    assert b["input_shape"] == [2, 3, 9, 10] and b["input_dtype"] == "int32"
    assert b["output_dtype"] == "float64"
    assert b["output_shape"] == list(np.load("x_avg.npy").shape)
    for field in ("load_ms", "pool_ms", "save_ms"):
        assert isinstance(a[field], (int, float)) and a[field] >= 0
    assert c["ok"] is False and c["input"] == "missing.png"
    assert c["error"].startswith("missing.png:") and "\n" not in c["error"]


@pytest.mark.parametrize("name,shape,dtype", [("a.png", (6, 8, 3), "uint8"),
                                              ("g.png", (6, 8), "uint16")])
def test_json_output_dtype_is_the_written_dtype(name, shape, dtype):
    save_image(name, rng().integers(0, 200, shape).astype(dtype))
    [row] = json_rows(run("avg", name, "--json").stdout)
    assert row["output_dtype"] == dtype
    table = run("avg", name, "--overwrite").stdout
    assert "float64" not in table


def test_json_output_dtype_of_an_image_pooled_to_npy_is_full_precision():
    rgb("a.png")
    [row] = json_rows(run("avg", "a.png", "-o", "a.npy", "--json").stdout)
    assert row["output_dtype"] == "float64" and np.load("a.npy").dtype == np.float64


def test_json_single_values_are_given_per_axis():
    npy("x.npy", (1, 2, 3, 8, 8))  # NCDHW: three spatial axes
    [row] = json_rows(run("max", "x.npy", "-w", "2", "-p", "1", "--json").stdout)
    assert row["window"] == [2, 2, 2] and row["stride"] == [2, 2, 2]
    assert row["padding"] == [[1, 1]] * 3 and row["dilation"] == [1, 1, 1]
    assert row["ceil_mode"] is False


def test_json_same_padding_is_resolved_per_axis():
    npy("x.npy", (7, 6))
    [row] = json_rows(run("max", "x.npy", "-w", "4", "-s", "1", "-p", "same", "--json").stdout)
    assert row["padding"] == [[1, 2], [1, 2]]
    [row] = json_rows(run("max", "x.npy", "-w", "4", "-s", "1", "-p", "same-lower", "--json",
                          "-o", "lower.npy").stdout)
    assert row["padding"] == [[2, 1], [2, 1]]


def test_json_global_window_is_the_whole_extent():
    rgb("a.png", (6, 8, 3))
    [row] = json_rows(run("max", "a.png", "--global", "--json").stdout)
    assert row["window"] == [6, 8] and row["output_shape"] == [1, 1, 3]
    mode, values = read_image("a_max.png")
    assert values.shape == (1, 1, 3)


def test_json_output_size_nulls_window_stride_dilation():
    npy("x.npy", (2, 9, 10))
    [row] = json_rows(run("avg", "x.npy", "--output-size", "4x3", "--json").stdout)
    assert row["window"] is None and row["stride"] is None and row["dilation"] is None
    assert row["output_size"] == [4, 3] and row["output_shape"] == [2, 4, 3]


def test_npz_gives_one_object_per_array_with_key():
    a = make_array((2, 6, 6), np.float32, 1)
    b = make_array((8, 4), np.uint8, 2)
    np.savez("m.npz", maps=a, image=b)
    rows = json_rows(run("max", "m.npz", "--json").stdout)
    assert [r["key"] for r in rows] == ["maps", "image"]
    assert [r["input_shape"] for r in rows] == [[2, 6, 6], [8, 4]]
    assert all(r["output"] == "m_max.npz" and r["input"] == "m.npz" for r in rows)
    with np.load("m_max.npz") as z:
        assert sorted(z.files) == ["image", "maps"]
        assert same(z["maps"], pool(a, "max")) and same(z["image"], pool(b, "max"))


def test_a_failed_npz_member_is_named_in_its_row():
    np.savez("m.npz", fine=np.zeros((4, 4), np.float32), tiny=np.zeros((1, 1), np.int16))
    result = run("max", "m.npz", "--window", "3", "--json", code=1)
    [row] = json_rows(result.stdout)
    assert not row["ok"] and "m.npz[tiny]" in row["error"]
    assert (row["key"], row["input_shape"], row["input_dtype"]) == ("tiny", [1, 1], "int16")
    assert not os.path.exists("m_max.npz")


MARKUP_BUG = ("bug: the Rich tables read file names and .npz keys as console markup: "
              "'m.npz[first]' shows as 'm.npz', 'b[bold]x.png' as 'bx.png' "
              "(report.py should escape them: rich.markup.escape or Text cells)")


def test_npz_table_names_each_member():
    np.savez("m.npz", first=np.zeros((4, 4)), second=np.ones((4, 4)))
    out = run("sum", "m.npz").stdout
    assert "m.npz[first]" in out and "m.npz[second]" in out


def test_table_shows_file_names_with_brackets_as_they_are():
    rgb("b[bold]x.png")
    out = run("max", "b[bold]x.png").stdout
    assert "b[bold]x.png" in out and "b[bold]x_max.png" in out


def test_info_table_shows_file_names_with_brackets_as_they_are():
    rgb("shot[red].png")
    assert "shot[red].png" in run("info", "shot[red].png").stdout


def test_file_names_with_brackets_are_processed():
    arr = rgb("b[bold]x.png")
    [row] = json_rows(run("max", "b[bold]x.png", "--json").stdout)
    assert row["input"] == "b[bold]x.png" and row["output"] == "b[bold]x_max.png"
    assert same(read_image("b[bold]x_max.png")[1], pool(arr, "max", layout="HWC"))


def test_quiet_prints_nothing_on_success():
    rgb("a.png")
    npy()
    result = run("max", "a.png", "x.npy", "--quiet")
    assert result.stdout == "" and result.stderr == ""
    assert Path("a_max.png").exists() and Path("x_max.npy").exists()


def test_quiet_prints_only_errors_on_failure():
    npy()
    result = run("max", "x.npy", "missing.png", "-q", code=1)
    assert result.stdout == ""
    assert result.stderr.splitlines() == ["poolcli: error: missing.png: no such file"]


def test_quiet_wins_over_json():
    npy()
    result = run("max", "x.npy", "--json", "--quiet")
    assert result.stdout == ""


def test_report_and_errors_name_inputs_as_given():
    rgb("dir/a.png")
    result = run("max", "./dir/a.png", "dir/missing.png", "--json", code=1)
    rows = json_rows(result.stdout)
    assert rows[0]["input"] == "./dir/a.png"
    assert error_lines(result) == ["poolcli: error: dir/missing.png: no such file"]


# ----------------------------------------------------------------------------
# round trips: images written back as images, arrays as .npy
# ----------------------------------------------------------------------------

def _image(mode: str, seed: int = 0):
    """A small image of ``mode`` (7x10, odd height); returns (file, the array poolcli reads, read mode)."""
    g = rng(seed)
    h, w = 7, 10
    if mode in ("L", "RGB", "RGBA", "LA"):
        channels = {"L": (), "LA": (2,), "RGB": (3,), "RGBA": (4,)}[mode]
        arr = g.integers(0, 256, (h, w, *channels), dtype=np.uint8)
        arr.flat[:4] = (0, 255, 255, 0)
        return save_image(f"img_{mode}.png", arr), arr, mode
    if mode == "P":
        palette = g.integers(0, 256, (16, 3), dtype=np.uint8)
        index = g.integers(0, 16, (h, w), dtype=np.uint8)
        im = Image.frombytes("P", (w, h), index.tobytes())
        im.putpalette(palette.tobytes(), "RGB")
        return save_image("img_P.png", im), palette[index], "RGB"
    if mode == "1":
        arr = g.random((h, w)) < 0.5
        return save_image("img_1.png", Image.fromarray(arr)), arr, "1"
    if mode == "I;16":
        arr = g.integers(0, 65536, (h, w), dtype=np.uint16)
        arr.flat[:2] = (65535, 65534)
        return save_image("img_16.png", Image.fromarray(arr)), arr, "I;16"
    if mode == "I":
        arr = g.integers(-(2**31), 2**31 - 1, (h, w), dtype=np.int64).astype(np.int32)
        return save_image("img_I.tif", Image.fromarray(arr)), arr, "I"
    if mode == "F":
        arr = (g.standard_normal((h, w)) * 100).astype(np.float32)
        return save_image("img_F.tif", Image.fromarray(arr)), arr, "F"
    if mode == "CMYK":
        arr = g.integers(0, 256, (h, w, 4), dtype=np.uint8)
        return save_image("img_CMYK.tif", Image.frombytes("CMYK", (w, h), arr.tobytes())), arr, "CMYK"
    raise AssertionError(mode)


IMAGE_MODES = ["L", "LA", "RGB", "RGBA", "P", "1", "I;16", "I", "F", "CMYK"]
IMAGE_DTYPES = {"L": np.uint8, "LA": np.uint8, "RGB": np.uint8, "RGBA": np.uint8, "P": np.uint8,
                "1": bool, "I;16": np.uint16, "I": np.int32, "F": np.float32, "CMYK": np.uint8}


@pytest.mark.parametrize("pool_mode,args,kwargs", [
    ("max", ["-w", "2"], dict(window=2)),
    ("min", ["-w", "3", "-s", "2", "-p", "1"], dict(window=3, stride=2, padding=1)),
    ("avg", ["-w", "2", "--ceil-mode"], dict(window=2, ceil_mode=True)),
    ("avg", ["-w", "3", "-s", "1", "-p", "1", "--count-include-pad"],
     dict(window=3, stride=1, padding=1, count_include_pad=True)),
    ("lp", ["-w", "2", "--power", "3"], dict(window=2, power=3)),
])
@pytest.mark.parametrize("image_mode", IMAGE_MODES)
def test_image_round_trip(image_mode, pool_mode, args, kwargs):
    path, arr, read_mode = _image(image_mode)
    out = f"out{path.suffix}"
    run(pool_mode, path, "-o", out, *args, "-q")
    mode, values = read_image(out)
    assert mode == read_mode
    if image_mode == "I;16":
        values = values.astype(np.uint16)
    want = pool(arr, pool_mode, layout=layout_of(arr), **kwargs)
    assert same(values, as_image_values(want, IMAGE_DTYPES[image_mode]))
    # The same run to .npy keeps pool()'s full precision.
    run(pool_mode, path, "-o", "full.npy", *args, "-q")
    assert same(np.load("full.npy"), want)


SUM_BUG = ("bug: `poolcli sum img.png` exits 1 for every integer image mode ('int64 values "
           "cannot be written as a mode RGB PNG (uint8) without loss'); SPEC 'Data types': an image "
           "written back keeps its mode and bit depth, values clipped to the dtype's range")


@pytest.mark.parametrize("image_mode", [
    m
    for m in IMAGE_MODES])
def test_image_round_trip_sum(image_mode):
    """sum widens integers to int64; written back as an image it is clipped to the mode's range."""
    path, arr, read_mode = _image(image_mode)
    out = f"out{path.suffix}"
    run("sum", path, "-o", out, "-q")
    mode, values = read_image(out)
    assert mode == read_mode
    assert same(values, as_image_values(pool(arr, "sum", layout=layout_of(arr)), IMAGE_DTYPES[image_mode]))


def test_sum_of_an_image_is_written_clipped():
    arr = rgb("a.png", (6, 8))
    run("sum", "a.png", "-q")
    assert same(read_image("a_sum.png")[1], as_image_values(pool(arr, "sum"), np.uint8))


def test_lp_of_a_1_bit_image_is_clipped_and_says_so_as_sum_does():
    bits = rng().random((8, 8)) > 0.5
    save_image("b.png", bits)
    norms = pool(bits, "lp")
    result = run("lp", "b.png", "-o", "b_lp.png")
    clipped = int(np.count_nonzero(np.floor(norms + 0.5) > 1))
    assert clipped and f"b_lp.png: {clipped} values outside 0..1 clipped" in result.stderr
    assert same(read_image("b_lp.png")[1], norms >= 0.5)


def test_palette_image_with_transparency_reads_as_rgba():
    index = rng().integers(0, 4, (6, 8), dtype=np.uint8)
    im = Image.frombytes("P", (8, 6), index.tobytes())
    palette = np.array([[255, 0, 0], [0, 255, 0], [0, 0, 255], [9, 9, 9]], np.uint8)
    im.putpalette(palette.tobytes(), "RGB")
    im.info["transparency"] = 3
    im.save("p.png", transparency=3)
    run("max", "p.png", "-o", "p_out.png", "-q")
    mode, values = read_image("p_out.png")
    with Image.open("p.png") as original:
        want = np.asarray(original.convert("RGBA"))
    assert mode == "RGBA"
    assert same(values, pool(want, "max", layout="HWC"))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dtype", ["uint8", "int16", "int32", "float16", "float32", "float64", "bool"])
def test_npy_round_trip(dtype, mode):
    x = make_array((2, 3, 7, 8), dtype, seed=3)
    np.save("x.npy", x)
    result = run(mode, "x.npy", "-w", "3", "-s", "2", "-p", "1", "--json")
    y = np.load(f"x_{mode}.npy")
    want = pool(x, mode, window=3, stride=2, padding=1)
    assert same(y, want)
    documented = {"max": dtype, "min": dtype,
                  "sum": "int64" if dtype in ("uint8", "int16", "int32", "bool") else dtype,
                  "avg": dtype if dtype.startswith("float") else "float64",
                  "lp": dtype if dtype.startswith("float") else "float64"}[mode]
    assert y.dtype == np.dtype(documented)
    [row] = json_rows(result.stdout)
    assert row["input_dtype"] == dtype and row["output_dtype"] == documented


@pytest.mark.parametrize("mode,shape", [("L", (8, 10)), ("RGB", (8, 10, 3))])
def test_avg_2x2_equals_pillow_reduce(mode, shape):
    arr = rng(7).integers(0, 256, shape, dtype=np.uint8)
    # Ties (a sum of 2 mod 4: x.5 rounds up) and the extremes occur.
    for (r, c), block in {(0, 0): [[0, 1], [0, 1]], (0, 2): [[1, 2], [2, 1]],
                          (2, 0): [[255, 255], [255, 255]], (2, 2): [[254, 255], [255, 255]]}.items():
        block = np.array(block, np.uint8)
        arr[r:r + 2, c:c + 2] = block if len(shape) == 2 else block[..., None]
    save_image("in.png", arr)
    run("avg", "in.png", "-o", "out.png", "-q")
    with Image.open("in.png") as im:
        reduced = np.asarray(im.reduce(2))
    mode_out, values = read_image("out.png")
    assert mode_out == mode
    assert values.tobytes() == reduced.tobytes() and values.shape == reduced.shape


@pytest.mark.parametrize("name", ["chelsea.png", "coffee.png"])
def test_avg_2x2_of_a_sample_equals_pillow_reduce(name):
    """A real photo: ceil mode keeps the partial last column, as reduce() does."""
    with Image.open(SAMPLES / name) as im:
        im = im.convert("RGB")
        small = im.crop((0, 0, 121, 80))   # odd width, to use the partial window
        small.save("in.png")
        reduced = np.asarray(small.reduce(2))
        grey = small.convert("L")
        grey.save("grey.png")
        grey_reduced = np.asarray(grey.reduce(2))
    run("avg", "in.png", "grey.png", "-o", "out/", "--ceil-mode", "-q")
    assert read_image("out/in_avg.png")[1].tobytes() == reduced.tobytes()
    assert read_image("out/grey_avg.png")[1].tobytes() == grey_reduced.tobytes()


# ----------------------------------------------------------------------------
# the conformance harness's invocation
# ----------------------------------------------------------------------------

def _harness(mode, x, extra, kwargs, **geometry):
    np.save("in.npy", x)
    Path("out.npy").write_bytes(b"stale output of an earlier case")
    result = run(mode, "in.npy", "-o", "out.npy", "--layout", "NCHW", *extra, "--overwrite", "--quiet")
    assert result.stdout == "" and result.stderr == ""
    assert same(np.load("out.npy"), pool(x, mode, layout="NCHW", **geometry, **kwargs))


HARNESS_FLAGS = [
    ([], {}),
    (["--ceil-mode"], dict(ceil_mode=True)),
]


@pytest.mark.parametrize("flags,kwargs", HARNESS_FLAGS, ids=["plain", "ceil"])
@pytest.mark.parametrize("mode", MODES)
def test_harness_invocation(mode, flags, kwargs):
    x = make_array((2, 3, 11, 9), np.float32, seed=5)
    extra = ["--window", "3", "--stride", "2", "--padding", "1", "--dilation", "1", *flags]
    _harness(mode, x, extra, kwargs, window=3, stride=2, padding=1, dilation=1)


@pytest.mark.parametrize("mode", MODES)
def test_harness_invocation_per_axis(mode):
    x = make_array((1, 2, 10, 9), np.float64, seed=6)
    extra = ["--window", "3,2", "--stride", "2", "--padding", "1:0,0:1", "--dilation", "1",
             "--ceil-mode"]
    _harness(mode, x, extra, {}, window=(3, 2), stride=2, padding=((1, 0), (0, 1)), dilation=1,
             ceil_mode=True)


@pytest.mark.parametrize("flags,kwargs", [
    (["--count-include-pad"], dict(count_include_pad=True)),
    (["--count-include-pad", "--ceil-mode"], dict(count_include_pad=True, ceil_mode=True)),
])
def test_harness_invocation_avg_count_include_pad(flags, kwargs):
    x = make_array((2, 2, 8, 7), np.float32, seed=7)
    _harness("avg", x, ["--window", "3", "--stride", "2", "--padding", "1", "--dilation", "1",
                        *flags], kwargs, window=3, stride=2, padding=1, dilation=1)


@pytest.mark.parametrize("power", ["1", "2", "3", "0.5", "4.5"])
def test_harness_invocation_lp_power(power):
    x = make_array((2, 2, 8, 7), np.float64, seed=8)
    _harness("lp", x, ["--window", "3", "--stride", "2", "--padding", "1", "--dilation", "2",
                       "--power", power], {}, window=3, stride=2, padding=1, dilation=2,
             power=float(power))


@pytest.mark.parametrize("mode", MODES)
def test_harness_invocation_global(mode):
    x = make_array((2, 3, 5, 6), np.float32, seed=9)
    _harness(mode, x, ["--global"], {}, global_pool=True)


@pytest.mark.parametrize("dtype", ["float16", "int32", "uint8", "bool"])
def test_harness_invocation_other_dtypes(dtype):
    x = make_array((1, 2, 9, 9), dtype, seed=10)
    for mode in MODES:
        _harness(mode, x, ["--window", "3", "--stride", "2", "--padding", "1", "--dilation", "1"],
                 {}, window=3, stride=2, padding=1, dilation=1)


# ----------------------------------------------------------------------------
# info
# ----------------------------------------------------------------------------

def test_info_table_on_images_and_arrays():
    rgb("a.png", (6, 8, 3))
    save_image("g.png", rng().integers(0, 65536, (5, 4), dtype=np.uint16))
    np.save("x.npy", np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    out = run("info", "a.png", "g.png", "x.npy").stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.split()}
    assert "RGB" in rows["a.png"] and "uint8" in rows["a.png"] and "6x8x3" in rows["a.png"]
    assert "HWC" in rows["a.png"]
    assert "I;16" in rows["g.png"] and "uint16" in rows["g.png"] and "5x4" in rows["g.png"]
    assert "int16" in rows["x.npy"] and "2x3x4" in rows["x.npy"] and "CHW" in rows["x.npy"]
    assert "0 .. 23" in rows["x.npy"]


def test_info_json():
    arr = rgb("a.png", (6, 8, 3))
    x = npy("x.npy", (2, 5), dtype=np.float32)
    np.savez("m.npz", one=np.zeros((3, 3)), two=np.ones((1, 2, 4, 4), np.uint8))
    a, b, c, d = json_rows(run("info", "a.png", "x.npy", "m.npz", "--json").stdout)
    assert a["input"] == "a.png" and a["format"] == "png" and a["image_mode"] == "RGB"
    assert a["shape"] == [6, 8, 3] and a["dtype"] == "uint8" and a["layout"] == "HWC"
    assert a["min"] == int(arr.min()) and a["max"] == int(arr.max())
    assert b["format"] == "npy" and b["image_mode"] is None and b["shape"] == [2, 5]
    assert b["layout"] == "HW" and b["min"] == pytest.approx(float(x.min()))
    assert [c["key"], d["key"]] == ["one", "two"] and d["layout"] == "NCHW"


def test_info_stdin():
    rgb("a.png", (6, 8))
    [row] = json_rows(run("info", "-", "--json", input=Path("a.png").read_bytes()).stdout)
    assert row["input"] == "-" and row["image_mode"] == "L" and row["shape"] == [6, 8]


def test_info_missing_file_exits_1():
    rgb("a.png")
    result = run("info", "a.png", "missing.png", code=1)
    assert result.stderr.splitlines() == ["poolcli: error: missing.png: no such file"]
    assert "a.png" in result.stdout
    result = run("info", "missing.png", "a.png", "--json", code=1)
    missing, found = [json.loads(line) for line in result.stdout.splitlines()]
    assert missing == {"input": "missing.png", "ok": False,
                       "error": "missing.png: no such file"}
    assert found["input"] == "a.png" and found["ok"] is True


def test_info_folder_needs_recursive():
    _tree()
    result = run("info", "tree", code=1)
    assert error_lines(result)[0].startswith("poolcli: error: tree:")
    rows = json_rows(run("info", "tree", "-r", "--json").stdout)
    assert len(rows) == 5


def test_info_describes_arrays_it_cannot_pool_without_a_range():
    np.save("s.npy", np.array(["a", "bc"]))
    np.save("c.npy", np.array([1 + 2j, 3j]))
    np.save("t.npy", np.array(["2026-11-28"], dtype="datetime64[D]"))
    np.save("r.npy", np.zeros(3, dtype=[("a", "<i4"), ("b", "<f8")]))
    npy("x.npy", (2, 3))
    names = ["s.npy", "c.npy", "t.npy", "r.npy", "x.npy"]
    result = run("info", *names, "--json")
    rows = json_rows(result.stdout)
    assert [r["input"] for r in rows] == names  # the batch goes on to x.npy
    for row, kind in zip(rows, ["string", "complex", "datetime", "structured"]):
        assert row["min"] is None and row["max"] is None and row["shape"] in ([2], [1], [3])
        assert any(f"{kind} arrays" in w and "cannot be pooled" in w for w in row["warnings"])
    assert rows[-1]["min"] is not None and rows[-1]["warnings"] == []
    warned = [line for line in result.stderr.splitlines() if line.startswith("poolcli: warning:")]
    assert len(warned) == 4 and "c.npy: complex arrays (complex128)" in warned[1]
    table = run("info", *names)
    assert "c.npy" in table.stdout and "x.npy" in table.stdout


def test_info_corrupt_file_exits_1():
    Path("bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    result = run("info", "bad.png", code=1)
    [line] = error_lines(result)
    assert line.startswith("poolcli: error: bad.png:")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_named_pipe_found_in_a_folder_fails_and_the_batch_goes_on():
    rgb("d/a.png")
    os.mkfifo("d/b.png")  # opening it would wait for a writer that never comes
    rgb("d/c.png")
    result = run("max", "d", "-r", "-o", "out/", "--json", code=1)
    rows = json_rows(result.stdout)
    assert [(r["input"], r["ok"]) for r in rows] == [
        (os.path.join("d", "a.png"), True), (os.path.join("d", "b.png"), False),
        (os.path.join("d", "c.png"), True)]
    assert "not a regular file" in rows[1]["error"]
    assert sorted(os.listdir("out")) == ["a_max.png", "c_max.png"]


def test_errors_name_the_input_as_it_is_spelt():
    Path("a  b.png").write_text("not a picture")  # two spaces
    Path("tab\there.png").write_text("not a picture")
    result = run("max", "a  b.png", "tab\there.png", "--json", code=1)
    errors = [row["error"] for row in json_rows(result.stdout)]
    assert errors[0].startswith("a  b.png: ")
    assert errors[1].startswith("tab here.png: ")  # a tab or line break: a space, one line
    assert all("\n" not in line for line in error_lines(result))
    Path("line\nbreak.png").write_text("not a picture")
    for command in (["info"], ["max"], ["compare"], ["show"]):
        result = run(*command, "line\nbreak.png", code=1)
        assert result.stderr.count("\n") == 1, result.stderr  # one line, for every command
        assert result.stderr.startswith("poolcli: error: line break.png: ")


def test_a_folder_without_recursive_has_the_commands_geometry_in_its_row():
    rgb("d/a.png")
    result = run("max", "d", "missing.png", "--ceil-mode", "--json", code=1)
    rows = json_rows(result.stdout)
    assert [(r["input"], r["ok"], r["mode"], r["ceil_mode"]) for r in rows] == [
        ("d", False, "max", True), ("missing.png", False, "max", True)]


# ----------------------------------------------------------------------------
# the installed command, for real (subprocesses: slower, a few only)
# ----------------------------------------------------------------------------

POOLCLI = [sys.executable, "-m", "pool_cli"]


# The subprocesses import pool_cli from this tree, whatever is installed.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}


def error_lines_of(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("poolcli: error:")]


def _sh(command: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True,
                          timeout=60, env=ENV, **kwargs)


def _run(*args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*POOLCLI, *map(str, args)], capture_output=True, text=True, timeout=60,
                          env=ENV, **kwargs)


class TestSubprocess:
    """``python -m pool_cli`` run as a separate process on the samples."""

    @pytest.fixture
    def samples(self, tmp_path):
        folder = tmp_path / "samples"
        folder.mkdir()
        for name in ("chelsea.png", "chelsea_rgba.png", "astronaut_gray16.png", "features.npy"):
            (folder / name).write_bytes((SAMPLES / name).read_bytes())
        return folder

    def test_subprocess_version(self):
        done = _run("--version")
        assert done.returncode == 0 and __version__ in done.stdout

    def test_subprocess_pipe_through_stdin_and_stdout(self, samples):
        py = " ".join(map(shlex.quote, POOLCLI))
        done = _sh(f"cat samples/chelsea.png | {py} max - -o - --format png | {py} info - --json",
                   text=True)
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        [row] = json_rows(done.stdout)
        assert row["input"] == "-" and row["format"] == "png" and row["image_mode"] == "RGB"
        assert row["shape"] == [150, 225, 3]

    def test_subprocess_pipe_values(self, samples):
        py = " ".join(map(shlex.quote, POOLCLI))
        done = _sh(f"{py} avg - -o - --format npy -w 3 -s 2 -p same < samples/features.npy")
        assert done.returncode == 0, done.stderr
        x = np.load(samples / "features.npy")
        assert same(np.load(io.BytesIO(done.stdout)), pool(x, "avg", window=3, stride=2, padding="same"))
        # The table went to standard error.
        assert b"8x133x200 -> 8x67x100" in done.stderr

    def test_subprocess_batch_json(self, samples):
        names = sorted(p.name for p in samples.iterdir())
        done = _run("avg", *names, "missing.png", "-o", "../out/", "--json", "-j", "2", cwd=samples)
        assert done.returncode == 1
        assert done.stderr.splitlines() == ["poolcli: error: missing.png: no such file"]
        rows = json_rows(done.stdout)
        assert [r["input"] for r in rows] == [*names, "missing.png"]
        assert [r["ok"] for r in rows] == [True] * len(names) + [False]
        by_name = {r["input"]: r for r in rows}
        assert by_name["chelsea_rgba.png"]["input_shape"] == [300, 451, 4]
        assert by_name["chelsea_rgba.png"]["output_shape"] == [150, 225, 4]
        assert by_name["astronaut_gray16.png"]["input_dtype"] == "uint16"
        assert by_name["features.npy"]["output_shape"] == [8, 66, 100]
        out = samples.parent / "out"
        x = np.load(samples / "features.npy")
        assert same(np.load(out / "features_avg.npy"), pool(x, "avg"))
        mode, values = read_image(out / "astronaut_gray16_avg.png")
        with Image.open(samples / "astronaut_gray16.png") as im:
            grey = np.asarray(im).astype(np.uint16)
        assert mode == "I;16"
        assert same(values.astype(np.uint16), as_image_values(pool(grey, "avg"), np.uint16))

    def test_subprocess_errors_and_exit_codes(self, samples):
        usage = _run("max", "chelsea.png", "--power", "3", cwd=samples)
        assert usage.returncode == 2 and "Traceback" not in usage.stderr
        assert "--power" in usage.stderr
        failed = _run("max", "chelsea.png", "-o", "chelsea.png", "--overwrite", cwd=samples)
        assert failed.returncode == 1 and "Traceback" not in failed.stderr
        assert failed.stderr.splitlines()[0].startswith("poolcli: error: chelsea.png:")
        assert (samples / "chelsea.png").read_bytes() == (SAMPLES / "chelsea.png").read_bytes()

    def test_subprocess_reader_closing_the_pipe_early(self, samples):
        py = " ".join(map(shlex.quote, POOLCLI))
        done = _sh(f"{py} max samples/chelsea.png -w 1 -o - --format npy | head -c 10 > /dev/null",
                   text=True)
        # 400 KB meant for a reader that took 10 bytes: that input failed, in one line (a
        # buffered write into the closed pipe returned its partial count without an error)
        assert done.returncode == 1, done.stderr
        assert error_lines_of(done.stderr) == [
            "poolcli: error: samples/chelsea.png: cannot write: the output's reader went away"]

    def test_subprocess_dev_stdout_redirected_to_a_file_is_written_into(self, samples):
        """`-o /dev/stdout > out.png`: /dev/stdout is then an existing regular file, which was
        refused without --overwrite (and replaced with it); now written as `-o -` is."""
        Path("out.png").write_bytes(b"old")
        py = " ".join(map(shlex.quote, POOLCLI))
        done = _sh(f"{py} max samples/chelsea.png -o /dev/stdout --format png > out.png",
                   text=True)
        assert done.returncode == 0, done.stderr
        assert "samples/chelsea.png" in done.stderr  # the report went to standard error
        with Image.open("out.png") as im:
            assert im.size == (225, 150)

    def test_subprocess_report_reader_gone_leaves_the_exit_code_to_the_inputs(self, samples):
        """`| true` closes the pipe before the report: the inputs were done, so exit 0, and
        data meant for that pipe is an input that failed."""
        py = " ".join(map(shlex.quote, POOLCLI))
        for command in ("max samples/chelsea.png samples/features.npy -o out/",
                        "max samples/chelsea.png -o out2/ --json", "info samples/chelsea.png"):
            done = _sh(f"{py} {command} | true", text=True)
            assert done.returncode == 0, (command, done.stderr)
            assert done.stderr == ""
        assert sorted(os.listdir("out")) == ["chelsea_max.png", "features_max.npy"]
        done = _sh(f"{py} max samples/chelsea.png -o - --format png | true", text=True)
        assert done.returncode == 1
        assert "samples/chelsea.png: cannot write: the output's reader went away" in done.stderr
        assert "Error" not in done.stderr

    def test_subprocess_warnings_for_a_reader_gone_leave_the_exit_code_to_the_inputs(self, samples):
        save_image("bits.png", np.eye(8, dtype=bool))  # lp of it warns about clipped values
        py = " ".join(map(shlex.quote, POOLCLI))
        done = _sh(f"{py} lp bits.png -o bits_lp.png 2>&1 | true", text=True)
        assert done.returncode == 0, done.stderr
        assert Path("bits_lp.png").exists()

    def test_subprocess_closed_standard_streams_are_readers_gone(self, samples):
        py = " ".join(map(shlex.quote, POOLCLI))
        done = _sh(f"{py} max samples/chelsea.png -o out.png --json >&-", text=True)
        assert done.returncode == 0 and done.stderr == "" and Path("out.png").exists()
        done = _sh(f"{py} max samples/chelsea.png -o - --format png >&-", text=True)
        assert done.returncode == 1
        assert error_lines_of(done.stderr) == [
            "poolcli: error: samples/chelsea.png: cannot write: the output's reader went away"]
        done = _sh(f"{py} max missing.png -o x.png 2>&-", text=True)
        assert done.returncode == 1 and "Traceback" not in done.stdout

    @staticmethod
    def _slow_batch(tmp_path, count: int, *args, after: str = "", **popen):
        """Start pooling ``count`` noise images (slow to encode: PNG level 9) into out/, and
        return once a file ending with ``after`` appears there: the process, out/, the image."""
        noise = np.random.default_rng(0).integers(0, 256, (700, 700, 3), dtype=np.uint8)
        for i in range(count):
            Image.fromarray(noise).save(tmp_path / f"in{i:02d}.png", compress_level=0)
        out = tmp_path / "out"
        process = subprocess.Popen(
            [*POOLCLI, "max", *sorted(map(str, tmp_path.glob("in*.png"))), "-w", "1", "-o",
             f"{out}/", "--png-compression", "9", *args], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, env=ENV, **popen)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                out.exists() and any(p.name.endswith(after) for p in out.iterdir())):
            time.sleep(0.01)
        return process, out, noise

    @pytest.mark.parametrize("signum, jobs, after", [
        (signal.SIGTERM, 1, ".tmp"), (signal.SIGINT, 2, ".tmp"), (signal.SIGTERM, 1, ".png"),
        (signal.SIGINT, 2, ".png")])
    def test_subprocess_stopped_by_a_signal_leaves_only_whole_outputs(self, tmp_path, signum, jobs,
                                                                      after):
        # stopped as the first temporary file, or the first output, appears
        process, out, noise = self._slow_batch(tmp_path, 16, "-j", str(jobs), "--json",
                                               after=after)
        process.send_signal(signum)
        stdout, stderr = process.communicate(timeout=60)
        assert process.returncode == 128 + signum, stderr
        *_, not_done, last = stderr.strip().splitlines()
        assert last == f"poolcli: interrupted by {signal.Signals(signum).name}"
        assert "Traceback" not in stderr
        # (the folder itself goes too when its first file was the one stopped)
        left = sorted(p.name for p in out.iterdir()) if out.exists() else []
        assert not [name for name in left if name.endswith(".tmp")], left
        assert len(left) < 16  # stopped early: the rest were never started
        assert left or after == ".tmp"
        for name in left:  # and each output there is whole
            assert np.array_equal(np.asarray(Image.open(out / name)), noise)
        # the inputs done before the stop are reported, as a pipeline reading --json needs
        rows = json_rows(stdout)
        assert sorted(os.path.basename(r["output"]) for r in rows) == left
        assert all(r["ok"] for r in rows)
        assert not_done == f"poolcli: warning: {16 - len(rows)} of 16 input(s) not done"

    def test_subprocess_keeps_an_ignored_sigint_ignored(self, tmp_path):
        # a background job of a shell starts with SIGINT ignored: poolcli must not take it over
        process, out, _ = self._slow_batch(
            tmp_path, 4, "-q", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=60)
        assert process.returncode == 0, stderr
        assert sorted(p.name for p in out.iterdir()) == [f"in{i:02d}_max.png" for i in range(4)]


def test_a_fifo_output_is_written_through_not_replaced(tmp_path):
    x = npy()
    fifo = tmp_path / "pipe.npy"
    os.mkfifo(fifo)
    line = error_lines(run("max", "x.npy", "-o", str(fifo), code=1))[0]
    assert line.endswith("cannot write (a named pipe with no reader)")  # never hangs
    reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # a reader; the output fits the pipe
    try:
        run("max", "x.npy", "-o", str(fifo), "-q")  # it exists, yet nothing there is replaced
        received = os.read(reader, 1 << 16)
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert np.array_equal(np.load(io.BytesIO(received)), pool(x, "max"))


def test_overwriting_through_a_symlink_replaces_the_file_it_names():
    npy()
    os.makedirs("real")
    Path("real/old.npy").write_bytes(b"old")
    os.symlink("real/old.npy", "link.npy")
    run("max", "x.npy", "-o", "link.npy", code=1)  # exists: kept without --overwrite
    run("max", "x.npy", "-o", "link.npy", "--overwrite", "-q")
    assert os.path.islink("link.npy") and np.load("real/old.npy").shape == (2, 3, 4, 5)


def test_a_second_signal_does_not_cut_the_unwinding_short():
    from pool_cli.cli import Interrupted, _interrupt

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with pytest.raises(Interrupted):
            _interrupt(signal.SIGTERM, None)
        assert all(signal.getsignal(s) == signal.SIG_IGN for s in before)
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def test_with_jobs_the_first_input_still_wins_a_shared_output(monkeypatch):
    from pool_cli import engine

    npy("a/x.npy")
    npy("b/x.npy", seed=1)
    real_read = engine.io.read_input

    def slow_first(path, *args, **kwargs):
        if path.startswith("a/"):
            time.sleep(0.3)  # the later input is loaded, and would claim, first
        return real_read(path, *args, **kwargs)

    monkeypatch.setattr(engine.io, "read_input", slow_first)
    rows = json_rows(run("max", "a/x.npy", "b/x.npy", "a/x.npy", "-o", "out/", "-j", "3",
                         "--json", code=1).stdout)
    assert [(r["input"], r["ok"]) for r in rows] == [
        ("a/x.npy", True), ("b/x.npy", False), ("a/x.npy", False)]
    assert "is also the output of a/x.npy" in rows[1]["error"]
    assert "given more than once" in rows[2]["error"]
    assert np.array_equal(np.load("out/x_max.npy"), pool(np.load("a/x.npy"), "max"))


def test_an_existing_folder_with_braces_in_its_name_is_a_folder_not_a_template():
    npy()
    os.makedirs("runs{1}")
    run("max", "x.npy", "-o", "runs{1}", "-q")
    assert os.listdir("runs{1}") == ["x_max.npy"]


def test_an_output_name_near_the_length_limit_is_written():
    name = "a" * 240  # its output, a_..._max.npy, fits 255 bytes; ".name.xxxxxxxx.tmp" would not
    npy(f"{name}.npy")
    run("max", f"{name}.npy", "-q")
    assert os.path.exists(f"{name}_max.npy") and not [f for f in os.listdir() if f.endswith(".tmp")]



def test_overwriting_through_a_dangling_link_makes_no_folders():
    npy()
    os.makedirs("links")
    os.symlink("../nowhere/deep/t.npy", "links/dangling.npy")
    run("max", "x.npy", "-o", "links/dangling.npy", "--overwrite", code=1)
    assert not os.path.exists("nowhere")


def test_main_gives_the_signal_handlers_back():
    from pool_cli import cli as cli_module

    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    argv = sys.argv
    try:
        sys.argv = ["poolcli", "--version"]
        with pytest.raises(SystemExit):
            cli_module.main()
    finally:
        sys.argv = argv
    assert {s: signal.getsignal(s) for s in before} == before



def test_an_item_cancelled_by_a_stop_does_not_leave_a_later_one_waiting(tmp_path):
    """A worker takes item 1 off the queue but has not started it when Ctrl-C comes: item 1
    is cancelled, and item 2, already running, must not wait for item 1's claim forever."""
    for name in "abc":
        np.save(tmp_path / f"{name}.npy", np.zeros((4, 4)))
    script = tmp_path / "race.py"
    script.write_text(
        "import os, signal, sys, threading, time\n"
        "import concurrent.futures.thread as cft\n"
        "from pool_cli import cli\n"
        "orig = cft._WorkItem.run\n"
        "def run(self):\n"
        "    if self.args and self.args[0] == 1:\n"
        "        time.sleep(1.0)\n"
        "    return orig(self)\n"
        "cft._WorkItem.run = run\n"
        "threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT)).start()\n"
        "sys.argv = ['poolcli', 'max', 'a.npy', 'b.npy', 'c.npy', '-o', 'out_{stem}.npy',\n"
        "            '-j', '2', '-q']\n"
        "cli.main()\n")
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 130, done.stderr


def test_dev_stdout_as_output_keeps_the_report_off_the_data(tmp_path):
    x = np.arange(24.0).reshape(2, 3, 4)
    np.save(tmp_path / "x.npy", x)
    done = subprocess.run([sys.executable, "-m", "pool_cli", "max", "x.npy", "-o", "/dev/stdout",
                           "--format", "npy"], cwd=tmp_path, capture_output=True, check=True)
    assert np.array_equal(np.load(io.BytesIO(done.stdout)), pool(x, "max"))  # nothing else
    assert b"x.npy" in done.stderr  # the table went to standard error



def test_a_closed_standard_output_is_no_crash(tmp_path):
    np.save(tmp_path / "x.npy", np.zeros((4, 4)))
    np.save(tmp_path / "y.npy", np.zeros(1))  # an output that exists is stat'ed
    done = subprocess.run([sys.executable, "-m", "pool_cli", "max", "x.npy", "-o", "y.npy", "-q",
                           "--overwrite"],
                          cwd=tmp_path, capture_output=False, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, close_fds=True,
                          preexec_fn=lambda: os.close(1))
    assert done.returncode == 0 and b"Traceback" not in done.stderr
