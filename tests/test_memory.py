"""Bounded memory: a memory-mapped .npy much larger than the band budget is pooled in bands.

Each measurement runs in a fresh Python that resets its peak RSS (VmHWM, Linux) just before
the run and reads it after.
"""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from pool_cli import pool

ROOT = Path(__file__).resolve().parents[1]

# Runs poolcli in-process with a small band budget; prints RSS before and at the peak (MiB).
MEASURE = textwrap.dedent("""
    import json, sys
    import numpy as np
    from pool_cli import cli, engine, io
    import PIL.Image, rich.table  # loaded before the baseline, as a real run loads them
    engine.STREAM_BYTES = 4 * 2**20
    read = io.read_input
    io.read_input = lambda source, **kw: read(source, mmap_threshold=1)

    def status(key):
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) / 1024 for line in f if line.startswith(key))

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from the current RSS
    before = status("VmRSS:")
    try:
        cli.cli(sys.argv[1:], standalone_mode=False)
    finally:
        print(json.dumps({"before": before, "peak": status("VmHWM:")}))
""")


@pytest.mark.parametrize("mode,args", [
    ("max", ["-w", "2"]),
    ("avg", ["-w", "3", "-s", "2", "-p", "1", "--count-include-pad"]),
    # overlapping sums of 4-6 cells: the pass, and the order of the adds, follows the shape
    ("sum", ["-w", "5", "-s", "1", "-p", "2"]),
])
@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux /proc")
def test_large_npy_is_pooled_in_bands_with_bounded_memory(tmp_path, mode, args, order):
    shape = (8, 2048, 2048)  # 128 MiB of float32: 32x the band budget
    source = tmp_path / "big.npy"
    data = np.lib.format.open_memmap(source, mode="w+", dtype=np.float32, shape=shape,
                                     fortran_order=order == "F")
    data[...] = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    data.flush()
    del data
    out = tmp_path / "out.npy"
    result = subprocess.run(
        [sys.executable, "-c", MEASURE, mode, str(source), "-o", str(out), "--quiet", *args],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""})
    assert result.returncode == 0, result.stderr
    rss = json.loads(result.stdout.strip().splitlines()[-1])
    growth = rss["peak"] - rss["before"]
    # The input alone is 128 MiB, the output 32 to 128 MiB: a bounded run stays well under
    # (the band, its output, and each thread's scratch buffers: 15-40 MiB measured).
    assert growth < 56, rss
    x = np.load(source)
    kwargs = dict(window=int(args[1]))
    if mode == "avg":
        kwargs.update(stride=2, padding=1, count_include_pad=True)
    if mode == "sum":
        kwargs.update(stride=1, padding=2)
    got = np.load(out)
    assert got.flags.f_contiguous == (order == "F")  # written in the input's order
    assert got.tobytes() == pool(x, mode, **kwargs).tobytes()  # bit for bit
