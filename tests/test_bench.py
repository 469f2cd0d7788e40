"""The benchmark harness: rows, ratios, peer checks.  Tiny shapes only; no timing is asserted."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from click.testing import CliRunner

from pool_cli import bench, pool
from pool_cli.cli import cli
from pool_cli.report import bench_table
from pool_cli.bench import (
    ROW_KEYS, TINY, Peer, Unsupported, Variant, Workload, round_half_up_uint8,
    json_rows, run_bench, select_workloads,
)

PEER_MODULES = ("torch", "cv2", "skimage", "scipy", "PIL")
BOUND_AND_POOL = ["poolcli", "poolcli out=", "copy bound", "read bound"]


def tiny(workloads, **kwargs):
    kwargs.setdefault("repeat", 2)
    kwargs.setdefault("peers", [])
    return run_bench(workloads=workloads, shapes=TINY, **kwargs)


def by(rows, workload, impl):
    (row,) = [r for r in rows if r["workload"] == workload and r["impl"] == impl]
    return row


def reference(w: Workload, x: np.ndarray) -> np.ndarray:
    """What poolcli computes for a workload (as a correct fake peer would)."""
    result = pool(x, w.mode, **w.pool_kwargs())
    return round_half_up_uint8(result) if w.round_uint8 else result


class CountingPeer:
    """A fake peer: ``shift`` added to poolcli's result; counts how often it is run."""

    def __init__(self, name, shift=0, raises=None):
        self.name, self.shift, self.raises, self.calls = name, shift, raises, 0

    def variants(self, w, x, out_shape):
        if isinstance(self.raises, Unsupported):
            raise self.raises

        def run():
            self.calls += 1
            if self.raises is not None:
                raise self.raises
            return reference(w, x) + np.asarray(self.shift).astype(x.dtype)
        return [Variant("fake", run)]

    def peer(self):
        return Peer(self.name, None, self.variants)


def test_rows_have_every_field_and_consistent_ratios():
    rows = tiny(["W1", "W6b", "W7-max"], repeat=3)
    assert [r["impl"] for r in rows] == BOUND_AND_POOL * 3
    for r in rows:
        assert tuple(r) == ROW_KEYS
        assert r["status"] == "ok" and r["runs"] == 3 and r["threads"] == 1
        assert 0 < r["time_ms_min"] <= r["time_ms_median"]
        copy = by(rows, r["workload"], "copy bound")["time_ms_median"]
        read = by(rows, r["workload"], "read bound")["time_ms_median"]
        mine = by(rows, r["workload"], "poolcli")["time_ms_median"]
        assert r["ratio_copy"] == pytest.approx(r["time_ms_median"] / copy)
        assert r["ratio_read"] == pytest.approx(r["time_ms_median"] / read)
        assert r["ratio_to_poolcli"] == pytest.approx(r["time_ms_median"] / mine)
        nbytes = np.prod(r["shape"]) * np.dtype(r["dtype"]).itemsize
        assert r["mb_per_s"] == pytest.approx(nbytes / 1e6 / (r["time_ms_median"] / 1e3))
    assert by(rows, "W1", "copy bound")["ratio_copy"] == 1.0
    assert by(rows, "W6b", "poolcli")["dtype"] == "uint8"
    assert by(rows, "W6b", "poolcli")["description"] == "uint8 (12,18,3) HWC, avg 2x2 s2 -> uint8"
    assert by(rows, "W6b", "poolcli")["note"] == "pool(rounded=True)"


def test_absent_peers_are_omitted(monkeypatch):
    for module in PEER_MODULES:  # None in sys.modules makes the import fail
        monkeypatch.setitem(sys.modules, module, None)
    missing = Peer("Nowhere", "no_such_module_for_poolcli_bench", lambda *a: [])
    rows = run_bench(workloads="W1,W6b", shapes=TINY, repeat=1, peers=bench.PEERS + (missing,))
    assert [r["impl"] for r in rows] == BOUND_AND_POOL * 2


def test_a_wrong_peer_is_a_mismatch_and_is_not_timed():
    wrong, right = CountingPeer("Wrong", shift=1), CountingPeer("Right")
    rows = tiny(["W3", "W6"], repeat=3, peers=[wrong.peer(), right.peer()])
    for workload in ("W3", "W6"):
        bad = by(rows, workload, "Wrong")
        assert bad["status"] == "mismatch" and "values differ" in bad["note"]
        assert bad["time_ms_median"] is None and bad["ratio_copy"] is None and bad["runs"] == 0
        good = by(rows, workload, "Right")
        assert good["status"] == "ok" and good["variant"] == "fake" and good["runs"] == 3
        assert good["ratio_to_poolcli"] == pytest.approx(
            good["time_ms_median"] / by(rows, workload, "poolcli")["time_ms_median"])
    assert wrong.calls == 2  # the check run only
    assert right.calls == 2 * (1 + 3)  # check run, then every timed run


def test_avg_is_compared_with_a_tolerance_and_uint8_exactly():
    w2 = next(w for w in bench.WORKLOADS if w.id == "W2")
    w6b = next(w for w in bench.WORKLOADS if w.id == "W6b")
    ref = np.array([[[1.0, 2.0]]], np.float32)
    assert bench.compare(w2, ref, ref * (1 + 1e-7)) is None
    assert "1 of 2 values differ" in bench.compare(w2, ref, ref + [0, 1e-3])
    assert "shape" in bench.compare(w2, ref, ref[0])
    u = np.array([[[3]]], np.uint8)
    assert bench.compare(w6b, u, u) is None and bench.compare(w6b, u, u + 1)


def test_raising_and_unsupported_peers():
    broken = CountingPeer("Broken", raises=RuntimeError("no kernel for this\nsecond line"))
    refuses = CountingPeer("Refuses", raises=Unsupported("window != stride"))
    rows = tiny(["W2"], peers=[broken.peer(), refuses.peer()])
    assert by(rows, "W2", "Broken")["status"] == "error"
    assert by(rows, "W2", "Broken")["note"] == "fake: RuntimeError: no kernel for this"
    assert by(rows, "W2", "Refuses")["status"] == "unsupported"
    assert by(rows, "W2", "Refuses")["note"] == "window != stride"
    shown = render(rows)
    assert "Broken" in shown and "Refuses" not in shown and "1 unsupported" in shown
    assert "Refuses" in render(rows, show_unsupported=True)


def test_a_poolcli_error_is_reported():
    bad = Workload("bad", {TINY: (2, 4, 4)}, "float32", "CHW", "max", window=9, stride=1)
    rows = tiny([bad, "W1"])
    assert by(rows, "bad", "poolcli")["status"] == "error"
    assert [r["impl"] for r in rows if r["workload"] == "bad"] == ["poolcli"]
    assert by(rows, "W1", "poolcli")["status"] == "ok"


def test_installed_peers_agree_with_poolcli():
    """Every installed peer's semantics match poolcli on every workload it runs (tiny shapes)."""
    rows = run_bench(shapes=TINY, repeat=1, slow_budget_s=0)
    assert not [(r["workload"], r["impl"], r["note"]) for r in rows
                if r["status"] in ("mismatch", "error")]
    ok = [r for r in rows if r["status"] == "ok"]
    assert len(ok) >= len(BOUND_AND_POOL) * len(bench.WORKLOADS)
    assert all(r["runs"] == 1 for r in ok)  # over budget: still timed once


def test_window_ratio_of_w5():
    rows = tiny("W5")
    assert [r["workload"] for r in rows] == ["W5"] * 4 + ["W5-5x5"] * 4
    mine = by(rows, "W5", "poolcli")
    assert mine["window_ratio"] == pytest.approx(
        mine["time_ms_median"] / by(rows, "W5-5x5", "poolcli")["time_ms_median"])
    assert "the time of W5-5x5" in mine["note"]
    assert by(rows, "W5", "copy bound")["window_ratio"] is None


def test_threads_are_passed_when_pool_takes_them(monkeypatch):
    rows = tiny(["W1"], threads=2)
    assert "2 leading-axis blocks" in by(rows, "W1", "copy bound")["note"]
    assert by(rows, "W1", "read bound")["threads"] == 2
    seen = []

    def threaded_pool(x, mode, threads=None, **kwargs):
        seen.append(threads)
        return pool(x, mode, **kwargs)

    monkeypatch.setattr(bench, "pool", threaded_pool)
    rows = tiny(["W1", "W6b"], threads=2, repeat=2)
    # per workload: the reference run, into out= once untimed, then 2 timed runs each
    assert seen == [2] * 12 and by(rows, "W1", "poolcli")["threads"] == 2
    assert by(rows, "W1", "poolcli")["note"] == ""
    assert by(rows, "W6b", "poolcli")["note"] == "pool(rounded=True)"
    assert by(rows, "W6b", "poolcli out=")["note"] == (
        "pool(rounded=True), into a preallocated output")
    seen.clear()
    tiny(["W1"], repeat=1)
    assert seen == [1] * 4


def test_select_workloads():
    assert [w.id for w in select_workloads("W5")] == ["W5", "W5-5x5"]
    assert [w.id for w in select_workloads(" w7 ,W1,W1")] == ["W7-avg", "W7-max", "W1"]
    assert len(select_workloads(None)) == len(bench.WORKLOADS) == 11
    with pytest.raises(ValueError, match="unknown workload 'W9'"):
        select_workloads("W1,W9")


def test_round_half_up_uint8():
    got = round_half_up_uint8(np.array([0.49, 0.5, 1.5, 2.5, 254.5, 255.4, -0.2]))
    assert got.tolist() == [0, 1, 2, 3, 255, 255, 0] and got.dtype == np.uint8


def test_progress_and_json():
    calls = []
    rows = tiny("W1,W2", progress=lambda *a: calls.append(a))
    assert calls == [(0, 2, "W1"), (1, 2, "W2"), (2, 2, "done")]
    objects = json_rows(rows)
    assert len(objects) == len(rows) == 2 * len(BOUND_AND_POOL)
    for obj in objects:
        assert tuple(obj) == ROW_KEYS and obj["status"] == "ok"


def test_click_command(monkeypatch):
    real = bench.run_bench
    monkeypatch.setattr(bench, "run_bench", lambda **kw: real(shapes=TINY, peers=[], **kw))
    runner = CliRunner()
    result = runner.invoke(cli, ["bench", "--workloads", "W7", "--repeat", "1", "--json"])
    assert result.exit_code == 0, result.output
    objs = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["workload"] for o in objs] == ["W7-avg"] * 4 + ["W7-max"] * 4
    result = runner.invoke(cli, ["bench", "--workloads", "W1", "--repeat", "1", "--quick"])
    assert result.exit_code == 0 and "poolcli bench (quick" in result.stdout
    result = runner.invoke(cli, ["bench", "--workloads", "W0"])
    assert result.exit_code == 2 and "unknown workload" in result.output


def render(rows, **kwargs) -> str:
    stream = io.StringIO()
    bench_table(rows, stream, **kwargs)
    return stream.getvalue()


def test_rounds_run_every_implementation_in_changing_orders():
    calls = []
    timed = [bench._Timed(name, lambda name=name: calls.append(name), runs)
             for name, runs in (("a", 12), ("b", 12), ("c", 12), ("slow", 3))]
    bench._time_round_robin(timed, 12)
    assert [len(t.times) for t in timed] == [12, 12, 12, 3]
    assert sorted(calls) == sorted(["a", "b", "c"] * 12 + ["slow"] * 3)
    before_a = {calls[i - 1] for i in range(1, len(calls)) if calls[i] == "a"}
    assert len(before_a) >= 2  # not always the same implementation right before it


def test_a_peer_that_raises_while_timed_is_an_error_row_not_a_crash():
    class FailsLater(CountingPeer):
        def variants(self, w, x, out_shape):
            [fine] = super().variants(w, x, out_shape)

            def run():
                if self.calls >= 1:  # the check run passes, a timed run raises
                    raise MemoryError("out of memory")
                return fine.run()
            return [Variant("fake", run)]

    flaky, steady = FailsLater("Flaky"), CountingPeer("Steady")
    rows = tiny("W1", peers=[flaky.peer(), steady.peer()], repeat=3)
    failed = by(rows, "W1", "Flaky")
    assert failed["status"] == "error" and "MemoryError: out of memory" in failed["note"]
    assert failed["time_ms_median"] is None and failed["ratio_to_poolcli"] is None
    assert by(rows, "W1", "Steady")["status"] == "ok" and by(rows, "W1", "Steady")["runs"] == 3


def test_the_window_ratio_divides_the_same_variant_on_both_sides():
    class TwoWays:
        """Variant 'a' is fast on W5-5x5, 'b' on W5: each workload's best differs."""

        def variants(self, w, x, out_shape):
            want = reference(w, x)
            slow = w.id == "W5"

            def a():
                if slow:
                    sum(range(200000))
                return want

            def b():
                if not slow:
                    sum(range(200000))
                return want
            return [Variant("a", a), Variant("b", b)]

    rows = tiny("W5", peers=[Peer("Two", None, TwoWays().variants)], repeat=3)
    w5, w5_5 = by(rows, "W5", "Two"), by(rows, "W5-5x5", "Two")
    assert (w5["variant"], w5_5["variant"]) == ("b", "a")
    also = float(w5_5["note"].split("b: ")[1].split(" ms")[0])  # W5-5x5's time of variant b
    assert w5["window_ratio"] == pytest.approx(w5["time_ms_median"] / also, rel=0.06)
    assert "_variants" not in json_rows(rows)[0]


def test_a_kernel_timed_without_its_layout_conversion_is_noted_never_the_peer_time():
    def variants(w, x, out_shape):
        want = reference(w, x)

        def converting():
            sum(range(200000))  # the layout conversion the workload's input needs
            return want
        return [Variant("converted", converting), Variant("kernel", lambda: want,
                                                          kernel_only=True)]

    def only_kernel(w, x, out_shape):
        return [Variant("broken", lambda: reference(w, x) + 1),
                Variant("kernel", lambda: reference(w, x), kernel_only=True)]

    rows = tiny("W1", peers=[Peer("Fair", None, variants), Peer("Half", None, only_kernel)],
                repeat=3)
    fair = by(rows, "W1", "Fair")
    assert fair["status"] == "ok" and fair["variant"] == "converted"
    assert "kernel: " in fair["note"]
    half = by(rows, "W1", "Half")
    assert half["status"] == "mismatch" and half["time_ms_median"] is None


def test_pytorch_times_the_layout_conversion_its_faster_kernel_needs():
    pytest.importorskip("torch")
    [w2] = select_workloads("W2")
    x = bench.make_input((4, 6, 8), np.float32)
    variants = bench.torch_variants(w2, x, (4, 3, 4))
    assert [v.kernel_only for v in variants] == [False, False, True]
    for v in variants:
        assert bench.compare(w2, pool(x, "avg", 2), v.to_array(v.run())) is None


def test_single_threaded_peers_report_one_thread_whatever_their_status():
    broken = CountingPeer("Broken", raises=RuntimeError("no kernel"))
    rows = tiny("W1", peers=[broken.peer()], threads=2)
    assert by(rows, "W1", "Broken")["threads"] == 1


def test_no_workload_named_is_refused():
    for ids in ("", " , "):
        with pytest.raises(ValueError, match="no workload named"):
            select_workloads(ids)
    result = CliRunner().invoke(cli, ["bench", "--workloads", " , "])
    assert result.exit_code == 2


def test_an_hwc_view_reaches_pytorch_with_channels_last_strides():
    torch = pytest.importorskip("torch")
    [w8] = select_workloads("W8")
    x = bench.make_input((6, 8, 4), np.float32)
    native = bench.torch_variants(w8, x, (3, 4, 4))[0]
    result = native.run()
    assert result.is_contiguous(memory_format=torch.channels_last)  # PyTorch's NHWC kernel ran
    np.testing.assert_array_equal(native.to_array(result), pool(x, "max", 2, layout="HWC"))


def test_pytorch_threads_are_told_to_wait_passively_before_torch_loads(tmp_path):
    pytest.importorskip("torch")
    script = tmp_path / "probe.py"
    script.write_text(
        "import os, sys\n"
        "seen = []\n"
        "class Watch:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'torch' and not seen:\n"
        "            seen.append(os.environ.get('OMP_WAIT_POLICY'))\n"
        "sys.meta_path.insert(0, Watch())\n"
        "from pool_cli import bench\n"
        "bench.run_bench(shapes=bench.TINY, workloads='W1', repeat=1,\n"
        "                peers=[p for p in bench.PEERS if p.module == 'torch'])\n"
        "print(seen)\n")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env,
                         check=True).stdout
    assert out.strip() == "['PASSIVE']"
