"""``poolcli compare``, ``show``, ``analyze`` and ``bench``, driven as a user drives them.

Like ``tests/test_cli.py``: Click's ``CliRunner`` in a fresh folder per test, every call through
:func:`run` (exit code checked, no traceback), every picture opened again with Pillow.  Shapes
and dtypes in the ``--json`` rows are compared with :func:`pool_cli.pool` on the same data.
Pictures whose labels hold no timings (``show``) are compared pixel for pixel with
:func:`pool_cli.visual.feature_grid`; contact sheets (timings in the labels) are checked
through their pure black and white pixels, which only panels can hold (the sheet's background
is light grey, its text dark grey).

Tests marked ``xfail(strict=True, reason="bug: ...")`` show a bug in ``pool_cli``; remove the
mark when it is fixed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from pool_cli import bench, make_spec, pool
from pool_cli.cli import cli
from pool_cli.visual import feature_grid
from pool_cli.visual.render import describe_geometry
from clitools import error_lines, run

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"


# ----------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------

@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    """Every test runs in its own empty folder, with relative paths as a user types them."""
    monkeypatch.chdir(tmp_path)


def one_error(result) -> str:
    """The run's only stderr line, which must be one ``poolcli: error:`` line."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("poolcli: error: "), result.stderr
    return lines[0]


def json_rows(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def snapshot(folder=".") -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def open_png(path) -> Image.Image:
    """Open a picture the way a user would; it must be a whole RGB PNG."""
    with Image.open(path) as im:
        im.load()
        assert im.format == "PNG", (path, im.format)
        assert im.mode == "RGB"
        return im.copy()


def rng(seed=0):
    return np.random.default_rng(seed)


def save_image(path, array, mode=None) -> np.ndarray:
    (Image.fromarray(array, mode) if mode else Image.fromarray(array)).save(path)
    with Image.open(path) as im:  # what poolcli will read
        return np.asarray(im)


def rgb_png(path="rgb.png", shape=(12, 16, 3), seed=0) -> np.ndarray:
    return save_image(path, rng(seed).integers(0, 256, shape, dtype=np.uint8))


def chw_npy(path="maps.npy", shape=(3, 12, 16), seed=0) -> np.ndarray:
    x = rng(seed).standard_normal(shape).astype(np.float32)
    np.save(path, x)
    return x


def checkerboard(n=32) -> np.ndarray:
    return (np.indices((n, n)).sum(axis=0) % 2 * 255).astype(np.uint8)


def reference_grid(x, title, **kwargs) -> np.ndarray:
    """What ``poolcli show`` should draw: the library's grid, as RGB pixels."""
    image, _ = feature_grid(x, None, title=title, **kwargs)
    return np.asarray(image.convert("RGB"))


# ----------------------------------------------------------------------------
# compare
# ----------------------------------------------------------------------------

def _inputs():
    """name -> (writer, layout for pool()): the kinds of input compare must draw."""
    g = rng(1)
    return {
        "rgb.png": (lambda p: rgb_png(p), "HWC"),
        "grey.png": (lambda p: save_image(p, g.integers(0, 256, (12, 16), dtype=np.uint8)), "HW"),
        "rgba.png": (lambda p: save_image(p, g.integers(0, 256, (12, 16, 4), dtype=np.uint8),
                                          "RGBA"), "HWC"),
        "deep.png": (lambda p: save_image(p, g.integers(0, 65536, (12, 16), dtype=np.uint16)),
                     "HW"),
        "maps.npy": (lambda p: chw_npy(p), "CHW"),
    }


@pytest.mark.parametrize("name", list(_inputs()))
def test_compare_default_output_beside_input_and_json_rows(name):
    write, layout = _inputs()[name]
    os.mkdir("in")
    x = write(f"in/{name}")
    if name == "deep.png":
        assert x.dtype == np.uint16  # a real 16-bit image reached poolcli
    result = run("compare", f"in/{name}", "--json")
    stem = Path(name).stem
    dest = f"in/{stem}_compare.png"
    rows = json_rows(result.stdout)
    assert [r["mode"] for r in rows] == ["max", "avg", "min", "lp"]
    for r in rows:
        y = pool(x, r["mode"], window=2, layout=layout)
        assert r["input"] == f"in/{name}" and r["output"] == dest
        assert r["output_shape"] == list(y.shape) and r["output_dtype"] == str(y.dtype)
        assert r["window"] == [2, 2] and r["stride"] == [2, 2]
        assert r["padding"] == [[0, 0], [0, 0]] and r["time_ms"] >= 0
        assert r["ceil_mode"] is False
    sheet = open_png(dest)
    # Input plus four panels, each at least as large as the input.
    assert sheet.width > 5 * x.shape[-1] and sheet.height > x.shape[-2]
    assert sorted(os.listdir("in")) == sorted([name, f"{stem}_compare.png"])
    assert f"wrote {dest}" in result.stderr


def test_compare_sample_chelsea(tmp_path):
    (tmp_path / "chelsea.png").write_bytes((SAMPLES / "chelsea.png").read_bytes())
    result = run("compare", "chelsea.png")
    sheet = open_png("chelsea_compare.png")
    assert sheet.width > 2 * 451 and sheet.height > 300
    # The human table: one row per mode with the pooled shape.
    for mode in ("max", "avg", "min", "lp"):
        assert any(line.split()[:1] == [mode] and "150x225x3" in line
                   for line in result.stdout.splitlines()), result.stdout


def test_compare_output_option_and_overwrite():
    rgb_png("a.png")
    run("compare", "a.png", "-o", "sheet.png")
    assert sorted(os.listdir(".")) == ["a.png", "sheet.png"]
    open_png("sheet.png")
    before = snapshot()
    mtime = os.stat("sheet.png").st_mtime_ns
    result = run("compare", "a.png", "-o", "sheet.png", code=1)
    line = one_error(result)
    assert "sheet.png" in line and "--overwrite" in line
    assert result.stdout == ""
    assert snapshot() == before and os.stat("sheet.png").st_mtime_ns == mtime
    # Default name too.
    run("compare", "a.png", "-q")
    before = snapshot()
    result = run("compare", "a.png", code=1)
    assert "a_compare.png" in one_error(result)
    assert snapshot() == before
    # --overwrite replaces it, with a different picture (two modes, not four).
    run("compare", "a.png", "-o", "sheet.png", "--overwrite", "--modes", "max", "-q")
    assert snapshot()["sheet.png"] != before["sheet.png"]
    open_png("sheet.png")


def test_compare_output_into_new_folder():
    rgb_png("a.png")
    run("compare", "a.png", "-o", "out/deep/sheet.png", "-q")
    open_png("out/deep/sheet.png")


def test_compare_modes_gives_exactly_those_panels():
    x = rgb_png("a.png", shape=(10, 14, 3))
    rows = json_rows(run("compare", "a.png", "--modes", "max,min", "-w", "3", "-s", "2",
                         "-p", "1", "--json").stdout)
    assert [r["mode"] for r in rows] == ["max", "min"]
    for r in rows:
        y = pool(x, r["mode"], window=3, stride=2, padding=1, layout="HWC")
        assert r["output_shape"] == list(y.shape) == [5, 7, 3]
        assert r["padding"] == [[1, 1], [1, 1]]
    narrow = open_png("a_compare.png")
    run("compare", "a.png", "--modes", "max,min,avg,sum,lp", "-o", "all.png", "-q")
    assert open_png("all.png").width > narrow.width  # more panels, wider sheet


def test_compare_mode_specific_options_reach_their_mode():
    x = rgb_png("a.png")
    rows = json_rows(run("compare", "a.png", "--modes", "lp,avg", "--power", "3",
                         "--count-include-pad", "-w", "3", "-p", "1", "--json").stdout)
    assert [r["mode"] for r in rows] == ["lp", "avg"]
    assert rows[0]["output_shape"] == list(pool(x, "lp", window=3, padding=1, power=3,
                                                 layout="HWC").shape)


def test_compare_rows_and_table_name_ceil_mode():
    save_image("odd.png", checkerboard(9))
    rows = json_rows(run("compare", "odd.png", "--modes", "max", "-w", "2", "--ceil-mode",
                         "--json", "-o", "a.png").stdout)
    assert [(r["ceil_mode"], r["output_shape"]) for r in rows] == [(True, [5, 5])]
    table = run("compare", "odd.png", "--modes", "max", "-w", "2", "--ceil-mode", "-o", "b.png")
    assert "ceil mode" in table.stdout


def test_compare_checkerboard_max_white_min_black():
    save_image("board.png", checkerboard(32))
    result = run("compare", "board.png", "-w", "2", "--modes", "max,min", "--json")
    assert [r["output_shape"] for r in json_rows(result.stdout)] == [[16, 16], [16, 16]]
    sheet = np.asarray(open_png("board_compare.png")).astype(int)
    white = (sheet == 255).all(axis=2)
    black = (sheet == 0).all(axis=2)
    # Pure white and pure black can only come from panels (background 240, text dark grey):
    # the input panel holds both, the max panel only white, the min panel only black.
    assert white.sum() > 0 and black.sum() > 0
    white_cols = white.sum(axis=0)
    black_cols = black.sum(axis=0)
    all_white = np.flatnonzero((white_cols > 0) & (black_cols == 0))
    all_black = np.flatnonzero((black_cols > 0) & (white_cols == 0))
    mixed = np.flatnonzero((white_cols > 0) & (black_cols > 0))
    assert len(all_white) >= 32 and len(all_black) >= 32 and len(mixed) >= 32
    # Panels in order: input, max, min.
    assert mixed.max() < all_white.min() and all_white.max() < all_black.min()
    # The max panel is white through and through, as tall as the input panel; min black.
    height = white_cols[mixed].max() + black_cols[mixed].max()
    assert set(white_cols[all_white]) == set(black_cols[all_black]) == {height}
    rows_max = np.flatnonzero(white[:, all_white[len(all_white) // 2]])
    rows_min = np.flatnonzero(black[:, all_black[len(all_black) // 2]])
    assert len(rows_max) == len(rows_min) >= 32
    for c in all_white[:: max(1, len(all_white) // 8)]:
        assert white[rows_max, c].all() and not black[rows_max, c].any()
    for c in all_black[:: max(1, len(all_black) // 8)]:
        assert black[rows_min, c].all() and not white[rows_min, c].any()
    # Sample pixels.
    mid = rows_max[len(rows_max) // 2]
    assert tuple(sheet[mid, all_white[3]]) == (255, 255, 255)
    assert tuple(sheet[mid, all_black[3]]) == (0, 0, 0)


@pytest.mark.parametrize("args, text", [
    (["--power", "3", "--modes", "max"], "--power"),
    (["--count-include-pad", "--modes", "max,min"], "--count-include-pad"),
    (["--modes", "max,median"], "median"),
    (["-w", "0"], "window"),
    (["--power", "-1", "--modes", "lp"], "power"),
    (["-w", "3", "-p", "3"], "padding"),
])
def test_compare_usage_errors_exit_2_nothing_written(args, text):
    rgb_png("a.png")
    before = snapshot()
    result = run("compare", "a.png", *args, code=2)
    assert text in result.stderr
    assert snapshot() == before and result.stdout == ""


@pytest.mark.parametrize("args", [
    ["compare", "a.png", "--modes", "lp", "--power", "0"],
    ["analyze", "a.png", "--modes", "lp", "--power", "0", "--windows", "2", "--repeat", "1"],
    ["show", "maps.npy", "--before-after", "--mode", "lp", "--power", "0"],
])
def test_power_zero_is_usage_error(args):
    rgb_png("a.png")
    chw_npy("maps.npy")
    before = snapshot()
    result = run(*args, code=2)
    assert "power" in result.stderr
    assert snapshot() == before


def test_compare_window_larger_than_input_fails_the_input():
    rgb_png("a.png", shape=(12, 16, 3))
    before = snapshot()
    result = run("compare", "a.png", "-w", "13", code=1)
    line = one_error(result)
    assert "13" in line
    assert snapshot() == before and result.stdout == ""


@pytest.mark.parametrize("args", [
    ["compare", "a.png", "-w", "13"],
    ["compare", "a.png", "--layout", "NCHW"],
    ["show", "maps.npy", "--before-after", "-w", "50"],
])
def test_geometry_errors_name_the_input(args):
    rgb_png("a.png", shape=(12, 16, 3))
    chw_npy("maps.npy")
    line = one_error(run(*args, code=1))
    assert line.startswith(f"poolcli: error: {args[1]}: ")


def test_compare_missing_input():
    result = run("compare", "nope.png", code=1)
    assert one_error(result) == "poolcli: error: nope.png: no such file"
    assert os.listdir(".") == []


def test_compare_quiet_prints_nothing():
    rgb_png("a.png", shape=(4, 4, 3))  # small: the "enlarged" note is due
    loud = run("compare", "a.png", "-o", "loud.png")
    assert "enlarged" in loud.stderr and "mode" in loud.stdout
    result = run("compare", "a.png", "-q")
    assert result.stdout == "" and result.stderr == ""
    open_png("a_compare.png")


def test_compare_stdin():
    Image.fromarray(checkerboard(8)).save("board.png")
    data = Path("board.png").read_bytes()
    rows = json_rows(run("compare", "-", "--modes", "max", "--json", input=data).stdout)
    assert rows[0]["input"] == "-" and rows[0]["output_shape"] == [4, 4]
    open_png(rows[0]["output"])


def test_compare_feature_map_batch_npy():
    x = chw_npy("maps.npy", shape=(2, 3, 8, 10))
    rows = json_rows(run("compare", "maps.npy", "--modes", "avg", "--json").stdout)
    assert rows[0]["output_shape"] == list(pool(x, "avg", window=2).shape)
    open_png("maps_compare.png")


@pytest.mark.parametrize("args", [["compare", "a.png", "--global"],
                                  ["compare", "a.png", "--output-size", "3"],
                                  ["show", "maps.npy", "--before-after", "--global"]])
def test_global_and_output_size(args):
    rgb_png("a.png")
    chw_npy("maps.npy")
    run(*args, "-o", "out.png", "-q")
    open_png("out.png")


def test_compare_one_dimensional_array():
    np.save("signal.npy", np.arange(10.0))
    line = one_error(run("compare", "signal.npy", code=1))
    assert "signal.npy" in line


def magenta(path) -> int:
    """How many pixels of a picture have the colour of NaN in colour maps."""
    return int(np.all(np.asarray(open_png(path)) == (255, 0, 255), axis=-1).sum())


def test_compare_draws_a_2d_array_file_as_a_feature_map_and_a_grey_picture_as_an_image():
    x = rng().random((16, 16))
    x[0, :4] = np.nan
    np.save("hw.npy", x)
    np.save("chw.npy", x[None])
    for name in ("hw", "chw"):
        run("compare", f"{name}.npy", "--modes", "max", "-q")
    # as --help says: colour-mapped, NaN in magenta, as the same data with one channel
    assert magenta("hw_compare.png") == magenta("chw_compare.png") > 0
    save_image("grey.png", (x[4:] * 255).astype(np.uint8))
    run("compare", "grey.png", "--modes", "max", "-q")
    assert magenta("grey_compare.png") == 0  # a decoded picture stays an image


def test_compare_draws_a_2d_array_file_as_a_feature_map_whatever_its_layout():
    x = rng().random((16, 16))
    x[0, :4] = np.nan
    np.save("hw.npy", x)
    run("compare", "hw.npy", "--modes", "max", "--layout", "HW", "-q")
    assert magenta("hw_compare.png") > 0


@pytest.mark.parametrize("args", [
    ["compare", "a.png", "-o", "a.png", "--overwrite"],
    ["show", "maps.npy", "-o", "maps.npy", "--overwrite"],
    ["analyze", "a.png", "--modes", "max", "--windows", "2", "--repeat", "1",
     "--plot", "a.png", "--overwrite"],
])
def test_picture_never_replaces_its_input(args):
    rgb_png("a.png")
    chw_npy("maps.npy")
    before = snapshot()
    result = CliRunner().invoke(cli, args)
    assert result.exit_code in (1, 2)
    assert snapshot() == before


def test_compare_output_dash():
    rgb_png("a.png")
    result = CliRunner().invoke(cli, ["compare", "a.png", "-o", "-", "-q"])
    assert not os.path.exists("-")
    assert result.exit_code == 2 or result.stdout_bytes.startswith(b"\x89PNG")


def test_compare_output_extension_is_honoured_or_refused():
    rgb_png("a.png")
    result = CliRunner().invoke(cli, ["compare", "a.png", "-o", "sheet.jpg", "-q"])
    if result.exit_code == 0:
        with Image.open("sheet.jpg") as im:
            assert im.format == "JPEG"
    else:
        assert result.exit_code in (1, 2) and not os.path.exists("sheet.jpg")


def test_compare_output_dash_report_on_stderr():
    rgb_png("a.png")
    result = run("compare", "a.png", "-o", "-", "--modes", "max", "--json")
    Image.open(io.BytesIO(result.stdout_bytes)).verify()
    assert result.stdout_bytes.startswith(b"\x89PNG")
    assert json_rows("\n".join(line for line in result.stderr.splitlines()
                                if line.startswith("{")))[0]["output"] == "-"
    assert os.listdir(".") == ["a.png"]


@pytest.mark.parametrize("args", [["compare", "a.png"], ["analyze", "a.png", "--windows", "2",
                                                         "--repeat", "1"]])
def test_quiet_wins_over_json(args):
    rgb_png("a.png")
    result = run(*args, "--json", "-q")
    assert result.stdout == "" and result.stderr == ""


# ----------------------------------------------------------------------------
# show
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(12, 16), (3, 12, 16), (2, 3, 12, 16)])
def test_show_grid_matches_library(shape):
    x = chw_npy("maps.npy", shape=shape)
    result = run("show", "maps.npy")
    assert result.stdout == "" and "wrote maps_grid.png" in result.stderr
    grid = np.asarray(open_png("maps_grid.png"))
    assert np.array_equal(grid, reference_grid(x, "maps.npy"))


@pytest.mark.parametrize("args, kwargs", [
    (["--channels", "0:2"], {"channels": "0:2"}),
    (["--channels", "0,2"], {"channels": "0,2"}),
    (["--normalize", "global"], {"normalize": "global"}),
    (["--cmap", "gray"], {"cmap": "gray"}),
    (["--cmap", "coolwarm"], {"cmap": "coolwarm"}),
    (["--normalize", "global", "--cmap", "coolwarm_r"],
     {"normalize": "global", "cmap": "coolwarm_r"}),
])
def test_show_options(args, kwargs):
    x = chw_npy("maps.npy", shape=(3, 12, 16))
    run("show", "maps.npy", "-o", "grid.png", *args)
    grid = np.asarray(open_png("grid.png"))
    assert np.array_equal(grid, reference_grid(x, "maps.npy", **kwargs))


def test_show_channels_subset_is_smaller():
    chw_npy("maps.npy", shape=(6, 12, 16))
    run("show", "maps.npy", "-o", "all.png")
    run("show", "maps.npy", "-o", "two.png", "--channels", "0:2")
    a, b = open_png("all.png"), open_png("two.png")
    assert b.width * b.height < a.width * a.height


def test_show_before_after():
    x = chw_npy("maps.npy", shape=(3, 12, 16))
    run("show", "maps.npy", "-o", "plain.png")
    run("show", "maps.npy", "-o", "pair.png", "--before-after", "-w", "2", "--mode", "avg")
    plain, pair = open_png("plain.png"), open_png("pair.png")
    assert pair.width > plain.width
    spec = make_spec("avg", window=2)
    plan = spec.plan(x.shape)
    expected = reference_grid(x, f"maps.npy: avg, {describe_geometry(plan)}",
                              before_after=(pool(x, "avg", window=2), plan))
    assert np.array_equal(np.asarray(pair), expected)


def test_show_before_after_sums_beyond_the_input_range_get_their_own_scale():
    x = np.abs(chw_npy("maps.npy", shape=(2, 12, 16)))
    result = run("show", "maps.npy", "-o", "sum.png", "--before-after", "--mode", "sum", "-w", "3")
    assert "pooled halves use their own colour scale" in result.stderr
    spec = make_spec("sum", window=3)
    plan = spec.plan(x.shape)
    pooled = pool(x, "sum", window=3)
    image, _ = feature_grid(x, None, before_after=(pooled, plan), title="t")
    right = np.asarray(image.convert("RGB"))
    # each pooled half spans its colour map: its darkest and brightest cells differ widely
    box = image.info["panel_boxes"][0]
    tile = right[box[1]:box[3], (box[0] + box[2]) // 2 + 4:box[2]].astype(int).sum(axis=2)
    assert tile.max() - tile.min() > 200


def test_show_pooling_options_need_before_after():
    chw_npy("maps.npy")
    before = snapshot()
    for args in (["-w", "2"], ["--ceil-mode"], ["-p", "1"]):
        result = run("show", "maps.npy", *args, code=2)
        assert "--before-after" in result.stderr
    assert snapshot() == before


@pytest.mark.parametrize("option", [["--power", "3"], ["--count-include-pad"]])
def test_show_mode_specific_option_on_other_mode(option):
    chw_npy("maps.npy")
    run("show", "maps.npy", "--before-after", "--mode", "max", *option, code=2)
    assert not os.path.exists("maps_grid.png")


@pytest.mark.parametrize("args, text", [
    (["--channels", "99"], "channel 99"),
    (["--page", "2"], "page 2"),
    (["--channels", "2:1"], "no channels"),
])
def test_show_selection_errors(args, text):
    chw_npy("maps.npy", shape=(3, 12, 16))
    before = snapshot()
    line = one_error(run("show", "maps.npy", *args, code=1))
    assert line.startswith("poolcli: error: maps.npy: ") and text in line
    assert snapshot() == before


@pytest.mark.parametrize("command", ["show", "compare"])
@pytest.mark.parametrize("selection", ["a:b", "1,x", "::0", "0:1:2:3", ""])
def test_a_malformed_channel_selection_is_a_usage_error(command, selection):
    chw_npy("maps.npy", shape=(3, 12, 16))
    before = snapshot()
    result = run(command, "maps.npy", "--channels", selection, code=2)
    assert "--channels" in result.stderr and "Traceback" not in result.stderr
    assert snapshot() == before


def test_show_pages_of_64():
    x = chw_npy("many.npy", shape=(70, 4, 4))
    result = run("show", "many.npy", "-o", "p1.png")
    assert "64 of 70" in result.stderr and "page 1 of 2" in result.stderr
    result = run("show", "many.npy", "-o", "p2.png", "--page", "2")
    assert "6 of 70" in result.stderr and "page 2 of 2" in result.stderr
    p2 = np.asarray(open_png("p2.png"))
    assert np.array_equal(p2, reference_grid(x, "many.npy", page=1))
    assert open_png("p1.png").height > open_png("p2.png").height
    one_error(run("show", "many.npy", "-o", "p3.png", "--page", "3", code=1))
    assert not os.path.exists("p3.png")


def test_show_existing_output_and_quiet():
    chw_npy("maps.npy")
    run("show", "maps.npy")
    before = snapshot()
    assert "maps_grid.png" in one_error(run("show", "maps.npy", code=1))
    assert snapshot() == before
    result = run("show", "maps.npy", "--overwrite", "-q", "--cmap", "gray")
    assert result.stdout == "" and result.stderr == ""
    assert snapshot() != before


def test_show_missing_input():
    assert one_error(run("show", "nope.npy", code=1)) == "poolcli: error: nope.npy: no such file"


@pytest.mark.parametrize("command", [["compare"], ["show"], ["show", "--before-after"]])
@pytest.mark.parametrize("shape, axis", [((0, 4, 4), "C"), ((0, 3, 4, 4), "N")])
def test_pictures_of_an_array_with_a_zero_length_axis_say_so(command, shape, axis):
    np.save("empty.npy", np.zeros(shape, np.float32))
    line = one_error(run(*command, "empty.npy", code=1))
    assert line == (f"poolcli: error: empty.npy: nothing to draw: axis {axis} has length 0 "
                    f"(shape {shape})")
    assert os.listdir(".") == ["empty.npy"]


# ----------------------------------------------------------------------------
# analyze
# ----------------------------------------------------------------------------

def test_analyze_constant_image_is_lossless():
    save_image("flat.png", np.full((16, 16), 7, np.uint8))
    rows = json_rows(run("analyze", "flat.png", "--repeat", "1", "--json").stdout)
    assert len(rows) == 4 * 3  # default modes x windows
    for r in rows:
        assert r["input"] == "flat.png"
        assert r["psnr_db"] is None  # infinite
        assert r["ssim"] == 1.0 and r["energy_kept"] == 1.0


def test_analyze_windows_and_modes():
    x = rgb_png("a.png", shape=(16, 20, 3))
    rows = json_rows(run("analyze", "a.png", "--windows", "2,4", "--modes", "max,avg",
                         "--repeat", "1", "--json").stdout)
    assert [(r["mode"], r["label"]) for r in rows] == [
        ("max", "2x2 s2"), ("max", "4x4 s4"), ("avg", "2x2 s2"), ("avg", "4x4 s4")]
    for r in rows:
        w = r["window"][0]
        assert r["output_shape"] == list(pool(x, r["mode"], window=w, layout="HWC").shape)
        assert r["input_shape"] == [16, 20, 3]
        assert r["reduction"] == pytest.approx(x.size / np.prod(r["output_shape"]))
        assert 0 < r["psnr_db"] < 100 and -1 <= r["ssim"] <= 1


def test_analyze_strides_run():
    rgb_png("a.png", shape=(16, 20, 3))
    rows = json_rows(run("analyze", "a.png", "--windows", "2,4", "--strides", "1,2",
                         "--modes", "max", "--repeat", "1", "--json").stdout)
    assert {(r["window"][0], r["stride"][0]) for r in rows} >= {(2, 1), (4, 2)}


def test_analyze_strides_pair_with_windows():
    x = rgb_png("a.png", shape=(16, 20, 3))
    rows = json_rows(run("analyze", "a.png", "--windows", "2,4", "--strides", "1,2",
                         "--modes", "max", "--repeat", "1", "--json").stdout)
    assert [r["label"] for r in rows] == ["2x2 s1", "4x4 s2"]
    assert rows[0]["output_shape"] == list(pool(x, "max", window=2, stride=1, layout="HWC").shape)


@pytest.mark.parametrize("args, text", [
    (["--windows", "2,4", "--strides", "1"], "--strides"),
    (["--windows", "a"], "whole numbers"),
    (["--modes", "max", "--power", "3"], "--power"),
    (["--modes", "max,bogus"], "bogus"),
])
def test_analyze_usage_errors(args, text):
    rgb_png("a.png")
    before = snapshot()
    result = run("analyze", "a.png", "--repeat", "1", *args, code=2)
    assert text in result.stderr and result.stdout == ""
    assert snapshot() == before


def test_analyze_window_zero_is_usage_error():
    rgb_png("a.png")
    run("analyze", "a.png", "--windows", "0", "--repeat", "1", code=2)


def test_analyze_plot():
    rgb_png("a.png")
    result = run("analyze", "a.png", "--windows", "2,3", "--modes", "max,avg", "--repeat", "1",
                 "--plot", "p.png")
    assert "plot: p.png" in result.stdout
    plot = open_png("p.png")
    assert plot.width > 200 and plot.height > 200
    before = snapshot()
    line = one_error(run("analyze", "a.png", "--windows", "2", "--modes", "max", "--repeat", "1",
                         "--plot", "p.png", code=1))
    assert "p.png" in line and "--overwrite" in line
    assert snapshot() == before
    run("analyze", "a.png", "--windows", "2", "--modes", "max", "--repeat", "1",
        "--plot", "p.png", "--overwrite", "-q")
    assert snapshot()["p.png"] != before["p.png"]
    open_png("p.png")


def test_analyze_table_marks_best_tradeoffs():
    rgb_png("a.png", shape=(16, 20, 3))
    result = run("analyze", "a.png", "--windows", "2,4", "--modes", "max,avg", "--repeat", "1")
    lines = result.stdout.splitlines()
    end = next(i for i, line in enumerate(lines) if line.startswith("* best trade-off"))
    data = lines[1:end]
    assert [line.lstrip("* ").split()[:2] for line in data] == [
        ["max", "2x2"], ["max", "4x4"], ["avg", "2x2"], ["avg", "4x4"]], result.stdout
    assert all(line[0] in "* " for line in data)
    assert any(line.startswith("*") for line in data)
    assert "PSNR" in lines[0] and "SSIM" in lines[0]


def test_analyze_too_large_geometry_skipped():
    x = rgb_png("a.png", shape=(12, 16, 3))
    result = run("analyze", "a.png", "--windows", "2,50", "--modes", "max,min", "--repeat", "1",
                 "--json")
    rows = json_rows(result.stdout)
    assert [(r["mode"], r["window"]) for r in rows] == [("max", [2, 2]), ("min", [2, 2])]
    assert rows[0]["output_shape"] == list(pool(x, "max", window=2, layout="HWC").shape)
    warnings = [line for line in result.stderr.splitlines() if "50" in line]
    assert len(warnings) == 2 and all(w.startswith("poolcli: warning:") for w in warnings)
    assert not error_lines(result)


def test_analyze_feature_map_and_quiet():
    x = chw_npy("maps.npy", shape=(2, 12, 16))
    rows = json_rows(run("analyze", "maps.npy", "--windows", "3", "--modes", "lp",
                         "--power", "3", "-p", "1", "--repeat", "1", "--json").stdout)
    assert rows[0]["output_shape"] == list(pool(x, "lp", window=3, padding=1, power=3).shape)
    assert rows[0]["compared_as"].startswith("lp")
    result = run("analyze", "maps.npy", "--windows", "2", "--repeat", "1", "-q")
    assert result.stdout == "" and result.stderr == ""


def test_analyze_missing_input():
    assert one_error(run("analyze", "nope.png", code=1)) == "poolcli: error: nope.png: no such file"


@pytest.mark.parametrize("shape, axis", [((0, 4, 4), "C"), ((3, 0, 4), "H")])
def test_analyze_an_array_with_a_zero_length_axis_fails_the_input(shape, axis):
    np.save("empty.npy", np.zeros(shape, np.float32))
    result = run("analyze", "empty.npy", "--repeat", "1", "--windows", "2", "--plot", "p.png",
                 code=1)
    assert one_error(result) == (f"poolcli: error: empty.npy: no values to analyze: axis {axis} "
                                 f"has length 0 (shape {shape})")
    assert result.stdout == "" and os.listdir(".") == ["empty.npy"]


def test_analyze_values_whose_squares_overflow_float64():
    np.save("big.npy", np.array([[0.0, 1e200], [1e200, 0.0]]))
    rows = json_rows(run("analyze", "big.npy", "--repeat", "1", "--windows", "2", "--json",
                         "--plot", "p.png").stdout)
    by_mode = {r["mode"]: r for r in rows}
    assert by_mode["max"]["psnr_db"] == pytest.approx(10 * np.log10(2))  # MSE = L**2 / 2
    assert by_mode["avg"]["psnr_db"] == pytest.approx(10 * np.log10(4))  # MSE = L**2 / 4
    assert all(r["energy_kept"] == 0.0 for r in rows)
    open_png("p.png")
    result = run("analyze", "big.npy", "--repeat", "1", "--windows", "2")
    assert "data range 1e+200" in result.stdout and "Warning" not in result.stderr


def test_analyze_every_geometry_skipped_fails_without_plot():
    rgb_png("a.png", shape=(12, 16, 3))
    result = run("analyze", "a.png", "--windows", "50", "--modes", "max,min", "--repeat", "1",
                 "--plot", "p.png", code=1)
    line = one_error(result)
    assert line.startswith("poolcli: error: a.png: ") and "50" in line
    assert result.stdout == "" and os.listdir(".") == ["a.png"]


def test_analyze_existing_plot_fails_before_measuring(monkeypatch):
    import pool_cli.visual

    rgb_png("a.png")
    Path("p.png").write_bytes(b"keep")

    def measure(*args, **kwargs):
        raise AssertionError("measured although the plot cannot be written")

    monkeypatch.setattr(pool_cli.visual, "analyze", measure)
    line = one_error(run("analyze", "a.png", "--plot", "p.png", code=1))
    assert "p.png" in line and "--overwrite" in line
    assert Path("p.png").read_bytes() == b"keep"


# ----------------------------------------------------------------------------
# bench
# ----------------------------------------------------------------------------

def test_bench_quick_json(monkeypatch):
    real = bench.run_bench
    calls = []

    def tiny(**kwargs):
        calls.append(kwargs)
        return real(shapes=bench.TINY, peers=[], **kwargs)

    monkeypatch.setattr(bench, "run_bench", tiny)
    result = run("bench", "--quick", "--workloads", "W7", "--repeat", "1", "--json")
    assert calls and calls[0]["quick"] is True and calls[0]["repeat"] == 1
    rows = json_rows(result.stdout)
    assert rows
    for r in rows:
        assert {"workload", "impl", "status"} <= set(r)
        assert r["workload"].startswith("W7")
    assert {r["impl"] for r in rows} >= {"poolcli", "copy bound", "read bound"}
    assert all(r["status"] == "ok" for r in rows if r["impl"] == "poolcli")


def test_bench_unknown_workload():
    result = run("bench", "--workloads", "W0", code=2)
    assert "W0" in result.stderr and result.stdout == ""
    known = result.stderr.split("choose from", 1)[1].strip(" )\n").split(", ")
    assert len(known) == len(set(known)) and {"W1", "W5", "W7", "W8"} <= set(known)


# ----------------------------------------------------------------------------
# a real process
# ----------------------------------------------------------------------------

def test_subprocess_compare(tmp_path):
    (tmp_path / "chelsea.png").write_bytes((SAMPLES / "chelsea.png").read_bytes())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    done = subprocess.run([sys.executable, "-m", "pool_cli", "compare", "chelsea.png",
                           "--modes", "max,avg", "--json"], capture_output=True, text=True,
                          timeout=60, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    rows = json_rows(done.stdout)
    assert [(r["mode"], r["output_shape"]) for r in rows] == [("max", [150, 225, 3]),
                                                              ("avg", [150, 225, 3])]
    assert done.stderr.strip().endswith("wrote chelsea_compare.png")
    sheet = open_png(tmp_path / "chelsea_compare.png")
    assert sheet.width > 3 * 451


def test_analyze_checks_padding_against_its_own_windows_not_the_default():
    """-p 2 fits windows 3 and 4; only the default window 2 would be too small for it."""
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (24, 24), dtype=np.uint8)).save("a.png")
    result = run("analyze", "a.png", "-p", "2", "--windows", "3,4", "--repeat", "1", "--json")
    assert len(json_rows(result.stdout)) == 4 * 2
    run("analyze", "a.png", "-p", "2", "--windows", "2,4", "--repeat", "1", code=2)


def test_compare_draws_cmyk_as_ink_not_as_rgba():
    cmyk = np.zeros((8, 8, 4), np.uint8)
    cmyk[..., 0] = 255  # pure cyan ink: (0, 255, 255) on screen, not a transparent pixel
    Image.fromarray(cmyk, "CMYK").save("ink.tiff")
    run("compare", "ink.tiff", "--modes", "max", "-q")
    sheet = np.asarray(open_png("ink_compare.png")).reshape(-1, 3)
    assert (sheet == (0, 255, 255)).all(axis=1).sum() > 2 * 8 * 8


def test_compare_channels_pick_the_tiles_and_are_refused_for_images():
    chw_npy("maps.npy", shape=(20, 6, 6))
    result = run("compare", "maps.npy", "--modes", "max")
    assert "showing 16 of 20 channels" in result.stderr and "--channels" in result.stderr
    result = run("compare", "maps.npy", "--modes", "max", "--channels", "16:20", "-o", "b.png")
    assert "showing" not in result.stderr
    rgb_png("a.png")
    assert "drawn whole" in one_error(run("compare", "a.png", "--channels", "0", code=1))


@pytest.mark.parametrize("args", [
    ["show", "maps.npy", "--before-after", "-w", "3x3x3", "--layout", "CHW"],
    ["show", "maps.npy", "--layout", "XQZ"],
    ["analyze", "maps.npy", "--windows", "2", "--layout", "CHW", "-p", "1:0,0:1,1:1"],
    ["analyze", "maps.npy", "--layout", "XQZ"]])
def test_picture_commands_refuse_layout_mistakes_as_usage_errors(args):
    chw_npy("maps.npy")
    before = snapshot()
    run(*args, code=2)
    assert snapshot() == before


def test_analyze_nan_maps_print_no_python_warnings_and_star_no_nan_row():
    x = chw_npy("maps.npy")
    x[0, :4] = np.nan
    np.save("maps.npy", x)
    result = run("analyze", "maps.npy", "--windows", "2", "--modes", "max,avg")
    assert "Warning" not in result.stderr and "nan" in result.stdout
    starred = [line for line in result.stdout.splitlines()
               if line.startswith("*") and "best trade-off" not in line]
    assert starred == []  # every PSNR is NaN here: no row ranks
    np.save("flat.npy", np.full((2, 8, 8), np.nan))
    rows = json_rows(run("analyze", "flat.npy", "--windows", "2", "--json").stdout)
    assert all(r["lossless"] and r["psnr_db"] is None for r in rows)  # null: infinite here
    rows = json_rows(run("analyze", "maps.npy", "--windows", "2", "--json").stdout)
    assert not any(r["lossless"] for r in rows)


def test_analyze_wide_integers_use_their_range_not_their_dtype_span():
    x = (rng().random((3, 20, 20)) * 1000).astype(np.int64)
    np.save("ids.npy", x)
    result = run("analyze", "ids.npy", "--windows", "2", "--modes", "max")
    assert f"data range {int(x.max() - x.min())}" in result.stdout


def test_show_mode_without_before_after_is_a_usage_error():
    chw_npy("maps.npy")
    assert "--before-after" in run("show", "maps.npy", "--mode", "sum", code=2).stderr


def test_show_sums_leave_each_tile_scale_on_their_own_and_share_one_when_global():
    x = np.zeros((2, 12, 12), np.float32)
    x[0] = rng().random((12, 12))   # c0 in [0, 1]: its 2x2 sums reach about 4
    x[1, 5, 5] = 100                # c1 spans [0, 100]: the whole array's range hides c0's sums
    np.save("two.npy", x)
    spec = make_spec("sum", window=2)
    plan = spec.plan(x.shape)
    image, notes = feature_grid(x, None, before_after=(pool(x, "sum", window=2), plan), title="t")
    assert any("own colour scale" in note for note in notes)
    rgb = np.asarray(image.convert("RGB")).astype(int).sum(axis=2)
    box = image.info["panel_boxes"][0]
    c0_pooled = rgb[box[1]:box[3], (box[0] + box[2]) // 2 + 4:box[2]]
    assert c0_pooled.max() - c0_pooled.min() > 200  # spread over the map, not one colour
    y = np.stack([np.ones((8, 8)), 2 * np.ones((8, 8))]).astype(np.float32)
    pooled = pool(y, "sum", window=2)  # 4 and 8: one shared scale keeps them apart
    image, notes = feature_grid(y, None, normalize="global",
                                before_after=(pooled, make_spec("sum", window=2).plan(y.shape)))
    rgb = np.asarray(image.convert("RGB"))
    rights = [rgb[(b[1] + b[3]) // 2, b[2] - 4] for b in image.info["panel_boxes"]]
    assert not np.array_equal(rights[0], rights[1]) and any("own colour scale" in n for n in notes)


def test_show_title_names_lp_power_and_ceil_mode():
    chw_npy("maps.npy")
    run("show", "maps.npy", "--before-after", "--mode", "lp", "--power", "3", "--ceil-mode",
        "-w", "3", "-o", "lp.png")
    x = np.load("maps.npy")
    plan = make_spec("lp", window=3, power=3, ceil_mode=True).plan(x.shape)
    expected = reference_grid(x, f"maps.npy: lp (p=3), {describe_geometry(plan)}, ceil mode",
                              before_after=(pool(x, "lp", window=3, power=3, ceil_mode=True),
                                            plan))
    assert np.array_equal(np.asarray(open_png("lp.png")), expected)


def test_analyze_lossless_is_judged_in_the_input_dtype_and_with_nan_in_place():
    x = np.full((2, 8, 8), 2**60, np.int64)
    x[..., ::2] += 1  # equal in float64, not in int64
    np.save("wide.npy", x)
    [row] = json_rows(run("analyze", "wide.npy", "--windows", "2", "--modes", "max",
                          "--json").stdout)
    assert row["lossless"] is False
    y = chw_npy("nan.npy")
    y[0, 0, 0] = np.nan
    np.save("nan.npy", y)
    [row] = json_rows(run("analyze", "nan.npy", "--windows", "1", "--modes", "max",
                          "--json").stdout)
    assert row["lossless"] is True and (row["ssim"], row["energy_kept"]) == (1.0, 1.0)


# ----------------------------------------------------------------------------
# /dev/stdout is standard output, as -
# ----------------------------------------------------------------------------

def poolcli_process(*args, stdout=subprocess.PIPE):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run([sys.executable, "-m", "pool_cli", *args], stdout=stdout,
                          stderr=subprocess.PIPE, timeout=60, env=env)


@pytest.mark.parametrize("args", [
    ["compare", "a.png", "--modes", "max", "--json", "-o"],
    ["show", "maps.npy", "-o"],
    ["analyze", "a.png", "--modes", "max", "--windows", "2", "--repeat", "1", "--json", "--plot"],
])
@pytest.mark.parametrize("stdout", ["pipe", "devnull", "file"])
def test_picture_to_dev_stdout_is_standard_output(args, stdout):
    rgb_png("a.png")
    chw_npy("maps.npy")
    before = snapshot()
    if stdout == "pipe":
        done = poolcli_process(*args, "/dev/stdout")
        data = done.stdout
    elif stdout == "devnull":  # /dev/stdout is /dev/null: as `-o - > /dev/null`, no error
        done = poolcli_process(*args, "/dev/stdout", stdout=subprocess.DEVNULL)
        data = None
    else:  # standard output redirected to a file, as `> picture.png` does
        with open("picture.png", "wb") as out:
            done = poolcli_process(*args, "/dev/stdout", stdout=out)
        data = Path("picture.png").read_bytes()
        before["picture.png"] = hashlib.sha256(data).hexdigest()
    assert done.returncode == 0, done.stderr
    if data is not None:
        assert data.startswith(b"\x89PNG") and Image.open(io.BytesIO(data)).verify() is None
    assert snapshot() == before  # nothing else written
    if stdout != "devnull" and "--json" in args:  # the report goes to standard error
        rows = [line for line in done.stderr.decode().splitlines() if line.startswith("{")]
        assert json_rows("\n".join(rows))
