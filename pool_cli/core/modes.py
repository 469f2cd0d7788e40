"""The table of named reductions: every mode poolcli knows, read by the API, the CLI and --help.

No NumPy at import (the command line reads this table at start-up): a mode names its ufuncs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mode:
    """One pooling mode.

    ``combine`` merges two partial results of a window (``np.maximum``, ``np.add``, ...);
    ``skip_nan_combine`` is the NaN-skipping version for the extremes. Sum-like modes
    (``sum``, ``avg``, ``lp``) add up, then finish with a divisor or a root.
    ``options`` are the mode-specific parameters this mode accepts.
    """

    name: str
    summary: str
    combine_name: str
    skip_nan_name: str | None = None
    options: tuple[str, ...] = ()

    @property
    def combine(self):
        import numpy as np

        return getattr(np, self.combine_name)

    @property
    def skip_nan_combine(self):
        import numpy as np

        return getattr(np, self.skip_nan_name) if self.skip_nan_name else None

    @property
    def is_extreme(self) -> bool:
        return self.skip_nan_name is not None

    def work_dtype(self, dtype):
        """The dtype the window is combined in."""
        import numpy as np

        if self.is_extreme:
            return dtype
        if dtype.kind in "biu":
            return np.dtype(np.int64 if self.name == "sum" else np.float64)
        return np.dtype(np.float32) if dtype == np.float16 else dtype

    def output_dtype(self, dtype):
        """The dtype of the result: see the SPEC's "Data types"."""
        if self.is_extreme or dtype.kind == "f":
            return dtype
        return self.work_dtype(dtype)


MODES: dict[str, Mode] = {
    mode.name: mode
    for mode in (
        Mode("max", "largest value in each window (bool: any)", "maximum", "fmax"),
        Mode("min", "smallest value in each window (bool: all)", "minimum", "fmin"),
        Mode("avg", "mean of each window", "add", options=("count_include_pad", "rounded")),
        Mode("sum", "sum of each window (integers widen to int64)", "add"),
        Mode("lp", "Lp norm of each window, (sum |x|^p)^(1/p)", "add", options=("power",)),
    )
}

SPECIFIC_OPTIONS = frozenset(option for mode in MODES.values() for option in mode.options)


def owner_of(option: str) -> str:
    """The mode a mode-specific option belongs to.

    >>> owner_of("power")
    'lp'
    """
    return next(mode.name for mode in MODES.values() if option in mode.options)


def split_options(mode: str, options: dict) -> tuple[dict, dict]:
    """The options every mode shares, and ``mode``'s own ones (other modes' are left out).

    >>> split_options("avg", {"window": 2, "power": 3, "count_include_pad": True})
    ({'window': 2}, {'count_include_pad': True})
    """
    shared = {k: v for k, v in options.items() if k not in SPECIFIC_OPTIONS}
    own = {k: v for k, v in options.items() if mode in MODES and k in MODES[mode].options}
    return shared, own
