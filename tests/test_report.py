"""report.json_lines: what pipelines parse."""

import io
import json

import numpy as np

from pool_cli import report


def test_json_lines_turn_numpy_scalars_into_numbers_and_non_finite_ones_into_null():
    stream = io.StringIO()
    report.json_lines([{"a": np.float32("nan"), "b": [np.float64(np.inf), np.float32(1.5)],
                        "c": np.int64(3), "d": float("-inf"), "e": np.zeros(2)}], stream)
    assert json.loads(stream.getvalue()) == {"a": None, "b": [None, 1.5], "c": 3, "d": None,
                                             "e": [0.0, 0.0]}
