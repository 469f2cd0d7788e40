"""Tests of pool_cli.engine: output names, input discovery, batches and their rows.

Tests marked ``xfail(strict=True, reason="bug: ...")`` show a bug; remove the mark when fixed.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pool_cli import PoolError, make_spec, pool
from pool_cli import engine
from pool_cli.engine import (
    Batch, OutputOptions, Result, Source, describe_file, find_sources, is_folder_output,
    output_format, output_path,
)
from pool_cli.io import Loaded
from clitools import SPEC_FIELDS



@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)


def j(*parts: str) -> str:
    return os.path.join(*parts)


def write_png(path, shape=(6, 8, 3), seed=0) -> np.ndarray:
    arr = np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def write_npy(path, shape=(3, 6, 6), seed=0, dtype=np.float32) -> np.ndarray:
    arr = np.random.default_rng(seed).standard_normal(shape).astype(dtype)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, arr)
    return arr


def loaded(fmt="png") -> Loaded:
    return Loaded("x", fmt, {None: np.zeros((2, 2), np.uint8)})


# ----------------------------------------------------------------------------
# output_path: every form of -o
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("source,out,mode,fmt,want", [
    # default: {stem}_{mode}{ext} beside the input
    ("cat.png", None, "max", "png", "cat_max.png"),
    (j("a", "b", "cat.png"), None, "avg", "png", j("a", "b", "cat_avg.png")),
    ("maps.npy", None, "lp", "npy", "maps_lp.npy"),
    ("cat.png", None, "max", "npy", "cat_max.npy"),               # --format npy
    ("photo.jpeg", None, "min", "jpeg", "photo_min.jpg"),
    ("scan.tiff", None, "sum", "tiff", "scan_sum.tif"),
    ("archive.tar.png", None, "max", "png", "archive.tar_max.png"),
    # a plain file
    ("cat.png", "small.png", "max", "png", "small.png"),
    ("cat.png", j("out", "small.npy"), "max", "npy", j("out", "small.npy")),
    # a folder: trailing slash (made later if missing)
    ("cat.png", "new/", "max", "png", j("new", "cat_max.png")),
    (j("deep", "cat.png"), "new/", "avg", "npy", j("new", "cat_avg.npy")),
    # a template
    ("cat.png", "out/{stem}.{mode}{ext}", "avg", "npy", "out/cat.avg.npy"),
    (j("x", "cat.png"), "{mode}/{stem}{ext}", "max", "jpeg", "max/cat.jpg"),
    ("cat.png", "{stem}", "max", "png", "cat"),
    ("cat.png", "{stem}{stem}{ext}", "max", "png", "catcat.png"),
    # standard output
    ("cat.png", "-", "max", "png", "-"),
    ("-", "-", "max", "npy", "-"),
    ("-", None, "max", "png", "-"),
    # standard input to a file, a folder, a template
    ("-", "o.png", "max", "png", "o.png"),
    ("-", "out/", "max", "png", j("out", "stdin_max.png")),
    ("-", "{stem}-{mode}{ext}", "sum", "npy", "stdin-sum.npy"),
])
def test_output_path(source, out, mode, fmt, want):
    assert output_path(Source(source), OutputOptions(out), mode, fmt) == want


def test_output_path_existing_folder_without_slash():
    os.mkdir("results")
    assert output_path(Source("cat.png"), OutputOptions("results"), "max", "png") == j(
        "results", "cat_max.png")


def test_output_path_folder_keeps_the_recursive_sub_folder():
    source = Source(j("tree", "sub", "deeper", "cat.png"), j("sub", "deeper"))
    assert output_path(source, OutputOptions("out/"), "max", "png") == j(
        "out", "sub", "deeper", "cat_max.png")
    # Beside the input, the sub-folder is already in the path.
    assert output_path(source, OutputOptions(), "max", "png") == j(
        "tree", "sub", "deeper", "cat_max.png")


@pytest.mark.parametrize("out,want", [
    (None, False), ("x.png", False), ("new/", True), ("new" + os.sep, True), ("-", False),
    ("missing", False), ("{stem}/", True),
])
def test_is_folder_output(out, want):
    assert is_folder_output(out) is want


def test_is_folder_output_existing_folder():
    os.mkdir("there")
    assert is_folder_output("there")
    Path("file").write_text("")
    assert not is_folder_output("file")


# ----------------------------------------------------------------------------
# output_format
# ----------------------------------------------------------------------------

@pytest.mark.parametrize("out,fmt,input_fmt,want", [
    (None, None, "png", "png"),
    (None, "npy", "png", "npy"),
    ("x.tif", None, "png", "tiff"),
    ("x.JPG", None, "png", "jpeg"),
    ("x.npy", None, "png", "npy"),
    ("x.npy", "png", "png", "png"),        # --format wins
    ("-", None, "npz", "npz"),             # stdout: the input's format
    ("-", "png", "npy", "png"),
    ("out/", None, "tiff", "tiff"),        # a folder: the input's format
    ("{stem}{ext}", None, "npy", "npy"),   # a template: the input's format
])
def test_output_format(out, fmt, input_fmt, want):
    assert output_format(OutputOptions(out, fmt), loaded(input_fmt)) == want


def test_output_format_unknown_extension():
    with pytest.raises(PoolError, match="x.dat"):
        output_format(OutputOptions("x.dat"), loaded())


# ----------------------------------------------------------------------------
# find_sources
# ----------------------------------------------------------------------------

def _tree():
    for name in ("tree/b.png", "tree/a.npy", "tree/C.png", "tree/sub/z.png", "tree/sub/y.npz",
                 "tree/sub/deeper/x.tif", "tree/another/w.png", "tree/empty/.keep"):
        Path(name).parent.mkdir(parents=True, exist_ok=True)
        Path(name).write_bytes(b"")
    Path("tree/notes.txt").write_text("skip me")
    Path("tree/sub/data.csv").write_text("skip me")
    Path("tree/noext").write_text("skip me")


def test_find_sources_keeps_the_order_given():
    names = ["z.png", "a.png", "-", "missing.npy", "m.npz"]
    assert list(find_sources(names, recursive=False)) == [Source(n) for n in names]
    assert list(find_sources(names, recursive=True)) == [Source(n) for n in names]


def _deny(monkeypatch, *denied):
    """os.scandir refuses these folders (tests run as root, where chmod refuses nothing)."""
    real = os.scandir

    def scandir(path="."):
        if os.path.normpath(path) in denied:
            raise PermissionError(13, "Permission denied", path)
        return real(path)
    monkeypatch.setattr(os, "scandir", scandir)


def test_find_sources_reports_folders_it_cannot_list(monkeypatch):
    _tree()
    _deny(monkeypatch, os.path.join("tree", "sub"))
    items = list(find_sources(["tree"], recursive=True))
    failed = [i for i in items if isinstance(i, Result)]
    assert [f.error for f in failed] == [
        f"{os.path.join('tree', 'sub')}: cannot list this folder (permission denied)"]
    assert all(f.ok is False for f in failed)
    found = [i.path for i in items if isinstance(i, Source)]
    assert os.path.join("tree", "another", "w.png") in found and os.path.join("tree", "b.png") in found
    assert not [p for p in found if p.startswith(os.path.join("tree", "sub"))]


def test_find_sources_unreadable_top_folder_says_so(monkeypatch):
    _tree()
    _deny(monkeypatch, "tree")
    [failed] = list(find_sources(["tree"], recursive=True))
    assert failed.error == "tree: cannot list this folder (permission denied)"


def test_find_sources_folder_without_recursive_is_a_failed_row():
    _tree()
    items = list(find_sources(["a.png", "tree", "b.png"], recursive=False))
    assert items[0] == Source("a.png") and items[2] == Source("b.png")
    failed = items[1]
    assert isinstance(failed, Result) and failed.ok is False and failed.input == "tree"
    assert failed.error.startswith("tree:") and "-r" in failed.error and "\n" not in failed.error


def test_find_sources_recursive_sorted_with_sub_folders():
    _tree()
    items = list(find_sources(["tree"], recursive=True))
    assert all(isinstance(item, Source) for item in items)
    assert [(item.path, item.subdir) for item in items] == [
        (j("tree", "C.png"), ""), (j("tree", "a.npy"), ""), (j("tree", "b.png"), ""),
        (j("tree", "another", "w.png"), "another"),
        (j("tree", "sub", "y.npz"), "sub"), (j("tree", "sub", "z.png"), "sub"),
        (j("tree", "sub", "deeper", "x.tif"), j("sub", "deeper")),
    ]


def test_find_sources_recursive_sub_folder_is_relative_to_its_root():
    _tree()
    items = list(find_sources([j("tree", "sub"), "plain.png"], recursive=True))
    assert [(item.path, item.subdir) for item in items] == [
        (j("tree", "sub", "y.npz"), ""), (j("tree", "sub", "z.png"), ""),
        (j("tree", "sub", "deeper", "x.tif"), "deeper"), ("plain.png", "")]


def test_find_sources_is_lazy_enough_to_list_first():
    """The CLI lists every source before writing anything: outputs are never picked up."""
    _tree()
    items = list(find_sources(["tree"], recursive=True))
    Path("tree/C_max.png").write_bytes(b"")
    assert Source(j("tree", "C_max.png")) not in items


# ----------------------------------------------------------------------------
# Batch: claims, order, failures
# ----------------------------------------------------------------------------

def batch(sources, output=None, overwrite=False, mode="max", fmt=None, **geometry):
    spec = make_spec(mode, **geometry)
    return Batch(spec, OutputOptions(output, fmt, overwrite), [s for s in sources if isinstance(s, Source)])


def test_batch_writes_and_describes_each_input():
    arr = write_png("a.png")
    x = write_npy("x.npy", (2, 3, 5, 7))
    sources = [Source("a.png"), Source("x.npy")]
    a, b = batch(sources, "out/", mode="avg", window=3, stride=2, padding=1).run(sources)
    assert a.ok and a.output == j("out", "a_avg.png") and a.mode == "avg"
    assert a.input_shape == [6, 8, 3] and a.output_shape == [3, 4, 3]
    # an average written back into a PNG is stored as uint8 (rounded), and says so
    assert a.input_dtype == "uint8" and a.output_dtype == "uint8" and a.layout == "HWC"
    assert a.geometry == {"window": [3, 3], "stride": [2, 2], "padding": [[1, 1], [1, 1]],
                          "dilation": [1, 1]}
    assert b.layout == "NCHW" and b.output_shape == [2, 3, 3, 4] and b.output_dtype == "float32"
    assert np.array_equal(np.load("out/x_avg.npy"), pool(x, "avg", window=3, stride=2, padding=1))
    assert a.load_ms > 0 and a.pool_ms >= 0 and a.save_ms > 0
    assert a.input_bytes == arr.nbytes


def test_batch_refuses_an_output_that_is_an_input():
    write_png("a.png")
    before = Path("a.png").read_bytes()
    [r] = batch([Source("a.png")], "a.png", overwrite=True).run([Source("a.png")])
    assert not r.ok and r.error.startswith("a.png:") and "input" in r.error
    assert Path("a.png").read_bytes() == before


def test_batch_refuses_an_output_that_is_another_input_through_a_symlink():
    write_png("a.png")
    write_png("b.png", seed=1)
    os.symlink("b.png", "link.png")
    before = Path("b.png").read_bytes()
    sources = [Source("a.png"), Source("b.png")]
    [r] = batch(sources, "link.png", overwrite=True).run(sources[:1])
    assert not r.ok and "input" in r.error
    assert Path("b.png").read_bytes() == before


def test_batch_refuses_an_existing_output_without_overwrite():
    write_npy("x.npy")
    Path("x_max.npy").write_bytes(b"keep")
    [r] = batch([Source("x.npy")]).run([Source("x.npy")])
    assert not r.ok and r.error.startswith("x.npy:") and "x_max.npy" in r.error
    assert Path("x_max.npy").read_bytes() == b"keep"
    [r] = batch([Source("x.npy")], overwrite=True).run([Source("x.npy")])
    assert r.ok and Path("x_max.npy").read_bytes() != b"keep"


@pytest.mark.parametrize("overwrite", [False, True])
def test_batch_second_claim_of_an_output_fails(overwrite):
    first = write_npy("one/x.npy", seed=1)
    write_npy("two/x.npy", seed=2)
    sources = [Source(j("one", "x.npy")), Source(j("two", "x.npy"))]
    a, b = batch(sources, "out/", overwrite=overwrite).run(sources)
    assert a.ok and not b.ok
    assert b.error.startswith(j("two", "x.npy") + ":") and j("out", "x_max.npy") in b.error
    assert np.array_equal(np.load("out/x_max.npy"), pool(first, "max"))


def test_batch_claims_are_safe_across_threads():
    sources = []
    for i in range(8):
        write_npy(j(f"d{i}", "x.npy"), (2, 4, 4), seed=i)
        sources.append(Source(j(f"d{i}", "x.npy")))
    results = batch(sources, "out/", overwrite=True).run(sources, jobs=4)
    assert sum(r.ok for r in results) == 1
    assert all("also the output of" in r.error for r in results if not r.ok)


def test_batch_same_input_twice_second_fails():
    write_npy("x.npy")
    sources = [Source("x.npy"), Source("x.npy")]
    a, b = batch(sources, overwrite=True).run(sources)
    assert a.ok and not b.ok


def test_batch_stdout_is_never_claimed():
    b = batch([])
    b._claim("a.png", "-")
    b._claim("b.png", "-")


def test_batch_run_keeps_input_order_with_jobs_and_reports_progress():
    sources = []
    for i in range(7):
        write_npy(f"x{i}.npy", (2, 30 - 3 * i, 30), seed=i)  # different sizes finish out of order
        sources.append(Source(f"x{i}.npy"))
    items = [*sources[:3], Source("missing.npy"), *sources[3:]]
    done = []
    lock = threading.Lock()

    def tick():
        with lock:
            done.append(1)

    results = batch(sources, "out/", mode="avg").run(items, jobs=3, on_done=tick)
    assert [r.input for r in results] == [item.path for item in items]
    assert [r.ok for r in results] == [True] * 3 + [False] + [True] * 4
    assert len(done) == len(items)


def test_batch_run_fills_in_the_mode_of_failed_folder_rows():
    os.mkdir("folder")
    items = list(find_sources(["folder"], recursive=False))
    [r] = batch([], mode="lp").run(items)
    assert r.mode == "lp" and not r.ok and r.error.startswith("folder:")


def test_batch_npz_gives_one_row_per_member():
    a = np.arange(16.0).reshape(4, 4)
    b = np.ones((2, 6, 6), np.uint8)
    np.savez("m.npz", first=a, second=b)
    rows = batch([Source("m.npz")]).run([Source("m.npz")])
    assert [r.key for r in rows] == ["first", "second"]
    assert [r.output for r in rows] == ["m_max.npz"] * 2
    assert [r.layout for r in rows] == ["HW", "CHW"]
    with np.load("m_max.npz") as z:
        assert np.array_equal(z["first"], pool(a, "max")) and np.array_equal(z["second"], pool(b, "max"))


def test_batch_npz_member_that_does_not_fit_fails_the_file_and_names_the_member():
    np.savez("m.npz", big=np.zeros((8, 8)), tiny=np.zeros((1, 1)))
    [r] = batch([Source("m.npz")]).run([Source("m.npz")])
    assert not r.ok and r.error.startswith("m.npz[tiny]:")
    assert not Path("m_max.npz").exists()


@pytest.mark.parametrize("exc,want", [
    (RuntimeError("boom\n  on two lines"), "x.npy: RuntimeError: boom on two lines"),
    (MemoryError(), "x.npy: not enough memory"),
    (PoolError("x.npy: bad"), "x.npy: bad"),
    (PoolError("bad"), "x.npy: bad"),
])
def test_batch_pool_file_turns_every_failure_into_one_line(monkeypatch, exc, want):
    write_npy("x.npy")

    def fail(*args, **kwargs):
        raise exc

    monkeypatch.setattr(engine.io, "read_input", fail)
    [r] = batch([Source("x.npy")]).run([Source("x.npy")])
    assert not r.ok and r.error == want


def test_batch_geometry_error_names_the_input_and_axis():
    write_png("a.png", (3, 9, 3))
    [r] = batch([Source("a.png")], window=4).run([Source("a.png")])
    assert not r.ok and r.error.startswith("a.png:") and "axis H" in r.error
    assert not Path("a_max.png").exists()


def test_batch_explicit_layout_overrides_the_image_layout():
    arr = write_png("a.png", (6, 8, 3))
    [r] = batch([Source("a.png")], "a.npy", layout="HWC").run([Source("a.png")])
    assert r.layout == "HWC"
    [r] = batch([Source("a.png")], "b.npy", layout="CHW").run([Source("a.png")])
    assert r.ok and r.layout == "CHW" and r.output_shape == [6, 4, 1]
    assert np.array_equal(np.load("b.npy"), pool(arr, "max", layout="CHW"))


# ----------------------------------------------------------------------------
# Result.to_json
# ----------------------------------------------------------------------------

def test_result_to_json_success():
    r = Result("a.png", "avg", output="a_avg.png", input_shape=[6, 8, 3], output_shape=[3, 4, 3],
               input_dtype="uint8", output_dtype="float64", layout="HWC",
               geometry={"window": [2, 2], "stride": [2, 2], "padding": [[0, 0], [0, 0]],
                         "dilation": [1, 1]},
               ceil_mode=True, load_ms=1.23456, pool_ms=0.5, save_ms=2.0)
    data = r.to_json()
    assert SPEC_FIELDS <= set(data)
    assert "error" not in data and "key" not in data and "warnings" not in data
    assert data["ok"] is True and data["ceil_mode"] is True
    assert data["padding"] == [[0, 0], [0, 0]] and data["window"] == [2, 2]
    assert data["load_ms"] == 1.235
    assert json.loads(json.dumps(data)) == data


def test_result_to_json_failure_has_error_and_null_shapes():
    data = Result("x.npy", "max", ok=False, error="x.npy: no such file").to_json()
    assert SPEC_FIELDS <= set(data)
    assert data["ok"] is False and data["error"] == "x.npy: no such file"
    for field in ("output", "input_shape", "output_shape", "window", "stride", "padding", "dilation"):
        assert data[field] is None


def test_result_to_json_key_warnings_and_output_size():
    r = Result("m.npz", "avg", key="maps", warnings=["m.npz: note"],
               geometry={"window": None, "stride": None, "padding": [[0, 0]], "dilation": None,
                         "output_size": [3]})
    data = r.to_json()
    assert data["key"] == "maps" and data["warnings"] == ["m.npz: note"]
    assert data["output_size"] == [3] and data["window"] is None


def test_result_to_json_from_a_real_batch_is_json():
    write_npy("x.npy", (2, 9, 9))
    sources = [Source("x.npy"), Source("missing.npy")]
    results = batch(sources, mode="lp", power=3, window=3, stride=2, padding="same",
                    ceil_mode=True).run(sources)
    good, bad = (json.loads(json.dumps(r.to_json())) for r in results)
    assert good["padding"] == [[1, 1], [1, 1]] and good["ceil_mode"] is True
    assert good["window"] == [3, 3] and good["stride"] == [2, 2] and good["dilation"] == [1, 1]
    assert bad["error"] == "missing.npy: no such file" and bad["mode"] == "lp"


def test_result_to_json_global_and_adaptive_from_a_batch():
    write_npy("x.npy", (2, 9, 7))
    [g] = batch([Source("x.npy")], "g.npy", global_pool=True).run([Source("x.npy")])
    assert g.to_json()["window"] == [9, 7] and g.output_shape == [2, 1, 1]
    [a] = batch([Source("x.npy")], "a.npy", output_size=(4, 3)).run([Source("x.npy")])
    data = a.to_json()
    assert data["window"] is None and data["stride"] is None and data["dilation"] is None
    assert data["output_size"] == [4, 3]


# ----------------------------------------------------------------------------
# describe_file (poolcli info)
# ----------------------------------------------------------------------------

def test_describe_image():
    arr = write_png("a.png", (5, 7, 3))
    [row] = describe_file("a.png")
    assert row["input"] == "a.png" and row["key"] is None and row["format"] == "png"
    assert row["image_mode"] == "RGB" and row["dtype"] == "uint8" and row["shape"] == [5, 7, 3]
    assert row["layout"] == "HWC" and row["min"] == int(arr.min()) and row["max"] == int(arr.max())
    assert row["bytes"] == Path("a.png").stat().st_size
    json.dumps(row)


def test_describe_arrays_ignore_nan_in_the_range():
    x = np.array([[np.nan, 1.5], [-2.0, np.inf]], np.float32)
    np.save("x.npy", x)
    np.save("nan.npy", np.full((2, 2), np.nan))
    [row] = describe_file("x.npy")
    assert row["layout"] == "HW" and row["image_mode"] is None
    assert row["min"] == -2.0 and row["max"] == 1.5
    [row] = describe_file("nan.npy")
    assert row["min"] is None and row["max"] is None


def test_describe_npz_and_high_rank():
    np.savez("m.npz", a=np.zeros((1, 2, 3, 4, 5)), b=np.zeros((1, 1, 1, 1, 1, 1)))
    a, b = describe_file("m.npz")
    assert (a["key"], a["layout"]) == ("a", "NCDHW")
    assert (b["key"], b["layout"]) == ("b", None)


def test_describe_missing_file():
    with pytest.raises(PoolError, match="^missing.png: no such file$"):
        describe_file("missing.png")
